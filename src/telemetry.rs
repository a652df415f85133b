//! Logging through env_logger, as text or one JSON object per line.

use std::io::Write;

use crate::config::LogFormat;

/// An error and every cause under it, `error: cause: cause`: what logs show, so no layer's
/// reason is lost when an error is wrapped.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// What is logged when `RUST_LOG` is unset: `info`, except the redis crate's own reports, which
/// repeat a warning every half second per node while a cluster node is down; the bus reports an
/// outage once, with its cause, instead.
pub const DEFAULT_LOG_FILTER: &str = "info,redis=error";

/// Installs the logger once; `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]).
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_LOG_FILTER));
    if format == LogFormat::Json {
        builder.format(|buf, record| writeln!(buf, "{}", json_line(record)));
    }
    // A second init (tests) is harmless.
    let _ = builder.try_init();
}

/// One record as a JSON object: `ts`, `level`, `target`, `msg`.
pub fn json_line(record: &log::Record<'_>) -> String {
    serde_json::json!({
        "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "level": record.level().as_str(),
        "target": record.target(),
        "msg": record.args().to_string(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_name_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&err).to_string(), "outer: inner");
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let line = json_line(
            &log::Record::builder()
                .args(format_args!("GET /health 200 \"quoted\"\nnext"))
                .level(log::Level::Info)
                .target("access")
                .build(),
        );
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        assert_eq!(v["msg"], "GET /health 200 \"quoted\"\nnext");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn init_twice_is_harmless() {
        init(LogFormat::Json);
        init(LogFormat::Text);
    }
}

//! Logging through env_logger, as text or one JSON object per line.

use std::io::Write;

use crate::config::LogFormat;

/// Installs the logger once; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
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

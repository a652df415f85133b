//! Logging through env_logger, as text or one JSON object per line.

use std::io::Write;

use crate::config::LogFormat;

/// Installs the logger once; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    // A second init (tests) is harmless.
    let _ = builder.try_init();
}

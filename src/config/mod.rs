//! Typed settings from the environment (and `.env`), one clear error per bad variable.

mod docs;
mod geocoder;
mod limits;
mod proxies;
mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use docs::{SettingDoc, SETTINGS};
pub use geocoder::GeocoderUrl;
pub use limits::Limits;
pub use proxies::TrustedProxies;
pub use values::{
    redact_password, AdminToken, AllowedOrigins, DatabaseUrl, LogFormat, RedisCa, RedisUrl, Secret, TileUrl,
    DEFAULT_TILE_URL,
};

/// Every setting of the server (SPEC §5).
#[derive(Debug, Clone)]
pub struct Settings {
    /// SQL database.
    pub database_url: DatabaseUrl,
    /// Redis, for TTL state and cross-replica broadcasts; `None` is single-node, in memory.
    pub redis_url: Option<RedisUrl>,
    /// Extra certificate authority for `rediss://` (`REDIS_CA_FILE`).
    pub redis_ca: Option<RedisCa>,
    /// Whether `websocket_url` carries `?sid=` so an ingress can route a session to one replica.
    pub websocket_url_sid: bool,
    /// HMAC key for tokens.
    pub jwt_secret: Secret,
    /// True when the secret was generated at start (tokens die with the process).
    pub jwt_secret_generated: bool,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0 picks a free one).
    pub port: u16,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// Base URL of join links, without a trailing slash.
    pub join_base_url: String,
    /// CORS and WebSocket origin policy.
    pub cors_allowed_origins: AllowedOrigins,
    /// Log output format.
    pub log_format: LogFormat,
    /// Session and participant rules and timers: the one copy every part of the server shares.
    pub limits: Arc<Limits>,
    /// Connections in the SQL pool.
    pub db_pool_size: u32,
    /// Open connections (WebSockets included) this process admits; `None`: 25,600 per worker.
    pub max_connections: Option<usize>,
    /// Raster tiles of the web client's map; `None` draws the map without tiles.
    pub tile_url: Option<TileUrl>,
    /// Opens `/dev/dashboard` in production to requests that present it.
    pub admin_token: Option<AdminToken>,
    /// Peers whose `X-Forwarded-For` names the client (SPEC §11); empty: none.
    pub trusted_proxies: TrustedProxies,
    /// A Nominatim-compatible search the web client offers for picking a destination; `None`: no search box.
    pub geocoder_url: Option<GeocoderUrl>,
}

/// A setting that cannot be used; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Settings {
    /// Reads the process environment (after loading `.env` when present).
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_map(&vars)
    }

    /// Reads settings from a map of variables (the environment, or a test's own).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let database_url =
            DatabaseUrl::parse(get("DATABASE_URL").unwrap_or("sqlite://./data/location_sharing.sqlite3"))
                .map_err(|reason| ConfigError { variable: "DATABASE_URL", reason })?;

        let redis_url = get("REDIS_URL")
            .map(RedisUrl::parse)
            .transpose()
            .map_err(|reason| ConfigError { variable: "REDIS_URL", reason })?;
        let redis_ca = match get("REDIS_CA_FILE") {
            None => None,
            Some(_) if !redis_url.as_ref().is_some_and(RedisUrl::is_tls) => {
                return Err(ConfigError { variable: "REDIS_CA_FILE", reason: "needs a rediss:// REDIS_URL".into() });
            }
            Some(path) => {
                Some(RedisCa::load(path).map_err(|reason| ConfigError { variable: "REDIS_CA_FILE", reason })?)
            }
        };
        let websocket_url_sid = match get("WEBSOCKET_URL_SID").map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(_) => {
                return Err(ConfigError { variable: "WEBSOCKET_URL_SID", reason: "must be true or false".into() });
            }
        };

        let (jwt_secret, jwt_secret_generated) = match vars.get("JWT_SECRET") {
            Some(secret) if !secret.is_empty() => (Secret::new(secret.as_bytes().to_vec()), false),
            Some(_) => {
                return Err(ConfigError { variable: "JWT_SECRET", reason: "must not be empty".into() });
            }
            None if redis_url.is_some() || database_url.is_postgres() => {
                return Err(ConfigError {
                    variable: "JWT_SECRET",
                    reason: "is required when REDIS_URL is set or the database is PostgreSQL, so that every replica signs alike".into(),
                });
            }
            None => {
                let mut secret = vec![0u8; 32];
                rand::fill(&mut secret[..]);
                (Secret::new(secret), true)
            }
        };

        let host = get("HOST").unwrap_or("127.0.0.1").to_owned();
        let port = match (get("PORT"), get("PHX_PORT")) {
            (Some(p), _) => parse_num::<u16>("PORT", p)?,
            (None, Some(p)) => parse_num::<u16>("PHX_PORT", p)?,
            (None, None) => 4000,
        };

        let public_url = parse_base_url("PUBLIC_URL", get("PUBLIC_URL").unwrap_or("http://localhost:4000"))?;
        let join_base_url = match get("JOIN_BASE_URL") {
            Some(url) => parse_base_url("JOIN_BASE_URL", url)?,
            None => public_url.clone(),
        };

        let cors_allowed_origins = AllowedOrigins::parse(get("CORS_ALLOWED_ORIGINS").unwrap_or("*"))
            .map_err(|reason| ConfigError { variable: "CORS_ALLOWED_ORIGINS", reason })?;

        let log_format = match get("LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(ConfigError { variable: "LOG_FORMAT", reason: "must be text or json".into() }),
        };

        let d = Limits::default();
        let secs = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => positive::<u64>(name, v).map(Duration::from_secs),
            }
        };
        let millis = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => positive::<u64>(name, v).map(Duration::from_millis),
            }
        };
        let count = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => positive::<u64>(name, v),
            }
        };
        // The abuse limits of SPEC §11, where 0 turns a limit off.
        let limit = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => parse_num::<u32>(name, v),
            }
        };
        let limits = Limits {
            max_participants: to_u32("MAX_PARTICIPANTS", count("MAX_PARTICIPANTS", u64::from(d.max_participants))?)?,
            session_inactivity: secs("SESSION_INACTIVITY_SECONDS", d.session_inactivity)?,
            participant_idle: secs("PARTICIPANT_IDLE_SECONDS", d.participant_idle)?,
            cleanup_interval: secs("CLEANUP_INTERVAL_SECONDS", d.cleanup_interval)?,
            location_ttl: secs("LOCATION_TTL_SECONDS", d.location_ttl)?,
            ended_retention: secs("ENDED_RETENTION_SECONDS", d.ended_retention)?,
            max_updates_per_second: to_u32(
                "MAX_UPDATES_PER_SECOND",
                count("MAX_UPDATES_PER_SECOND", u64::from(d.max_updates_per_second))?,
            )?,
            socket_timeout: secs("SOCKET_TIMEOUT_SECONDS", d.socket_timeout)?,
            max_socket_queue: to_usize("MAX_SOCKET_QUEUE", count("MAX_SOCKET_QUEUE", d.max_socket_queue as u64)?)?,
            max_frame_bytes: to_usize("MAX_FRAME_BYTES", count("MAX_FRAME_BYTES", d.max_frame_bytes as u64)?)?,
            shutdown_grace: secs("SHUTDOWN_GRACE_SECONDS", d.shutdown_grace)?,
            create_sessions_per_minute: limit("CREATE_SESSIONS_PER_MINUTE", d.create_sessions_per_minute)?,
            joins_per_minute: limit("JOINS_PER_MINUTE", d.joins_per_minute)?,
            socket_connects_per_minute: limit("SOCKET_CONNECTS_PER_MINUTE", d.socket_connects_per_minute)?,
            max_sockets_per_address: limit("MAX_SOCKETS_PER_ADDRESS", d.max_sockets_per_address)?,
            max_sockets_per_participant: limit("MAX_SOCKETS_PER_PARTICIPANT", d.max_sockets_per_participant)?,
            fast_update_interval: millis("FAST_UPDATE_INTERVAL_MS", d.fast_update_interval)?,
            idle_update_interval: millis("IDLE_UPDATE_INTERVAL_MS", d.idle_update_interval)?,
        };
        // Idle clients must still refresh their position before it expires, or they vanish from the map.
        if limits.idle_update_interval >= limits.location_ttl {
            return Err(ConfigError {
                variable: "IDLE_UPDATE_INTERVAL_MS",
                reason: format!(
                    "{} ms must stay below LOCATION_TTL_SECONDS ({} s), or idle positions expire between updates",
                    limits.idle_update_interval.as_millis(),
                    limits.location_ttl.as_secs()
                ),
            });
        }
        if limits.fast_update_interval > limits.idle_update_interval {
            return Err(ConfigError {
                variable: "FAST_UPDATE_INTERVAL_MS",
                reason: "must not be above IDLE_UPDATE_INTERVAL_MS".into(),
            });
        }
        let trusted_proxies = TrustedProxies::parse(get("TRUSTED_PROXIES").unwrap_or(""))
            .map_err(|reason| ConfigError { variable: "TRUSTED_PROXIES", reason })?;
        let geocoder_url = get("GEOCODER_URL")
            .map(GeocoderUrl::parse)
            .transpose()
            .map_err(|reason| ConfigError { variable: "GEOCODER_URL", reason })?;
        let db_pool_size = to_u32("DB_POOL_SIZE", count("DB_POOL_SIZE", 10)?)?;
        let max_connections = get("MAX_CONNECTIONS")
            .map(|v| positive::<u64>("MAX_CONNECTIONS", v).and_then(|n| to_usize("MAX_CONNECTIONS", n)))
            .transpose()?;

        // Set but empty means "no tiles", so this one is read before `get` drops empty values.
        let tile_url = TileUrl::parse(vars.get("TILE_URL").map_or(DEFAULT_TILE_URL, String::as_str))
            .map_err(|reason| ConfigError { variable: "TILE_URL", reason })?;
        let admin_token = get("ADMIN_TOKEN")
            .map(AdminToken::parse)
            .transpose()
            .map_err(|reason| ConfigError { variable: "ADMIN_TOKEN", reason })?;

        Ok(Self {
            database_url,
            redis_url,
            redis_ca,
            websocket_url_sid,
            jwt_secret,
            jwt_secret_generated,
            host,
            port,
            public_url,
            join_base_url,
            cors_allowed_origins,
            log_format,
            limits: Arc::new(limits),
            db_pool_size,
            max_connections,
            tile_url,
            admin_token,
            trusted_proxies,
            geocoder_url,
        })
    }

    /// The link a session is shared by: `JOIN_BASE_URL/join/{id}`.
    pub fn join_link(&self, session: crate::domain::SessionId) -> String {
        format!("{}/join/{session}", self.join_base_url)
    }

    /// The socket URL handed to a participant of `session`: with `WEBSOCKET_URL_SID`, it names
    /// the session so that an ingress hashing on it sends a session's sockets to one replica.
    pub fn websocket_url_for(&self, session: crate::domain::SessionId) -> String {
        let url = self.websocket_url();
        if self.websocket_url_sid {
            format!("{url}?sid={session}")
        } else {
            url
        }
    }

    /// `PUBLIC_URL` with the ws/wss scheme plus `/socket/websocket`.
    pub fn websocket_url(&self) -> String {
        let rest = self
            .public_url
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}"))
            .or_else(|| self.public_url.strip_prefix("http://").map(|r| format!("ws://{r}")))
            .unwrap_or_else(|| self.public_url.clone());
        format!("{rest}/socket/websocket")
    }
}

fn parse_num<T: std::str::FromStr>(variable: &'static str, raw: &str) -> Result<T, ConfigError> {
    raw.parse::<T>().map_err(|_| ConfigError { variable, reason: format!("{raw:?} is not a valid number") })
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(variable: &'static str, raw: &str) -> Result<T, ConfigError> {
    let n = parse_num::<T>(variable, raw)?;
    if n <= T::default() {
        return Err(ConfigError { variable, reason: format!("{raw:?} must be a whole number above 0") });
    }
    Ok(n)
}

fn to_u32(variable: &'static str, n: u64) -> Result<u32, ConfigError> {
    u32::try_from(n).map_err(|_| ConfigError { variable, reason: format!("{n} is too large") })
}

fn to_usize(variable: &'static str, n: u64) -> Result<usize, ConfigError> {
    usize::try_from(n).map_err(|_| ConfigError { variable, reason: format!("{n} is too large") })
}

fn parse_base_url(variable: &'static str, raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim_end_matches('/');
    let rest = trimmed.strip_prefix("http://").or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(trimmed.to_owned()),
        _ => Err(ConfigError { variable, reason: format!("{raw:?} must be an http:// or https:// URL") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_map(&map)
    }

    #[test]
    fn defaults_need_nothing() {
        let s = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("./data/location_sharing.sqlite3".into()));
        assert_eq!(s.port, 4000);
        assert_eq!(s.host, "127.0.0.1");
        assert!(s.jwt_secret_generated);
        assert_eq!(s.websocket_url(), "ws://localhost:4000/socket/websocket");
        let session = crate::domain::SessionId::new();
        assert_eq!(s.websocket_url_for(session), s.websocket_url());
        let sid = settings(&[("WEBSOCKET_URL_SID", "true")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sid.websocket_url_for(session), format!("ws://localhost:4000/socket/websocket?sid={session}"));
        assert!(settings(&[("WEBSOCKET_URL_SID", "maybe")]).is_err());
        assert!(settings(&[("REDIS_CA_FILE", "/etc/hostname")]).is_err_and(|e| e.variable == "REDIS_CA_FILE"));
        assert_eq!(s.join_base_url, "http://localhost:4000");
        assert_eq!(*s.limits, Limits::default());
        assert_eq!(s.max_connections, None);
        let s = settings(&[("MAX_CONNECTIONS", "110000")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.max_connections, Some(110_000));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, variable) in [
            (vec![("PORT", "http")], "PORT"),
            (vec![("PHX_PORT", "70000")], "PHX_PORT"),
            (vec![("MAX_PARTICIPANTS", "0")], "MAX_PARTICIPANTS"),
            (vec![("LOCATION_TTL_SECONDS", "-1")], "LOCATION_TTL_SECONDS"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (vec![("MAX_CONNECTIONS", "0")], "MAX_CONNECTIONS"),
            (vec![("PUBLIC_URL", "localhost:4000")], "PUBLIC_URL"),
            (vec![("CORS_ALLOWED_ORIGINS", "null")], "CORS_ALLOWED_ORIGINS"),
            (vec![("REDIS_URL", "http://x")], "REDIS_URL"),
            (vec![("REDIS_URL", "redis://127.0.0.1")], "JWT_SECRET"),
            (vec![("DATABASE_URL", "postgres://h/db")], "JWT_SECRET"),
            (vec![("JOINS_PER_MINUTE", "-1")], "JOINS_PER_MINUTE"),
            (vec![("MAX_SOCKETS_PER_PARTICIPANT", "many")], "MAX_SOCKETS_PER_PARTICIPANT"),
            (vec![("TRUSTED_PROXIES", "10.0.0.0/33")], "TRUSTED_PROXIES"),
            (vec![("IDLE_UPDATE_INTERVAL_MS", "30000")], "IDLE_UPDATE_INTERVAL_MS"),
            (vec![("LOCATION_TTL_SECONDS", "10")], "IDLE_UPDATE_INTERVAL_MS"),
            (vec![("IDLE_UPDATE_INTERVAL_MS", "0")], "IDLE_UPDATE_INTERVAL_MS"),
            (vec![("FAST_UPDATE_INTERVAL_MS", "20000")], "FAST_UPDATE_INTERVAL_MS"),
            (vec![("GEOCODER_URL", "nominatim.example")], "GEOCODER_URL"),
        ] {
            let err = settings(&pairs).err().map(|e| e.variable);
            assert_eq!(err, Some(variable), "{pairs:?}");
        }
    }

    #[test]
    fn update_intervals_fit_the_location_ttl() {
        let s = settings(&[("LOCATION_TTL_SECONDS", "10"), ("IDLE_UPDATE_INTERVAL_MS", "9999")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.limits.idle_update_interval, Duration::from_millis(9999));
        assert_eq!(s.limits.fast_update_interval, Duration::from_millis(1000));
        let err = settings(&[("IDLE_UPDATE_INTERVAL_MS", "30000")]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("LOCATION_TTL_SECONDS"), "{err}");
    }

    #[test]
    fn debug_prints_no_secret() {
        let s = settings(&[
            ("JWT_SECRET", "hunter2-jwt-0123456789abcdef"),
            ("DATABASE_URL", "postgres://app:hunter2@db/app"),
            ("REDIS_URL", "redis://:hunter2@cache:6379"),
            ("ADMIN_TOKEN", "hunter2-admin-0123456789"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://app:***@db/app"), "{printed}");
    }

    #[test]
    fn urls_and_ports() {
        let s = settings(&[("PUBLIC_URL", "https://maps.example.com/"), ("PHX_PORT", "5000")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.websocket_url(), "wss://maps.example.com/socket/websocket");
        assert_eq!(s.join_base_url, "https://maps.example.com");
        assert_eq!(s.port, 5000);
    }

    #[test]
    fn tile_url() {
        let default = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(default.tile_url.as_ref().map(TileUrl::as_str), Some(DEFAULT_TILE_URL));
        assert_eq!(default.tile_url.map(|t| t.csp_source()).as_deref(), Some("https://tile.openstreetmap.org"));
        for off in ["none", "NONE", "", "  "] {
            let s = settings(&[("TILE_URL", off)]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.tile_url, None, "{off:?}");
        }
        let own = TileUrl::parse("http://127.0.0.1:8080/tiles/{z}/{x}/{y}.png?key=a&b=c").ok().flatten();
        assert_eq!(own.map(|t| t.csp_source()).as_deref(), Some("http://127.0.0.1:8080"));
        let sub = TileUrl::parse("https://{s}.tile.example.org/{z}/{x}/{y}@2x.png").ok().flatten();
        assert_eq!(sub.map(|t| t.csp_source()).as_deref(), Some("https://*.tile.example.org"));
        for bad in [
            "tile.openstreetmap.org/{z}/{x}/{y}.png",
            "ftp://tiles.example/{z}/{x}/{y}.png",
            "https://tiles.example/{z}/{x}.png",
            "https://tiles.example/{x}/{y}.png",
            "https://tiles.example/{z}/{x}",
            "https:///{z}/{x}/{y}.png",
            "https://{z}.example/{z}/{x}/{y}.png",
            "https://tiles.example;script-src/{z}/{x}/{y}",
            "https://user@tiles.example/{z}/{x}/{y}.png",
            "https://tiles.example/{z}/{x}/{y} 'unsafe-inline'",
        ] {
            assert_eq!(settings(&[("TILE_URL", bad)]).err().map(|e| e.variable), Some("TILE_URL"), "{bad}");
        }
    }

    #[test]
    fn admin_token() {
        assert!(settings(&[]).is_ok_and(|s| s.admin_token.is_none()));
        assert!(settings(&[("ADMIN_TOKEN", "")]).is_ok_and(|s| s.admin_token.is_none()));
        for bad in ["short", "has a space in it somewhere", "non-ascii-é-0123456789"] {
            assert_eq!(settings(&[("ADMIN_TOKEN", bad)]).err().map(|e| e.variable), Some("ADMIN_TOKEN"), "{bad}");
        }
        let s = settings(&[("ADMIN_TOKEN", "0123456789abcdef-ops")]).unwrap_or_else(|e| panic!("{e}"));
        let token = s.admin_token.unwrap_or_else(|| panic!("a token"));
        assert!(token.matches("0123456789abcdef-ops"));
        assert!(!token.matches("0123456789abcdef-opsx"));
        assert!(!token.matches("0123456789abcdef-op"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "AdminToken(***)");
    }
}

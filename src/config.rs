//! Typed settings from the environment (and `.env`), one clear error per bad variable.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Which SQL backend `DATABASE_URL` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A `postgres://` or `postgresql://` URL, passed to libpq as is.
    Postgres(String),
    /// A file path for SQLite (from `sqlite://PATH` or a plain path).
    Sqlite(String),
}

impl DatabaseUrl {
    /// Reads `postgres://…`, `postgresql://…`, `sqlite://PATH`, `sqlite:PATH` or a plain file path.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        let path = raw.strip_prefix("sqlite://").or_else(|| raw.strip_prefix("sqlite:")).unwrap_or(raw);
        if path.is_empty() {
            return Err("a sqlite:// URL needs a file path".into());
        }
        if path.contains("://") {
            return Err("must be a postgres://, postgresql:// or sqlite:// URL, or a file path".into());
        }
        Ok(Self::Sqlite(path.to_owned()))
    }

    /// True for PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

impl fmt::Display for DatabaseUrl {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => f.write_str(&redact_password(url)),
            Self::Sqlite(path) => write!(f, "sqlite://{path}"),
        }
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per record.
    Text,
    /// One JSON object per line.
    Json,
}

/// Allowed browser origins for CORS and the WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: every origin but `null`.
    Any,
    /// An explicit list, compared exactly (scheme, host and port), case-insensitively.
    List(Vec<String>),
}

impl AllowedOrigins {
    fn parse(raw: &str) -> Result<Self, String> {
        let items: Vec<String> = raw
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Err("must be * or a comma-separated list of origins".into());
        }
        if items.iter().any(|s| s == "*") {
            return Ok(Self::Any);
        }
        for item in &items {
            if item == "null" {
                return Err("the null origin can never be allowed".into());
            }
            if !(item.starts_with("http://") || item.starts_with("https://")) {
                return Err(format!("{item:?} is not an origin like https://example.com"));
            }
        }
        Ok(Self::List(items))
    }

    /// Whether a request's `Origin` header value is allowed; `null` never is.
    pub fn allows(&self, origin: &str) -> bool {
        if origin.eq_ignore_ascii_case("null") || origin.is_empty() {
            return false;
        }
        match self {
            Self::Any => true,
            Self::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// The default `TILE_URL`: the OpenStreetMap standard tiles.
pub const DEFAULT_TILE_URL: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

/// Where the web client's map takes its raster tiles from (`TILE_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileUrl(String);

impl TileUrl {
    /// Reads `TILE_URL`: `none` or empty disables tiles (`None`); anything else must be an
    /// http(s) URL with `{z}`, `{x}` and `{y}` in its path, and a plain host (or `{s}.host`).
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let rest = raw.strip_prefix("https://").or_else(|| raw.strip_prefix("http://"));
        let Some(rest) = rest else {
            return Err(format!("{raw:?} must be an http:// or https:// URL with {{z}}, {{x}} and {{y}}, or none"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.strip_prefix("{s}.").unwrap_or(authority);
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            && host.bytes().next().is_some_and(|b| b != b'.' && b != b':');
        if !host_ok {
            return Err(format!(
                "{raw:?} has no usable host (only letters, digits, '-', '.', a port, or a leading {{s}}.)"
            ));
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\\') {
            return Err(format!("{raw:?} must not contain spaces, quotes or backslashes"));
        }
        for placeholder in ["{z}", "{x}", "{y}"] {
            if !path.contains(placeholder) {
                return Err(format!("{raw:?} must contain {placeholder} in its path"));
            }
        }
        Ok(Some(Self(raw.to_owned())))
    }

    /// The URL template, `{z}/{x}/{y}` (and `{s}`) still in it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The origin tiles come from, as a Content-Security-Policy source: `https://tile.example`,
    /// or `https://*.tile.example` when the host starts with `{s}.`.
    pub fn csp_source(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("https", &self.0));
        let authority = rest.split('/').next().unwrap_or_default();
        match authority.strip_prefix("{s}.") {
            Some(host) => format!("{scheme}://*.{host}"),
            None => format!("{scheme}://{authority}"),
        }
    }
}

/// The operator's token for `/dev/dashboard` (`ADMIN_TOKEN`); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Shortest token accepted, so that a guessable one cannot open the dashboard.
    pub const MIN_LEN: usize = 16;

    /// Reads `ADMIN_TOKEN`: at least 16 printable ASCII characters without spaces.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() < Self::MIN_LEN {
            return Err(format!("must be at least {} characters", Self::MIN_LEN));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Every setting of the server (SPEC §5).
#[derive(Debug, Clone)]
pub struct Settings {
    /// SQL database.
    pub database_url: DatabaseUrl,
    /// Redis, for TTL state and cross-replica broadcasts; `None` is single-node, in memory.
    pub redis_url: Option<String>,
    /// HMAC key for tokens.
    pub jwt_secret: Vec<u8>,
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
    /// Session and participant rules and timers.
    pub limits: Limits,
    /// Connections in the SQL pool.
    pub db_pool_size: u32,
    /// Open connections (WebSockets included) this process admits; `None`: 25,600 per worker.
    pub max_connections: Option<usize>,
    /// Raster tiles of the web client's map; `None` draws the map without tiles.
    pub tile_url: Option<TileUrl>,
    /// Opens `/dev/dashboard` in production to requests that present it.
    pub admin_token: Option<AdminToken>,
}

/// The numbers of SPEC: limits and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `MAX_PARTICIPANTS`.
    pub max_participants: u32,
    /// `SESSION_INACTIVITY_SECONDS`.
    pub session_inactivity: Duration,
    /// `PARTICIPANT_IDLE_SECONDS`.
    pub participant_idle: Duration,
    /// `CLEANUP_INTERVAL_SECONDS`.
    pub cleanup_interval: Duration,
    /// `LOCATION_TTL_SECONDS`.
    pub location_ttl: Duration,
    /// `ENDED_RETENTION_SECONDS`.
    pub ended_retention: Duration,
    /// `MAX_UPDATES_PER_SECOND`.
    pub max_updates_per_second: u32,
    /// `SOCKET_TIMEOUT_SECONDS`.
    pub socket_timeout: Duration,
    /// `MAX_SOCKET_QUEUE`.
    pub max_socket_queue: usize,
    /// `MAX_FRAME_BYTES`.
    pub max_frame_bytes: usize,
    /// `SHUTDOWN_GRACE_SECONDS`.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_participants: 50,
            session_inactivity: Duration::from_secs(3600),
            participant_idle: Duration::from_secs(120),
            cleanup_interval: Duration::from_secs(300),
            location_ttl: Duration::from_secs(30),
            ended_retention: Duration::from_secs(86_400),
            max_updates_per_second: 10,
            socket_timeout: Duration::from_secs(60),
            max_socket_queue: 1000,
            max_frame_bytes: 16_384,
            shutdown_grace: Duration::from_secs(25),
        }
    }
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

/// One row of the settings table printed by `--help`.
pub struct SettingDoc {
    /// Variable name.
    pub name: &'static str,
    /// Default, as text.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// Every variable the server reads, for `--help` and the README.
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        name: "DATABASE_URL",
        default: "sqlite://./data/location_sharing.sqlite3",
        help: "postgres://… selects PostgreSQL; sqlite://PATH or a plain path selects SQLite",
    },
    SettingDoc {
        name: "REDIS_URL",
        default: "(unset)",
        help: "unset: single node, state in memory; set: Redis holds TTL state and carries broadcasts",
    },
    SettingDoc { name: "JWT_SECRET", default: "(random)", help: "token key; required with REDIS_URL or PostgreSQL" },
    SettingDoc { name: "HOST", default: "127.0.0.1", help: "address to listen on" },
    SettingDoc { name: "PORT", default: "4000", help: "port to listen on (PHX_PORT accepted)" },
    SettingDoc { name: "PUBLIC_URL", default: "http://localhost:4000", help: "base of websocket_url" },
    SettingDoc { name: "JOIN_BASE_URL", default: "PUBLIC_URL", help: "base of join_link" },
    SettingDoc { name: "CORS_ALLOWED_ORIGINS", default: "*", help: "comma list of allowed browser origins" },
    SettingDoc { name: "RUST_LOG", default: "info", help: "log filter" },
    SettingDoc { name: "LOG_FORMAT", default: "text", help: "text or json" },
    SettingDoc { name: "DB_POOL_SIZE", default: "10", help: "SQL connections per process" },
    SettingDoc {
        name: "MAX_CONNECTIONS",
        default: "25600 per core",
        help: "open connections (sockets included) per process; more wait in the listen backlog",
    },
    SettingDoc { name: "MAX_PARTICIPANTS", default: "50", help: "non-removed participants per session" },
    SettingDoc {
        name: "SESSION_INACTIVITY_SECONDS",
        default: "3600",
        help: "a session or participant not seen this long ends / is removed",
    },
    SettingDoc {
        name: "PARTICIPANT_IDLE_SECONDS",
        default: "120",
        help: "is_active turns false after this long unseen",
    },
    SettingDoc { name: "CLEANUP_INTERVAL_SECONDS", default: "300", help: "period of the cleanup sweep" },
    SettingDoc { name: "LOCATION_TTL_SECONDS", default: "30", help: "how long a position lives" },
    SettingDoc {
        name: "ENDED_RETENTION_SECONDS",
        default: "86400",
        help: "ended sessions are purged this long after their end",
    },
    SettingDoc {
        name: "MAX_UPDATES_PER_SECOND",
        default: "10",
        help: "location updates per participant (token bucket)",
    },
    SettingDoc { name: "SOCKET_TIMEOUT_SECONDS", default: "60", help: "a silent socket is closed after this long" },
    SettingDoc { name: "MAX_SOCKET_QUEUE", default: "1000", help: "outgoing frames a slow socket may queue" },
    SettingDoc { name: "MAX_FRAME_BYTES", default: "16384", help: "largest text frame accepted" },
    SettingDoc { name: "SHUTDOWN_GRACE_SECONDS", default: "25", help: "drain time on SIGTERM" },
    SettingDoc {
        name: "TILE_URL",
        default: "OpenStreetMap's standard tiles",
        help: "web client map tiles: an http(s) URL with {z}, {x} and {y}; none or empty: no tiles",
    },
    SettingDoc {
        name: "ADMIN_TOKEN",
        default: "(unset)",
        help: "opens /dev/dashboard to requests presenting it; unset: only on a loopback HOST",
    },
];

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

        let redis_url = match get("REDIS_URL") {
            None => None,
            Some(url)
                if url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://") =>
            {
                Some(url.to_owned())
            }
            Some(_) => {
                return Err(ConfigError { variable: "REDIS_URL", reason: "must be a redis:// URL".into() });
            }
        };

        let (jwt_secret, jwt_secret_generated) = match vars.get("JWT_SECRET") {
            Some(secret) if !secret.is_empty() => (secret.as_bytes().to_vec(), false),
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
                (secret, true)
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
        let count = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => positive::<u64>(name, v),
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
        };
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
            jwt_secret,
            jwt_secret_generated,
            host,
            port,
            public_url,
            join_base_url,
            cors_allowed_origins,
            log_format,
            limits,
            db_pool_size,
            max_connections,
            tile_url,
            admin_token,
        })
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
        assert_eq!(s.join_base_url, "http://localhost:4000");
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.max_connections, None);
        let s = settings(&[("MAX_CONNECTIONS", "110000")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.max_connections, Some(110_000));
    }

    #[test]
    fn database_url_forms() {
        assert!(DatabaseUrl::parse("postgresql://u@h/db").is_ok_and(|d| d.is_postgres()));
        assert_eq!(DatabaseUrl::parse("sqlite:///tmp/x.db"), Ok(DatabaseUrl::Sqlite("/tmp/x.db".into())));
        assert_eq!(DatabaseUrl::parse("data/x.db"), Ok(DatabaseUrl::Sqlite("data/x.db".into())));
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
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
        ] {
            let err = settings(&pairs).err().map(|e| e.variable);
            assert_eq!(err, Some(variable), "{pairs:?}");
        }
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
    fn origins() {
        let any = AllowedOrigins::parse("*").unwrap_or_else(|e| panic!("{e}"));
        assert!(any.allows("https://a.example"));
        assert!(!any.allows("null"));
        let list = AllowedOrigins::parse("https://a.example, http://localhost:3000/").unwrap_or_else(|e| panic!("{e}"));
        assert!(list.allows("https://A.example"));
        assert!(list.allows("http://localhost:3000"));
        assert!(!list.allows("https://b.example"));
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

    #[test]
    fn password_is_redacted() {
        assert_eq!(redact_password("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_password("postgres://h/db"), "postgres://h/db");
    }
}

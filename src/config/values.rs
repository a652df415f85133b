//! The typed values of settings that are more than a number: URLs, origins, tokens, secrets.
//! Secrets never print: their `Debug` and `Display` hide them.

use std::fmt;

/// Which SQL backend `DATABASE_URL` selects; printed (`Debug` too) without its password.
#[derive(Clone, PartialEq, Eq)]
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(url) => f.write_str(&redact_password(url)),
            // A libpq `key=value` string lands here as a "path": it still never prints a password.
            Self::Sqlite(path) => write!(f, "sqlite://{}", redact_password_parameters(path)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// `REDIS_URL`: one `redis://`, `rediss://` or unix-socket URL, or several comma-separated seed
/// nodes of a Redis Cluster (SPEC §12); printed without passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Vec<String>);

impl RedisUrl {
    /// Accepts the schemes the Redis client understands; seeds must agree on TLS, since a
    /// cluster's nodes are reached alike.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let known = ["redis://", "rediss://", "redis+unix://", "unix://"];
        let nodes: Vec<String> = raw.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
        if nodes.is_empty() {
            return Err("must be a redis:// URL".into());
        }
        if let Some(bad) = nodes.iter().find(|n| !known.iter().any(|scheme| n.starts_with(scheme))) {
            return Err(format!("{} must be a redis:// or rediss:// URL", redact_password(bad)));
        }
        if nodes.len() > 1 && nodes.iter().any(|n| n.contains("unix://")) {
            return Err("cluster seed nodes must be redis:// or rediss:// URLs, not unix sockets".into());
        }
        let tls = nodes.iter().filter(|n| n.starts_with("rediss://")).count();
        if tls != 0 && tls != nodes.len() {
            return Err("seed nodes must all be rediss:// (TLS) or all redis://".into());
        }
        Ok(Self(nodes))
    }

    /// The URLs as given, passwords included: for the Redis client only.
    pub fn nodes(&self) -> &[String] {
        &self.0
    }

    /// `REDIS_URL` as given (comma-joined), passwords included: to hand to another process.
    pub fn expose(&self) -> String {
        self.0.join(",")
    }

    /// True for `rediss://` (TLS).
    pub fn is_tls(&self) -> bool {
        self.0.iter().all(|n| n.starts_with("rediss://"))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: Vec<String> = self.0.iter().map(|n| redact_password(n)).collect();
        f.write_str(&redacted.join(","))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `REDIS_CA_FILE`: the PEM certificate authority a `rediss://` Redis is verified against.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisCa(Vec<u8>);

impl RedisCa {
    /// Reads the file, which must hold at least one PEM certificate.
    pub fn load(path: &str) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("{path} holds no PEM certificate"));
        }
        Ok(Self(pem))
    }

    /// The PEM bytes.
    pub fn pem(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RedisCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisCa({} bytes)", self.0.len())
    }
}

/// A secret's bytes (`JWT_SECRET`); `Debug` shows only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps the bytes of a secret.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes, for the code that signs with them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces every password in a connection URL with `***`: the one of
/// `scheme://user:password@host`, and any `…password=value` parameter (libpq reads `?password=`).
pub fn redact_password(url: &str) -> String {
    let url = redact_password_parameters(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    // The last `@` ends the user info: a password may contain `@` itself, and hiding too much
    // (an `@` further on, in a parameter) is the safe way to be wrong.
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url;
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url,
    }
}

/// `password=value` (and `sslpassword=`…) with the value replaced, wherever a key ends in
/// `password`, case-insensitively; a value ends at `&`, `#` or whitespace.
fn redact_password_parameters(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password=") {
        let value_start = search + found + "password=".len();
        let value_end = text[value_start..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
            .map_or(text.len(), |n| value_start + n);
        out.push_str(&text[rest..value_start]);
        out.push_str("***");
        rest = value_end;
        search = value_end;
    }
    out.push_str(&text[rest..]);
    out
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
    /// Reads `*` or a comma list of `http(s)://host[:port]` origins; `null` is refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_forms() {
        assert!(DatabaseUrl::parse("postgresql://u@h/db").is_ok_and(|d| d.is_postgres()));
        assert_eq!(DatabaseUrl::parse("sqlite:///tmp/x.db"), Ok(DatabaseUrl::Sqlite("/tmp/x.db".into())));
        assert_eq!(DatabaseUrl::parse("data/x.db"), Ok(DatabaseUrl::Sqlite("data/x.db".into())));
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
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
    fn password_is_redacted() {
        assert_eq!(redact_password("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_password("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_password("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_password("redis://:hunter2@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(
            redact_password("postgres://u@h/db?sslmode=require&password=hunter2&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(redact_password("postgresql://h/db?PassWord=hunter2"), "postgresql://h/db?PassWord=***");
        assert_eq!(redact_password("postgres://u@h/db?sslpassword=hunter2"), "postgres://u@h/db?sslpassword=***");
        let keywords = DatabaseUrl::parse("host=h password=hunter2 dbname=d").unwrap_or_else(|e| panic!("{e}"));
        assert!(!keywords.to_string().contains("hunter2"), "{keywords}");
    }

    #[test]
    fn secrets_never_print() {
        let db = DatabaseUrl::parse("postgres://u:hun@ter2@h/db?password=hunter2").unwrap_or_else(|e| panic!("{e}"));
        let redis = RedisUrl::parse("rediss://default:hunter2@cache:6380").unwrap_or_else(|e| panic!("{e}"));
        let secret = Secret::new(b"hunter2".to_vec());
        for printed in
            [format!("{db:?}"), format!("{db}"), format!("{redis:?}"), format!("{redis}"), format!("{secret:?}")]
        {
            assert!(!printed.contains("hunter2") && !printed.contains("ter2"), "{printed}");
        }
        assert_eq!(redis.nodes(), ["rediss://default:hunter2@cache:6380"]);
        assert!(RedisUrl::parse("http://x").is_err());
    }

    #[test]
    fn redis_seeds_are_comma_separated_and_agree_on_tls() {
        let seeds = RedisUrl::parse(" redis://a:7000, redis://:pw@b:7001 ,").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seeds.nodes(), ["redis://a:7000", "redis://:pw@b:7001"]);
        assert_eq!(seeds.to_string(), "redis://a:7000,redis://:***@b:7001");
        assert!(!seeds.is_tls());
        assert!(RedisUrl::parse("rediss://a:7000,rediss://b:7001").is_ok_and(|u| u.is_tls()));
        assert!(RedisUrl::parse("rediss://a:7000,redis://b:7001").is_err());
        assert!(RedisUrl::parse("redis://a:7000,http://b").is_err());
        assert!(RedisUrl::parse("unix:///tmp/r.sock,redis://b:7001").is_err());
        assert!(RedisUrl::parse(" , ").is_err());
    }

    #[test]
    fn redis_ca_must_be_pem() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (pem, junk) = (dir.path().join("ca.pem"), dir.path().join("junk"));
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&junk, "not a certificate").unwrap_or_else(|e| panic!("{e}"));
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        assert!(RedisCa::load(&path(&pem)).is_ok());
        assert!(RedisCa::load(&path(&junk)).is_err_and(|e| e.contains("no PEM")));
        assert!(RedisCa::load("/nonexistent/ca.pem").is_err_and(|e| e.contains("cannot read")));
    }
}

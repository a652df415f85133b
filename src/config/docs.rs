//! The table of settings `--help` prints.

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
        help: "unset: single node, state in memory; set: Redis (or comma-separated Redis Cluster seeds) holds TTL state and carries broadcasts",
    },
    SettingDoc { name: "REDIS_CA_FILE", default: "(unset)", help: "PEM certificate authority to verify a rediss:// Redis with" },
    SettingDoc { name: "JWT_SECRET", default: "(random)", help: "token key; required with REDIS_URL or PostgreSQL" },
    SettingDoc { name: "HOST", default: "127.0.0.1", help: "address to listen on" },
    SettingDoc { name: "PORT", default: "4000", help: "port to listen on (PHX_PORT accepted)" },
    SettingDoc { name: "PUBLIC_URL", default: "http://localhost:4000", help: "base of websocket_url" },
    SettingDoc {
        name: "WEBSOCKET_URL_SID",
        default: "false",
        help: "true: websocket_url ends in ?sid={session_id}, for an ingress hashing a session to one replica",
    },
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
        name: "TRUSTED_PROXIES",
        default: "(none)",
        help: "addresses or CIDR blocks whose X-Forwarded-For names the client (your ingress)",
    },
    SettingDoc {
        name: "CREATE_SESSIONS_PER_MINUTE",
        default: "60",
        help: "session creations per client address; 0: off",
    },
    SettingDoc { name: "JOINS_PER_MINUTE", default: "300", help: "joins per client address; 0: off" },
    SettingDoc {
        name: "SOCKET_CONNECTS_PER_MINUTE",
        default: "600",
        help: "WebSocket handshakes per client address; 0: off",
    },
    SettingDoc { name: "MAX_SOCKETS_PER_ADDRESS", default: "1000", help: "open sockets per client address; 0: off" },
    SettingDoc {
        name: "MAX_SOCKETS_PER_PARTICIPANT",
        default: "5",
        help: "open sockets per participant; the oldest closes (1008) past it; 0: off",
    },
    SettingDoc {
        name: "FAST_UPDATE_INTERVAL_MS",
        default: "1000",
        help: "rate_advice interval while another participant looks at the map",
    },
    SettingDoc {
        name: "IDLE_UPDATE_INTERVAL_MS",
        default: "15000",
        help: "rate_advice interval while nobody else looks; must stay below LOCATION_TTL_SECONDS",
    },
    SettingDoc {
        name: "GEOCODER_URL",
        default: "(unset)",
        help: "a Nominatim-compatible search for the web client's destination box; unset: coordinates only",
    },
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

//! The numbers of SPEC: limits and timers, shared (one `Arc<Limits>`) by everything that obeys them.

use std::time::Duration;

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
    /// `CREATE_SESSIONS_PER_MINUTE` per client address; 0: no limit.
    pub create_sessions_per_minute: u32,
    /// `JOINS_PER_MINUTE` per client address; 0: no limit.
    pub joins_per_minute: u32,
    /// `SOCKET_CONNECTS_PER_MINUTE` (WebSocket handshakes) per client address; 0: no limit.
    pub socket_connects_per_minute: u32,
    /// `MAX_SOCKETS_PER_ADDRESS` open at once; 0: no limit.
    pub max_sockets_per_address: u32,
    /// `MAX_SOCKETS_PER_PARTICIPANT` open at once; 0: no limit.
    pub max_sockets_per_participant: u32,
    /// `FAST_UPDATE_INTERVAL_MS`: the advised interval while somebody else looks at the map.
    pub fast_update_interval: Duration,
    /// `IDLE_UPDATE_INTERVAL_MS`: the advised interval while nobody else does.
    pub idle_update_interval: Duration,
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
            create_sessions_per_minute: 60,
            joins_per_minute: 300,
            socket_connects_per_minute: 600,
            max_sockets_per_address: 1000,
            max_sockets_per_participant: 5,
            fast_update_interval: Duration::from_millis(1000),
            idle_update_interval: Duration::from_millis(15_000),
        }
    }
}

impl Limits {
    /// `SESSION_INACTIVITY_SECONDS` as the span the session rules compare times with.
    pub fn inactivity(&self) -> chrono::Duration {
        span(self.session_inactivity)
    }

    /// `PARTICIPANT_IDLE_SECONDS` as a span: how long `is_active` outlives a participant's last sighting.
    pub fn idle(&self) -> chrono::Duration {
        span(self.participant_idle)
    }

    /// `ENDED_RETENTION_SECONDS` as a span: how long an ended session answers before it counts as purged.
    pub fn retention(&self) -> chrono::Duration {
        span(self.ended_retention)
    }
}

/// A timer's duration as a span between two times; saturates instead of failing.
fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_match_the_timers_and_saturate() {
        let limits = Limits::default();
        assert_eq!(limits.inactivity(), chrono::Duration::hours(1));
        assert_eq!(limits.idle(), chrono::Duration::minutes(2));
        assert_eq!(limits.retention(), chrono::Duration::days(1));
        assert_eq!(span(Duration::MAX), chrono::Duration::MAX);
    }
}

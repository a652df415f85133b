//! Process-wide counters and gauges, updated lock-free on the hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of what this process did.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sockets open now.
    pub sockets: AtomicI64,
    /// Session actors alive now.
    pub sessions_live: AtomicI64,
    /// `location_update`s accepted from clients.
    pub updates_in: AtomicU64,
    /// Frames of `location_update` handed to sockets.
    pub deliveries_out: AtomicU64,
    /// Frames dropped from slow sockets' queues.
    pub frames_dropped: AtomicU64,
    /// Updates refused by the rate limit.
    pub rate_limited: AtomicU64,
    /// Frames that could not be parsed.
    pub unparsable_frames: AtomicU64,
    /// Ephemeral store errors.
    pub store_errors: AtomicU64,
    /// Session actors restarted after a panic.
    pub session_restarts: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Moves a gauge by `delta`.
    pub fn gauge(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Ordering::Relaxed);
    }

    /// Reads a gauge, never below zero.
    pub fn read(gauge: &AtomicI64) -> usize {
        usize::try_from(gauge.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

//! The abuse limits of SPEC §11, per client address: token buckets for session creation, joins
//! and WebSocket handshakes, and a count of open sockets. The per-participant socket cap lives
//! with the registry, which knows each participant's sockets.

pub mod client;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use client::ClientKey;

use crate::config::Limits;
use crate::metrics::Metrics;

/// How often idle addresses are forgotten. A bucket is forgotten once it is full again, which
/// takes at most a minute, so an address unseen for a minute or two costs nothing.
pub const FORGET_INTERVAL: Duration = Duration::from_secs(10);

/// Past this many addresses, forgetting also runs between the periodic passes, so a flood of
/// new addresses is bounded by what one pass can free rather than by the interval.
const BUSY_ADDRESSES: usize = 100_000;

/// The limits a client can run into, as `/metrics` labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `CREATE_SESSIONS_PER_MINUTE`.
    CreateSessions,
    /// `JOINS_PER_MINUTE`.
    Joins,
    /// `SOCKET_CONNECTS_PER_MINUTE`.
    SocketConnects,
    /// `MAX_SOCKETS_PER_ADDRESS`.
    SocketsPerAddress,
    /// `MAX_SOCKETS_PER_PARTICIPANT` (the oldest socket closed, not a refusal at the door).
    SocketsPerParticipant,
}

impl Limit {
    /// Every limit, for metrics that start at 0.
    pub const ALL: [Limit; 5] =
        [Self::CreateSessions, Self::Joins, Self::SocketConnects, Self::SocketsPerAddress, Self::SocketsPerParticipant];

    /// The `limit` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Self::CreateSessions => "create_sessions",
            Self::Joins => "joins",
            Self::SocketConnects => "socket_connects",
            Self::SocketsPerAddress => "sockets_per_address",
            Self::SocketsPerParticipant => "sockets_per_participant",
        }
    }
}

/// The three per-minute buckets of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `CREATE_SESSIONS_PER_MINUTE`.
    CreateSessions,
    /// `JOINS_PER_MINUTE`.
    Joins,
    /// `SOCKET_CONNECTS_PER_MINUTE`.
    SocketConnects,
}

impl From<Bucket> for Limit {
    fn from(bucket: Bucket) -> Self {
        match bucket {
            Bucket::CreateSessions => Self::CreateSessions,
            Bucket::Joins => Self::Joins,
            Bucket::SocketConnects => Self::SocketConnects,
        }
    }
}

/// A request refused by a limit, and when trying again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests")]
pub struct Refused {
    /// The limit that refused.
    pub limit: Limit,
    /// Whole seconds until a retry may pass (at least 1).
    pub retry_after_secs: u64,
}

/// The per-address limits of one process.
pub struct AbuseLimits {
    creates: Option<DefaultKeyedRateLimiter<ClientKey>>,
    joins: Option<DefaultKeyedRateLimiter<ClientKey>>,
    connects: Option<DefaultKeyedRateLimiter<ClientKey>>,
    max_sockets: u32,
    sockets: Mutex<HashMap<ClientKey, u32>>,
    checks: AtomicU32,
    metrics: Arc<Metrics>,
}

/// A bucket holding `per_minute` cells, refilled evenly over the minute; `None` when 0 (off).
fn bucket(per_minute: u32) -> Option<DefaultKeyedRateLimiter<ClientKey>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl AbuseLimits {
    /// The limits of SPEC §11 as `limits` sets them; refusals are counted in `metrics`.
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        for limit in Limit::ALL {
            metrics.limit_refusals.with_label_values(&[limit.label()]);
        }
        Self {
            creates: bucket(limits.create_sessions_per_minute),
            joins: bucket(limits.joins_per_minute),
            connects: bucket(limits.socket_connects_per_minute),
            max_sockets: limits.max_sockets_per_address,
            sockets: Mutex::new(HashMap::new()),
            checks: AtomicU32::new(0),
            metrics,
        }
    }

    /// Takes one cell of `client`'s `bucket`.
    pub fn admit(&self, which: Bucket, client: ClientKey) -> Result<(), Refused> {
        let bucket = match which {
            Bucket::CreateSessions => &self.creates,
            Bucket::Joins => &self.joins,
            Bucket::SocketConnects => &self.connects,
        };
        let Some(bucket) = bucket else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(1024) && bucket.len() > BUSY_ADDRESSES {
            self.forget_idle();
        }
        bucket.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.refuse(which.into(), wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    }

    /// Counts an open socket of `client`, or refuses it past `MAX_SOCKETS_PER_ADDRESS`. The
    /// socket gives its place back when the slot is dropped.
    pub fn open_socket(self: &Arc<Self>, client: ClientKey) -> Result<SocketSlot, Refused> {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        let open = sockets.entry(client).or_insert(0);
        if self.max_sockets > 0 && *open >= self.max_sockets {
            drop(sockets);
            // Sockets close at any time; a few seconds is an honest guess.
            return Err(self.refuse(Limit::SocketsPerAddress, 5));
        }
        *open += 1;
        Ok(SocketSlot { limits: self.clone(), client })
    }

    fn refuse(&self, limit: Limit, retry_after_secs: u64) -> Refused {
        self.metrics.limit_refusals.with_label_values(&[limit.label()]).inc();
        Refused { limit, retry_after_secs: retry_after_secs.max(1) }
    }

    /// Forgets every address whose buckets are full again.
    pub fn forget_idle(&self) {
        for bucket in self.buckets() {
            bucket.retain_recent();
            bucket.shrink_to_fit();
        }
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner).shrink_to_fit();
        self.report();
    }

    /// Sets the `limiter_addresses` gauge: the addresses held now, summed over the limits.
    pub fn report(&self) {
        let held = self.buckets().map(|b| b.len()).sum::<usize>()
            + self.sockets.lock().unwrap_or_else(PoisonError::into_inner).len();
        self.metrics.limiter_addresses.set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    fn buckets(&self) -> impl Iterator<Item = &DefaultKeyedRateLimiter<ClientKey>> {
        [&self.creates, &self.joins, &self.connects].into_iter().flatten()
    }

    /// Forgets idle addresses every [`FORGET_INTERVAL`], for as long as the actix system runs.
    pub fn start_forgetting(self: &Arc<Self>) {
        let limits = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(FORGET_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                limits.forget_idle();
            }
        });
    }

    fn close_socket(&self, client: ClientKey) {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = sockets.get_mut(&client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sockets.remove(&client);
            }
        }
    }
}

/// One open socket's place in its address's count; dropping it frees the place.
pub struct SocketSlot {
    limits: Arc<AbuseLimits>,
    client: ClientKey,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.limits.close_socket(self.client);
    }
}

impl std::fmt::Debug for SocketSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketSlot").field("client", &self.client).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(n: u32) -> ClientKey {
        ClientKey::of(IpAddr::from(n.to_be_bytes()))
    }

    fn limits(f: impl FnOnce(&mut Limits)) -> Arc<AbuseLimits> {
        let mut l = Limits::default();
        f(&mut l);
        Arc::new(AbuseLimits::new(&l, Arc::new(Metrics::new())))
    }

    #[test]
    fn a_bucket_holds_its_per_minute_figure_then_says_when_to_retry() {
        let abuse = limits(|l| l.create_sessions_per_minute = 3);
        for _ in 0..3 {
            assert_eq!(abuse.admit(Bucket::CreateSessions, key(1)), Ok(()));
        }
        let refused = abuse.admit(Bucket::CreateSessions, key(1)).err();
        // One cell comes back every 20 s.
        assert!(refused.is_some_and(|r| r.limit == Limit::CreateSessions && (19..=20).contains(&r.retry_after_secs)));
        assert_eq!(abuse.admit(Bucket::CreateSessions, key(2)), Ok(()), "other addresses are not affected");
        assert_eq!(abuse.admit(Bucket::Joins, key(1)), Ok(()), "buckets are separate");
        let refusals = abuse.metrics.limit_refusals.with_label_values(&["create_sessions"]).get();
        assert_eq!(refusals, 1);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let abuse = limits(|l| {
            l.joins_per_minute = 0;
            l.max_sockets_per_address = 0;
        });
        assert!((0..10_000).all(|_| abuse.admit(Bucket::Joins, key(1)).is_ok()));
        let slots: Vec<_> = (0..5000).filter_map(|_| abuse.open_socket(key(1)).ok()).collect();
        assert_eq!(slots.len(), 5000);
    }

    #[test]
    fn sockets_per_address_are_counted_until_they_close() {
        let abuse = limits(|l| l.max_sockets_per_address = 2);
        let first = abuse.open_socket(key(1));
        let second = abuse.open_socket(key(1));
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(abuse.open_socket(key(1)).err().map(|r| r.limit), Some(Limit::SocketsPerAddress));
        assert!(abuse.open_socket(key(2)).is_ok());
        drop(first);
        assert!(abuse.open_socket(key(1)).is_ok());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        // A large figure refills within milliseconds, so every address is idle at once.
        let abuse = limits(|l| l.joins_per_minute = 600_000);
        for n in 0..10_000 {
            let _ = abuse.admit(Bucket::Joins, key(n));
        }
        let slot = abuse.open_socket(key(1));
        std::thread::sleep(Duration::from_millis(20));
        abuse.forget_idle();
        assert_eq!(abuse.metrics.limiter_addresses.get(), 1, "only the open socket's address is held");
        drop(slot);
        abuse.forget_idle();
        assert_eq!(abuse.metrics.limiter_addresses.get(), 0);
    }
}

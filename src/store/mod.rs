//! Ephemeral state with TTLs behind one trait: Redis when `REDIS_URL` is set, memory otherwise.
//!
//! It holds each participant's last location (with `LOCATION_TTL_SECONDS`, set atomically with the
//! value), participants' last-seen times, each session's last activity, and who has arrived at
//! the session's destination (kept per destination, so that each transition is claimed once
//! however many replicas see it). Nothing here is ever
//! written to SQL. Callers log and count errors; the hot path never waits on it.

pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::domain::{ParticipantId, PositionView, SessionId};

/// Failures of the ephemeral store; each keeps its cause as its `source`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or answered an error.
    #[error("ephemeral store unavailable")]
    Redis(#[from] crate::redis_link::RedisError),
    /// A value could not be written or read back as JSON.
    #[error("ephemeral store value unreadable")]
    Corrupt(#[from] serde_json::Error),
    /// The in-memory store's lock was poisoned by a panic while held.
    #[error("memory store poisoned")]
    Poisoned,
}

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Last-seen times of a session's participants.
pub type SeenMap = HashMap<ParticipantId, DateTime<Utc>>;

/// Who has arrived at a destination, and when.
pub type ArrivalMap = HashMap<ParticipantId, DateTime<Utc>>;

/// The ephemeral store.
pub trait EphemeralStore: Send + Sync + 'static {
    /// Sets participants' locations, each living `LOCATION_TTL_SECONDS` from now.
    fn put_locations(
        &self,
        session: SessionId,
        batch: Vec<(ParticipantId, PositionView)>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The session's locations that have not expired.
    fn locations(&self, session: SessionId) -> BoxFuture<'_, StoreResult<Vec<PositionView>>>;
    /// Forgets one participant's location and last-seen time (it left).
    fn forget_participant(&self, session: SessionId, user: ParticipantId) -> BoxFuture<'_, StoreResult<()>>;
    /// Forgets everything about a session (it ended).
    fn forget_session(&self, session: SessionId) -> BoxFuture<'_, StoreResult<()>>;
    /// Records participants as seen at the given times, and the session as active then.
    fn mark_seen(
        &self,
        session: SessionId,
        seen: Vec<(ParticipantId, DateTime<Utc>)>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// Participants' last-seen times.
    fn last_seen(&self, session: SessionId) -> BoxFuture<'_, StoreResult<SeenMap>>;
    /// When anybody was last seen in the session.
    fn last_activity(&self, session: SessionId) -> BoxFuture<'_, StoreResult<Option<DateTime<Utc>>>>;
    /// Records `user` as arrived at destination `epoch` unless it already is; true when this
    /// call recorded it (and so must announce it).
    fn claim_arrival(
        &self,
        session: SessionId,
        epoch: u64,
        user: ParticipantId,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Records `user` as no longer arrived at destination `epoch`; true when this call did.
    fn claim_departure(&self, session: SessionId, epoch: u64, user: ParticipantId) -> BoxFuture<'_, StoreResult<bool>>;
    /// Who has arrived at destination `epoch`.
    fn arrivals(&self, session: SessionId, epoch: u64) -> BoxFuture<'_, StoreResult<ArrivalMap>>;
    /// Forgets the arrivals at destination `epoch` (it was replaced or cleared, or the session ended).
    fn forget_arrivals(&self, session: SessionId, epoch: u64) -> BoxFuture<'_, StoreResult<()>>;
}

/// The store shared by every part of the server.
pub type Store = Arc<dyn EphemeralStore>;

//! The sessions context (Phoenix's word): every use case of sessions and participants — create,
//! load and settle, join, list, leave or remove, end, set the destination, lock and rename, what the socket handshake checks, and the
//! cleanup sweep — over SQL (`db`) and the ephemeral store (`store`).
//!
//! HTTP handlers, the web pages and the socket upgrade parse their input into domain types and
//! call it; nothing else decides who may do what. What it changes it announces to the live side
//! as [`SessionEvent`]s, through a `Recipient` so that it never depends on the actors.

mod error;
mod events;
mod lifecycle;
mod membership;
mod moderation;
mod socket;
mod sweep;

use std::sync::Arc;

use actix::Recipient;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::auth::Tokens;
use crate::config::Limits;
use crate::db::Db;
use crate::store::Store;

pub use error::SessionsError;
pub use events::SessionEvent;
pub use lifecycle::{Created, NewSession};
pub use membership::{Joined, NewParticipant, ParticipantStatus};
pub use socket::SocketGrant;
pub use sweep::Report;

/// The use cases, with what they work on; one per process, shared.
pub struct Sessions {
    db: Db,
    store: Store,
    limits: Arc<Limits>,
    tokens: Tokens,
    events: Recipient<SessionEvent>,
}

impl Sessions {
    /// The context over `db` and `store`, announcing changes to `events` (the session registry).
    pub fn new(db: Db, store: Store, limits: Arc<Limits>, tokens: Tokens, events: Recipient<SessionEvent>) -> Self {
        Self { db, store, limits, tokens, events }
    }

    /// The limits every rule here applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The token keys, for the edges that read bearer and socket tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Tells the live side what changed; it never waits.
    fn announce(&self, event: SessionEvent) {
        self.events.do_send(event);
    }
}

/// The current time to the second, as the API shows and tokens carry it.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now)
}

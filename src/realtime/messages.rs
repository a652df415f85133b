//! Every actor message, in one place. Facts are named in the past tense, commands in the
//! imperative. Who sends what:
//!
//! - The sessions context (REST use cases, the cleanup sweep) and session actors → registry:
//!   [`SessionEvent`] (participant joined, participant left, session ended), defined beside the
//!   use cases that announce it; the registry tells the other replicas and forwards it to the
//!   session's actor, if one is live here.
//! - Socket actor → registry: [`JoinSession`] (starts the session actor on demand),
//!   [`SocketOpened`]/[`SocketClosed`] (so a participant's sockets can be found even before they
//!   join a channel), [`Seen`] while not in a channel.
//! - Registry → socket actor: [`Kick`] (its participant left the session, or opened more
//!   sockets than `MAX_SOCKETS_PER_PARTICIPANT` and this is its oldest).
//! - Socket actor → session actor: [`LocationReported`], [`ViewingChanged`], [`Seen`], [`Disconnect`].
//! - Session actor → socket actor: frames through the socket's [`Outbox`], whose push wakes it
//!   (no message per frame).
//! - Session actor → registry: [`SessionStopped`] (so the supervisor forgets or restarts it).
//! - Cluster bus → registry → session actor: [`RemoteEvent`] (what other replicas published, a
//!   typed [`ClusterEvent`]).
//! - Tests → registry → session actor: `Crash` (compiled for tests only).

use std::sync::Arc;

use actix::{Addr, Message, MessageResponse, Recipient};
use chrono::{DateTime, Utc};

pub use super::cluster::ClusterEvent;
use super::outbox::Outbox;
use super::protocol::{ReplyTo, Vsn};
use super::session::SessionActor;
use crate::domain::{ParticipantId, Position, SessionId};
pub use crate::sessions::SessionEvent;

/// A socket's identity within this process.
pub type SocketId = u64;

/// Command: answer at once; `/health/live` uses it to see that the actor system runs.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "RegistryStats")]
pub struct Ping;

/// What the registry reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MessageResponse)]
pub struct RegistryStats {
    /// Session actors alive.
    pub sessions_live: usize,
    /// Sockets connected to this process.
    pub sockets: usize,
}

/// How the session reaches one socket: its queue and a way to wake it.
#[derive(Clone)]
pub struct SocketHandle {
    /// The socket's id within this process.
    pub id: SocketId,
    /// The participant of its token.
    pub participant: ParticipantId,
    /// The framing it speaks.
    pub vsn: Vsn,
    /// Its bounded outgoing queue.
    pub outbox: Arc<Outbox>,
}

/// Why a channel join was refused (the `reason` of the error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    /// The topic is not the token's session.
    Unauthorized,
    /// The session is over.
    SessionEnded,
    /// The participant left, was removed, or never was in the session.
    NotAParticipant,
    /// The session could not be loaded (database down) or its actor failed.
    Unavailable,
}

impl JoinRefusal {
    /// The wire spelling.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::SessionEnded => "session_ended",
            Self::NotAParticipant => "not_a_participant",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What a socket learns of the session when its join is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// End-to-end encrypted (SPEC §10): the socket reads its `location_update`s as sealed ones.
    pub e2e: bool,
}

/// A socket's channel, once joined: where its pushes go, and what they must be.
#[derive(Debug, Clone)]
pub struct JoinedChannel {
    /// The session's actor.
    pub session: Addr<SessionActor>,
    /// What the socket learnt when it was admitted.
    pub admitted: Admitted,
}

/// Command (registry): put this socket in the session's channel, starting the session actor if
/// need be. On success the join reply and `presence_state` are already in the socket's outbox.
#[derive(Message)]
#[rtype(result = "Result<JoinedChannel, JoinRefusal>")]
pub struct JoinSession {
    /// The session of the socket's token (the topic was checked against it).
    pub session: SessionId,
    /// The joining socket.
    pub socket: SocketHandle,
    /// The `phx_join` being answered.
    pub reply: ReplyTo,
    /// The socket's arbiter, where a new session actor is best started.
    pub arbiter: actix::dev::ArbiterHandle,
}

/// Command (session actor): the session-side half of [`JoinSession`].
#[derive(Message)]
#[rtype(result = "Result<Admitted, JoinRefusal>")]
pub struct Connect {
    /// The joining socket.
    pub socket: SocketHandle,
    /// The `phx_join` being answered.
    pub reply: ReplyTo,
}

/// Command (session actor): this socket leaves the channel (phx_leave, or the socket closed).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// The socket leaving; its participant may have others still in the channel.
    pub socket: SocketId,
}

/// Fact (session actor): a socket sent a valid location; rate-limit, store and fan out.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct LocationReported {
    /// The sending socket (it gets the reply and not the broadcast).
    pub socket: SocketId,
    /// The participant of the socket's token, never of the payload.
    pub participant: ParticipantId,
    /// The checked position, of the session's kind.
    pub position: Position,
    /// The push being answered.
    pub reply: ReplyTo,
}

/// Fact (session actor): a socket said whether its user looks at the map now (`viewing`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ViewingChanged {
    /// The socket that said it.
    pub socket: SocketId,
    /// The participant of the socket's token.
    pub participant: ParticipantId,
    /// Whether the map is visible on it.
    pub visible: bool,
}

/// Fact (session actor, or the registry for a socket not in a channel): a participant's socket
/// received a frame at this time.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Seen {
    /// The participant's session.
    pub session: SessionId,
    /// The participant of the socket's token.
    pub participant: ParticipantId,
    /// When the frame arrived.
    pub at: DateTime<Utc>,
}

/// Fact (registry): a session actor stopped, normally or after a panic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionStopped {
    /// The session it served.
    pub session: SessionId,
    /// The actor that stopped (a newer one may already serve the session).
    pub actor: Addr<SessionActor>,
    /// True when it stopped because a handler panicked.
    pub crashed: bool,
}

/// Command: make the session actor panic, to exercise supervision (tests send it; no route does,
/// and release builds do not have it).
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Crash {
    /// The session whose actor should panic.
    pub session: SessionId,
}

/// Fact (registry, then session actor): another replica published an event of this session.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoteEvent {
    /// The session whose channel it came on.
    pub session: SessionId,
    /// The replica that published it.
    pub origin: Arc<str>,
    /// What happened there.
    pub event: ClusterEvent,
}

/// Fact (registry): a socket opened for a participant.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SocketOpened {
    /// The socket's id within this process.
    pub socket: SocketId,
    /// The participant of its token, whose leaving closes it.
    pub participant: ParticipantId,
    /// Closes it when the participant leaves.
    pub kick: Recipient<Kick>,
}

/// Fact (registry): a socket closed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SocketClosed {
    /// The socket's id within this process.
    pub socket: SocketId,
    /// The participant it spoke for.
    pub participant: ParticipantId,
}

/// Command (socket actor): close, for one of two reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum Kick {
    /// Your participant left the session: close unless a channel is taking care of it (the
    /// session actor sends `participant_left` and `phx_close` first).
    Left,
    /// Your participant opened more than `MAX_SOCKETS_PER_PARTICIPANT` sockets and this one is
    /// the oldest: close with 1008 `too many sockets`, channel or not.
    TooManySockets,
}

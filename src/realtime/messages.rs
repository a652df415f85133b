//! Every actor message, in one place. Facts are named in the past tense, commands in the imperative.

use actix::{Message, MessageResponse};

use crate::domain::{EndReason, LeaveReason, Participant, ParticipantId, SessionId};

/// Fact: a participant joined through REST; its session tells everyone (`participant_joined`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ParticipantJoined {
    /// The session joined.
    pub session: SessionId,
    /// Who joined.
    pub participant: Participant,
}

/// Fact: a participant left or was removed; its session tells everyone and closes its sockets.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ParticipantLeft {
    /// The session left.
    pub session: SessionId,
    /// Who left.
    pub user: ParticipantId,
    /// Why.
    pub reason: LeaveReason,
}

/// Fact: a session ended; its actor tells everyone, closes the channels and stops.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SessionEnded {
    /// The session that ended.
    pub session: SessionId,
    /// Why.
    pub reason: EndReason,
}

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

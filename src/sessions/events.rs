//! The facts the sessions context announces. The session registry receives them, tells the
//! other replicas, and hands each to the session's actor when one runs here (see
//! `realtime::messages` for every actor message and who sends it).

use actix::Message;

use crate::domain::{Destination, EndReason, LeaveReason, Participant, ParticipantId, SessionId};

/// Fact: something changed in a session that its live sockets must hear of.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum SessionEvent {
    /// A participant joined through REST; everyone gets `participant_joined`.
    ParticipantJoined {
        /// Who joined, and where (`participant.session_id`).
        participant: Participant,
    },
    /// A participant left or was removed; everyone gets `participant_left`, its sockets close.
    ParticipantLeft {
        /// The session it was in.
        session: SessionId,
        /// The participant gone.
        user: ParticipantId,
        /// `left`, `removed` or `inactive`.
        reason: LeaveReason,
    },
    /// A session ended; everyone gets `session_ended`, its channels close.
    SessionEnded {
        /// The session that ended.
        session: SessionId,
        /// `expired`, `inactive` or `ended_by_creator`.
        reason: EndReason,
    },
    /// The creator set or moved the destination; everyone gets `destination_set`, arrivals reset.
    DestinationSet {
        /// The session.
        session: SessionId,
        /// The new destination.
        destination: Destination,
    },
    /// The creator cleared the destination; everyone gets `destination_cleared`.
    DestinationCleared {
        /// The session.
        session: SessionId,
    },
    /// The creator locked, unlocked or renamed the session; everyone gets `session_updated`.
    SessionUpdated {
        /// The session.
        session: SessionId,
        /// Its title now.
        name: Option<String>,
        /// Whether joins are refused now.
        locked: bool,
    },
}

impl SessionEvent {
    /// The session the event is about.
    pub fn session(&self) -> SessionId {
        match self {
            Self::ParticipantJoined { participant } => participant.session_id,
            Self::ParticipantLeft { session, .. }
            | Self::SessionEnded { session, .. }
            | Self::DestinationSet { session, .. }
            | Self::DestinationCleared { session }
            | Self::SessionUpdated { session, .. } => *session,
        }
    }
}

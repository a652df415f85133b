//! Domain types that validate when parsed, so invalid data cannot exist past the edge.
//!
//! Nothing here imports the rest of the crate: the HTTP, database and realtime layers
//! depend on these types, never the other way round.

mod approach;
mod avatar_color;
mod destination;
mod display_name;
mod expiry;
mod geo;
mod ids;
mod location;
mod position;
mod sealed;
mod session;
mod session_name;
mod viewing;

pub use approach::{progress, Fix, Motion, Progress, Transition};
pub use avatar_color::AvatarColor;
pub use destination::{Destination, DestinationDraft, DestinationErrors, Place};
pub use display_name::DisplayName;
pub use expiry::ExpiresInMinutes;
pub use geo::{distance_m, Point};
pub use ids::{ParticipantId, SessionId};
pub use location::{Location, LocationErrors, LocationView};
pub use position::{Position, PositionView};
pub use sealed::{Sealed, SealedView};
pub use session::{EndReason, LeaveReason, Participant, Session};
pub use session_name::SessionName;
pub use viewing::Viewing;

/// What a `Debug` shows in place of a coordinate or a token: neither may reach a log (SPEC §6),
/// not even through a `{:?}` of something that carries one.
pub const HIDDEN: &str = "<hidden>";

/// Why a value was refused: the message shown to the client under its field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// A refusal with a message for the client.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

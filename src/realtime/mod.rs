//! The live side: the session registry (supervisor), session actors, socket actors and the
//! Phoenix Channels protocol.

pub mod cluster;
#[cfg(test)]
pub(crate) mod fixture;
pub mod messages;
pub mod outbox;
pub mod protocol;
pub mod rate_limit;
pub mod registry;
pub mod session;
pub mod socket;
pub mod transport;

pub use registry::SessionRegistry;

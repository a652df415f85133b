//! The live side: the session registry (supervisor), session actors, socket actors and the
//! Phoenix Channels protocol.

pub mod messages;
pub mod registry;

pub use registry::SessionRegistry;

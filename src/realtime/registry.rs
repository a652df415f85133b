//! The session registry: the supervisor of session actors, and the router to them.

use std::collections::HashMap;

use actix::{Actor, Context, Handler};

use super::messages::{ParticipantJoined, ParticipantLeft, Ping, RegistryStats, SessionEnded};
use crate::domain::SessionId;

/// Maps live session ids to their actors; one per process.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: HashMap<SessionId, ()>,
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;
}

impl Handler<Ping> for SessionRegistry {
    type Result = RegistryStats;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> RegistryStats {
        RegistryStats { sessions_live: self.sessions.len(), sockets: 0 }
    }
}

impl Handler<ParticipantJoined> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ParticipantJoined, _: &mut Context<Self>) {
        log::debug!("participant joined session {}", msg.session);
    }
}

impl Handler<ParticipantLeft> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ParticipantLeft, _: &mut Context<Self>) {
        log::debug!("participant left session {}", msg.session);
    }
}

impl Handler<SessionEnded> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _: &mut Context<Self>) {
        self.sessions.remove(&msg.session);
    }
}

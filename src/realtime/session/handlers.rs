//! The session actor's mailbox: each message it takes, run under [`SessionActor::guard`].

use actix::prelude::*;
use chrono::Utc;

use super::super::messages::*;
use super::{Phase, SessionActor};
use crate::domain::EndReason;

impl Handler<Connect> for SessionActor {
    type Result = ResponseActFuture<Self, Result<Admitted, JoinRefusal>>;

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) -> Self::Result {
        let refusal = match self.phase {
            Phase::Failed | Phase::Loading => Some(JoinRefusal::Unavailable),
            Phase::Ended => Some(JoinRefusal::SessionEnded),
            Phase::Live => None,
        };
        if let Some(r) = refusal {
            return Box::pin(fut::ready(Err(r)));
        }
        let now = Utc::now();
        let over = self.session.as_ref().and_then(|s| {
            let mut s = s.clone();
            s.last_activity_at = self.last_activity;
            s.end_reason(now, self.deps.limits.inactivity())
        });
        if over == Some(EndReason::Expired) {
            self.end(EndReason::Expired, true, ctx);
            return Box::pin(fut::ready(Err(JoinRefusal::SessionEnded)));
        }
        if self.members.contains_key(&msg.socket.participant) {
            let result = self.guard(ctx, Err(JoinRefusal::Unavailable), |act, _| act.admit(msg));
            return Box::pin(fut::ready(result));
        }
        // Joined on another replica, or just now: ask the database before refusing.
        let (user, id) = (msg.socket.participant, self.id);
        let db = self.deps.db.clone();
        let lookup = async move { db.run(move |conn| crate::db::participants::find(conn, user)).await };
        Box::pin(lookup.into_actor(self).map(move |found, act, ctx| match found {
            Ok(Some(p)) if p.session_id == id && p.removed_at.is_none() && act.phase == Phase::Live => {
                act.guard(ctx, Err(JoinRefusal::Unavailable), |act, _| {
                    act.participant_joined(p);
                    act.admit(msg)
                })
            }
            Ok(_) if act.phase == Phase::Ended => Err(JoinRefusal::SessionEnded),
            Ok(_) => Err(JoinRefusal::NotAParticipant),
            Err(_) => Err(JoinRefusal::Unavailable),
        }))
    }
}

impl Handler<Disconnect> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| act.disconnect(msg.socket));
    }
}

impl Handler<LocationReported> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: LocationReported, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, ctx| act.location(msg, ctx));
    }
}

impl Handler<Seen> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Seen, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| act.mark_seen(msg.participant, msg.at));
    }
}

impl Handler<SessionEvent> for SessionActor {
    type Result = ();

    fn handle(&mut self, event: SessionEvent, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, ctx| match event {
            SessionEvent::ParticipantJoined { participant } => act.participant_joined(participant),
            SessionEvent::ParticipantLeft { user, reason, .. } => act.participant_left(user, reason),
            SessionEvent::SessionEnded { reason, .. } => act.end(reason, false, ctx),
            SessionEvent::DestinationSet { destination, .. } => act.destination_changed(Some(destination)),
            SessionEvent::DestinationCleared { .. } => act.destination_changed(None),
            SessionEvent::SessionUpdated { name, locked, .. } => act.session_updated(name, locked),
        });
    }
}

impl Handler<ViewingChanged> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ViewingChanged, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| {
            if act.sockets.get(msg.socket).is_some_and(|s| s.handle.participant == msg.participant)
                && act.presence.set_viewing(msg.participant, msg.socket, msg.visible)
            {
                act.sync_presence(None);
                act.publish_presence();
            }
        });
    }
}

impl Handler<RemoteEvent> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteEvent, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, ctx| act.remote(msg.origin, msg.event, ctx));
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Handler<Crash> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| panic!("crash requested for session {}", act.id));
    }
}

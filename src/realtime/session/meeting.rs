//! The session actor's side of the meeting point (SPEC §7) and of the creator's changes (§9):
//! each local position gets its distance and ETA, an arrival or departure is claimed in the store
//! (so that one replica announces it, once) and told to everyone; destination and session
//! changes reach every socket.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::super::cluster::ClusterEvent;
use super::persistence::store_error;
use super::{Phase, SessionActor};
use crate::domain::{progress, Destination, Fix, Location, LocationView, ParticipantId, Point, Transition};
use crate::views::rfc3339;

impl SessionActor {
    /// The session's destination now, if any.
    pub(super) fn destination(&self) -> Option<&Destination> {
        self.session.as_ref().and_then(|s| s.destination.as_ref())
    }

    /// Adds distance and ETA to a local participant's position, and claims what it changed.
    ///
    /// Motion is recorded even without a destination, so that an ETA is known as soon as one is set.
    pub(super) fn approach(
        &mut self,
        user: ParticipantId,
        location: &Location,
        view: &mut LocationView,
        ctx: &mut Context<Self>,
    ) {
        // Only a destination in the clear is measured: a sealed one is for the clients to.
        let destination = self.destination().and_then(Destination::place).cloned();
        let arrived = self.arrivals.contains_key(&user);
        let Some(member) = self.members.get_mut(&user) else {
            return;
        };
        let point = Point { lat: location.lat, lng: location.lng };
        let Some(destination) = destination else {
            member.motion.record(point, location.timestamp);
            return;
        };
        let fix = Fix { point, accuracy: location.accuracy, speed: location.speed, at: location.timestamp };
        let p = progress(&destination, &fix, &mut member.motion, arrived);
        view.set_progress(p.distance_m, p.eta_s);
        if let Some(transition) = p.transition {
            self.claim(user, transition, destination.epoch(), ctx);
        }
    }

    /// Claims a transition in the store and announces it if this replica won. The state changes
    /// here at once, so the participant's next position does not claim it again meanwhile.
    fn claim(&mut self, user: ParticipantId, transition: Transition, epoch: u64, ctx: &mut Context<Self>) {
        let at = crate::sessions::now();
        match transition {
            Transition::Arrived => self.arrivals.insert(user, at),
            Transition::Departed => self.arrivals.remove(&user),
        };
        let (id, deps) = (self.id, self.deps.clone());
        let work = async move {
            let claimed = match transition {
                Transition::Arrived => deps.store.claim_arrival(id, epoch, user, at).await,
                Transition::Departed => deps.store.claim_departure(id, epoch, user).await,
            };
            // A store that cannot answer cannot arbitrate either: this replica announces, as
            // positions are still delivered here while Redis is down.
            claimed.unwrap_or_else(|e| {
                store_error::<()>(&deps.metrics, &e);
                true
            })
        };
        ctx.spawn(work.into_actor(self).map(move |claimed, act, ctx| {
            act.guard(ctx, (), |act, _| {
                let current = act.destination().map(Destination::epoch) == Some(epoch);
                if claimed && current && act.phase == Phase::Live && act.members.contains_key(&user) {
                    act.announce(user, transition, at, epoch);
                }
            })
        }));
    }

    /// Tells every socket here, and the other replicas, of a transition this replica claimed.
    fn announce(&mut self, user: ParticipantId, transition: Transition, at: DateTime<Utc>, epoch: u64) {
        let event = match transition {
            Transition::Arrived => {
                self.deps.metrics.arrivals.inc();
                ClusterEvent::Arrived { user_id: user, arrived_at: at, epoch }
            }
            Transition::Departed => {
                self.deps.metrics.departures.inc();
                ClusterEvent::Departed { user_id: user, departed_at: at, epoch }
            }
        };
        self.tell_transition(user, transition, at);
        self.deps.bus.publish(self.id, &event);
    }

    /// Another replica announced a transition: take it as the truth and tell the sockets here.
    pub(super) fn remote_transition(
        &mut self,
        user: ParticipantId,
        transition: Transition,
        at: DateTime<Utc>,
        epoch: u64,
    ) {
        let current = self.destination().map(Destination::epoch) == Some(epoch);
        if !current || self.phase != Phase::Live || !self.members.contains_key(&user) {
            return;
        }
        match transition {
            Transition::Arrived => self.arrivals.insert(user, at),
            Transition::Departed => self.arrivals.remove(&user),
        };
        self.tell_transition(user, transition, at);
    }

    fn tell_transition(&mut self, user: ParticipantId, transition: Transition, at: DateTime<Utc>) {
        let (event, payload) = match transition {
            Transition::Arrived => {
                ("participant_arrived", json!({ "user_id": user.to_string(), "arrived_at": rfc3339(&at) }))
            }
            Transition::Departed => {
                ("participant_departed", json!({ "user_id": user.to_string(), "departed_at": rfc3339(&at) }))
            }
        };
        self.broadcast(event, &payload, None);
    }

    /// A participant gone from the session has arrived nowhere any more.
    pub(super) fn forget_arrival(&mut self, user: ParticipantId) {
        let Some(epoch) = self.destination().map(Destination::epoch) else {
            return;
        };
        if self.arrivals.remove(&user).is_some() {
            let (id, deps) = (self.id, self.deps.clone());
            actix::spawn(async move {
                if let Err(e) = deps.store.claim_departure(id, epoch, user).await {
                    store_error::<()>(&deps.metrics, &e);
                }
            });
        }
    }

    /// The destination was set, moved (`Some`) or cleared (`None`): arrivals start afresh
    /// without events, and the old destination's are deleted from the store.
    pub(super) fn destination_changed(&mut self, destination: Option<Destination>) {
        if self.phase != Phase::Live {
            return;
        }
        let old = self.destination().map(Destination::epoch);
        if old.is_some() && old == destination.as_ref().map(Destination::epoch) {
            // The same destination told twice (by this replica's REST and its actor's reload).
            return;
        }
        if let Some(s) = self.session.as_mut() {
            s.destination = destination.clone();
        }
        self.arrivals.clear();
        if let Some(epoch) = old {
            let (id, deps) = (self.id, self.deps.clone());
            actix::spawn(async move {
                if let Err(e) = deps.store.forget_arrivals(id, epoch).await {
                    store_error::<()>(&deps.metrics, &e);
                }
            });
        }
        match destination {
            Some(d) => self.broadcast("destination_set", &d, None),
            None => self.broadcast("destination_cleared", &json!({}), None),
        };
    }

    /// The creator locked, unlocked or renamed the session.
    pub(super) fn session_updated(&mut self, name: Option<String>, locked: bool) {
        if self.phase != Phase::Live {
            return;
        }
        if let Some(s) = self.session.as_mut() {
            s.name.clone_from(&name);
            s.locked = locked;
        }
        self.broadcast("session_updated", &json!({ "name": name, "locked": locked }), None);
    }
}

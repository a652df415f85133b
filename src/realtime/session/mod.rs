//! One actor per live session: it holds the session's sockets and roster, routes location updates
//! to the others, enforces the rate limit, keeps the session's timers and ends the session.
//!
//! Its jobs live beside it: [`sockets`] (the channel's sockets and the frames fanned out to
//! them), [`presence`] (who is online, here and on other replicas), [`advice`] (how often each
//! should send), [`meeting`] (the destination, arrivals and the creator's changes),
//! [`persistence`] (what goes to the store and to SQL, and when), [`timers`] (deadlines and
//! upkeep) and [`remote`] (the cluster); [`handlers`] is its mailbox.
//!
//! Every handler runs under [`SessionActor::guard`]: a panic is caught, the session's sockets get
//! `phx_error` (so Phoenix clients rejoin), the actor stops and the registry restarts it. Nothing
//! of it can reach the other sessions or the registry.

mod advice;
mod handlers;
mod meeting;
mod persistence;
mod presence;
mod remote;
mod sockets;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::cluster::{ClusterBus, ClusterEvent};
use super::messages::*;
use super::outbox::Outgoing;
use super::protocol::{encode_lifecycle, encode_push, encode_reply, topic_of, Status, Vsn};
use super::rate_limit::TokenBucket;
use super::registry::SessionRegistry;
use crate::config::Limits;
use crate::db::Db;
use crate::domain::{
    EndReason, LeaveReason, Motion, Participant, ParticipantId, Position, PositionView, Session, SessionId,
};
use crate::metrics::Metrics;
use crate::store::{ArrivalMap, Store};
use crate::views::{rfc3339, ParticipantView};
use advice::{Advice, Advisor};
use persistence::{Loaded, Pending};
use presence::Presence;
pub use presence::PresenceMeta;
use sockets::Sockets;

/// How long an ended (or unloadable) session's actor keeps refusing joins before it stops.
const LINGER: Duration = Duration::from_secs(1);

/// What every session actor works with; one, shared by all.
pub struct SessionDeps {
    /// Where sessions and participants are stored.
    pub db: Db,
    /// Where positions and last-seen times live.
    pub store: Store,
    /// The limits and timers every session obeys.
    pub limits: Arc<Limits>,
    /// The process's counters.
    pub metrics: Arc<Metrics>,
    /// Broadcasts to and from the other replicas.
    pub bus: ClusterBus,
}

/// A participant as the session actor knows it.
struct Member {
    participant: Participant,
    bucket: TokenBucket,
    /// Its recent positions, for its speed.
    motion: Motion,
    /// Its removal for inactivity is being decided; don't start another.
    removing: bool,
}

impl Member {
    fn new(participant: Participant, limits: &Limits) -> Self {
        let bucket = TokenBucket::full(limits.max_updates_per_second, Instant::now());
        Self { participant, bucket, motion: Motion::default(), removing: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Loading,
    Live,
    Ended,
    /// The session could not be loaded; joins are refused until a new actor tries again.
    Failed,
}

/// The actor of one session.
pub struct SessionActor {
    id: SessionId,
    topic: String,
    deps: Arc<SessionDeps>,
    registry: Addr<SessionRegistry>,
    phase: Phase,
    session: Option<Session>,
    members: HashMap<ParticipantId, Member>,
    sockets: Sockets,
    presence: Presence,
    advisor: Advisor,
    /// Who has arrived at the destination, and when (empty without one).
    arrivals: ArrivalMap,
    /// Fresh positions, for the join snapshot, with when each expires.
    locations: HashMap<ParticipantId, (PositionView, Instant)>,
    pending: Pending,
    last_activity: DateTime<Utc>,
    empty_since: Option<Instant>,
    checking_inactivity: bool,
    crashed: bool,
}

impl SessionActor {
    /// A new actor for `id`; it loads its state when started.
    pub fn new(id: SessionId, deps: Arc<SessionDeps>, registry: Addr<SessionRegistry>) -> Self {
        let now = Instant::now();
        let advisor = Advisor::new(deps.metrics.sockets_by_advice.clone());
        Self {
            id,
            topic: topic_of(&id),
            deps,
            registry,
            phase: Phase::Loading,
            session: None,
            members: HashMap::new(),
            sockets: Sockets::default(),
            presence: Presence::new(now),
            advisor,
            arrivals: ArrivalMap::new(),
            locations: HashMap::new(),
            pending: Pending::new(now),
            last_activity: Utc::now(),
            empty_since: Some(now),
            checking_inactivity: false,
            crashed: false,
        }
    }

    /// Runs a handler body, turning a panic into a supervised crash.
    fn guard<R>(
        &mut self,
        ctx: &mut Context<Self>,
        fallback: R,
        f: impl FnOnce(&mut Self, &mut Context<Self>) -> R,
    ) -> R {
        match panic::catch_unwind(AssertUnwindSafe(|| f(self, ctx))) {
            Ok(r) => r,
            Err(_) => {
                self.crash(ctx);
                fallback
            }
        }
    }

    fn crash(&mut self, ctx: &mut Context<Self>) {
        log::error!("session actor {} panicked; its sockets are told to rejoin", self.id);
        self.crashed = true;
        for s in self.sockets.take_all() {
            if s.handle.vsn == Vsn::Plain {
                s.send(Outgoing::Close(1011, "session restarting"));
            } else {
                // The socket forgets the channel before the client can read that it is gone, so a
                // push sent on reading it is answered as a push to no channel.
                s.send(Outgoing::ChannelGone(s.join_ref.clone()));
                s.send_frame(encode_lifecycle(s.handle.vsn, &s.join_ref, &self.topic, "phx_error"));
            }
        }
        ctx.stop();
    }

    fn loaded(&mut self, loaded: Loaded, ctx: &mut Context<Self>) {
        let Some(session) = loaded.session else {
            // Purged: as over as a session gets.
            self.phase = Phase::Ended;
            self.stop_soon(ctx);
            return;
        };
        let now = Instant::now();
        self.last_activity =
            [Some(session.last_activity_at), loaded.activity].into_iter().flatten().max().unwrap_or_else(Utc::now);
        for mut p in loaded.participants {
            if let Some(seen) = loaded.seen.get(&p.id) {
                p.last_seen_at = p.last_seen_at.max(*seen);
            }
            self.members.insert(p.id, Member::new(p, &self.deps.limits));
        }
        self.arrivals = loaded.arrivals.into_iter().filter(|(user, _)| self.members.contains_key(user)).collect();
        for view in loaded.locations {
            if let Ok(user) = view.user_id().parse::<ParticipantId>() {
                // The store's remaining TTL is not known here; count it from now at most.
                self.locations.insert(user, (view, now + self.deps.limits.location_ttl));
            }
        }
        let ended = session.ended.is_some();
        self.session = Some(session);
        self.phase = if ended { Phase::Ended } else { Phase::Live };
        if ended {
            self.stop_soon(ctx);
        } else {
            // Announce this replica, so the others answer with who is online on them.
            self.publish_presence();
        }
    }

    /// Sends a push to every socket in the channel but `except`; how many got it.
    fn broadcast(&self, event: &str, payload: &impl Serialize, except: Option<SocketId>) -> u64 {
        self.sockets.broadcast(&self.topic, event, payload, except, false)
    }

    /// The join reply's snapshot: participants as REST lists them, and fresh positions.
    fn snapshot(&self, now: DateTime<Utc>) -> Value {
        let limits = &self.deps.limits;
        let live = self.session.as_ref().is_some_and(|s| s.is_active(now, limits.inactivity()));
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| (m.participant.joined_at, m.participant.id));
        let participants: Vec<ParticipantView> = members
            .iter()
            .map(|m| ParticipantView::new(&m.participant, m.participant.is_active(now, limits.idle(), live)))
            .collect();
        let fresh = Instant::now();
        let locations: Vec<&PositionView> =
            self.locations.values().filter(|(_, exp)| *exp > fresh).map(|(v, _)| v).collect();
        let destination = self.destination();
        let arrivals: HashMap<String, String> =
            self.arrivals.iter().map(|(user, at)| (user.to_string(), rfc3339(at))).collect();
        json!({ "participants": participants, "locations": locations, "destination": destination, "arrivals": arrivals })
    }

    /// Tells the local sockets (but `except`) how Presence changed since they were last told.
    fn sync_presence(&mut self, except: Option<SocketId>) {
        if let Some(diff) = self.presence.diff() {
            self.broadcast("presence_diff", &diff, except);
        }
    }

    /// Puts a socket of a known participant in the channel: the join reply and
    /// `presence_state` are in its outbox when this returns.
    fn admit(&mut self, msg: Connect) -> Result<Admitted, JoinRefusal> {
        let Connect { socket, reply } = msg;
        let member = self.members.get(&socket.participant).ok_or(JoinRefusal::NotAParticipant)?;
        let now = Utc::now();
        // A rejoin on the same socket replaces its old join.
        self.sockets.insert(socket.clone(), reply.join_ref.clone());
        self.empty_since = None;
        let first = self.presence.track(socket.id, &member.participant, now);
        self.mark_seen(socket.participant, now);
        if first {
            self.sync_presence(Some(socket.id));
            self.publish_presence();
        }
        let snapshot = self.snapshot(now);
        let joined = match socket.vsn {
            Vsn::Plain => encode_push(Vsn::Plain, &Value::Null, &self.topic, "joined", &snapshot),
            vsn => encode_reply(vsn, &reply, Status::Ok, &snapshot),
        };
        let state = encode_push(socket.vsn, &Value::Null, &self.topic, "presence_state", &self.presence.state());
        socket.outbox.push(Outgoing::Frame { text: joined, droppable: false });
        socket.outbox.push(Outgoing::Frame { text: state, droppable: false });
        let advice = Advice::for_user(&self.deps.limits, &self.presence.viewers(), socket.participant);
        if let Some(s) = self.sockets.get(socket.id) {
            self.advisor.advise_now(s, advice, &self.topic, &self.deps.limits);
        }
        Ok(Admitted { e2e: self.session.as_ref().is_some_and(|s| s.e2e) })
    }

    fn disconnect(&mut self, socket: SocketId) {
        let Some(s) = self.sockets.remove(socket) else {
            return;
        };
        if self.presence.untrack(s.handle.participant, socket) {
            self.sync_presence(None);
            self.publish_presence();
        }
        if self.sockets.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    fn location(&mut self, msg: LocationReported, ctx: &mut Context<Self>) {
        let Some(sender) = self.sockets.get(msg.socket) else {
            return;
        };
        let sender = sender.handle.clone();
        if sender.participant != msg.participant || self.phase != Phase::Live {
            return;
        }
        let Some(member) = self.members.get_mut(&msg.participant) else {
            return;
        };
        let now = Instant::now();
        let metrics = self.deps.metrics.clone();
        let reply = |status, response: &Value| Outgoing::Frame {
            text: encode_reply(sender.vsn, &msg.reply, status, response),
            droppable: false,
        };
        if !member.bucket.take(self.deps.limits.max_updates_per_second, now) {
            metrics.rate_limited.inc();
            sender.outbox.push(reply(Status::Error, &json!({ "reason": "rate_limited" })));
            return;
        }
        metrics.updates_in.inc();
        // A sealed position is relayed as it came: the server neither measures nor logs it.
        let view = match msg.position {
            Position::Clear(location) => {
                let mut view = location.view(msg.participant);
                self.approach(msg.participant, &location, &mut view, ctx);
                PositionView::Clear(view)
            }
            Position::Sealed(sealed) => PositionView::sealed(msg.participant, sealed, Utc::now()),
        };
        let delivered = self.sockets.broadcast(&self.topic, "location_update", &view, Some(msg.socket), true);
        metrics.deliveries_out.inc_by(delivered);
        sender.outbox.push(reply(Status::Ok, &json!({})));

        if self.deps.bus.is_enabled() {
            self.deps.bus.publish(self.id, &ClusterEvent::position(view.clone()));
        }
        self.locations.insert(msg.participant, (view.clone(), now + self.deps.limits.location_ttl));
        self.pending.location(msg.participant, view);
        self.store_locations(ctx);
        self.mark_seen(msg.participant, Utc::now());
    }

    fn mark_seen(&mut self, user: ParticipantId, at: DateTime<Utc>) {
        if let Some(m) = self.members.get_mut(&user) {
            m.participant.last_seen_at = m.participant.last_seen_at.max(at);
        }
        self.last_activity = self.last_activity.max(at);
        self.pending.seen(user, at);
    }

    fn participant_joined(&mut self, p: Participant) {
        let payload = json!({
            "user_id": p.id.to_string(),
            "display_name": p.display_name.as_str(),
            "avatar_color": p.avatar_color.as_str(),
        });
        self.last_activity = self.last_activity.max(p.joined_at);
        let limits = self.deps.limits.clone();
        self.members.entry(p.id).or_insert_with(|| Member::new(p, &limits));
        self.broadcast("participant_joined", &payload, None);
    }

    fn participant_left(&mut self, user: ParticipantId, reason: LeaveReason) {
        if self.members.remove(&user).is_none() {
            return;
        }
        self.broadcast("participant_left", &json!({ "user_id": user.to_string(), "reason": reason.as_str() }), None);
        for s in self.sockets.remove_participant(user) {
            if s.handle.vsn != Vsn::Plain {
                s.send_frame(encode_lifecycle(s.handle.vsn, &s.join_ref, &self.topic, "phx_close"));
            }
            s.send(Outgoing::Close(1000, "left the session"));
        }
        // Gone from the session, so gone from every replica's Presence too.
        let was_here = self.presence.forget(user);
        self.sync_presence(None);
        if was_here {
            self.publish_presence();
        }
        self.locations.remove(&user);
        self.forget_arrival(user);
        self.pending.forget(user);
        if self.sockets.is_empty() {
            self.empty_since = Some(Instant::now());
        }
        self.forget_participant(user);
    }

    /// Ends the session here: everyone is told, channels close, the actor stops. `record` also
    /// tells the other replicas and writes the end to SQL (a conditional update, so it is
    /// recorded once whoever gets there first).
    fn end(&mut self, reason: EndReason, record: bool, ctx: &mut Context<Self>) {
        if self.phase == Phase::Ended {
            return;
        }
        self.phase = Phase::Ended;
        log::info!("session {} ended: {}", self.id, reason.as_str());
        if record {
            self.deps.bus.publish(self.id, &ClusterEvent::Ended { reason });
        }
        self.forget_session(reason, record);
        self.broadcast("session_ended", &json!({ "reason": reason.as_str() }), None);
        for s in self.sockets.take_all() {
            let vsn = s.handle.vsn;
            if vsn != Vsn::Plain {
                s.send(Outgoing::ChannelGone(s.join_ref.clone()));
                s.send_frame(encode_lifecycle(vsn, &s.join_ref, &self.topic, "phx_close"));
            }
            match (reason, vsn) {
                (EndReason::Expired, _) => s.send(Outgoing::Close(1008, "token expired")),
                (_, Vsn::Plain) => s.send(Outgoing::Close(1000, "session ended")),
                _ => {}
            }
        }
        self.stop_soon(ctx);
    }

    /// Stops after a short linger, so joins already queued get a proper refusal (`session_ended`,
    /// `unavailable`) rather than a closed mailbox.
    fn stop_soon(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(LINGER, |_, ctx| ctx.stop());
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps.metrics.sessions_live.inc();
        self.load(ctx);
        ctx.run_interval(timers::TICK, |act, ctx| act.guard(ctx, (), |act, ctx| act.tick(ctx)));
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.deps.metrics.sessions_live.dec();
        if self.session.is_some() {
            self.deps.bus.unsubscribe(self.id);
        }
        if self.phase == Phase::Live {
            self.save_seen();
        }
        self.registry.do_send(SessionStopped { session: self.id, actor: ctx.address(), crashed: self.crashed });
    }
}

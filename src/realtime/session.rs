//! One actor per live session: it holds the session's sockets and roster, routes location updates
//! to the others, enforces the rate limit, arms the session's timers and ends the session.
//!
//! Every handler runs under [`SessionActor::guard`]: a panic is caught, the session's sockets get
//! `phx_error` (so Phoenix clients rejoin), the actor stops and the registry restarts it. Nothing
//! of it can reach the other sessions or the registry.

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::cluster::{ClusterBus, ClusterEvent};
use super::messages::*;
use super::outbox::Outgoing;
use super::protocol::{encode_lifecycle, encode_push, encode_reply, topic_of, Status, Vsn};
use super::rate_limit::TokenBucket;
use super::registry::SessionRegistry;
use crate::config::Limits;
use crate::db::{self, Db, DbError};
use crate::domain::{EndReason, LeaveReason, LocationView, Participant, ParticipantId, Session, SessionId};
use crate::ops::metrics::Metrics;
use crate::store::Store;
use crate::views::{rfc3339, ParticipantView};

/// How often timers are checked: sessions end within this of their deadline.
const TICK: Duration = Duration::from_millis(500);
/// How long an actor with no socket lingers before it stops.
const EMPTY_GRACE: Duration = Duration::from_secs(30);
/// How long an ended (or unloadable) session's actor keeps refusing joins before it stops.
const LINGER: Duration = Duration::from_secs(1);
/// How long positions wait to be written to the store, so that one write carries many.
const STORE_DELAY: Duration = Duration::from_millis(100);
/// How often last-seen times are written to SQL (they reach the ephemeral store every tick).
const SQL_FLUSH: Duration = Duration::from_secs(30);
/// How often a replica repeats who is online on it, for the other replicas' Presence.
const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(15);
/// A replica not heard of for this long is presumed dead and its Presence entries vanish.
const PRESENCE_EXPIRY: Duration = Duration::from_secs(45);

/// What every session actor needs; shared.
pub struct SessionDeps {
    /// SQL.
    pub db: Db,
    /// Ephemeral state.
    pub store: Store,
    /// Limits and timers.
    pub limits: Limits,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Broadcasts to and from the other replicas.
    pub bus: ClusterBus,
}

/// A participant as the session actor knows it.
struct Member {
    participant: Participant,
    bucket: TokenBucket,
    sockets: u32,
    presence: Option<PresenceMeta>,
    removing: bool,
}

/// The Phoenix.Presence meta of an online participant.
#[derive(Debug, Clone, Serialize)]
struct PresenceMeta {
    phx_ref: String,
    display_name: String,
    avatar_color: String,
    online_at: String,
}

struct Entry {
    handle: SocketHandle,
    join_ref: Value,
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
    sockets: HashMap<SocketId, Entry>,
    per_vsn: [usize; 3],
    locations: HashMap<ParticipantId, (LocationView, Instant)>,
    unstored_locations: HashMap<ParticipantId, LocationView>,
    storing_locations: bool,
    unstored_seen: HashMap<ParticipantId, DateTime<Utc>>,
    unsaved_seen: HashMap<ParticipantId, DateTime<Utc>>,
    last_activity: DateTime<Utc>,
    last_sql_flush: Instant,
    empty_since: Option<Instant>,
    checking_inactivity: bool,
    crashed: bool,
    /// Who is online on other replicas: replica → (last heard, user id → meta).
    remote_presence: HashMap<Arc<str>, (Instant, HashMap<String, Value>)>,
    /// The Presence state the local sockets were last told (user id → meta).
    presence_told: HashMap<String, Value>,
    last_presence_publish: Instant,
}

/// What the actor loads when it starts.
struct Loaded {
    session: Option<Session>,
    participants: Vec<Participant>,
    locations: Vec<LocationView>,
    seen: crate::store::SeenMap,
    activity: Option<DateTime<Utc>>,
}

impl SessionActor {
    /// A new actor for `id`; it loads its state when started.
    pub fn new(id: SessionId, deps: Arc<SessionDeps>, registry: Addr<SessionRegistry>) -> Self {
        Self {
            id,
            topic: topic_of(&id),
            deps,
            registry,
            phase: Phase::Loading,
            session: None,
            members: HashMap::new(),
            sockets: HashMap::new(),
            per_vsn: [0; 3],
            locations: HashMap::new(),
            unstored_locations: HashMap::new(),
            storing_locations: false,
            unstored_seen: HashMap::new(),
            unsaved_seen: HashMap::new(),
            last_activity: Utc::now(),
            last_sql_flush: Instant::now(),
            empty_since: Some(Instant::now()),
            checking_inactivity: false,
            crashed: false,
            remote_presence: HashMap::new(),
            presence_told: HashMap::new(),
            last_presence_publish: Instant::now(),
        }
    }

    fn inactivity(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.deps.limits.session_inactivity).unwrap_or(chrono::Duration::MAX)
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
        for entry in self.sockets.values() {
            let h = &entry.handle;
            if h.vsn == Vsn::Plain {
                send(h, Outgoing::Close(1011, "session restarting"));
            } else {
                // The socket forgets the channel before the client can read that it is gone, so a
                // push sent on reading it is answered as a push to no channel.
                send(h, Outgoing::ChannelGone(entry.join_ref.clone()));
                send(h, frame(encode_lifecycle(h.vsn, &entry.join_ref, &self.topic, "phx_error"), false));
            }
        }
        self.sockets.clear();
        ctx.stop();
    }

    // ---------------------------------------------------------------- loading

    fn load(&mut self, ctx: &mut Context<Self>) {
        let (id, deps) = (self.id, self.deps.clone());
        let load = async move {
            let (session, participants) = deps
                .db
                .run(move |conn| {
                    let session = db::sessions::find(conn, id)?;
                    let participants =
                        if session.is_some() { db::participants::list_live(conn, id)? } else { Vec::new() };
                    Ok::<_, DbError>((session, participants))
                })
                .await?;
            let store = &deps.store;
            let (locations, seen, activity) =
                tokio::join!(store.locations(id), store.last_seen(id), store.last_activity(id));
            let (locations, seen, activity) = (
                locations.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
                seen.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
                activity.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
            );
            if session.is_some() {
                deps.bus.subscribe(id).await;
            }
            Ok::<_, DbError>(Loaded { session, participants, locations, seen, activity })
        };
        ctx.wait(load.into_actor(self).map(|loaded, act, ctx| {
            act.guard(ctx, (), |act, ctx| match loaded {
                Ok(loaded) => act.loaded(loaded, ctx),
                Err(e) => {
                    log::warn!("session {} could not be loaded: {e}", act.id);
                    act.phase = Phase::Failed;
                    act.stop_soon(ctx);
                }
            })
        }));
    }

    fn loaded(&mut self, loaded: Loaded, ctx: &mut Context<Self>) {
        let Some(session) = loaded.session else {
            // Purged: as over as a session gets.
            self.phase = Phase::Ended;
            self.stop_soon(ctx);
            return;
        };
        let now = Instant::now();
        let ttl = self.deps.limits.location_ttl;
        let capacity = self.deps.limits.max_updates_per_second;
        self.last_activity =
            [Some(session.last_activity_at), loaded.activity].into_iter().flatten().max().unwrap_or_else(Utc::now);
        for mut p in loaded.participants {
            if let Some(seen) = loaded.seen.get(&p.id) {
                p.last_seen_at = p.last_seen_at.max(*seen);
            }
            let member = Member {
                participant: p,
                bucket: TokenBucket::full(capacity, now),
                sockets: 0,
                presence: None,
                removing: false,
            };
            self.members.insert(member.participant.id, member);
        }
        for view in loaded.locations {
            if let Ok(user) = view.user_id.parse::<ParticipantId>() {
                // The store's remaining TTL is not known here; count it from now at most.
                self.locations.insert(user, (view, now + ttl));
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

    // ------------------------------------------------------------ fan-out

    /// Encodes a push once per serializer in use.
    fn encode(&self, event: &str, payload: &impl Serialize) -> [Option<ByteString>; 3] {
        let mut frames: [Option<ByteString>; 3] = Default::default();
        for vsn in Vsn::ALL {
            if self.per_vsn[vsn.index()] > 0 {
                frames[vsn.index()] = Some(encode_push(vsn, &Value::Null, &self.topic, event, payload));
            }
        }
        frames
    }

    /// Sends a push to every socket but `except`.
    fn broadcast(&self, event: &str, payload: &impl Serialize, except: Option<SocketId>, droppable: bool) -> u64 {
        let frames = self.encode(event, payload);
        let mut delivered = 0;
        for (id, entry) in &self.sockets {
            if Some(*id) == except {
                continue;
            }
            if let Some(text) = &frames[entry.handle.vsn.index()] {
                send(&entry.handle, Outgoing::Frame { text: text.clone(), droppable });
                delivered += 1;
            }
        }
        delivered
    }

    fn snapshot(&self, now: DateTime<Utc>) -> Value {
        let live = self.session.as_ref().is_some_and(|s| s.is_active(now, self.inactivity()));
        let idle = chrono::Duration::from_std(self.deps.limits.participant_idle).unwrap_or(chrono::Duration::MAX);
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| (m.participant.joined_at, m.participant.id));
        let participants: Vec<ParticipantView> = members
            .iter()
            .map(|m| ParticipantView::new(&m.participant, m.participant.is_active(now, idle, live)))
            .collect();
        let fresh = Instant::now();
        let locations: Vec<&LocationView> =
            self.locations.values().filter(|(_, exp)| *exp > fresh).map(|(v, _)| v).collect();
        json!({ "participants": participants, "locations": locations })
    }

    /// Who is online here.
    fn local_presence(&self) -> HashMap<String, Value> {
        self.members
            .iter()
            .filter_map(|(id, m)| m.presence.as_ref().map(|meta| (id.to_string(), json!(meta))))
            .collect()
    }

    /// Who is online on any replica, one meta each (this replica's first).
    fn merged_presence(&self) -> HashMap<String, Value> {
        let mut merged = self.local_presence();
        for (_, online) in self.remote_presence.values() {
            for (user, meta) in online {
                merged.entry(user.clone()).or_insert_with(|| meta.clone());
            }
        }
        merged
    }

    fn presence_state(&self) -> Map<String, Value> {
        self.presence_told.iter().map(|(user, meta)| (user.clone(), json!({ "metas": [meta] }))).collect()
    }

    /// Tells the local sockets (but `except`) how Presence changed since they were last told.
    fn sync_presence(&mut self, except: Option<SocketId>) {
        let now = self.merged_presence();
        let entry = |meta: &Value| json!({ "metas": [meta] });
        let joins: Map<String, Value> = now
            .iter()
            .filter(|(u, _)| !self.presence_told.contains_key(*u))
            .map(|(u, m)| (u.clone(), entry(m)))
            .collect();
        let leaves: Map<String, Value> = self
            .presence_told
            .iter()
            .filter(|(u, _)| !now.contains_key(*u))
            .map(|(u, m)| (u.clone(), entry(m)))
            .collect();
        self.presence_told = now;
        if !joins.is_empty() || !leaves.is_empty() {
            self.broadcast("presence_diff", &json!({ "joins": joins, "leaves": leaves }), except, false);
        }
    }

    /// Tells the other replicas who is online here.
    fn publish_presence(&mut self) {
        if self.deps.bus.is_enabled() {
            self.last_presence_publish = Instant::now();
            self.deps.bus.publish(self.id, &ClusterEvent::Presence { online: self.local_presence() });
        }
    }

    // ------------------------------------------------------------ joining

    fn admit(&mut self, msg: Connect) -> Result<(), JoinRefusal> {
        let Connect { socket, reply } = msg;
        let user = socket.participant;
        if !self.members.contains_key(&user) {
            return Err(JoinRefusal::NotAParticipant);
        }
        // A rejoin on the same socket replaces its old join.
        if let Some(old) = self.sockets.remove(&socket.id) {
            self.per_vsn[old.handle.vsn.index()] -= 1;
            if let Some(m) = self.members.get_mut(&old.handle.participant) {
                m.sockets -= 1;
            }
        }
        let now = Utc::now();
        let member = self.members.get_mut(&user).ok_or(JoinRefusal::NotAParticipant)?;
        member.sockets += 1;
        let first = member.presence.is_none();
        if first {
            member.presence = Some(PresenceMeta {
                phx_ref: format!("F{:016x}", rand::random::<u64>()),
                display_name: member.participant.display_name.as_str().to_owned(),
                avatar_color: member.participant.avatar_color.as_str().to_owned(),
                online_at: rfc3339(&now),
            });
        }
        let handle = socket.clone();
        self.per_vsn[handle.vsn.index()] += 1;
        self.sockets.insert(handle.id, Entry { handle: handle.clone(), join_ref: reply.join_ref.clone() });
        self.empty_since = None;
        self.mark_seen(user, now);

        if first {
            self.sync_presence(Some(handle.id));
            self.publish_presence();
        }
        let snapshot = self.snapshot(now);
        let joined = match handle.vsn {
            Vsn::Plain => encode_push(Vsn::Plain, &Value::Null, &self.topic, "joined", &snapshot),
            vsn => encode_reply(vsn, &reply, Status::Ok, &snapshot),
        };
        send(&handle, frame(joined, false));
        let state = encode_push(handle.vsn, &Value::Null, &self.topic, "presence_state", &self.presence_state());
        send(&handle, frame(state, false));
        Ok(())
    }

    fn disconnect(&mut self, socket: SocketId) {
        let Some(entry) = self.sockets.remove(&socket) else {
            return;
        };
        self.per_vsn[entry.handle.vsn.index()] -= 1;
        let user = entry.handle.participant;
        let last = match self.members.get_mut(&user) {
            Some(m) => {
                m.sockets = m.sockets.saturating_sub(1);
                m.sockets == 0
            }
            None => false,
        };
        if last {
            if let Some(m) = self.members.get_mut(&user) {
                m.presence = None;
            }
            self.sync_presence(None);
            self.publish_presence();
        }
        if self.sockets.is_empty() {
            self.empty_since = Some(Instant::now());
        }
    }

    // ------------------------------------------------------------ locations

    fn location(&mut self, msg: LocationReported, ctx: &mut Context<Self>) {
        let Some(entry) = self.sockets.get(&msg.socket) else {
            return;
        };
        let sender = entry.handle.clone();
        if sender.participant != msg.participant || self.phase != Phase::Live {
            return;
        }
        let Some(member) = self.members.get_mut(&msg.participant) else {
            return;
        };
        let now = Instant::now();
        let metrics = self.deps.metrics.clone();
        if !member.bucket.take(self.deps.limits.max_updates_per_second, now) {
            metrics.rate_limited.inc();
            let reply = encode_reply(sender.vsn, &msg.reply, Status::Error, &json!({ "reason": "rate_limited" }));
            send(&sender, frame(reply, false));
            return;
        }
        metrics.updates_in.inc();
        let view = msg.location.view(msg.participant);
        let delivered = self.broadcast("location_update", &view, Some(msg.socket), true);
        metrics.deliveries_out.inc_by(delivered);
        send(&sender, frame(encode_reply(sender.vsn, &msg.reply, Status::Ok, &json!({})), false));

        if self.deps.bus.is_enabled() {
            self.deps.bus.publish(self.id, &ClusterEvent::Location { view: view.clone() });
        }
        self.locations.insert(msg.participant, (view.clone(), now + self.deps.limits.location_ttl));
        self.unstored_locations.insert(msg.participant, view);
        self.store_locations(ctx);
        self.mark_seen(msg.participant, Utc::now());
    }

    /// Writes pending locations to the store, one batch at a time, so a participant's positions
    /// reach it in order. A batch waits [`STORE_DELAY`] first, so that one write carries every
    /// update of that moment instead of one round trip each: positions live 30 s, and only a
    /// restarted actor or another replica's reads them back.
    fn store_locations(&mut self, ctx: &mut Context<Self>) {
        if self.storing_locations || self.unstored_locations.is_empty() {
            return;
        }
        self.storing_locations = true;
        ctx.run_later(STORE_DELAY, |act, ctx| {
            let batch: Vec<_> = act.unstored_locations.drain().collect();
            // An ended session's positions are deleted, not written.
            if batch.is_empty() || act.phase != Phase::Live {
                act.storing_locations = false;
                return;
            }
            let (id, deps) = (act.id, act.deps.clone());
            let write = async move { deps.store.put_locations(id, batch).await };
            ctx.spawn(write.into_actor(act).map(|result, act, ctx| {
                act.storing_locations = false;
                if let Err(e) = result {
                    store_error::<()>(&act.deps.metrics, &e);
                }
                act.store_locations(ctx);
            }));
        });
    }

    fn mark_seen(&mut self, user: ParticipantId, at: DateTime<Utc>) {
        if let Some(m) = self.members.get_mut(&user) {
            m.participant.last_seen_at = m.participant.last_seen_at.max(at);
        }
        self.last_activity = self.last_activity.max(at);
        self.unstored_seen.insert(user, at);
        self.unsaved_seen.insert(user, at);
    }

    // ------------------------------------------------------------ membership

    fn participant_joined(&mut self, p: Participant) {
        let payload = json!({
            "user_id": p.id.to_string(),
            "display_name": p.display_name.as_str(),
            "avatar_color": p.avatar_color.as_str(),
        });
        let (id, joined_at) = (p.id, p.joined_at);
        let capacity = self.deps.limits.max_updates_per_second;
        self.members.entry(id).or_insert_with(|| Member {
            participant: p,
            bucket: TokenBucket::full(capacity, Instant::now()),
            sockets: 0,
            presence: None,
            removing: false,
        });
        self.last_activity = self.last_activity.max(joined_at);
        self.broadcast("participant_joined", &payload, None, false);
    }

    fn participant_left(&mut self, user: ParticipantId, reason: LeaveReason) {
        let Some(member) = self.members.remove(&user) else {
            return;
        };
        self.broadcast(
            "participant_left",
            &json!({ "user_id": user.to_string(), "reason": reason.as_str() }),
            None,
            false,
        );
        let theirs: Vec<SocketId> =
            self.sockets.iter().filter(|(_, e)| e.handle.participant == user).map(|(id, _)| *id).collect();
        for id in theirs {
            if let Some(entry) = self.sockets.remove(&id) {
                self.per_vsn[entry.handle.vsn.index()] -= 1;
                let h = &entry.handle;
                if h.vsn != Vsn::Plain {
                    send(h, frame(encode_lifecycle(h.vsn, &entry.join_ref, &self.topic, "phx_close"), false));
                }
                send(h, Outgoing::Close(1000, "left the session"));
            }
        }
        // Gone from the session, so gone from every replica's Presence too.
        let key = user.to_string();
        for (_, online) in self.remote_presence.values_mut() {
            online.remove(&key);
        }
        self.sync_presence(None);
        if member.presence.is_some() {
            self.publish_presence();
        }
        self.locations.remove(&user);
        self.unstored_locations.remove(&user);
        self.unstored_seen.remove(&user);
        self.unsaved_seen.remove(&user);
        if self.sockets.is_empty() {
            self.empty_since = Some(Instant::now());
        }
        let (id, deps) = (self.id, self.deps.clone());
        actix::spawn(async move {
            if let Err(e) = deps.store.forget_participant(id, user).await {
                store_error::<()>(&deps.metrics, &e);
            }
        });
    }

    // ------------------------------------------------------------ ending

    /// Ends the session here: everyone is told, channels close, the actor stops. `record` also
    /// writes the end to SQL (a conditional update, so it is recorded once whoever gets there first).
    fn end(&mut self, reason: EndReason, record: bool, ctx: &mut Context<Self>) {
        if self.phase == Phase::Ended {
            return;
        }
        self.phase = Phase::Ended;
        log::info!("session {} ended: {}", self.id, reason.as_str());
        if record {
            self.deps.bus.publish(self.id, &ClusterEvent::Ended { reason: reason.as_str().to_owned() });
        }
        let (id, deps) = (self.id, self.deps.clone());
        actix::spawn(async move {
            if record {
                match deps.db.run(move |conn| db::sessions::mark_ended(conn, id, reason, Utc::now())).await {
                    Ok(true) => {}
                    Ok(false) => log::debug!("session {id} was already recorded as ended"),
                    Err(e) => log::warn!("could not record the end of session {id}: {e}"),
                }
            }
            if let Err(e) = deps.store.forget_session(id).await {
                store_error::<()>(&deps.metrics, &e);
            }
        });
        self.broadcast("session_ended", &json!({ "reason": reason.as_str() }), None, false);
        for entry in self.sockets.values() {
            let h = &entry.handle;
            if h.vsn != Vsn::Plain {
                send(h, Outgoing::ChannelGone(entry.join_ref.clone()));
                send(h, frame(encode_lifecycle(h.vsn, &entry.join_ref, &self.topic, "phx_close"), false));
            }
            match (reason, h.vsn) {
                (EndReason::Expired, _) => send(h, Outgoing::Close(1008, "token expired")),
                (_, Vsn::Plain) => send(h, Outgoing::Close(1000, "session ended")),
                _ => {}
            }
        }
        self.sockets.clear();
        self.per_vsn = [0; 3];
        self.stop_soon(ctx);
    }

    /// Stops after a short linger, so joins already queued get a proper refusal (`session_ended`,
    /// `unavailable`) rather than a closed mailbox.
    fn stop_soon(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(LINGER, |_, ctx| ctx.stop());
    }

    // ------------------------------------------------------------ timers

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Live {
            return;
        }
        let now = Utc::now();
        let inactivity = self.inactivity();
        let expires_at = self.session.as_ref().map(|s| s.expires_at);
        if expires_at.is_some_and(|at| now >= at) {
            self.end(EndReason::Expired, true, ctx);
            return;
        }
        if now >= self.last_activity + inactivity {
            self.check_inactivity(ctx);
            return;
        }
        self.remove_idle_members(now, inactivity, ctx);
        self.flush_seen(ctx);
        self.tend_presence();
        if self.sockets.is_empty() && self.empty_since.is_some_and(|t| t.elapsed() >= EMPTY_GRACE) {
            ctx.stop();
        }
    }

    /// Locally the session looks quiet; another replica may have seen someone, so ask the store.
    fn check_inactivity(&mut self, ctx: &mut Context<Self>) {
        if self.checking_inactivity {
            return;
        }
        self.checking_inactivity = true;
        let (id, deps) = (self.id, self.deps.clone());
        let ask = async move { deps.store.last_activity(id).await };
        ctx.spawn(ask.into_actor(self).map(|result, act, ctx| {
            act.guard(ctx, (), |act, ctx| {
                act.checking_inactivity = false;
                if let Ok(Some(at)) = result {
                    act.last_activity = act.last_activity.max(at);
                }
                if act.phase == Phase::Live && Utc::now() >= act.last_activity + act.inactivity() {
                    act.end(EndReason::Inactive, true, ctx);
                }
            })
        }));
    }

    /// Removes participants not seen for the inactivity limit. Locally quiet is not enough: another
    /// replica may hold their socket, so the store's last-seen times (which every replica writes)
    /// decide, and a store that cannot answer removes nobody.
    fn remove_idle_members(&mut self, now: DateTime<Utc>, inactivity: chrono::Duration, ctx: &mut Context<Self>) {
        let idle: Vec<ParticipantId> = self
            .members
            .values()
            .filter(|m| !m.removing && m.sockets == 0 && now >= m.participant.last_seen_at + inactivity)
            .map(|m| m.participant.id)
            .collect();
        if idle.is_empty() {
            return;
        }
        for user in &idle {
            if let Some(m) = self.members.get_mut(user) {
                m.removing = true;
            }
        }
        let (id, deps, cutoff) = (self.id, self.deps.clone(), now - inactivity);
        let work = async move {
            let mut removed = Vec::new();
            let mut kept = Vec::new();
            let seen = match deps.store.last_seen(id).await {
                Ok(seen) => seen,
                Err(e) => {
                    store_error::<()>(&deps.metrics, &e);
                    return (removed, idle.into_iter().map(|u| (u, None)).collect());
                }
            };
            for user in idle {
                if let Some(at) = seen.get(&user).filter(|at| **at > cutoff) {
                    kept.push((user, Some(*at)));
                    continue;
                }
                let removal = move |c: &mut db::DbConnection| {
                    db::participants::remove(c, id, user, LeaveReason::Inactive, Utc::now())
                };
                match deps.db.run(removal).await {
                    Ok(recorded) => removed.push((user, recorded)),
                    Err(e) => {
                        log::warn!("could not remove idle participant: {e}");
                        kept.push((user, None));
                    }
                }
            }
            (removed, kept)
        };
        ctx.spawn(work.into_actor(self).map(|(removed, kept), act, ctx| {
            act.guard(ctx, (), |act, _| {
                for (user, seen) in kept {
                    if let Some(m) = act.members.get_mut(&user) {
                        m.removing = false;
                        if let Some(at) = seen {
                            m.participant.last_seen_at = m.participant.last_seen_at.max(at);
                        }
                    }
                }
                for (user, recorded) in removed {
                    if recorded {
                        // Through the registry, which tells the other replicas, closes the
                        // participant's sockets that are in no channel, and tells this actor.
                        let left = ParticipantLeft { session: act.id, user, reason: LeaveReason::Inactive };
                        act.registry.do_send(left);
                    } else {
                        // Whoever recorded it tells everyone; this replica need not wait for it.
                        act.participant_left(user, LeaveReason::Inactive);
                    }
                }
            })
        }));
    }

    /// Forgets replicas not heard of lately, and repeats this replica's Presence now and then.
    fn tend_presence(&mut self) {
        let before = self.remote_presence.len();
        self.remote_presence.retain(|_, (heard, _)| heard.elapsed() < PRESENCE_EXPIRY);
        if self.remote_presence.len() != before {
            self.sync_presence(None);
        }
        let online_here = self.members.values().any(|m| m.presence.is_some());
        if online_here && self.last_presence_publish.elapsed() >= PRESENCE_HEARTBEAT {
            self.publish_presence();
        }
    }

    // ------------------------------------------------------------ other replicas

    fn remote(&mut self, origin: Arc<str>, event: ClusterEvent, ctx: &mut Context<Self>) {
        match event {
            ClusterEvent::Location { view } => {
                if self.phase != Phase::Live {
                    return;
                }
                let Ok(user) = view.user_id.parse::<ParticipantId>() else {
                    return;
                };
                let delivered = self.broadcast("location_update", &view, None, true);
                self.deps.metrics.deliveries_out.inc_by(delivered);
                self.locations.insert(user, (view, Instant::now() + self.deps.limits.location_ttl));
                let now = Utc::now();
                self.last_activity = self.last_activity.max(now);
                if let Some(m) = self.members.get_mut(&user) {
                    m.participant.last_seen_at = m.participant.last_seen_at.max(now);
                }
            }
            ClusterEvent::Joined { user_id, display_name, avatar_color, joined_at } => {
                let parsed = (
                    user_id.parse::<ParticipantId>(),
                    crate::domain::DisplayName::parse(&display_name),
                    crate::domain::AvatarColor::parse(&avatar_color),
                    DateTime::parse_from_rfc3339(&joined_at),
                );
                if let (Ok(id), Ok(display_name), Ok(avatar_color), Ok(at)) = parsed {
                    let at = at.with_timezone(&Utc);
                    self.participant_joined(Participant {
                        id,
                        session_id: self.id,
                        display_name,
                        avatar_color,
                        joined_at: at,
                        last_seen_at: at,
                        removed_at: None,
                    });
                }
            }
            ClusterEvent::Left { user_id, reason } => {
                let reason = match reason.as_str() {
                    "left" => LeaveReason::Left,
                    "inactive" => LeaveReason::Inactive,
                    _ => LeaveReason::Removed,
                };
                if let Ok(user) = user_id.parse() {
                    self.participant_left(user, reason);
                }
            }
            ClusterEvent::Ended { reason } => self.end(EndReason::from_stored(&reason), false, ctx),
            ClusterEvent::Presence { online } => {
                // A replica new to this session (its actor just started) learns who is here at once.
                let newcomer = self.remote_presence.insert(origin, (Instant::now(), online)).is_none();
                self.sync_presence(None);
                if newcomer && self.members.values().any(|m| m.presence.is_some()) {
                    self.publish_presence();
                }
            }
        }
    }

    fn flush_seen(&mut self, ctx: &mut Context<Self>) {
        if !self.unstored_seen.is_empty() {
            let seen: Vec<_> = self.unstored_seen.drain().collect();
            let (id, deps) = (self.id, self.deps.clone());
            ctx.spawn(
                async move {
                    if let Err(e) = deps.store.mark_seen(id, seen).await {
                        store_error::<()>(&deps.metrics, &e);
                    }
                }
                .into_actor(self),
            );
        }
        if self.last_sql_flush.elapsed() >= SQL_FLUSH {
            self.save_seen();
        }
    }

    /// Writes last-seen times and the session's activity to SQL, for REST and the cleanup sweep.
    fn save_seen(&mut self) {
        self.last_sql_flush = Instant::now();
        if self.unsaved_seen.is_empty() {
            return;
        }
        let seen: Vec<_> = self.unsaved_seen.drain().collect();
        let (id, deps, activity) = (self.id, self.deps.clone(), self.last_activity);
        actix::spawn(async move {
            let saved = deps.db.run(move |conn| db::participants::save_seen(conn, id, &seen, activity)).await;
            if let Err(e) = saved {
                log::warn!("could not save last-seen times of session {id}: {e}");
            }
        });
    }
}

/// Queues an item for a socket (the push wakes it).
fn send(handle: &SocketHandle, item: Outgoing) {
    handle.outbox.push(item);
}

fn frame(text: ByteString, droppable: bool) -> Outgoing {
    Outgoing::Frame { text, droppable }
}

fn store_error<T: Default>(metrics: &Metrics, e: &crate::store::StoreError) -> T {
    log::warn!("{e}");
    metrics.store_errors.inc();
    T::default()
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps.metrics.sessions_live.inc();
        self.load(ctx);
        ctx.run_interval(TICK, |act, ctx| act.guard(ctx, (), |act, ctx| act.tick(ctx)));
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

impl Handler<Connect> for SessionActor {
    type Result = ResponseActFuture<Self, Result<(), JoinRefusal>>;

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
            s.end_reason(now, self.inactivity())
        });
        if let Some(reason) = over {
            if reason == EndReason::Expired {
                self.end(reason, true, ctx);
                return Box::pin(fut::ready(Err(JoinRefusal::SessionEnded)));
            }
        }
        if self.members.contains_key(&msg.socket.participant) {
            let result = self.guard(ctx, Err(JoinRefusal::Unavailable), |act, _| act.admit(msg));
            return Box::pin(fut::ready(result));
        }
        // Joined on another replica, or just now: ask the database before refusing.
        let (user, id) = (msg.socket.participant, self.id);
        let db = self.deps.db.clone();
        let lookup = async move { db.run(move |conn| db::participants::find(conn, user)).await };
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

impl Handler<ParticipantJoined> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ParticipantJoined, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| act.participant_joined(msg.participant));
    }
}

impl Handler<ParticipantLeft> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ParticipantLeft, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| act.participant_left(msg.user, msg.reason));
    }
}

impl Handler<SessionEnded> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, ctx| act.end(msg.reason, false, ctx));
    }
}

impl Handler<Crash> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, _| panic!("crash requested for session {}", act.id));
    }
}

impl Handler<RemoteEvent> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteEvent, ctx: &mut Context<Self>) {
        self.guard(ctx, (), |act, ctx| act.remote(msg.origin, msg.event, ctx));
    }
}

//! The session registry: the supervisor of session actors, and the router to them.
//!
//! Like an OTP one-for-one supervisor it starts a session's actor on demand, restarts it when it
//! crashes (at most [`MAX_RESTARTS`] in [`RESTART_WINDOW`], then it waits for the next join), and
//! forgets it when it stops. Session actors are spread over one arbiter (thread) per core.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::cluster::ClusterEvent;
use super::messages::*;
use super::session::{SessionActor, SessionDeps};
use crate::abuse::Limit;
use crate::domain::{ParticipantId, SessionId};
use crate::store::StoreResult;
use crate::telemetry::Chain;

/// Crashes of one session tolerated within [`RESTART_WINDOW`] before it is no longer restarted eagerly.
pub const MAX_RESTARTS: usize = 3;
/// See [`MAX_RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(5);

/// Maps live session ids to their actors; one per process.
pub struct SessionRegistry {
    sessions: HashMap<SessionId, Addr<SessionActor>>,
    /// Every socket of this process by participant, joined to a channel or not.
    sockets: HashMap<ParticipantId, HashMap<SocketId, Recipient<Kick>>>,
    crashes: HashMap<SessionId, VecDeque<Instant>>,
    deps: Arc<SessionDeps>,
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
}

impl SessionRegistry {
    /// A registry whose session actors run on `threads` arbiters.
    pub fn new(deps: Arc<SessionDeps>, threads: usize) -> Self {
        let arbiters = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        Self {
            sessions: HashMap::new(),
            sockets: HashMap::new(),
            crashes: HashMap::new(),
            deps,
            arbiters,
            next_arbiter: 0,
        }
    }

    /// The session's actor, started if need be: on `near` (the arbiter of the socket that asks,
    /// so a session and its first sockets share a thread and fan-out needs no thread hop), else
    /// on the next of the registry's own arbiters.
    fn session(&mut self, id: SessionId, near: Option<ArbiterHandle>, ctx: &mut Context<Self>) -> Addr<SessionActor> {
        if let Some(addr) = self.sessions.get(&id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let (deps, me) = (self.deps.clone(), ctx.address());
        let arbiter = near.or_else(|| {
            self.next_arbiter = (self.next_arbiter + 1) % self.arbiters.len().max(1);
            self.arbiters.get(self.next_arbiter).map(Arbiter::handle)
        });
        let addr = match arbiter {
            Some(arbiter) => SessionActor::start_in_arbiter(&arbiter, move |_| SessionActor::new(id, deps, me)),
            None => SessionActor::new(id, deps, me).start(),
        };
        self.sessions.insert(id, addr.clone());
        addr
    }

    /// Closes the participant's sockets that are in no channel (the session actor closes the others).
    fn kick(&self, user: ParticipantId) {
        for socket in self.sockets.get(&user).into_iter().flat_map(HashMap::values) {
            socket.do_send(Kick::Left);
        }
    }

    fn restart_allowed(&mut self, id: SessionId) -> bool {
        let now = Instant::now();
        let recent = self.crashes.entry(id).or_default();
        recent.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        recent.push_back(now);
        recent.len() <= MAX_RESTARTS
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;
}

impl Handler<Ping> for SessionRegistry {
    type Result = RegistryStats;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> RegistryStats {
        RegistryStats {
            sessions_live: self.sessions.len(),
            sockets: usize::try_from(self.deps.metrics.sockets.get()).unwrap_or(0),
        }
    }
}

impl Handler<JoinSession> for SessionRegistry {
    type Result = ResponseActFuture<Self, Result<JoinedChannel, JoinRefusal>>;

    fn handle(&mut self, msg: JoinSession, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.session(msg.session, Some(msg.arbiter.clone()), ctx);
        let connect = addr.send(Connect { socket: msg.socket.clone(), reply: msg.reply.clone() });
        Box::pin(connect.into_actor(self).then(move |result, act, ctx| -> JoinFuture {
            match result {
                Ok(Ok(admitted)) => Box::pin(fut::ready(Ok(JoinedChannel { session: addr, admitted }))),
                Ok(Err(refusal)) => Box::pin(fut::ready(Err(refusal))),
                // The actor stopped (a crash) before its stop reached us: start a fresh one, once.
                Err(_) => {
                    if act.sessions.get(&msg.session) == Some(&addr) {
                        act.sessions.remove(&msg.session);
                    }
                    let fresh = act.session(msg.session, Some(msg.arbiter), ctx);
                    let connect = fresh.send(Connect { socket: msg.socket, reply: msg.reply });
                    let retried = async move {
                        match connect.await {
                            Ok(Ok(admitted)) => Ok(JoinedChannel { session: fresh, admitted }),
                            Ok(Err(refusal)) => Err(refusal),
                            Err(_) => Err(JoinRefusal::Unavailable),
                        }
                    };
                    Box::pin(retried.into_actor(act))
                }
            }
        }))
    }
}

/// The registry's answer to a join, in the making.
type JoinFuture = std::pin::Pin<Box<dyn ActorFuture<SessionRegistry, Output = Result<JoinedChannel, JoinRefusal>>>>;

impl Handler<SessionEvent> for SessionRegistry {
    type Result = ();

    /// Tells the other replicas, then the session's actor here; with no actor here, the store
    /// still forgets at once what the event ends.
    fn handle(&mut self, event: SessionEvent, _: &mut Context<Self>) {
        let session = event.session();
        self.deps.bus.publish(session, &ClusterEvent::from(&event));
        if let SessionEvent::ParticipantLeft { user, .. } = &event {
            self.kick(*user);
        }
        if let Some(addr) = self.sessions.get(&session) {
            return addr.do_send(event);
        }
        let deps = self.deps.clone();
        match event {
            SessionEvent::ParticipantJoined { .. } => {}
            SessionEvent::ParticipantLeft { user, .. } => {
                in_background(async move { deps.store.forget_participant(session, user).await });
            }
            SessionEvent::SessionEnded { .. } => in_background(async move { deps.store.forget_session(session).await }),
            // Arrivals are kept per destination in the store, so a new or cleared one leaves
            // nothing to delete; the lock and the name live in SQL only.
            SessionEvent::DestinationSet { .. }
            | SessionEvent::DestinationCleared { .. }
            | SessionEvent::SessionUpdated { .. } => {}
        }
    }
}

/// Runs a store write in the background; a failure is only logged (what it writes expires anyway).
fn in_background(write: impl std::future::Future<Output = StoreResult<()>> + 'static) {
    actix::spawn(async move {
        if let Err(e) = write.await {
            log::warn!("{}", Chain(&e));
        }
    });
}

impl Handler<SessionStopped> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionStopped, ctx: &mut Context<Self>) {
        if self.sessions.get(&msg.session) == Some(&msg.actor) {
            self.sessions.remove(&msg.session);
        }
        if msg.crashed {
            self.deps.metrics.session_restarts.inc();
            if self.restart_allowed(msg.session) {
                log::warn!("restarting the actor of session {}", msg.session);
                self.session(msg.session, None, ctx);
            } else {
                log::error!("session {} keeps crashing; it restarts on the next join", msg.session);
            }
        } else {
            self.crashes.remove(&msg.session);
        }
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Handler<Crash> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Crash, _: &mut Context<Self>) {
        if let Some(addr) = self.sessions.get(&msg.session) {
            addr.do_send(msg);
        }
    }
}

impl Handler<RemoteEvent> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: RemoteEvent, _: &mut Context<Self>) {
        if let ClusterEvent::Left { user_id, .. } = &msg.event {
            self.kick(*user_id);
        }
        // Only replicas with sockets in the session have its actor (and its subscription).
        if let Some(addr) = self.sessions.get(&msg.session) {
            addr.do_send(msg);
        }
    }
}

impl Handler<SocketOpened> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SocketOpened, _: &mut Context<Self>) {
        let sockets = self.sockets.entry(msg.participant).or_default();
        sockets.insert(msg.socket, msg.kick);
        let cap = self.deps.limits.max_sockets_per_participant as usize;
        // Ids grow with time, so the smallest is the oldest: a phone that reconnects without
        // closing its old sockets always gets in, and its stale sockets go.
        if cap > 0 && sockets.len() > cap {
            if let Some(oldest) = sockets.keys().min().copied() {
                if let Some(kick) = sockets.remove(&oldest) {
                    kick.do_send(Kick::TooManySockets);
                    self.deps.metrics.limit_refusals.with_label_values(&[Limit::SocketsPerParticipant.label()]).inc();
                }
            }
        }
    }
}

impl Handler<SocketClosed> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SocketClosed, _: &mut Context<Self>) {
        if let Some(sockets) = self.sockets.get_mut(&msg.participant) {
            sockets.remove(&msg.socket);
            if sockets.is_empty() {
                self.sockets.remove(&msg.participant);
            }
        }
    }
}

impl Handler<Seen> for SessionRegistry {
    type Result = ();

    /// A socket in no channel was seen: its session's actor hears of it if there is one here,
    /// and the store in any case otherwise.
    fn handle(&mut self, msg: Seen, _: &mut Context<Self>) {
        match self.sessions.get(&msg.session) {
            Some(addr) => addr.do_send(msg),
            None => {
                let deps = self.deps.clone();
                in_background(async move { deps.store.mark_seen(msg.session, vec![(msg.participant, msg.at)]).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fixture::{drain, location_view, receive, socket, Fixture, Got};
    use super::super::protocol::Vsn;
    use super::*;
    use crate::domain::EndReason;

    #[actix_web::test]
    async fn a_crashed_session_is_restarted_and_its_sockets_told_to_rejoin() {
        let f = Fixture::new().await;
        let sid = f.session().await;
        let ana = f.participant(sid, "Ana").await;
        let a = socket(1, ana.id, Vsn::V2);
        let first = f.join(sid, &a, "1").await.unwrap_or_else(|r| panic!("{r:?}"));
        drain(&a);
        f.registry.do_send(Crash { session: sid });
        let got = receive(&a, 2).await;
        assert_eq!(got[0], Got::ChannelGone(serde_json::json!("1")));
        assert_eq!(got[1].event(), Some("phx_error"));
        for _ in 0..100 {
            if f.metrics.session_restarts.get() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(f.metrics.session_restarts.get(), 1);
        // phoenix.js rejoins: the fresh actor serves it, with the state reloaded.
        let second = f.join(sid, &a, "2").await.unwrap_or_else(|r| panic!("{r:?}"));
        assert_ne!(first, second);
        assert_eq!(receive(&a, 1).await[0].payload()["status"], "ok");
        assert_eq!(f.registry.send(Ping).await.map(|s| s.sessions_live).ok(), Some(1));
    }

    #[actix_web::test]
    async fn restarts_are_limited_like_an_otp_supervisor() {
        let f = Fixture::new().await;
        let mut registry = SessionRegistry::new(f.deps.clone(), 1);
        let sid = SessionId::new();
        let allowed: Vec<bool> = (0..=MAX_RESTARTS).map(|_| registry.restart_allowed(sid)).collect();
        assert_eq!(allowed, vec![true, true, true, false], "{MAX_RESTARTS} restarts in {RESTART_WINDOW:?}");
        assert!(registry.restart_allowed(SessionId::new()), "another session is not affected");
    }

    #[actix_web::test]
    async fn an_event_with_no_actor_here_still_clears_the_store() {
        let f = Fixture::new().await;
        let sid = f.session().await;
        let ana = f.participant(sid, "Ana").await;
        f.store.put_locations(sid, vec![(ana.id, location_view(ana.id, 1.0))]).await.unwrap_or_else(|e| panic!("{e}"));
        f.registry.do_send(SessionEvent::SessionEnded { session: sid, reason: EndReason::Inactive });
        let mut left = 1;
        for _ in 0..100 {
            left = f.store.locations(sid).await.map(|l| l.len()).unwrap_or(1);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 0, "an ended session's positions go at once");
        assert_eq!(f.registry.send(Ping).await.map(|s| s.sessions_live).ok(), Some(0), "no actor was started");
    }
}

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
use crate::domain::{ParticipantId, SessionId};

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
            socket.do_send(Kick);
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
    type Result = ResponseActFuture<Self, Result<Addr<SessionActor>, JoinRefusal>>;

    fn handle(&mut self, msg: JoinSession, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.session(msg.session, Some(msg.arbiter.clone()), ctx);
        let connect = addr.send(Connect { socket: msg.socket.clone(), reply: msg.reply.clone() });
        Box::pin(connect.into_actor(self).then(move |result, act, ctx| -> JoinFuture {
            match result {
                Ok(Ok(())) => Box::pin(fut::ready(Ok(addr))),
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
                            Ok(Ok(())) => Ok(fresh),
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
type JoinFuture =
    std::pin::Pin<Box<dyn ActorFuture<SessionRegistry, Output = Result<Addr<SessionActor>, JoinRefusal>>>>;

impl Handler<ParticipantJoined> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ParticipantJoined, _: &mut Context<Self>) {
        let p = &msg.participant;
        self.deps.bus.publish(
            msg.session,
            &ClusterEvent::Joined {
                user_id: p.id.to_string(),
                display_name: p.display_name.as_str().to_owned(),
                avatar_color: p.avatar_color.as_str().to_owned(),
                joined_at: crate::views::rfc3339(&p.joined_at),
            },
        );
        if let Some(addr) = self.sessions.get(&msg.session) {
            addr.do_send(msg);
        }
    }
}

impl Handler<ParticipantLeft> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ParticipantLeft, _: &mut Context<Self>) {
        let left = ClusterEvent::Left { user_id: msg.user.to_string(), reason: msg.reason.as_str().to_owned() };
        self.deps.bus.publish(msg.session, &left);
        self.kick(msg.user);
        match self.sessions.get(&msg.session) {
            Some(addr) => addr.do_send(msg),
            // No actor here: still drop the position at once.
            None => {
                let deps = self.deps.clone();
                actix::spawn(async move {
                    if let Err(e) = deps.store.forget_participant(msg.session, msg.user).await {
                        log::warn!("{e}");
                    }
                });
            }
        }
    }
}

impl Handler<SessionEnded> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _: &mut Context<Self>) {
        self.deps.bus.publish(msg.session, &ClusterEvent::Ended { reason: msg.reason.as_str().to_owned() });
        match self.sessions.get(&msg.session) {
            Some(addr) => addr.do_send(msg),
            None => {
                let deps = self.deps.clone();
                actix::spawn(async move {
                    if let Err(e) = deps.store.forget_session(msg.session).await {
                        log::warn!("{e}");
                    }
                });
            }
        }
    }
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
            if let Ok(user) = user_id.parse() {
                self.kick(user);
            }
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
        self.sockets.entry(msg.participant).or_default().insert(msg.socket, msg.kick);
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
                actix::spawn(async move {
                    if let Err(e) = deps.store.mark_seen(msg.session, vec![(msg.participant, msg.at)]).await {
                        log::warn!("{e}");
                    }
                });
            }
        }
    }
}

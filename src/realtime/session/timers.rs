//! A session actor's clock: every [`TICK`] it checks the session's deadlines (so
//! `session_ended` arrives within a second of `expires_at` or of the inactivity limit), removes
//! participants not seen for the inactivity limit, writes what is pending, tends Presence, and
//! stops once it has had no socket for [`EMPTY_GRACE`].

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::persistence::store_error;
use super::{Phase, SessionActor};
use crate::db;
use crate::domain::{EndReason, LeaveReason, ParticipantId};
use crate::sessions::SessionEvent;
use crate::telemetry::Chain;

/// How often timers are checked: sessions end within this of their deadline.
pub const TICK: Duration = Duration::from_millis(500);
/// How long an actor with no socket lingers before it stops.
pub const EMPTY_GRACE: Duration = Duration::from_secs(30);

impl SessionActor {
    /// One turn of the clock.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Live {
            return;
        }
        let now = Utc::now();
        let inactivity = self.deps.limits.inactivity();
        if self.session.as_ref().is_some_and(|s| now >= s.expires_at) {
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
        self.advisor.tend(&self.sockets, &self.presence.viewers(), &self.topic, &self.deps.limits);
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
                if act.phase == Phase::Live && Utc::now() >= act.last_activity + act.deps.limits.inactivity() {
                    act.end(EndReason::Inactive, true, ctx);
                }
            })
        }));
    }

    /// Removes participants not seen for the inactivity limit. Locally quiet is not enough: another
    /// replica may hold their socket, so the store's last-seen times (which every replica writes)
    /// decide, and a store that cannot answer removes nobody.
    fn remove_idle_members(&mut self, now: DateTime<Utc>, inactivity: chrono::Duration, ctx: &mut Context<Self>) {
        let presence = &self.presence;
        let idle: Vec<ParticipantId> = self
            .members
            .values()
            .filter(|m| {
                !m.removing && !presence.is_here(m.participant.id) && now >= m.participant.last_seen_at + inactivity
            })
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
                        log::warn!("could not remove idle participant: {}", Chain(&e));
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
                    let reason = LeaveReason::Inactive;
                    if recorded {
                        // Through the registry, which tells the other replicas, closes the
                        // participant's sockets that are in no channel, and tells this actor.
                        act.registry.do_send(SessionEvent::ParticipantLeft { session: act.id, user, reason });
                    } else {
                        // Whoever recorded it tells everyone; this replica need not wait for it.
                        act.participant_left(user, reason);
                    }
                }
            })
        }));
    }

    /// Forgets replicas not heard of lately, and repeats this replica's Presence now and then.
    fn tend_presence(&mut self) {
        let now = Instant::now();
        if self.presence.expire(now) {
            self.sync_presence(None);
        }
        if self.presence.announce_due(now) {
            self.publish_presence();
        }
    }
}

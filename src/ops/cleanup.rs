//! The cleanup sweep, every `CLEANUP_INTERVAL_SECONDS`: it ends sessions that no live actor
//! ended (expired or quiet, with no socket anywhere), removes participants not seen for the
//! inactivity limit, and purges sessions ended more than `ENDED_RETENTION_SECONDS` ago.
//! Every replica runs it; the conditional updates record each end and removal exactly once, and
//! only the replica whose update took effect broadcasts it.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use crate::db::{self, Db};
use crate::domain::LeaveReason;
use crate::realtime::messages::{ParticipantLeft, SessionEnded};
use crate::realtime::SessionRegistry;
use crate::store::Store;

/// Rows handled per sweep and kind, so one sweep stays short.
const BATCH: i64 = 500;

/// The sweeping actor.
pub struct CleanupWorker {
    db: Db,
    store: Store,
    registry: Addr<SessionRegistry>,
    interval: Duration,
    inactivity: chrono::Duration,
    retention: chrono::Duration,
    running: bool,
}

impl CleanupWorker {
    /// A worker sweeping every `interval`.
    pub fn new(
        db: Db,
        store: Store,
        registry: Addr<SessionRegistry>,
        interval: Duration,
        inactivity: Duration,
        retention: Duration,
    ) -> Self {
        let chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Self {
            db,
            store,
            registry,
            interval,
            inactivity: chrono(inactivity),
            retention: chrono(retention),
            running: false,
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let sweep = sweep(self.db.clone(), self.store.clone(), self.registry.clone(), self.inactivity, self.retention);
        ctx.spawn(sweep.into_actor(self).map(|result, act, _| {
            act.running = false;
            match result {
                Ok(report) if report != Report::default() => log::info!("cleanup: {report:?}"),
                Ok(_) => {}
                Err(e) => log::warn!("cleanup sweep failed: {e}"),
            }
        }));
    }
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sessions ended.
    pub ended: usize,
    /// Participants removed as inactive.
    pub removed: usize,
    /// Sessions purged.
    pub purged: usize,
}

/// One sweep.
pub async fn sweep(
    db: Db,
    store: Store,
    registry: Addr<SessionRegistry>,
    inactivity: chrono::Duration,
    retention: chrono::Duration,
) -> Result<Report, db::DbError> {
    let mut report = Report::default();
    let now = Utc::now();

    for mut session in db.run(move |c| db::sessions::due_to_end(c, now, inactivity, BATCH)).await? {
        // SQL's activity lags by up to a flush; the ephemeral store has the latest.
        if let Ok(Some(at)) = store.last_activity(session.id).await {
            session.last_activity_at = session.last_activity_at.max(at);
        }
        let Some(reason) = session.end_reason(now, inactivity) else {
            continue;
        };
        let id = session.id;
        if db.run(move |c| db::sessions::mark_ended(c, id, reason, now)).await? {
            report.ended += 1;
            registry.do_send(SessionEnded { session: id, reason });
        }
    }

    let before = now - inactivity;
    for (session, user) in db.run(move |c| db::participants::idle(c, before, BATCH)).await? {
        let fresher = store.last_seen(session).await.ok().and_then(|m| m.get(&user).copied());
        if fresher.is_some_and(|at| at > before) {
            continue;
        }
        if db.run(move |c| db::participants::remove(c, session, user, LeaveReason::Inactive, now)).await? {
            report.removed += 1;
            registry.do_send(ParticipantLeft { session, user, reason: LeaveReason::Inactive });
        }
    }

    let purge_before = now - retention;
    report.purged = db.run(move |c| db::sessions::purge_ended(c, purge_before)).await?;
    Ok(report)
}

impl Actor for CleanupWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A first sweep soon after start catches what happened while no replica ran.
        ctx.run_later(Duration::from_secs(5), |act, ctx| act.sweep(ctx));
        ctx.run_interval(self.interval, |act, ctx| act.sweep(ctx));
    }
}

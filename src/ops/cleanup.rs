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
        // Recorded as ending when its clock said so, not when the sweep noticed: retention and
        // purging count from the real end.
        let (id, at) = (session.id, session.ends_at(inactivity).min(now));
        if db.run(move |c| db::sessions::mark_ended(c, id, reason, at)).await? {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{Duration, Utc};

    use super::*;
    use crate::config::{DatabaseUrl, Limits};
    use crate::domain::{AvatarColor, DisplayName, EndReason, Participant, ParticipantId, Session, SessionId};
    use crate::ops::metrics::Metrics;
    use crate::realtime::cluster::ClusterBus;
    use crate::realtime::session::SessionDeps;
    use crate::store::memory::MemoryStore;

    fn session(created: chrono::DateTime<Utc>, lifetime: Duration, active: chrono::DateTime<Utc>) -> Session {
        Session {
            id: SessionId::new(),
            name: None,
            created_at: created,
            expires_at: created + lifetime,
            last_activity_at: active,
            ended: None,
            participant_count: 0,
        }
    }

    fn participant(session: SessionId, seen: chrono::DateTime<Utc>) -> Participant {
        Participant {
            id: ParticipantId::new(),
            session_id: session,
            display_name: DisplayName::from_trusted("P".into()),
            avatar_color: AvatarColor::random(),
            joined_at: seen,
            last_seen_at: seen,
            removed_at: None,
        }
    }

    #[actix_web::test]
    async fn ends_removes_and_purges_each_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = DatabaseUrl::Sqlite(dir.path().join("c.sqlite3").display().to_string());
        let db = Db::connect(&url, 2).unwrap_or_else(|e| panic!("{e}"));
        db.migrate().unwrap_or_else(|e| panic!("{e}"));
        let store: Store = Arc::new(MemoryStore::new(std::time::Duration::from_secs(30)));
        let deps = Arc::new(SessionDeps {
            db: db.clone(),
            store: store.clone(),
            limits: Limits::default(),
            metrics: Arc::new(Metrics::new()),
            bus: ClusterBus::disabled(),
        });
        let registry = SessionRegistry::new(deps, 1).start();
        let (hour, now) = (Duration::hours(1), Utc::now());

        let expired = session(now - Duration::minutes(30), Duration::minutes(10), now - Duration::minutes(25));
        let quiet = session(now - Duration::hours(3), Duration::hours(20), now - Duration::hours(2));
        let busy = session(now - Duration::hours(3), Duration::hours(20), now - Duration::hours(2));
        let live = session(now, Duration::hours(20), now);
        let old = session(now - Duration::days(3), Duration::hours(1), now - Duration::days(3));
        let idle = participant(live.id, now - Duration::hours(2));
        let seen_elsewhere = participant(live.id, now - Duration::hours(2));
        let fresh = participant(live.id, now);
        let rows = [expired.clone(), quiet.clone(), busy.clone(), live.clone(), old.clone()];
        let people = [idle.clone(), seen_elsewhere.clone(), fresh.clone()];
        db.run(move |c| {
            for s in &rows {
                db::sessions::insert(c, s)?;
            }
            for p in &people {
                db::participants::join(c, p, Utc::now(), 50, Duration::hours(1))?;
            }
            db::participants::save_seen(c, people[0].session_id, &[], Utc::now())?;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // Joining made the live session active now; put the two idle participants back two hours.
        let (idle_id, elsewhere_id, sid) = (idle.id, seen_elsewhere.id, live.id);
        db.run(move |c| {
            use crate::db::schema::participants::dsl;
            use diesel::prelude::*;
            diesel::update(dsl::participants.filter(dsl::id.eq_any([idle_id.to_string(), elsewhere_id.to_string()])))
                .set(dsl::last_seen_at.eq((Utc::now() - Duration::hours(2)).naive_utc()))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // Another replica saw one of them, and the busy session, a minute ago: the store knows.
        store.mark_seen(sid, vec![(elsewhere_id, now - Duration::minutes(1))]).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .mark_seen(busy.id, vec![(ParticipantId::new(), now - Duration::minutes(1))])
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let report = sweep(db.clone(), store.clone(), registry.clone(), hour, Duration::days(1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report, Report { ended: 3, removed: 1, purged: 1 });

        let (e, q, b, o) = (expired.id, quiet.id, busy.id, old.id);
        let found = db
            .run(move |c| {
                Ok((
                    db::sessions::find(c, e)?,
                    db::sessions::find(c, q)?,
                    db::sessions::find(c, b)?,
                    db::sessions::find(c, o)?,
                    db::participants::list_live(c, sid)?,
                ))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.0.and_then(|s| s.ended).map(|(_, r)| r), Some(EndReason::Expired));
        assert_eq!(found.1.and_then(|s| s.ended).map(|(_, r)| r), Some(EndReason::Inactive));
        assert_eq!(found.2.map(|s| s.ended), Some(None), "busy elsewhere: not ended");
        assert!(found.3.is_none(), "expired days ago, ended now, purged at once: its end counts from its expiry");
        let mut left: Vec<ParticipantId> = found.4.iter().map(|p| p.id).collect();
        left.sort();
        let mut expected = vec![seen_elsewhere.id, fresh.id];
        expected.sort();
        assert_eq!(left, expected, "only the idle participant was removed");

        // A second sweep finds nothing left to do: each end and removal happened once.
        let again = sweep(db, store, registry, hour, Duration::days(1)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, Report::default());
    }
}

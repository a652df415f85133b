//! The cleanup sweep: it ends sessions that no live actor ended (expired or quiet, with no
//! socket anywhere), removes participants not seen for the inactivity limit, and purges sessions
//! ended more than `ENDED_RETENTION_SECONDS` ago. Every replica runs it (`ops::cleanup` says
//! when); the conditional updates record each end and removal exactly once, and only the replica
//! whose update took effect announces it.

use chrono::Utc;

use super::{SessionEvent, Sessions};
use crate::db::{self, DbError};
use crate::domain::LeaveReason;

/// Rows handled per sweep and kind, so one sweep stays short.
const BATCH: i64 = 500;

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

impl Sessions {
    /// One sweep over the whole database.
    pub async fn sweep(&self) -> Result<Report, DbError> {
        let mut report = Report::default();
        let now = Utc::now();
        let inactivity = self.limits.inactivity();

        for mut session in self.db.run(move |c| db::sessions::due_to_end(c, now, inactivity, BATCH)).await? {
            // SQL's activity lags by up to a flush; the ephemeral store has the latest.
            if let Ok(Some(at)) = self.store.last_activity(session.id).await {
                session.last_activity_at = session.last_activity_at.max(at);
            }
            let Some(reason) = session.end_reason(now, inactivity) else {
                continue;
            };
            // Recorded as ending when its clock said so, not when the sweep noticed: retention and
            // purging count from the real end.
            let (id, at) = (session.id, session.ends_at(inactivity).min(now));
            if self.db.run(move |c| db::sessions::mark_ended(c, id, reason, at)).await? {
                report.ended += 1;
                self.announce(SessionEvent::SessionEnded { session: id, reason });
            }
        }

        let before = now - inactivity;
        for (session, user) in self.db.run(move |c| db::participants::idle(c, before, BATCH)).await? {
            let fresher = self.store.last_seen(session).await.ok().and_then(|m| m.get(&user).copied());
            if fresher.is_some_and(|at| at > before) {
                continue;
            }
            let reason = LeaveReason::Inactive;
            if self.db.run(move |c| db::participants::remove(c, session, user, reason, now)).await? {
                report.removed += 1;
                self.announce(SessionEvent::ParticipantLeft { session, user, reason });
            }
        }

        let purge_before = now - self.limits.retention();
        report.purged = self.db.run(move |c| db::sessions::purge_ended(c, purge_before)).await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{Duration, Utc};

    use actix::prelude::*;

    use super::*;
    use crate::auth::Tokens;
    use crate::config::{DatabaseUrl, Limits};
    use crate::db::Db;
    use crate::domain::{AvatarColor, DisplayName, EndReason, Participant, ParticipantId, Session, SessionId};
    use crate::sessions::SessionEvent;
    use crate::store::memory::MemoryStore;
    use crate::store::Store;

    /// Stands in for the registry: keeps what the sweep announced.
    #[derive(Default)]
    struct Announced(Vec<SessionEvent>);

    impl Actor for Announced {
        type Context = Context<Self>;
    }

    impl Handler<SessionEvent> for Announced {
        type Result = ();

        fn handle(&mut self, event: SessionEvent, _: &mut Context<Self>) {
            self.0.push(event);
        }
    }

    /// Hands over what was announced so far (the mailbox is in order, so everything sent before).
    #[derive(Message)]
    #[rtype(result = "Vec<SessionEvent>")]
    struct Take;

    impl Handler<Take> for Announced {
        type Result = MessageResult<Take>;

        fn handle(&mut self, _: Take, _: &mut Context<Self>) -> Self::Result {
            MessageResult(std::mem::take(&mut self.0))
        }
    }

    fn session(created: chrono::DateTime<Utc>, lifetime: Duration, active: chrono::DateTime<Utc>) -> Session {
        Session {
            id: SessionId::new(),
            name: None,
            created_at: created,
            expires_at: created + lifetime,
            last_activity_at: active,
            ended: None,
            participant_count: 0,
            locked: false,
            e2e: false,
            destination: None,
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
        let announced = Announced::default().start();
        let limits = Arc::new(Limits::default());
        let tokens = Tokens::new(b"sweep-test-secret");
        let sessions = Sessions::new(db.clone(), store.clone(), limits, tokens, announced.clone().recipient());
        let now = Utc::now();

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

        let report = sessions.sweep().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report, Report { ended: 3, removed: 1, purged: 1 });
        let mut events = announced.send(Take).await.unwrap_or_default();
        events.sort_by_key(|e| e.session().to_string());
        let mut expected = vec![
            SessionEvent::SessionEnded { session: expired.id, reason: EndReason::Expired },
            SessionEvent::SessionEnded { session: quiet.id, reason: EndReason::Inactive },
            SessionEvent::SessionEnded { session: old.id, reason: EndReason::Expired },
            SessionEvent::ParticipantLeft { session: live.id, user: idle.id, reason: LeaveReason::Inactive },
        ];
        expected.sort_by_key(|e| e.session().to_string());
        assert_eq!(events, expected, "each end and removal is announced once");

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
        let again = sessions.sweep().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, Report::default());
        assert_eq!(announced.send(Take).await.unwrap_or_default(), vec![], "nothing announced twice");
    }
}

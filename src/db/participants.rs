//! Queries on `participants`, and the atomic join that enforces the participant cap.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};

use super::schema::{participants::dsl, sessions};
use super::sessions::corrupt;
use super::{utc, DbConnection, DbError};
use crate::domain::{AvatarColor, DisplayName, LeaveReason, Participant, ParticipantId, SessionId};

#[derive(Queryable, Selectable)]
#[diesel(table_name = super::schema::participants)]
struct ParticipantRow {
    id: String,
    session_id: String,
    display_name: String,
    avatar_color: String,
    joined_at: NaiveDateTime,
    last_seen_at: NaiveDateTime,
    removed_at: Option<NaiveDateTime>,
}

impl ParticipantRow {
    fn into_domain(self) -> Result<Participant, DbError> {
        Ok(Participant {
            id: self.id.parse().map_err(|_| corrupt("participants.id"))?,
            session_id: self.session_id.parse().map_err(|_| corrupt("participants.session_id"))?,
            display_name: DisplayName::from_trusted(self.display_name),
            avatar_color: AvatarColor::from_trusted(self.avatar_color),
            joined_at: utc(self.joined_at),
            last_seen_at: utc(self.last_seen_at),
            removed_at: self.removed_at.map(utc),
        })
    }
}

/// What became of a join.
#[derive(Debug, PartialEq)]
pub enum JoinOutcome {
    /// The participant was stored and holds a slot.
    Joined,
    /// No such session.
    SessionNotFound,
    /// The session is over.
    SessionEnded,
    /// The session already has its maximum of participants.
    SessionFull,
    /// The session is locked (SPEC §9).
    SessionLocked,
}

/// Stores `participant` if its session is live and has a free slot, atomically even under
/// concurrent joins from several processes.
///
/// The slot is taken by one conditional `UPDATE … SET participant_count = participant_count + 1
/// WHERE participant_count < max`: PostgreSQL re-checks the condition after waiting on the row
/// lock, and SQLite's single writer serialises it. The write comes first in the transaction so
/// SQLite never has to upgrade a read snapshot (which fails instead of waiting).
pub fn join(
    conn: &mut DbConnection,
    participant: &Participant,
    now: DateTime<Utc>,
    max: u32,
    inactivity: Duration,
) -> Result<JoinOutcome, DbError> {
    let sid = participant.session_id.to_string();
    let max = i32::try_from(max).unwrap_or(i32::MAX);
    let now_naive = now.naive_utc();
    let active_since = (now - inactivity).naive_utc();
    let took_slot = conn.transaction::<bool, DbError, _>(|c| {
        let updated = diesel::update(
            sessions::table
                .find(&sid)
                .filter(sessions::ended_at.is_null())
                .filter(sessions::expires_at.gt(now_naive))
                .filter(sessions::last_activity_at.gt(active_since))
                .filter(sessions::locked.eq(false))
                .filter(sessions::participant_count.lt(max)),
        )
        .set((
            sessions::participant_count.eq(sessions::participant_count + 1),
            sessions::last_activity_at.eq(now_naive),
        ))
        .execute(c)?;
        if updated == 0 {
            return Ok(false);
        }
        diesel::insert_into(dsl::participants)
            .values((
                dsl::id.eq(participant.id.to_string()),
                dsl::session_id.eq(&sid),
                dsl::display_name.eq(participant.display_name.as_str()),
                dsl::avatar_color.eq(participant.avatar_color.as_str()),
                dsl::joined_at.eq(participant.joined_at.naive_utc()),
                dsl::last_seen_at.eq(participant.last_seen_at.naive_utc()),
            ))
            .execute(c)?;
        Ok(true)
    })?;
    if took_slot {
        return Ok(JoinOutcome::Joined);
    }
    // Tell apart why the slot was refused, from the session as it is now.
    Ok(match super::sessions::find(conn, participant.session_id)? {
        None => JoinOutcome::SessionNotFound,
        Some(s) if s.end_reason(now, inactivity).is_some() => JoinOutcome::SessionEnded,
        Some(s) if s.locked => JoinOutcome::SessionLocked,
        Some(_) => JoinOutcome::SessionFull,
    })
}

/// The participant with this id, removed or not.
pub fn find(conn: &mut DbConnection, id: ParticipantId) -> Result<Option<Participant>, DbError> {
    dsl::participants
        .find(id.to_string())
        .select(ParticipantRow::as_select())
        .first(conn)
        .optional()?
        .map(ParticipantRow::into_domain)
        .transpose()
}

/// The session's non-removed participants, in joining order.
pub fn list_live(conn: &mut DbConnection, session: SessionId) -> Result<Vec<Participant>, DbError> {
    dsl::participants
        .filter(dsl::session_id.eq(session.to_string()))
        .filter(dsl::removed_at.is_null())
        .order((dsl::joined_at.asc(), dsl::id.asc()))
        .select(ParticipantRow::as_select())
        .load(conn)?
        .into_iter()
        .map(ParticipantRow::into_domain)
        .collect()
}

/// Marks a live participant of `session` removed and frees its slot; false if there was none.
pub fn remove(
    conn: &mut DbConnection,
    session: SessionId,
    id: ParticipantId,
    reason: LeaveReason,
    at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let sid = session.to_string();
    conn.transaction::<bool, DbError, _>(|c| {
        let updated = diesel::update(
            dsl::participants.find(id.to_string()).filter(dsl::session_id.eq(&sid)).filter(dsl::removed_at.is_null()),
        )
        .set((dsl::removed_at.eq(at.naive_utc()), dsl::removed_reason.eq(reason.as_str())))
        .execute(c)?;
        if updated == 0 {
            return Ok(false);
        }
        diesel::update(sessions::table.find(&sid))
            .set(sessions::participant_count.eq(sessions::participant_count - 1))
            .execute(c)?;
        Ok(true)
    })
}

/// Moves participants' `last_seen_at` and the session's `last_activity_at` forward (never back).
///
/// Two statements however many participants were seen, so that the periodic flush's SQL load
/// grows with sessions, not with people: one for the session, one `UPDATE … CASE` for all of them.
pub fn save_seen(
    conn: &mut DbConnection,
    session: SessionId,
    seen: &[(ParticipantId, DateTime<Utc>)],
    activity: DateTime<Utc>,
) -> Result<(), DbError> {
    conn.transaction::<(), DbError, _>(|c| {
        super::sessions::touch_activity(c, session, activity)?;
        if seen.is_empty() {
            return Ok(());
        }
        let seen: Vec<(String, NaiveDateTime)> = seen.iter().map(|(u, at)| (u.to_string(), at.naive_utc())).collect();
        let session = session.to_string();
        match c {
            DbConnection::Postgres(pg) => {
                let mut n = 0;
                let sql = seen_sql(seen.len(), &mut || {
                    n += 1;
                    format!("${n}")
                });
                bind_seen(diesel::sql_query(sql).into_boxed(), &seen, &session).execute(pg)?;
            }
            DbConnection::Sqlite(lite) => {
                let sql = seen_sql(seen.len(), &mut || "?".to_owned());
                bind_seen(diesel::sql_query(sql).into_boxed(), &seen, &session).execute(lite)?;
            }
        }
        Ok(())
    })
}

/// Binds [`seen_sql`]'s values in its order: each participant's id and time (twice), the
/// session, then the ids again for the `IN` list.
fn bind_seen<'a, DB>(
    mut q: diesel::query_builder::BoxedSqlQuery<'a, DB, diesel::query_builder::SqlQuery>,
    seen: &'a [(String, NaiveDateTime)],
    session: &'a str,
) -> diesel::query_builder::BoxedSqlQuery<'a, DB, diesel::query_builder::SqlQuery>
where
    DB: diesel::backend::Backend + diesel::sql_types::HasSqlType<Text> + diesel::sql_types::HasSqlType<Timestamp>,
    &'a String: diesel::serialize::ToSql<Text, DB>,
    &'a str: diesel::serialize::ToSql<Text, DB>,
    &'a NaiveDateTime: diesel::serialize::ToSql<Timestamp, DB>,
{
    for (user, at) in seen {
        q = q.bind::<Text, _>(user).bind::<Timestamp, _>(at).bind::<Timestamp, _>(at);
    }
    q = q.bind::<Text, _>(session);
    for (user, _) in seen {
        q = q.bind::<Text, _>(user);
    }
    q
}

/// `UPDATE participants SET last_seen_at = CASE WHEN id = ? AND last_seen_at < ? THEN ? … ELSE
/// last_seen_at END WHERE session_id = ? AND id IN (?, …)` for `count` participants, with the
/// dialect's placeholders.
fn seen_sql(count: usize, placeholder: &mut dyn FnMut() -> String) -> String {
    let mut sql = String::from("UPDATE participants SET last_seen_at = CASE");
    for _ in 0..count {
        let (id, before, at) = (placeholder(), placeholder(), placeholder());
        sql.push_str(&format!(" WHEN id = {id} AND last_seen_at < {before} THEN {at}"));
    }
    sql.push_str(&format!(" ELSE last_seen_at END WHERE session_id = {}", placeholder()));
    // Only the rows of those seen: the others are not rewritten (in PostgreSQL, no dead tuples).
    let ids: Vec<String> = (0..count).map(|_| placeholder()).collect();
    sql.push_str(&format!(" AND id IN ({})", ids.join(", ")));
    sql
}

/// Participants of live sessions not seen since `before`: `(session, participant)`.
pub fn idle(
    conn: &mut DbConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(SessionId, ParticipantId)>, DbError> {
    let rows: Vec<(String, String)> = dsl::participants
        .inner_join(sessions::table)
        .filter(dsl::removed_at.is_null())
        .filter(sessions::ended_at.is_null())
        .filter(dsl::last_seen_at.le(before.naive_utc()))
        .select((dsl::session_id, dsl::id))
        .limit(limit)
        .load(conn)?;
    rows.into_iter()
        .map(|(s, p)| {
            Ok((
                s.parse().map_err(|_| corrupt("participants.session_id"))?,
                p.parse().map_err(|_| corrupt("participants.id"))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::super::Db;
    use super::*;
    use crate::config::DatabaseUrl;
    use crate::realtime::fixture::Fixture;

    /// The fixture's SQLite, or PostgreSQL when `TEST_DATABASE_URL` names one: the statement is
    /// written per dialect, so both are tried.
    fn database(fixture: &Fixture) -> (Db, bool) {
        match std::env::var("TEST_DATABASE_URL").ok().and_then(|u| DatabaseUrl::parse(&u).ok()) {
            Some(url) => {
                let db = Db::connect(&url, 1).unwrap_or_else(|e| panic!("{e}"));
                db.migrate().unwrap_or_else(|e| panic!("{e}"));
                (db, true)
            }
            None => (fixture.db.clone(), false),
        }
    }

    #[actix_rt::test]
    async fn seen_times_move_forward_only_and_only_for_those_seen() {
        let f = Fixture::new().await;
        let (db, elsewhere) = database(&f);
        let sid = f.session().await;
        let (ana, bo, cy) =
            (f.participant(sid, "Ana").await, f.participant(sid, "Bo").await, f.participant(sid, "Cy").await);
        let copy = |p: &Participant| (p.id, p.last_seen_at);
        let (ana, bo, cy) = (copy(&ana), copy(&bo), copy(&cy));
        if elsewhere {
            // PostgreSQL: the fixture wrote to SQLite, so the rows are made here again.
            let session = f.db.run(move |c| crate::db::sessions::find(c, sid)).await.ok().flatten();
            let people = f.db.run(move |c| list_live(c, sid)).await.unwrap_or_default();
            db.run(move |c| {
                if let Some(s) = &session {
                    crate::db::sessions::insert(c, s)?;
                }
                for p in &people {
                    join(c, p, Utc::now(), 50, Duration::hours(1))?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let later = ana.1 + Duration::minutes(5);
        let earlier = bo.1 - Duration::minutes(5);
        let seen = vec![(ana.0, later), (bo.0, earlier)];
        db.run(move |c| save_seen(c, sid, &seen, later)).await.unwrap_or_else(|e| panic!("{e}"));
        // To the second: PostgreSQL keeps microseconds, and the moves are minutes.
        let now: std::collections::HashMap<ParticipantId, i64> = db
            .run(move |c| list_live(c, sid))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|p| (p.id, p.last_seen_at.timestamp()))
            .collect();
        assert_eq!(now.get(&ana.0), Some(&later.timestamp()), "moved forward");
        assert_eq!(now.get(&bo.0), Some(&bo.1.timestamp()), "never back");
        assert_eq!(now.get(&cy.0), Some(&cy.1.timestamp()), "not seen, not touched");
        db.run(move |c| save_seen(c, sid, &[], later)).await.unwrap_or_else(|e| panic!("{e}"));
    }
}

//! Queries on `sessions`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::sessions::dsl;
use super::{utc, DbConnection, DbError};
use crate::domain::{EndReason, Session, SessionId};

#[derive(Queryable, Selectable)]
#[diesel(table_name = super::schema::sessions)]
struct SessionRow {
    id: String,
    name: Option<String>,
    created_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    last_activity_at: NaiveDateTime,
    ended_at: Option<NaiveDateTime>,
    end_reason: Option<String>,
    participant_count: i32,
}

impl SessionRow {
    fn into_domain(self) -> Result<Session, DbError> {
        Ok(Session {
            id: self.id.parse().map_err(|_| corrupt("sessions.id"))?,
            name: self.name,
            created_at: utc(self.created_at),
            expires_at: utc(self.expires_at),
            last_activity_at: utc(self.last_activity_at),
            ended: match self.ended_at {
                None => None,
                Some(at) => {
                    let reason = self.end_reason.as_deref().unwrap_or_default();
                    Some((utc(at), reason.parse().map_err(|_| corrupt("sessions.end_reason"))?))
                }
            },
            participant_count: u32::try_from(self.participant_count).unwrap_or(0),
        })
    }
}

pub(super) fn corrupt(what: &str) -> DbError {
    DbError::Query(diesel::result::Error::DeserializationError(format!("malformed {what}").into()))
}

/// Stores a new session.
pub fn insert(conn: &mut DbConnection, session: &Session) -> Result<(), DbError> {
    diesel::insert_into(dsl::sessions)
        .values((
            dsl::id.eq(session.id.to_string()),
            dsl::name.eq(session.name.as_deref()),
            dsl::created_at.eq(session.created_at.naive_utc()),
            dsl::expires_at.eq(session.expires_at.naive_utc()),
            dsl::last_activity_at.eq(session.last_activity_at.naive_utc()),
            dsl::participant_count.eq(0),
        ))
        .execute(conn)?;
    Ok(())
}

/// The session with this id, ended or not, until it is purged.
pub fn find(conn: &mut DbConnection, id: SessionId) -> Result<Option<Session>, DbError> {
    dsl::sessions
        .find(id.to_string())
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?
        .map(SessionRow::into_domain)
        .transpose()
}

/// Records the end of a live session; false when it was already recorded as ended (or is gone).
pub fn mark_ended(
    conn: &mut DbConnection,
    id: SessionId,
    reason: EndReason,
    at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let updated = diesel::update(dsl::sessions.find(id.to_string()).filter(dsl::ended_at.is_null()))
        .set((dsl::ended_at.eq(at.naive_utc()), dsl::end_reason.eq(reason.as_str())))
        .execute(conn)?;
    Ok(updated == 1)
}

/// Live sessions past their expiry or their recorded inactivity limit at `now`.
pub fn due_to_end(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    inactivity: chrono::Duration,
    limit: i64,
) -> Result<Vec<Session>, DbError> {
    let now_naive = now.naive_utc();
    let quiet_since = (now - inactivity).naive_utc();
    dsl::sessions
        .filter(dsl::ended_at.is_null())
        .filter(dsl::expires_at.le(now_naive).or(dsl::last_activity_at.le(quiet_since)))
        .order(dsl::expires_at.asc())
        .limit(limit)
        .select(SessionRow::as_select())
        .load(conn)?
        .into_iter()
        .map(SessionRow::into_domain)
        .collect()
}

/// Deletes sessions (and, by cascade, their participants) that ended before `before`, including
/// ones that expired before then without the end being recorded. Returns how many went.
pub fn purge_ended(conn: &mut DbConnection, before: DateTime<Utc>) -> Result<usize, DbError> {
    let before = before.naive_utc();
    let ids: Vec<String> = dsl::sessions
        .filter(dsl::ended_at.le(before).or(dsl::ended_at.is_null().and(dsl::expires_at.le(before))))
        .select(dsl::id)
        .limit(1000)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    conn.transaction::<usize, DbError, _>(|c| {
        // SQLite enforces the cascade only with foreign_keys on; delete children explicitly anyway.
        diesel::delete(super::schema::participants::table.filter(super::schema::participants::session_id.eq_any(&ids)))
            .execute(c)?;
        Ok(diesel::delete(dsl::sessions.filter(dsl::id.eq_any(&ids))).execute(c)?)
    })
}

/// Moves the session's `last_activity_at` forward to `at` (never back).
pub fn touch_activity(conn: &mut DbConnection, id: SessionId, at: DateTime<Utc>) -> Result<(), DbError> {
    let at = at.naive_utc();
    diesel::update(dsl::sessions.find(id.to_string()).filter(dsl::last_activity_at.lt(at)))
        .set(dsl::last_activity_at.eq(at))
        .execute(conn)?;
    Ok(())
}

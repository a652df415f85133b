//! Queries on `sessions`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::sessions::dsl;
use super::{utc, DbConnection, DbError};
use crate::domain::{Destination, EndReason, Place, Sealed, Session, SessionId};

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
    locked: bool,
    destination_lat: Option<f64>,
    destination_lng: Option<f64>,
    destination_radius_m: Option<f64>,
    destination_label: Option<String>,
    destination_set_at: Option<NaiveDateTime>,
    e2e: bool,
    destination_sealed: Option<String>,
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
            locked: self.locked,
            e2e: self.e2e,
            destination: match (
                self.destination_lat,
                self.destination_lng,
                self.destination_radius_m,
                self.destination_sealed,
                self.destination_set_at,
            ) {
                (Some(lat), Some(lng), Some(radius_m), None, Some(set_at)) if !self.e2e => {
                    let label = self.destination_label;
                    Some(Destination::Place(Place { lat, lng, radius_m, label, set_at: utc(set_at) }))
                }
                (None, None, None, Some(sealed), Some(set_at)) if self.e2e => Some(Destination::Sealed {
                    sealed: Sealed::parse(&sealed).map_err(|_| corrupt("sessions.destination_sealed"))?,
                    set_at: utc(set_at),
                }),
                (None, None, None, None, None) => None,
                _ => return Err(corrupt("sessions.destination_*")),
            },
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
            dsl::locked.eq(session.locked),
            dsl::e2e.eq(session.e2e),
        ))
        .execute(conn)?;
    if let Some(d) = &session.destination {
        set_destination(conn, session.id, Some(d))?;
    }
    Ok(())
}

/// Sets or clears a live session's destination; false when the session is gone or ended.
pub fn set_destination(
    conn: &mut DbConnection,
    id: SessionId,
    destination: Option<&Destination>,
) -> Result<bool, DbError> {
    let place = destination.and_then(Destination::place);
    let sealed = match destination {
        Some(Destination::Sealed { sealed, .. }) => Some(sealed.as_str()),
        _ => None,
    };
    let updated = diesel::update(dsl::sessions.find(id.to_string()).filter(dsl::ended_at.is_null()))
        .set((
            dsl::destination_lat.eq(place.map(|d| d.lat)),
            dsl::destination_lng.eq(place.map(|d| d.lng)),
            dsl::destination_radius_m.eq(place.map(|d| d.radius_m)),
            dsl::destination_label.eq(place.and_then(|d| d.label.as_deref())),
            dsl::destination_sealed.eq(sealed),
            dsl::destination_set_at.eq(destination.map(|d| d.set_at().naive_utc())),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// What `PATCH /api/sessions/{id}` changes: each field only when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Lock or unlock.
    pub locked: Option<bool>,
    /// A new title, or `Some(None)` to clear it.
    pub name: Option<Option<String>>,
}

/// Applies `changes` to a live session; false when the session is gone or ended.
pub fn update(conn: &mut DbConnection, id: SessionId, changes: &Changes) -> Result<bool, DbError> {
    let live = dsl::sessions.find(id.to_string()).filter(dsl::ended_at.is_null());
    let updated = match (changes.locked, &changes.name) {
        (Some(locked), Some(name)) => {
            diesel::update(live).set((dsl::locked.eq(locked), dsl::name.eq(name.as_deref()))).execute(conn)?
        }
        (Some(locked), None) => diesel::update(live).set(dsl::locked.eq(locked)).execute(conn)?,
        (None, Some(name)) => diesel::update(live).set(dsl::name.eq(name.as_deref())).execute(conn)?,
        // Nothing to change: whether the session is live is still the answer.
        (None, None) => live.count().get_result::<i64>(conn)? as usize,
    };
    Ok(updated == 1)
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

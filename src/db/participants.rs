//! Queries on `participants`, and the atomic join that enforces the participant cap.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

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
pub fn save_seen(
    conn: &mut DbConnection,
    session: SessionId,
    seen: &[(ParticipantId, DateTime<Utc>)],
    activity: DateTime<Utc>,
) -> Result<(), DbError> {
    conn.transaction::<(), DbError, _>(|c| {
        super::sessions::touch_activity(c, session, activity)?;
        for (user, at) in seen {
            let at = at.naive_utc();
            diesel::update(dsl::participants.find(user.to_string()).filter(dsl::last_seen_at.lt(at)))
                .set(dsl::last_seen_at.eq(at))
                .execute(c)?;
        }
        Ok(())
    })
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

//! Who is in a session: joining (the atomic cap), the list, leaving and being removed.

use chrono::Utc;

use super::lifecycle::activity_in_doubt;
use super::{now, SessionEvent, Sessions, SessionsError};
use crate::auth::{Claims, Role};
use crate::db::{self, participants::JoinOutcome, Step};
use crate::domain::{AvatarColor, DisplayName, LeaveReason, Participant, ParticipantId, SessionId, HIDDEN};
use crate::telemetry::Chain;

/// What a joining participant gives, already checked.
#[derive(Debug, Clone)]
pub struct NewParticipant {
    /// The name others see.
    pub display_name: DisplayName,
    /// The marker colour.
    pub avatar_color: AvatarColor,
}

/// A participant just joined, and its token for the socket and for leaving (which `Debug` hides).
#[derive(Clone)]
pub struct Joined {
    /// The stored participant.
    pub participant: Participant,
    /// Its token, for opening sockets and for leaving.
    pub websocket_token: String,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined").field("participant", &self.participant).field("websocket_token", &HIDDEN).finish()
    }
}

/// A listed participant and whether it counts as active now.
#[derive(Debug, Clone)]
pub struct ParticipantStatus {
    /// The participant, with its latest last-seen time.
    pub participant: Participant,
    /// Seen within `PARTICIPANT_IDLE_SECONDS` and its session live.
    pub is_active: bool,
}

impl Sessions {
    /// Joins a session, taking one of its slots atomically; everyone gets `participant_joined`.
    pub async fn join(&self, sid: SessionId, new: NewParticipant) -> Result<Joined, SessionsError> {
        let now = now();
        let participant = Participant {
            id: ParticipantId::new(),
            session_id: sid,
            display_name: new.display_name,
            avatar_color: new.avatar_color,
            // Not truncated to the second: the list is ordered by it, and joins within one second
            // would otherwise come out in the order of their random ids.
            joined_at: Utc::now(),
            last_seen_at: now,
            removed_at: None,
        };
        let (max, inactivity) = (self.limits.max_participants, self.limits.inactivity());
        let join = {
            let participant = participant.clone();
            move |conn: &mut db::DbConnection| db::participants::join(conn, &participant, now, max, inactivity)
        };
        // One trip to the database: the session is read and joined together, unless its activity
        // must first be taken from the store (the join itself re-checks the session's state).
        let (found, outcome) = self
            .db
            .run(move |conn| {
                let found = db::sessions::find(conn, sid)?;
                let ready = found.as_ref().is_some_and(|s| !activity_in_doubt(s, now, inactivity));
                Ok((found, Step::run_if(ready, conn, join)?))
            })
            .await?;
        let session = self.settle(found, now).await?;
        match outcome.finish(&self.db).await? {
            JoinOutcome::Joined => {}
            JoinOutcome::SessionNotFound => return Err(SessionsError::NotFound("session not found")),
            JoinOutcome::SessionEnded => return Err(SessionsError::SessionEnded),
            JoinOutcome::SessionFull => return Err(SessionsError::SessionFull),
            JoinOutcome::SessionLocked => return Err(SessionsError::Forbidden("session is locked")),
        }
        let websocket_token = self.tokens.issue(&Claims::participant(participant.id, &session, now))?;
        self.announce(SessionEvent::ParticipantJoined { participant: participant.clone() });
        Ok(Joined { participant, websocket_token })
    }

    /// The session's participants in joining order (removed ones are not listed).
    pub async fn participants(&self, sid: SessionId) -> Result<Vec<ParticipantStatus>, SessionsError> {
        let now = Utc::now();
        let session = self.load(sid, now).await?;
        let live = self.is_active(&session, now);
        let mut participants = self.db.run(move |conn| db::participants::list_live(conn, sid)).await?;
        // SQL's last_seen lags behind socket activity; the ephemeral store has the latest.
        match self.store.last_seen(sid).await {
            Ok(seen) => {
                for p in &mut participants {
                    if let Some(at) = seen.get(&p.id) {
                        p.last_seen_at = p.last_seen_at.max(*at);
                    }
                }
            }
            Err(e) => log::warn!("{}", Chain(&e)),
        }
        let idle = self.limits.idle();
        Ok(participants
            .into_iter()
            .map(|p| ParticipantStatus { is_active: p.is_active(now, idle, live), participant: p })
            .collect())
    }

    /// Removes a participant: with its own token it leaves (`left`), with the creator's it is
    /// removed (`removed`); everyone gets `participant_left` and its sockets close.
    pub async fn remove(&self, claims: &Claims, sid: SessionId, uid: ParticipantId) -> Result<(), SessionsError> {
        let reason = match claims.role {
            _ if claims.sid != sid => return Err(SessionsError::Forbidden("token belongs to another session")),
            Role::Creator => LeaveReason::Removed,
            Role::Participant if claims.participant_id() == Some(uid) => LeaveReason::Left,
            Role::Participant => return Err(SessionsError::Forbidden("participants can only remove themselves")),
        };
        let now = now();
        let inactivity = self.limits.inactivity();
        let left = reason == LeaveReason::Left;
        let remove = move |conn: &mut db::DbConnection| db::participants::remove(conn, sid, uid, reason, now);
        // One trip to the database when nothing below can refuse the removal; otherwise the
        // checks come first and the removal takes a second trip.
        let (me, found, removed) = self
            .db
            .run(move |conn| {
                let me = if left { db::participants::find(conn, uid)? } else { None };
                let found = db::sessions::find(conn, sid)?;
                let clear = (!left || me.as_ref().is_some_and(|p| p.removed_at.is_none()))
                    && found.as_ref().is_some_and(|s| {
                        !activity_in_doubt(s, now, inactivity) && s.end_reason(now, inactivity).is_none()
                    });
                Ok((me, found, Step::run_if(clear, conn, remove)?))
            })
            .await?;
        // A participant's token dies with its membership.
        if left && me.is_none_or(|p| p.removed_at.is_some()) {
            return Err(SessionsError::Revoked("token no longer valid: participant has left"));
        }
        let session = self.settle(found, now).await?;
        if session.end_reason(now, inactivity).is_some() {
            return Err(SessionsError::SessionEnded);
        }
        if !removed.finish(&self.db).await? {
            return Err(SessionsError::NotFound("participant not found"));
        }
        self.announce(SessionEvent::ParticipantLeft { session: sid, user: uid, reason });
        Ok(())
    }
}

//! A session's life: created, loaded (and settled: is it over by its clock?), ended by its creator.

use chrono::{DateTime, Utc};

use super::{now, SessionEvent, Sessions, SessionsError};
use crate::auth::{Claims, Role};
use crate::db;
use crate::domain::{DestinationDraft, EndReason, ExpiresInMinutes, Session, SessionId, SessionName, HIDDEN};
use crate::telemetry::Chain;

/// What a new session is made of, already checked.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// Its optional title.
    pub name: Option<SessionName>,
    /// How long it lasts.
    pub expires_in: ExpiresInMinutes,
    /// Where everyone is heading, if the creator says at once (sealed when `e2e`).
    pub destination: Option<DestinationDraft>,
    /// Whether positions and the destination are sealed (SPEC §10).
    pub e2e: bool,
}

/// A session just created, and its creator's token (which `Debug` hides).
#[derive(Clone)]
pub struct Created {
    /// The stored session.
    pub session: Session,
    /// The token that ends it and removes participants.
    pub creator_token: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created").field("session", &self.session).field("creator_token", &HIDDEN).finish()
    }
}

/// Whether SQL's last activity of the session must be checked against the ephemeral store
/// before it is believed: it lags behind the sockets by up to a flush, so a session SQL calls
/// inactive may not be.
pub(super) fn activity_in_doubt(session: &Session, now: DateTime<Utc>, inactivity: chrono::Duration) -> bool {
    session.ended.is_none() && now >= session.last_activity_at + inactivity && now < session.expires_at
}

impl Sessions {
    /// Stores a new session and signs its creator's token.
    pub async fn create(&self, new: NewSession) -> Result<Created, SessionsError> {
        let now = now();
        let session = Session {
            id: SessionId::new(),
            name: new.name.map(SessionName::into_string),
            created_at: now,
            expires_at: now + new.expires_in.duration(),
            last_activity_at: now,
            ended: None,
            participant_count: 0,
            locked: false,
            e2e: new.e2e,
            destination: new.destination.map(|d| d.set_at(now)),
        };
        let creator_token = self.tokens.issue(&Claims::creator(&session, now))?;
        let stored = session.clone();
        self.db.run(move |conn| db::sessions::insert(conn, &stored)).await?;
        Ok(Created { session, creator_token })
    }

    /// A session that has not been purged (nor passed its retention) at `now`; else 404.
    pub async fn load(&self, id: SessionId, now: DateTime<Utc>) -> Result<Session, SessionsError> {
        let found = self.db.run(move |conn| db::sessions::find(conn, id)).await?;
        self.settle(found, now).await
    }

    /// Whether the session is live at `now` (the API's `is_active`).
    pub fn is_active(&self, session: &Session, now: DateTime<Utc>) -> bool {
        session.is_active(now, self.limits.inactivity())
    }

    /// Makes a session just read from SQL fit to act on: a missing or purged one is 404, and
    /// when its activity is in doubt, the store's is taken and written back so joins see it too.
    pub(super) async fn settle(&self, found: Option<Session>, now: DateTime<Utc>) -> Result<Session, SessionsError> {
        let mut session = found.ok_or(SessionsError::NotFound("session not found"))?;
        let inactivity = self.limits.inactivity();
        if activity_in_doubt(&session, now, inactivity) {
            match self.store.last_activity(session.id).await {
                Ok(Some(at)) if at > session.last_activity_at => {
                    session.last_activity_at = at;
                    let id = session.id;
                    self.db.run(move |conn| db::sessions::touch_activity(conn, id, at)).await?;
                }
                Ok(_) => {}
                Err(e) => log::warn!("{}", Chain(&e)),
            }
        }
        // Past its retention an ended session is as good as purged, whether or not the sweep ran.
        if session.end_reason(now, inactivity).is_some() && session.ends_at(inactivity) + self.limits.retention() <= now
        {
            return Err(SessionsError::NotFound("session not found"));
        }
        Ok(session)
    }

    /// Loads a session its creator acts on: the claims must be this session's creator's, and the
    /// session live (else 410).
    pub(super) async fn load_for_creator(
        &self,
        claims: &Claims,
        id: SessionId,
        refusal: &'static str,
    ) -> Result<Session, SessionsError> {
        if claims.role != Role::Creator || claims.sid != id {
            return Err(SessionsError::Forbidden(refusal));
        }
        let now = now();
        let session = self.load(id, now).await?;
        if session.end_reason(now, self.limits.inactivity()).is_some() {
            return Err(SessionsError::SessionEnded);
        }
        Ok(session)
    }

    /// Ends a session with its creator's claims: everyone gets `session_ended`, channels close.
    pub async fn end(&self, claims: &Claims, id: SessionId) -> Result<(), SessionsError> {
        self.load_for_creator(claims, id, "only the session's creator can end it").await?;
        let now = now();
        let reason = EndReason::EndedByCreator;
        // Conditional, so whoever records an end first (this call, a timer, the sweep) wins.
        if !self.db.run(move |conn| db::sessions::mark_ended(conn, id, reason, now)).await? {
            return Err(SessionsError::SessionEnded);
        }
        self.announce(SessionEvent::SessionEnded { session: id, reason });
        Ok(())
    }
}

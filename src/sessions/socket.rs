//! What the WebSocket handshake checks before the upgrade: a live participant of a live session.

use chrono::{DateTime, Utc};

use super::{Sessions, SessionsError};
use crate::auth::{Claims, Role};
use crate::db;
use crate::domain::{ParticipantId, SessionId};

/// Leave to open a socket: who it speaks for, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketGrant {
    /// The participant of the token.
    pub participant: ParticipantId,
    /// The session it may join (the token's).
    pub session: SessionId,
    /// When the token expires (the socket closes then).
    pub expires_at: DateTime<Utc>,
}

impl Sessions {
    /// Checks a socket token's holder: only a participant still in a session that is not over
    /// opens a socket; everything else is 403 before the upgrade.
    pub async fn open_socket(&self, claims: &Claims) -> Result<SocketGrant, SessionsError> {
        let participant = match (claims.role, claims.participant_id()) {
            (Role::Participant, Some(p)) => p,
            _ => return Err(SessionsError::Forbidden("only participant tokens open sockets")),
        };
        let expires_at = claims.expires_at().ok_or(SessionsError::Forbidden("invalid token"))?;
        let sid = claims.sid;
        let (member, found) = self
            .db
            .run(move |conn| Ok((db::participants::find(conn, participant)?, db::sessions::find(conn, sid)?)))
            .await?;
        if !member.is_some_and(|p| p.session_id == sid && p.removed_at.is_none()) {
            return Err(SessionsError::Forbidden("participant is no longer in the session"));
        }
        // A token outlives nothing: an ended (or purged) session opens no sockets.
        let now = Utc::now();
        let session = self.settle(found, now).await.map_err(|e| match e {
            SessionsError::NotFound(_) => SessionsError::Forbidden("session has ended"),
            other => other,
        })?;
        if session.end_reason(now, self.limits.inactivity()).is_some() {
            return Err(SessionsError::Forbidden("session has ended"));
        }
        Ok(SocketGrant { participant, session: sid, expires_at })
    }
}

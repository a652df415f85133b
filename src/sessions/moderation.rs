//! What a creator changes in a live session: its destination (SPEC §7), its lock and its name (§9).

use super::{now, SessionEvent, Sessions, SessionsError};
use crate::auth::Claims;
use crate::db::{self, sessions::Changes};
use crate::domain::{Destination, DestinationDraft, Session, SessionId};

impl Sessions {
    /// Sets (or moves) the destination; everyone gets `destination_set` and arrivals start afresh.
    pub async fn set_destination(
        &self,
        claims: &Claims,
        id: SessionId,
        draft: DestinationDraft,
    ) -> Result<Destination, SessionsError> {
        self.load_for_creator(claims, id, "only the session's creator can set its destination").await?;
        let destination = draft.set_at(now());
        let stored = destination.clone();
        if !self.db.run(move |conn| db::sessions::set_destination(conn, id, Some(&stored))).await? {
            return Err(SessionsError::SessionEnded);
        }
        self.announce(SessionEvent::DestinationSet { session: id, destination: destination.clone() });
        Ok(destination)
    }

    /// Clears the destination (404 when none is set); everyone gets `destination_cleared`.
    pub async fn clear_destination(&self, claims: &Claims, id: SessionId) -> Result<(), SessionsError> {
        let session = self.load_for_creator(claims, id, "only the session's creator can clear its destination").await?;
        if session.destination.is_none() {
            return Err(SessionsError::NotFound("no destination is set"));
        }
        if !self.db.run(move |conn| db::sessions::set_destination(conn, id, None)).await? {
            return Err(SessionsError::SessionEnded);
        }
        self.announce(SessionEvent::DestinationCleared { session: id });
        Ok(())
    }

    /// Locks, unlocks or renames the session; everyone gets `session_updated`.
    pub async fn update(&self, claims: &Claims, id: SessionId, changes: Changes) -> Result<Session, SessionsError> {
        self.load_for_creator(claims, id, "only the session's creator can change it").await?;
        let applied = changes.clone();
        if !self.db.run(move |conn| db::sessions::update(conn, id, &applied)).await? {
            return Err(SessionsError::SessionEnded);
        }
        let session = self.load(id, now()).await?;
        self.announce(SessionEvent::SessionUpdated { session: id, name: session.name.clone(), locked: session.locked });
        Ok(session)
    }
}

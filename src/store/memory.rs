//! The in-memory store, for a single node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::{self, BoxFuture, FutureExt};

use super::{ArrivalMap, EphemeralStore, SeenMap, StoreError, StoreResult};
use crate::domain::{ParticipantId, PositionView, SessionId};

#[derive(Default)]
struct SessionState {
    locations: HashMap<ParticipantId, (PositionView, Instant)>,
    seen: SeenMap,
    activity: Option<DateTime<Utc>>,
    /// The arrivals at one destination (its epoch); another epoch starts afresh.
    arrivals: (u64, ArrivalMap),
}

impl SessionState {
    fn arrivals_at(&mut self, epoch: u64) -> &mut ArrivalMap {
        if self.arrivals.0 != epoch {
            self.arrivals = (epoch, ArrivalMap::new());
        }
        &mut self.arrivals.1
    }
}

/// Locations and last-seen times in a map; expired locations are never returned and are
/// pruned whenever their session is written.
pub struct MemoryStore {
    ttl: Duration,
    sessions: Mutex<HashMap<SessionId, SessionState>>,
}

impl MemoryStore {
    /// A store whose locations live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, sessions: Mutex::new(HashMap::new()) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<SessionId, SessionState>) -> T) -> StoreResult<T> {
        let mut guard = self.sessions.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&mut guard))
    }
}

impl EphemeralStore for MemoryStore {
    fn put_locations(
        &self,
        session: SessionId,
        batch: Vec<(ParticipantId, PositionView)>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let now = Instant::now();
        let expires = now + self.ttl;
        future::ready(self.with(|m| {
            let state = m.entry(session).or_default();
            state.locations.retain(|_, (_, exp)| *exp > now);
            for (user, view) in batch {
                state.locations.insert(user, (view, expires));
            }
        }))
        .boxed()
    }

    fn locations(&self, session: SessionId) -> BoxFuture<'_, StoreResult<Vec<PositionView>>> {
        let now = Instant::now();
        future::ready(self.with(|m| {
            m.get(&session)
                .map(|s| s.locations.values().filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone()).collect())
                .unwrap_or_default()
        }))
        .boxed()
    }

    fn forget_participant(&self, session: SessionId, user: ParticipantId) -> BoxFuture<'_, StoreResult<()>> {
        future::ready(self.with(|m| {
            if let Some(s) = m.get_mut(&session) {
                s.locations.remove(&user);
                s.seen.remove(&user);
            }
        }))
        .boxed()
    }

    fn forget_session(&self, session: SessionId) -> BoxFuture<'_, StoreResult<()>> {
        future::ready(self.with(|m| {
            m.remove(&session);
        }))
        .boxed()
    }

    fn mark_seen(
        &self,
        session: SessionId,
        seen: Vec<(ParticipantId, DateTime<Utc>)>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        future::ready(self.with(|m| {
            let state = m.entry(session).or_default();
            for (user, at) in seen {
                let entry = state.seen.entry(user).or_insert(at);
                *entry = (*entry).max(at);
                state.activity = Some(state.activity.map_or(at, |a| a.max(at)));
            }
        }))
        .boxed()
    }

    fn last_seen(&self, session: SessionId) -> BoxFuture<'_, StoreResult<SeenMap>> {
        future::ready(self.with(|m| m.get(&session).map(|s| s.seen.clone()).unwrap_or_default())).boxed()
    }

    fn last_activity(&self, session: SessionId) -> BoxFuture<'_, StoreResult<Option<DateTime<Utc>>>> {
        future::ready(self.with(|m| m.get(&session).and_then(|s| s.activity))).boxed()
    }

    fn claim_arrival(
        &self,
        session: SessionId,
        epoch: u64,
        user: ParticipantId,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        future::ready(self.with(|m| {
            let arrivals = m.entry(session).or_default().arrivals_at(epoch);
            let new = !arrivals.contains_key(&user);
            arrivals.entry(user).or_insert(at);
            new
        }))
        .boxed()
    }

    fn claim_departure(&self, session: SessionId, epoch: u64, user: ParticipantId) -> BoxFuture<'_, StoreResult<bool>> {
        future::ready(self.with(|m| m.get_mut(&session).is_some_and(|s| s.arrivals_at(epoch).remove(&user).is_some())))
            .boxed()
    }

    fn arrivals(&self, session: SessionId, epoch: u64) -> BoxFuture<'_, StoreResult<ArrivalMap>> {
        future::ready(self.with(|m| m.get_mut(&session).map(|s| s.arrivals_at(epoch).clone()).unwrap_or_default()))
            .boxed()
    }

    fn forget_arrivals(&self, session: SessionId, epoch: u64) -> BoxFuture<'_, StoreResult<()>> {
        future::ready(self.with(|m| {
            if let Some(s) = m.get_mut(&session).filter(|s| s.arrivals.0 == epoch) {
                s.arrivals.1.clear();
            }
        }))
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(user: ParticipantId) -> PositionView {
        PositionView::Clear(crate::domain::LocationView {
            user_id: user.to_string(),
            lat: 1.0,
            lng: 2.0,
            accuracy: None,
            heading: None,
            speed: None,
            timestamp: "2026-01-01T00:00:00Z".into(),
            distance_m: None,
            eta_s: None,
        })
    }

    #[actix_web::test]
    async fn locations_expire() {
        let store = MemoryStore::new(Duration::from_millis(50));
        let (s, u) = (SessionId::new(), ParticipantId::new());
        store.put_locations(s, vec![(u, view(u))]).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.locations(s).await.map(|v| v.len()).ok(), Some(1));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(store.locations(s).await.map(|v| v.len()).ok(), Some(0));
    }

    #[actix_web::test]
    async fn forget_and_seen() {
        let store = MemoryStore::new(Duration::from_secs(30));
        let (s, u) = (SessionId::new(), ParticipantId::new());
        let now = Utc::now();
        store.put_locations(s, vec![(u, view(u))]).await.unwrap_or_else(|e| panic!("{e}"));
        store.mark_seen(s, vec![(u, now)]).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.last_activity(s).await.ok().flatten(), Some(now));
        assert_eq!(store.last_seen(s).await.ok().and_then(|m| m.get(&u).copied()), Some(now));
        store.forget_participant(s, u).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.locations(s).await.map(|v| v.len()).ok(), Some(0));
        store.forget_session(s).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.last_activity(s).await.ok().flatten(), None);
    }
}

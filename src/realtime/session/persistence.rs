//! What a session actor reads from SQL and the ephemeral store, and what it writes back, when.
//!
//! - On start it loads the session, its participants, and from the store the fresh positions,
//!   last-seen times and last activity (another replica, or this actor's predecessor, wrote them).
//! - Positions go to the store in batches, one at a time so a participant's positions arrive in
//!   order, each batch waiting [`STORE_DELAY`] so that one write carries every update of that
//!   moment: positions live 30 s, and only a restarted actor or another replica reads them back.
//! - Last-seen times go to the store every tick (other replicas and the sweep read them) and to
//!   SQL every [`SQL_FLUSH`] (REST and the sweep read them there), and once more when it stops.
//! - A participant who leaves, and a session that ends, are deleted from the store at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::{Phase, SessionActor};
use crate::db::{self, DbError};
use crate::domain::{EndReason, Participant, ParticipantId, PositionView, Session};
use crate::metrics::Metrics;
use crate::store::{ArrivalMap, SeenMap, StoreError};
use crate::telemetry::Chain;

/// How long positions wait to be written to the store, so that one write carries many.
pub const STORE_DELAY: Duration = Duration::from_millis(100);
/// How often last-seen times are written to SQL (they reach the ephemeral store every tick).
pub const SQL_FLUSH: Duration = Duration::from_secs(30);

/// What the actor loads when it starts.
pub struct Loaded {
    /// The session as stored; `None` once purged.
    pub session: Option<Session>,
    /// Its participants that have not left.
    pub participants: Vec<Participant>,
    /// Positions that have not expired.
    pub locations: Vec<PositionView>,
    /// The store's last-seen times (fresher than SQL's).
    pub seen: SeenMap,
    /// The store's last activity (fresher than SQL's).
    pub activity: Option<DateTime<Utc>>,
    /// Who has arrived at the session's destination.
    pub arrivals: ArrivalMap,
}

/// What has not been written yet.
pub struct Pending {
    locations: HashMap<ParticipantId, PositionView>,
    storing: bool,
    seen_for_store: HashMap<ParticipantId, DateTime<Utc>>,
    seen_for_sql: HashMap<ParticipantId, DateTime<Utc>>,
    last_sql_flush: Instant,
}

impl Pending {
    /// Nothing pending; the first SQL flush is due [`SQL_FLUSH`] after `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            locations: HashMap::new(),
            storing: false,
            seen_for_store: HashMap::new(),
            seen_for_sql: HashMap::new(),
            last_sql_flush: now,
        }
    }

    /// A participant's latest position, to be stored (an older unstored one is superseded).
    pub fn location(&mut self, user: ParticipantId, view: PositionView) {
        self.locations.insert(user, view);
    }

    /// A participant seen at `at`, to be written to the store and to SQL.
    pub fn seen(&mut self, user: ParticipantId, at: DateTime<Utc>) {
        self.seen_for_store.insert(user, at);
        self.seen_for_sql.insert(user, at);
    }

    /// A participant who left: nothing of it is written any more.
    pub fn forget(&mut self, user: ParticipantId) {
        self.locations.remove(&user);
        self.seen_for_store.remove(&user);
        self.seen_for_sql.remove(&user);
    }

    /// Starts a store write if none is under way and positions wait; true if it did.
    fn begin_store(&mut self) -> bool {
        let begin = !self.storing && !self.locations.is_empty();
        self.storing |= begin;
        begin
    }

    /// The positions to write now.
    fn take_locations(&mut self) -> Vec<(ParticipantId, PositionView)> {
        self.locations.drain().collect()
    }

    /// The last-seen times to write to the store now.
    fn take_seen_for_store(&mut self) -> Vec<(ParticipantId, DateTime<Utc>)> {
        self.seen_for_store.drain().collect()
    }

    /// Whether last-seen times are due to be written to SQL.
    fn sql_flush_due(&self, now: Instant) -> bool {
        now.duration_since(self.last_sql_flush) >= SQL_FLUSH
    }

    /// The last-seen times to write to SQL now; the next flush is due [`SQL_FLUSH`] later.
    fn take_seen_for_sql(&mut self, now: Instant) -> Vec<(ParticipantId, DateTime<Utc>)> {
        self.last_sql_flush = now;
        self.seen_for_sql.drain().collect()
    }
}

/// Logs and counts a store failure; what the caller goes on with instead.
pub fn store_error<T: Default>(metrics: &Metrics, e: &StoreError) -> T {
    log::warn!("{}", Chain(e));
    metrics.store_errors.inc();
    T::default()
}

impl SessionActor {
    /// Loads the session (refusing joins meanwhile) and subscribes to its cluster channel.
    pub(super) fn load(&mut self, ctx: &mut Context<Self>) {
        let (id, deps) = (self.id, self.deps.clone());
        let load = async move {
            let (session, participants) = deps
                .db
                .run(move |conn| {
                    let session = db::sessions::find(conn, id)?;
                    let participants =
                        if session.is_some() { db::participants::list_live(conn, id)? } else { Vec::new() };
                    Ok::<_, DbError>((session, participants))
                })
                .await?;
            let store = &deps.store;
            let epoch = session.as_ref().and_then(|s| s.destination.as_ref()).map(crate::domain::Destination::epoch);
            let arrivals = async {
                match epoch {
                    Some(epoch) => store.arrivals(id, epoch).await,
                    None => Ok(ArrivalMap::new()),
                }
            };
            let (locations, seen, activity, arrivals) =
                tokio::join!(store.locations(id), store.last_seen(id), store.last_activity(id), arrivals);
            let (locations, seen, activity, arrivals) = (
                locations.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
                seen.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
                activity.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
                arrivals.unwrap_or_else(|e| store_error(&deps.metrics, &e)),
            );
            if session.is_some() {
                deps.bus.subscribe(id).await;
            }
            Ok::<_, DbError>(Loaded { session, participants, locations, seen, activity, arrivals })
        };
        ctx.wait(load.into_actor(self).map(|loaded, act, ctx| {
            act.guard(ctx, (), |act, ctx| match loaded {
                Ok(loaded) => act.loaded(loaded, ctx),
                Err(e) => {
                    log::warn!("session {} could not be loaded: {}", act.id, Chain(&e));
                    act.phase = Phase::Failed;
                    act.stop_soon(ctx);
                }
            })
        }));
    }

    /// Writes pending positions to the store, one batch at a time (see the module's docs).
    pub(super) fn store_locations(&mut self, ctx: &mut Context<Self>) {
        if !self.pending.begin_store() {
            return;
        }
        ctx.run_later(STORE_DELAY, |act, ctx| {
            let batch = act.pending.take_locations();
            // An ended session's positions are deleted, not written.
            if batch.is_empty() || act.phase != Phase::Live {
                act.pending.storing = false;
                return;
            }
            let (id, deps) = (act.id, act.deps.clone());
            let write = async move { deps.store.put_locations(id, batch).await };
            ctx.spawn(write.into_actor(act).map(|result, act, ctx| {
                act.pending.storing = false;
                if let Err(e) = result {
                    store_error::<()>(&act.deps.metrics, &e);
                }
                act.store_locations(ctx);
            }));
        });
    }

    /// Writes last-seen times to the store, and to SQL when that is due.
    pub(super) fn flush_seen(&mut self, ctx: &mut Context<Self>) {
        let seen = self.pending.take_seen_for_store();
        if !seen.is_empty() {
            let (id, deps) = (self.id, self.deps.clone());
            ctx.spawn(
                async move {
                    if let Err(e) = deps.store.mark_seen(id, seen).await {
                        store_error::<()>(&deps.metrics, &e);
                    }
                }
                .into_actor(self),
            );
        }
        if self.pending.sql_flush_due(Instant::now()) {
            self.save_seen();
        }
    }

    /// Writes last-seen times and the session's activity to SQL, for REST and the cleanup sweep.
    pub(super) fn save_seen(&mut self) {
        let seen = self.pending.take_seen_for_sql(Instant::now());
        if seen.is_empty() {
            return;
        }
        let (id, deps, activity) = (self.id, self.deps.clone(), self.last_activity);
        actix::spawn(async move {
            let saved = deps.db.run(move |conn| db::participants::save_seen(conn, id, &seen, activity)).await;
            if let Err(e) = saved {
                log::warn!("could not save last-seen times of session {id}: {}", Chain(&e));
            }
        });
    }

    /// Deletes a participant who left from the store.
    pub(super) fn forget_participant(&self, user: ParticipantId) {
        let (id, deps) = (self.id, self.deps.clone());
        actix::spawn(async move {
            if let Err(e) = deps.store.forget_participant(id, user).await {
                store_error::<()>(&deps.metrics, &e);
            }
        });
    }

    /// Deletes an ended session from the store; `record` also writes the end to SQL (a
    /// conditional update, so it is recorded once whoever gets there first).
    pub(super) fn forget_session(&self, reason: EndReason, record: bool) {
        let (id, deps) = (self.id, self.deps.clone());
        let epoch = self.destination().map(crate::domain::Destination::epoch);
        actix::spawn(async move {
            if let Some(epoch) = epoch {
                if let Err(e) = deps.store.forget_arrivals(id, epoch).await {
                    store_error::<()>(&deps.metrics, &e);
                }
            }
            if record {
                match deps.db.run(move |conn| db::sessions::mark_ended(conn, id, reason, Utc::now())).await {
                    Ok(true) => {}
                    Ok(false) => log::debug!("session {id} was already recorded as ended"),
                    Err(e) => log::warn!("could not record the end of session {id}: {}", Chain(&e)),
                }
            }
            if let Err(e) = deps.store.forget_session(id).await {
                store_error::<()>(&deps.metrics, &e);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fixture::location_view as view;
    use super::*;

    #[test]
    fn a_batch_carries_each_participants_latest_position() {
        let mut p = Pending::new(Instant::now());
        let (ana, bo) = (ParticipantId::new(), ParticipantId::new());
        assert!(!p.begin_store(), "nothing to write");
        p.location(ana, view(ana, 1.0));
        p.location(ana, view(ana, 2.0));
        p.location(bo, view(bo, 3.0));
        assert!(p.begin_store());
        assert!(!p.begin_store(), "one write at a time");
        let mut batch = p.take_locations();
        batch.sort_by_key(|(user, _)| usize::from(*user != ana));
        assert_eq!(batch, vec![(ana, view(ana, 2.0)), (bo, view(bo, 3.0))]);
        assert!(p.take_locations().is_empty());
    }

    #[test]
    fn a_participant_who_left_is_not_written() {
        let mut p = Pending::new(Instant::now());
        let ana = ParticipantId::new();
        p.location(ana, view(ana, 1.0));
        p.seen(ana, Utc::now());
        p.forget(ana);
        assert!(!p.begin_store());
        assert!(p.take_seen_for_store().is_empty());
        assert!(p.take_seen_for_sql(Instant::now()).is_empty());
    }

    #[test]
    fn sql_hears_of_sightings_every_flush_the_store_every_tick() {
        let start = Instant::now();
        let mut p = Pending::new(start);
        let ana = ParticipantId::new();
        let (early, late) = (Utc::now(), Utc::now() + chrono::Duration::seconds(1));
        p.seen(ana, early);
        assert_eq!(p.take_seen_for_store(), vec![(ana, early)]);
        p.seen(ana, late);
        assert_eq!(p.take_seen_for_store(), vec![(ana, late)]);
        assert!(!p.sql_flush_due(start + SQL_FLUSH - Duration::from_secs(1)));
        assert!(p.sql_flush_due(start + SQL_FLUSH));
        assert_eq!(p.take_seen_for_sql(start + SQL_FLUSH), vec![(ana, late)], "the latest sighting");
        assert!(!p.sql_flush_due(start + SQL_FLUSH), "the next flush is a whole period later");
    }
}

//! The store on Redis, one node or a cluster: every key of a session carries the session id as
//! its hash tag, so a session's state lives in one slot and multi-key commands never cross slots.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use futures_util::future::BoxFuture;

use super::{ArrivalMap, EphemeralStore, SeenMap, StoreResult};
use crate::domain::{ParticipantId, PositionView, SessionId};
use crate::redis_link::{Conn, RedisLink};

/// The Redis store: one key per location (`SET … PX ttl`, so value and TTL are set together),
/// an index set per session, a hash of last-seen times and the session's last activity.
/// Keys share a `{session}` hash tag so a session's keys live on one cluster slot.
pub struct RedisStore {
    link: RedisLink,
    ttl_ms: u64,
    /// How long session-wide keys outlive their last write: they are deleted when the
    /// session ends; this only bounds what a crashed cleanup could leave behind.
    keep_ms: u64,
}

/// Sets a millisecond time only if it is later than the stored one, and refreshes its expiry.
const ADVANCE_SCRIPT: &str = "local cur = tonumber(redis.call('GET', KEYS[1]) or '0') \
    if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
    else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 1";

fn loc_key(session: SessionId, user: &str) -> String {
    format!("ls:{{{session}}}:loc:{user}")
}
fn index_key(session: SessionId) -> String {
    format!("ls:{{{session}}}:locs")
}
fn seen_key(session: SessionId) -> String {
    format!("ls:{{{session}}}:seen")
}
fn activity_key(session: SessionId) -> String {
    format!("ls:{{{session}}}:activity")
}
fn arrivals_key(session: SessionId, epoch: u64) -> String {
    format!("ls:{{{session}}}:arrived:{epoch:016x}")
}

impl RedisStore {
    /// A store over `link` whose locations live `ttl`; session-wide keys expire after `keep` unwritten.
    pub fn new(link: RedisLink, ttl: Duration, keep: Duration) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { link, ttl_ms: ms(ttl), keep_ms: ms(keep) }
    }

    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(Conn) -> BoxFuture<'static, Result<T, redis::RedisError>>,
    {
        Ok(self.link.run(f).await?)
    }
}

impl EphemeralStore for RedisStore {
    fn put_locations(
        &self,
        session: SessionId,
        batch: Vec<(ParticipantId, PositionView)>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for (user, view) in &batch {
                let json = serde_json::to_string(view)?;
                let user = user.to_string();
                pipe.cmd("SET").arg(loc_key(session, &user)).arg(json).arg("PX").arg(self.ttl_ms).ignore();
                pipe.cmd("SADD").arg(index_key(session)).arg(user).ignore();
            }
            pipe.cmd("PEXPIRE").arg(index_key(session)).arg(self.keep_ms).ignore();
            self.run(move |mut c| Box::pin(async move { pipe.query_async::<()>(&mut c).await })).await
        })
    }

    fn locations(&self, session: SessionId) -> BoxFuture<'_, StoreResult<Vec<PositionView>>> {
        Box::pin(async move {
            let users: Vec<String> = self
                .run(move |mut c| {
                    Box::pin(async move { redis::cmd("SMEMBERS").arg(index_key(session)).query_async(&mut c).await })
                })
                .await?;
            if users.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = users.iter().map(|u| loc_key(session, u)).collect();
            let values: Vec<Option<String>> = self
                .run(move |mut c| Box::pin(async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await }))
                .await?;
            let expired: Vec<&String> =
                users.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(u, _)| u).collect();
            if !expired.is_empty() {
                let mut cmd = redis::cmd("SREM");
                cmd.arg(index_key(session)).arg(expired);
                self.run(move |mut c| Box::pin(async move { cmd.query_async::<()>(&mut c).await })).await?;
            }
            values.into_iter().flatten().map(|json| Ok(serde_json::from_str(&json)?)).collect()
        })
    }

    fn forget_participant(&self, session: SessionId, user: ParticipantId) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let user = user.to_string();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("DEL")
                .arg(loc_key(session, &user))
                .ignore()
                .cmd("SREM")
                .arg(index_key(session))
                .arg(&user)
                .ignore()
                .cmd("HDEL")
                .arg(seen_key(session))
                .arg(&user)
                .ignore();
            self.run(move |mut c| Box::pin(async move { pipe.query_async::<()>(&mut c).await })).await
        })
    }

    fn forget_session(&self, session: SessionId) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let users: Vec<String> = self
                .run(move |mut c| {
                    Box::pin(async move { redis::cmd("SMEMBERS").arg(index_key(session)).query_async(&mut c).await })
                })
                .await?;
            let mut keys: Vec<String> = users.iter().map(|u| loc_key(session, u)).collect();
            keys.extend([index_key(session), seen_key(session), activity_key(session)]);
            self.run(move |mut c| Box::pin(async move { redis::cmd("DEL").arg(keys).query_async::<()>(&mut c).await }))
                .await
        })
    }

    fn mark_seen(
        &self,
        session: SessionId,
        seen: Vec<(ParticipantId, DateTime<Utc>)>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let Some(latest) = seen.iter().map(|(_, at)| *at).max() else {
                return Ok(());
            };
            let mut pipe = redis::pipe();
            let mut hset = redis::cmd("HSET");
            hset.arg(seen_key(session));
            for (user, at) in &seen {
                hset.arg(user.to_string()).arg(at.timestamp_millis());
            }
            pipe.add_command(hset).ignore();
            pipe.cmd("PEXPIRE").arg(seen_key(session)).arg(self.keep_ms).ignore();
            // Activity only moves forward, whichever replica writes last.
            pipe.cmd("EVAL")
                .arg(ADVANCE_SCRIPT)
                .arg(1)
                .arg(activity_key(session))
                .arg(latest.timestamp_millis())
                .arg(self.keep_ms)
                .ignore();
            self.run(move |mut c| Box::pin(async move { pipe.query_async::<()>(&mut c).await })).await?;
            Ok(())
        })
    }

    fn last_seen(&self, session: SessionId) -> BoxFuture<'_, StoreResult<SeenMap>> {
        Box::pin(async move {
            let raw: HashMap<String, i64> = self
                .run(move |mut c| {
                    Box::pin(async move { redis::cmd("HGETALL").arg(seen_key(session)).query_async(&mut c).await })
                })
                .await?;
            Ok(raw
                .into_iter()
                .filter_map(|(user, ms)| Some((user.parse().ok()?, DateTime::from_timestamp_millis(ms)?)))
                .collect())
        })
    }

    fn last_activity(&self, session: SessionId) -> BoxFuture<'_, StoreResult<Option<DateTime<Utc>>>> {
        Box::pin(async move {
            let ms: Option<i64> = self
                .run(move |mut c| {
                    Box::pin(async move { redis::cmd("GET").arg(activity_key(session)).query_async(&mut c).await })
                })
                .await?;
            Ok(ms.and_then(DateTime::from_timestamp_millis))
        })
    }

    fn claim_arrival(
        &self,
        session: SessionId,
        epoch: u64,
        user: ParticipantId,
        at: DateTime<Utc>,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let key = arrivals_key(session, epoch);
            let mut pipe = redis::pipe();
            // HSETNX: of the replicas that see the same transition, exactly one records it.
            pipe.cmd("HSETNX").arg(&key).arg(user.to_string()).arg(at.timestamp_millis());
            pipe.cmd("PEXPIRE").arg(&key).arg(self.keep_ms).ignore();
            let (claimed,): (bool,) =
                self.run(move |mut c| Box::pin(async move { pipe.query_async(&mut c).await })).await?;
            Ok(claimed)
        })
    }

    fn claim_departure(&self, session: SessionId, epoch: u64, user: ParticipantId) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let key = arrivals_key(session, epoch);
            let removed: u32 = self
                .run(move |mut c| {
                    Box::pin(async move { redis::cmd("HDEL").arg(key).arg(user.to_string()).query_async(&mut c).await })
                })
                .await?;
            Ok(removed == 1)
        })
    }

    fn arrivals(&self, session: SessionId, epoch: u64) -> BoxFuture<'_, StoreResult<ArrivalMap>> {
        Box::pin(async move {
            let key = arrivals_key(session, epoch);
            let raw: HashMap<String, i64> = self
                .run(move |mut c| Box::pin(async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }))
                .await?;
            Ok(raw
                .into_iter()
                .filter_map(|(user, ms)| Some((user.parse().ok()?, DateTime::from_timestamp_millis(ms)?)))
                .collect())
        })
    }

    fn forget_arrivals(&self, session: SessionId, epoch: u64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let key = arrivals_key(session, epoch);
            self.run(move |mut c| Box::pin(async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await }))
                .await
        })
    }
}

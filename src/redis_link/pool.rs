//! One Redis: a multiplexed connection every call shares, from a deadpool pool that reconnects.

use std::sync::{Arc, Mutex};

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::ConnectionInfo;
use deadpool_redis::{Manager, Pool, PoolConfig, Runtime, Timeouts};

use super::{RedisError, DEADLINE};

/// One multiplexed connection that every call shares (redis pipelines concurrent commands on
/// it), borrowed from a deadpool pool.
///
/// Taking a fresh pooled connection per call cost a health-check round trip (deadpool-redis
/// sends `UNWATCH` + `PING` on every checkout) on top of each command. The shared connection is
/// checked out once and handed back when a call on it fails or times out: the pool then checks
/// it, replacing it if it is broken, before anyone uses it again. Nothing here uses `WATCH` or
/// blocking commands, so sharing one connection changes no command's meaning.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
    shared: Arc<Mutex<Option<deadpool_redis::Connection>>>,
}

impl RedisPool {
    /// Builds the pool (TLS settings included in `info`); no connection is opened until first use.
    pub fn new(info: ConnectionInfo) -> Result<Self, RedisError> {
        let manager = Manager::new(info).map_err(RedisError::Config)?;
        let mut config = PoolConfig::new(32);
        config.timeouts = Timeouts { wait: Some(DEADLINE), create: Some(DEADLINE), recycle: Some(DEADLINE) };
        let pool =
            Pool::builder(manager).config(config).runtime(Runtime::Tokio1).build().map_err(RedisError::PoolBuild)?;
        Ok(Self { pool, shared: Arc::new(Mutex::new(None)) })
    }

    /// The shared connection, checked out of the pool if none is held.
    pub async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.held() {
            return Ok(conn);
        }
        let fresh = self.pool.get().await.map_err(|e| match e {
            deadpool_redis::PoolError::Backend(e) => RedisError::Connect(e),
            deadpool_redis::PoolError::Timeout(_) => RedisError::Timeout,
            other => RedisError::Pool(other),
        })?;
        let Ok(mut slot) = self.shared.lock() else {
            return Ok(MultiplexedConnection::clone(&fresh));
        };
        // Another call may have checked one out meanwhile: keep the first, return this one.
        Ok(MultiplexedConnection::clone(slot.get_or_insert(fresh)))
    }

    fn held(&self) -> Option<MultiplexedConnection> {
        self.shared.lock().ok()?.as_ref().map(|c| MultiplexedConnection::clone(c))
    }

    /// Hands the shared connection back to the pool after a failure on it.
    pub fn release(&self) {
        if let Ok(mut slot) = self.shared.lock() {
            slot.take();
        }
    }
}

//! The Redis connection pool (deadpool-redis), which reconnects by itself.

use std::time::{Duration, Instant};

use deadpool_redis::{Config, Pool, Runtime, Timeouts};

/// How long a Redis call may take before it counts as down.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// Failures talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The pool could not be built from the URL.
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    /// No connection could be had, or a command failed or timed out.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// A pool of Redis connections.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
}

impl RedisPool {
    /// Builds the pool; no connection is opened until first use.
    pub fn new(url: &str) -> Result<Self, RedisError> {
        let mut cfg = Config::from_url(url);
        let mut pool_cfg = deadpool_redis::PoolConfig::new(32);
        pool_cfg.timeouts = Timeouts { wait: Some(DEADLINE), create: Some(DEADLINE), recycle: Some(DEADLINE) };
        cfg.pool = Some(pool_cfg);
        let pool = cfg.create_pool(Some(Runtime::Tokio1)).map_err(|e| RedisError::Config(e.to_string()))?;
        Ok(Self { pool })
    }

    /// A connection from the pool.
    pub async fn get(&self) -> Result<deadpool_redis::Connection, RedisError> {
        self.pool.get().await.map_err(|e| RedisError::Unavailable(e.to_string()))
    }

    /// Round-trips `PING`; the latency on success.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let call = async {
            let mut conn = self.get().await?;
            deadpool_redis::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| RedisError::Unavailable(e.to_string()))
        };
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RedisError::Unavailable("PING timed out".into())),
        }
    }
}

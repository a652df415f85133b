//! The link to Redis, one node or a Redis Cluster (SPEC §12), shared by the store, the cluster
//! bus and the readiness probe.
//!
//! Which of the two `REDIS_URL` names is found out by asking the first seed that answers
//! (`INFO cluster`), on first use: a Redis that is down when the server starts is then still
//! handled when it comes up. One Redis keeps the pooled, shared multiplexed connection it always
//! had; a cluster gets one shared `ClusterConnection` of the redis crate, which routes every
//! command to the shard owning its slot and follows `MOVED`/`ASK` by itself. Every failed call is
//! counted in `redis_errors_total{error}` by what Redis said, so a `MOVED` or `CROSSSLOT` is never
//! silent.

mod clients;
mod pool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, aio::ConnectionLike, cluster_async::ClusterConnection, ServerErrorKind};
use futures_util::future::BoxFuture;
use prometheus::IntCounterVec;
use tokio::sync::{Mutex, OnceCell};

use crate::config::{RedisCa, RedisUrl};
use crate::telemetry::Chain;
use clients::Target;
pub use clients::{ping_primaries, NodeAddress};
use pool::RedisPool;

/// How long a Redis call may take before it counts as down.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// Failures talking to Redis; each keeps its cause as its `source`.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL or certificate could not be used by the Redis client.
    #[error("invalid Redis configuration")]
    Config(#[source] redis::RedisError),
    /// No connection could be opened.
    #[error("no Redis connection")]
    Connect(#[source] redis::RedisError),
    /// The connection pool of one Redis could not be built.
    #[error("cannot build the Redis connection pool")]
    PoolBuild(#[source] deadpool_redis::BuildError),
    /// The connection pool of one Redis gave no connection (closed, or without a runtime).
    #[error("no Redis connection from the pool")]
    Pool(#[source] deadpool_redis::PoolError),
    /// Several seed nodes were given, but they are not a Redis Cluster.
    #[error("REDIS_URL names several nodes, but {0} is not in cluster mode")]
    NotACluster(String),
    /// A command failed.
    #[error("Redis command failed")]
    Command(#[source] redis::RedisError),
    /// The call took longer than [`DEADLINE`].
    #[error("Redis call timed out")]
    Timeout,
    /// A cluster shard does not serve its slots (its primary failed and none took over yet).
    #[error("Redis Cluster shard {0} is down")]
    ShardDown(String),
}

/// The labels of `redis_errors_total`, so that every one is exported from the start.
pub const ERROR_LABELS: [&str; 9] =
    ["moved", "ask", "crossslot", "clusterdown", "tryagain", "io", "timeout", "unavailable", "other"];

impl RedisError {
    /// The `redis_errors_total` label of this failure.
    pub fn label(&self) -> &'static str {
        let cause = match self {
            Self::Timeout => return "timeout",
            Self::ShardDown(_) => return "clusterdown",
            Self::Config(_) | Self::NotACluster(_) | Self::PoolBuild(_) => return "other",
            Self::Connect(_) | Self::Pool(_) => return "unavailable",
            Self::Command(e) => e,
        };
        match cause.kind() {
            redis::ErrorKind::Server(ServerErrorKind::Moved) => "moved",
            redis::ErrorKind::Server(ServerErrorKind::Ask) => "ask",
            redis::ErrorKind::Server(ServerErrorKind::CrossSlot) => "crossslot",
            redis::ErrorKind::Server(ServerErrorKind::ClusterDown | ServerErrorKind::MasterDown) => "clusterdown",
            redis::ErrorKind::Server(ServerErrorKind::TryAgain) => "tryagain",
            redis::ErrorKind::Io => "io",
            redis::ErrorKind::ClusterConnectionNotFound => "unavailable",
            _ if cause.is_timeout() => "timeout",
            _ if cause.is_io_error() || cause.is_connection_dropped() => "io",
            _ => "other",
        }
    }
}

/// One connection of either kind; the store's commands run on it unchanged.
#[derive(Clone)]
pub enum Conn {
    /// One Redis: the shared multiplexed connection.
    Single(redis::aio::MultiplexedConnection),
    /// A Redis Cluster: routes each command to the shard owning its keys.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// What the seeds turned out to be.
enum Mode {
    Single(RedisPool),
    Cluster(Mutex<Option<ClusterConnection>>),
}

struct Inner {
    target: Target,
    mode: OnceCell<Mode>,
    errors: Option<IntCounterVec>,
}

/// The link, cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

impl RedisLink {
    /// A link to `url`; nothing is opened until first use. `errors` counts failures by kind.
    pub fn new(url: &RedisUrl, ca: Option<&RedisCa>, errors: Option<IntCounterVec>) -> Result<Self, RedisError> {
        let target = Target::new(url, ca)?;
        // Every label exported from the start, so an alert can watch each.
        for label in ERROR_LABELS {
            if let Some(errors) = &errors {
                errors.with_label_values(&[label]);
            }
        }
        Ok(Self { inner: Arc::new(Inner { target, mode: OnceCell::new(), errors }) })
    }

    /// Finds out whether the seeds are a cluster, once; a failure is not remembered, so the
    /// next call asks again.
    async fn mode(&self) -> Result<&Mode, RedisError> {
        self.inner
            .mode
            .get_or_try_init(|| async {
                let cluster = self.inner.target.detect_cluster().await?;
                if cluster {
                    log::info!("Redis: a cluster ({} seed node(s)); sharded pub/sub", self.inner.target.seed_count());
                    Ok(Mode::Cluster(Mutex::new(None)))
                } else {
                    log::info!("Redis: one node");
                    Ok(Mode::Single(RedisPool::new(self.inner.target.first().clone())?))
                }
            })
            .await
    }

    /// True when the seeds are a Redis Cluster (asking them if need be).
    pub async fn is_cluster(&self) -> Result<bool, RedisError> {
        Ok(matches!(self.mode().await?, Mode::Cluster(_)))
    }

    /// Asks the seeds what they are within `wait`, so that a misconfiguration (several seeds
    /// that are no cluster) stops the server at start; a Redis that is down is left for later.
    pub async fn detect(&self, wait: Duration) -> Result<(), RedisError> {
        match tokio::time::timeout(wait, self.mode()).await {
            Ok(Err(e @ RedisError::NotACluster(_))) => Err(e),
            Ok(Err(e)) => {
                log::warn!("Redis is not answering yet: {}", Chain(&e));
                Ok(())
            }
            Ok(Ok(_)) | Err(_) => Ok(()),
        }
    }

    /// The shared connection of either kind.
    async fn connection(&self) -> Result<Conn, RedisError> {
        match self.mode().await? {
            Mode::Single(pool) => pool.connection().await.map(Conn::Single),
            Mode::Cluster(shared) => {
                // One connection for everybody, opened by the first caller while the others wait.
                let mut slot = shared.lock().await;
                if let Some(conn) = slot.as_ref() {
                    return Ok(Conn::Cluster(conn.clone()));
                }
                let conn = self.inner.target.cluster_connection(None).await?;
                *slot = Some(conn.clone());
                Ok(Conn::Cluster(conn))
            }
        }
    }

    /// Gives the shared connection up after a failure that may have broken it.
    async fn release(&self, error: &RedisError) {
        match self.inner.mode.get() {
            Some(Mode::Single(pool)) => pool.release(),
            // A cluster connection repairs its node connections by itself; only one that stopped
            // answering altogether is replaced.
            Some(Mode::Cluster(shared)) if matches!(error, RedisError::Timeout) => {
                shared.lock().await.take();
            }
            _ => {}
        }
    }

    /// Counts a failure by its kind.
    pub fn count(&self, error: &RedisError) {
        if let Some(errors) = &self.inner.errors {
            errors.with_label_values(&[error.label()]).inc();
        }
    }

    /// Runs `f` on the shared connection within [`DEADLINE`]; a failure is counted.
    pub async fn run<T, F>(&self, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(Conn) -> BoxFuture<'static, Result<T, redis::RedisError>>,
    {
        let call = async {
            let conn = self.connection().await?;
            f(conn).await.map_err(RedisError::Command)
        };
        let result = tokio::time::timeout(DEADLINE, call).await.unwrap_or(Err(RedisError::Timeout));
        if let Err(e) = &result {
            self.count(e);
            self.release(e).await;
        }
        result
    }

    /// Checks that Redis serves: `PING` on one node; on a cluster, `PING` on every primary that
    /// serves slots, so a shard whose primary died is reported until a replica took over.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        if !self.is_cluster().await.inspect_err(|e| self.count(e))? {
            self.run(|mut c| Box::pin(async move { redis::cmd("PING").query_async::<String>(&mut c).await })).await?;
            return Ok(started.elapsed());
        }
        let pinged = async {
            match self.connection().await? {
                Conn::Cluster(conn) => {
                    tokio::time::timeout(DEADLINE * 2, ping_primaries(conn)).await.unwrap_or(Err(RedisError::Timeout))
                }
                Conn::Single(_) => Ok(Vec::new()),
            }
        };
        pinged.await.inspect_err(|e| self.count(e))?;
        Ok(started.elapsed())
    }

    /// A cluster connection of its own whose server pushes (sharded pub/sub messages and
    /// subscription changes) go to `pushes`; besides the seeds, it may start from `known`
    /// nodes learned earlier, for when every seed is down.
    pub async fn dedicated_cluster(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
        known: &[NodeAddress],
    ) -> Result<ClusterConnection, RedisError> {
        self.inner.target.with_known(known).cluster_connection(Some(pushes)).await
    }

    /// A cluster connection of its own, for a task that drives it from its own thread.
    pub async fn cluster_connection(&self) -> Result<ClusterConnection, RedisError> {
        self.inner.target.cluster_connection(None).await
    }

    /// A client of the first seed, for the pub/sub connections of one Redis.
    pub fn single_client(&self) -> Result<redis::Client, RedisError> {
        redis::Client::open(self.inner.target.first().clone()).map_err(RedisError::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(kind: ServerErrorKind) -> RedisError {
        RedisError::Command(redis::RedisError::from((redis::ErrorKind::Server(kind), "from the server")))
    }

    #[test]
    fn failures_are_labelled_by_kind() {
        assert_eq!(RedisError::Timeout.label(), "timeout");
        assert_eq!(RedisError::ShardDown("a:1".into()).label(), "clusterdown");
        let io = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(RedisError::Command(io).label(), "io");
        assert_eq!(server_error(ServerErrorKind::Moved).label(), "moved");
        assert_eq!(server_error(ServerErrorKind::CrossSlot).label(), "crossslot");
        assert_eq!(server_error(ServerErrorKind::ClusterDown).label(), "clusterdown");
        assert_eq!(server_error(ServerErrorKind::ResponseError).label(), "other");
        for label in ["moved", "crossslot", "timeout", "io", "other"] {
            assert!(ERROR_LABELS.contains(&label));
        }
    }
}

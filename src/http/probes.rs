//! Probes of what the server depends on (the database, Redis, the session registry), shared by
//! the health routes and the dashboard.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::realtime::messages::{Ping, RegistryStats};
use crate::telemetry::Chain;

/// The state of one dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `ok`, `error`, or `disabled` (Redis when `REDIS_URL` is unset).
    pub status: &'static str,
    /// Round-trip time of the probe, when it answered.
    pub latency_ms: Option<f64>,
}

/// The dependencies checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// The SQL database.
    pub database: Check,
    /// Redis.
    pub redis: Check,
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Probes the database and Redis (each bounded by its own deadline) at once.
pub async fn checks(state: &AppState) -> Checks {
    let db = state.db.ping();
    let redis = async {
        match &state.redis {
            None => Check { status: "disabled", latency_ms: None },
            Some(link) => match link.ping().await {
                // On a cluster the bus must be subscribed too: a shard can answer `PING` while
                // the subscriptions that were on it are not made again yet (SPEC §12).
                Ok(_) if link.is_cluster().await.unwrap_or(false) && state.metrics.pubsub_connected.get() == 0 => {
                    Check { status: "error", latency_ms: None }
                }
                Ok(d) => Check { status: "ok", latency_ms: Some(millis(d)) },
                Err(e) => {
                    log::warn!("redis health check failed: {}", Chain(&e));
                    Check { status: "error", latency_ms: None }
                }
            },
        }
    };
    let (db, redis) = tokio::join!(db, redis);
    let database = match db {
        Ok(d) => Check { status: "ok", latency_ms: Some(millis(d)) },
        Err(e) => {
            log::warn!("database health check failed: {}", Chain(&e));
            Check { status: "error", latency_ms: None }
        }
    };
    Checks { database, redis }
}

impl Checks {
    /// True when every configured dependency answered.
    pub fn all_ok(&self) -> bool {
        self.database.status == "ok" && self.redis.status != "error"
    }
}

/// What the session registry reports, if it answers within `deadline`.
pub async fn registry_stats(state: &AppState, deadline: Duration) -> Option<RegistryStats> {
    match tokio::time::timeout(deadline, state.registry.send(Ping)).await {
        Ok(Ok(stats)) => Some(stats),
        _ => None,
    }
}

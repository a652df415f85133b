//! Health probes for people and for Kubernetes.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::probes::{checks, registry_stats, Checks};
use super::AppState;

/// How long the registry may take to answer `/health/live`.
const LIVENESS_DEADLINE: Duration = Duration::from_secs(1);

/// `GET /health/detailed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detailed {
    /// `ok` when every configured dependency answers, else `degraded`.
    pub status: &'static str,
    /// Per dependency.
    pub checks: Checks,
    /// Session actors live in this process.
    pub sessions_live: usize,
    /// Sockets connected to this process.
    pub sockets: usize,
    /// Server version.
    pub version: &'static str,
    /// True while the server drains for shutdown.
    pub draining: bool,
}

/// The server is up.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "Up", example = json!({"status": "ok", "version": "0.1.0"}))))]
pub async fn basic() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Every dependency, with latencies, and what this process holds.
#[utoipa::path(get, path = "/health/detailed", tag = "health", responses(
    (status = 200, description = "All dependencies answer", body = Detailed),
    (status = 503, description = "A dependency is down", body = Detailed),
))]
pub async fn detailed(state: web::Data<AppState>) -> HttpResponse {
    let (checks, stats) = tokio::join!(checks(&state), registry_stats(&state, LIVENESS_DEADLINE));
    let healthy = checks.all_ok() && stats.is_some();
    let stats = stats.unwrap_or_default();
    let body = Detailed {
        status: if healthy { "ok" } else { "degraded" },
        checks,
        sessions_live: stats.sessions_live,
        sockets: stats.sockets,
        version: env!("CARGO_PKG_VERSION"),
        draining: state.drain.is_draining(),
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Ready for traffic: the database (and Redis, if configured) answer and the server is not draining.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Draining, or a dependency is down"),
))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.drain.is_draining() {
        return HttpResponse::ServiceUnavailable().json(json!({ "status": "draining" }));
    }
    let checks = checks(&state).await;
    if checks.all_ok() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "unavailable", "checks": checks }))
    }
}

/// Alive: the session registry answers within a second.
#[utoipa::path(get, path = "/health/live", tag = "health", responses(
    (status = 200, description = "The actor system answers"),
    (status = 503, description = "The session registry did not answer within 1 s"),
))]
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    match registry_stats(&state, LIVENESS_DEADLINE).await {
        Some(_) => HttpResponse::Ok().json(json!({ "status": "ok" })),
        None => HttpResponse::ServiceUnavailable().json(json!({ "status": "unresponsive" })),
    }
}

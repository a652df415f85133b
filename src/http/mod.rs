//! The HTTP edge: routes, extractors, middleware and the one error mapping.

pub mod body;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod participants;
pub mod probes;
pub mod sessions;
pub mod socket;
// The web client's routes; named apart from `actix_web::web`, which this module imports.
#[path = "web.rs"]
pub mod web_client;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest};

use crate::auth::{Claims, Tokens};
use crate::config::Settings;
use crate::db::Db;
use crate::domain::SessionId;
use crate::metrics::Metrics;
use crate::ops::drain::Drain;
use crate::realtime::SessionRegistry;
use crate::sessions::Sessions;
use crate::store::redis::RedisPool;
use error::ApiError;

/// What every handler may use; built once in `startup`.
pub struct AppState {
    /// Settings the server was started with (their `limits` are the one copy everything shares).
    pub settings: Arc<Settings>,
    /// The use cases every route calls.
    pub sessions: Arc<Sessions>,
    /// Counters, for `/metrics`, the dashboard and new sockets.
    pub metrics: Arc<Metrics>,
    /// The SQL database, for the health probes only (routes go through `sessions`).
    pub db: Db,
    /// Redis when configured, for the health probes.
    pub redis: Option<RedisPool>,
    /// The supervisor of session actors, which new sockets join through.
    pub registry: Addr<SessionRegistry>,
    /// Set on SIGTERM: readiness fails, new sockets are refused, open ones close.
    pub drain: Arc<Drain>,
}

/// Mounts every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/openapi.json", web::get().to(openapi::document))
            .route("/sessions", web::post().to(sessions::create))
            .route("/sessions/{id}", web::get().to(sessions::show))
            .route("/sessions/{id}", web::delete().to(sessions::end))
            .route("/sessions/{id}/join", web::post().to(participants::join))
            .route("/sessions/{id}/participants", web::get().to(participants::list))
            .route("/sessions/{id}/participants/{user_id}", web::delete().to(participants::remove))
            .route("/sessions/{id}/qr", web::get().to(web_client::qr)),
    )
    .route("/", web::get().to(web_client::home))
    .route("/join/{id}", web::get().to(web_client::join))
    .route("/assets/{version}/{path:.+}", web::get().to(web_client::asset))
    .route("/dev/dashboard", web::get().to(dashboard::show))
    .route("/dev/dashboard/stats", web::get().to(dashboard::stats))
    .route("/socket/websocket", web::get().to(socket::upgrade))
    .route("/metrics", web::get().to(metrics::endpoint))
    .route("/health", web::get().to(health::basic))
    .route("/health/detailed", web::get().to(health::detailed))
    .route("/health/ready", web::get().to(health::ready))
    .route("/health/live", web::get().to(health::live));
}

/// A session id from the path; a malformed one names no session (404).
pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("session not found"))
}

/// The claims of the `Authorization: Bearer …` token.
pub fn bearer_claims(req: &HttpRequest, tokens: &Tokens) -> Result<Claims, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized("missing bearer token"))?;
    Ok(tokens.verify(bearer_token(value.as_bytes())?)?)
}

/// The token of an `Authorization` header value: the scheme `Bearer` (any case), a space, the token.
pub fn bearer_token(header_value: &[u8]) -> Result<&str, ApiError> {
    // What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
    let readable = header_value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    let value = std::str::from_utf8(header_value)
        .ok()
        .filter(|_| readable)
        .ok_or(ApiError::Unauthorized("malformed authorization header"))?;
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(ApiError::Unauthorized("authorization must be a Bearer token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(result: Result<&str, ApiError>) -> String {
        result.map_or_else(|e| e.to_string(), |t| format!("token {t}"))
    }

    #[test]
    fn bearer_token_reads_the_scheme_in_any_case() {
        assert_eq!(detail(bearer_token(b"Bearer abc")), "token abc");
        assert_eq!(detail(bearer_token(b"bEaReR   abc ")), "token abc");
        assert_eq!(detail(bearer_token(b"Bearer ")), "token ");
    }

    #[test]
    fn bearer_token_refuses_other_schemes_and_bytes() {
        assert_eq!(detail(bearer_token(b"Basic abc")), "authorization must be a Bearer token");
        assert_eq!(detail(bearer_token(b"Bearer")), "authorization must be a Bearer token");
        assert_eq!(detail(bearer_token(b"Bearer\tabc")), "authorization must be a Bearer token");
        assert_eq!(detail(bearer_token("Bearer é".as_bytes())), "malformed authorization header");
        assert_eq!(detail(bearer_token(b"Bearer a\x7fb")), "malformed authorization header");
    }
}

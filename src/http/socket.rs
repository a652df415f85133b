//! `GET /socket/websocket`: checks origin, token and membership before the upgrade (403 otherwise).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::ApiError;
use super::throttle::client_of;
use super::AppState;
use crate::abuse::Bucket;
use crate::realtime::protocol::Vsn;
use crate::realtime::socket::SocketActor;

#[derive(Deserialize)]
struct SocketParams {
    token: Option<String>,
    vsn: Option<String>,
}

/// Upgrades to a Phoenix Channels WebSocket.
#[utoipa::path(
    get, path = "/socket/websocket", tag = "realtime",
    description = "Upgrades to a WebSocket speaking Phoenix Channels (vsn=2.0.0 arrays, vsn=1.0.0 objects, \
        or without vsn the plain {\"type\",\"data\"} envelope). Join `location:{session_id}`; see the README.",
    params(
        ("token" = String, Query, description = "The participant's websocket_token"),
        ("vsn" = Option<String>, Query, pattern = r"^([12](\..*)?)?$",
            description = "2.0.0 (any 2 or 2.x) or 1.0.0 (any 1 or 1.x); absent or empty for the plain envelope; \
                anything else is refused with 400"),
    ),
    responses(
        (status = 101, description = "Switching protocols"),
        (status = 400, description = "Unsupported vsn, or not a WebSocket upgrade request", body = super::openapi::ErrorBody),
        (status = 403, description = "Missing or invalid token, not a participant, or Origin not allowed", body = super::openapi::ErrorBody),
        (status = 429, description = "Too many handshakes or open sockets from this address", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds to wait before trying again")),
            example = json!({"errors": {"detail": "too many requests"}})),
        (status = 503, description = "Draining for shutdown, or the database is down", body = super::openapi::ErrorBody),
    )
)]
pub async fn upgrade(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    if state.drain.is_draining() {
        return Err(ApiError::Unavailable("server is shutting down; reconnect elsewhere").into());
    }
    // Every handshake takes a cell, whatever follows; the slot is held from here so that sockets
    // being checked count too, and given back if the handshake fails.
    let client = client_of(&req, &state);
    state.abuse.admit(Bucket::SocketConnects, client).map_err(ApiError::from)?;
    let slot = state.abuse.open_socket(client).map_err(ApiError::from)?;
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| {
            state.settings.cors_allowed_origins.allows(o) || same_origin(o, &req, &state.settings.public_url)
        });
        if !allowed {
            return Err(ApiError::Forbidden("origin not allowed").into());
        }
    }
    let params = web::Query::<SocketParams>::from_query(req.query_string())
        .map_err(|_| ApiError::Forbidden("invalid socket parameters"))?
        .into_inner();
    let vsn = Vsn::from_param(params.vsn.as_deref()).ok_or(ApiError::BadRequest("unsupported vsn".into()))?;
    let claims = state
        .sessions
        .tokens()
        .verify(params.token.as_deref().unwrap_or_default())
        .map_err(|_| ApiError::Forbidden("invalid or missing token"))?;
    let grant = state.sessions.open_socket(&claims).await.map_err(ApiError::from)?;
    let limits = state.settings.limits.clone();
    SocketActor::new(grant, vsn, state.registry.clone(), state.metrics.clone(), limits, state.drain.clone())
        .holding(slot)
        .accept(&req)
}

/// The built-in web client is served from this server: its own origin (the request's `Host`, or
/// `PUBLIC_URL`) may open sockets whatever `CORS_ALLOWED_ORIGINS` lists. `null` never may.
fn same_origin(origin: &str, req: &HttpRequest, public_url: &str) -> bool {
    let Some((_, origin_host)) = origin.split_once("://") else {
        return false;
    };
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host)) || origin.eq_ignore_ascii_case(public_url)
}

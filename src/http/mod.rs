//! The HTTP edge: routes, extractors, middleware and the one error mapping.

pub mod body;
pub mod dashboard;
pub mod destination;
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
pub mod throttle;
// The web client's routes; named apart from `actix_web::web`, which this module imports.
#[path = "web.rs"]
pub mod web_client;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::{header, Method};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse, Route};

use crate::abuse::AbuseLimits;
use crate::auth::{Claims, Tokens};
use crate::config::Settings;
use crate::db::Db;
use crate::domain::SessionId;
use crate::metrics::Metrics;
use crate::ops::drain::Drain;
use crate::realtime::SessionRegistry;
use crate::redis_link::RedisLink;
use crate::sessions::Sessions;
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
    pub redis: Option<RedisLink>,
    /// The supervisor of session actors, which new sockets join through.
    pub registry: Addr<SessionRegistry>,
    /// Set on SIGTERM: readiness fails, new sockets are refused, open ones close.
    pub drain: Arc<Drain>,
    /// The per-address abuse limits (SPEC §11).
    pub abuse: Arc<AbuseLimits>,
}

/// One method of one path and the handler that answers it: a row of [`ENDPOINTS`].
pub struct Endpoint {
    /// The method the route answers.
    pub method: Method,
    /// The path pattern, as actix-web matches it.
    pub path: &'static str,
    /// Builds the route (the method guard is added from `method`).
    route: fn() -> Route,
}

/// Every route of the server, the one list that both mounts them and answers `Allow`, so a
/// 405's `Allow` can never disagree with what the path really serves.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { method: Method::GET, path: "/api/openapi.json", route: || web::to(openapi::document) },
    Endpoint {
        method: Method::POST,
        path: "/api/sessions",
        route: || web::to(sessions::create).wrap(from_fn(throttle::creates)),
    },
    Endpoint { method: Method::GET, path: "/api/sessions/{id}", route: || web::to(sessions::show) },
    Endpoint { method: Method::PATCH, path: "/api/sessions/{id}", route: || web::to(sessions::update) },
    Endpoint { method: Method::DELETE, path: "/api/sessions/{id}", route: || web::to(sessions::end) },
    Endpoint { method: Method::PUT, path: "/api/sessions/{id}/destination", route: || web::to(destination::put) },
    Endpoint { method: Method::DELETE, path: "/api/sessions/{id}/destination", route: || web::to(destination::clear) },
    Endpoint {
        method: Method::POST,
        path: "/api/sessions/{id}/join",
        route: || web::to(participants::join).wrap(from_fn(throttle::joins)),
    },
    Endpoint { method: Method::GET, path: "/api/sessions/{id}/participants", route: || web::to(participants::list) },
    Endpoint {
        method: Method::DELETE,
        path: "/api/sessions/{id}/participants/{user_id}",
        route: || web::to(participants::remove),
    },
    Endpoint { method: Method::GET, path: "/api/sessions/{id}/qr", route: || web::to(web_client::qr) },
    Endpoint { method: Method::GET, path: "/", route: || web::to(web_client::home) },
    Endpoint { method: Method::GET, path: "/join/{id}", route: || web::to(web_client::join) },
    Endpoint { method: Method::GET, path: "/assets/{version}/{path:.+}", route: || web::to(web_client::asset) },
    Endpoint { method: Method::GET, path: "/dev/dashboard", route: || web::to(dashboard::show) },
    Endpoint { method: Method::GET, path: "/dev/dashboard/stats", route: || web::to(dashboard::stats) },
    Endpoint { method: Method::GET, path: "/socket/websocket", route: || web::to(socket::upgrade) },
    Endpoint { method: Method::GET, path: "/metrics", route: || web::to(metrics::endpoint) },
    Endpoint { method: Method::GET, path: "/health", route: || web::to(health::basic) },
    Endpoint { method: Method::GET, path: "/health/detailed", route: || web::to(health::detailed) },
    Endpoint { method: Method::GET, path: "/health/ready", route: || web::to(health::ready) },
    Endpoint { method: Method::GET, path: "/health/live", route: || web::to(health::live) },
];

/// Mounts every route of [`ENDPOINTS`], one resource per path; a method the path does not
/// serve gets 405 with `Allow` (an `OPTIONS` that is not a CORS preflight gets 204 with it).
pub fn routes(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in ENDPOINTS {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for endpoint in ENDPOINTS.iter().filter(|e| e.path == path) {
            resource = resource.route((endpoint.route)().method(endpoint.method.clone()));
        }
        let allow = allowed_methods(path);
        cfg.service(resource.default_service(web::to(move |req: HttpRequest| {
            let allow = allow.clone();
            async move {
                if req.method() == Method::OPTIONS {
                    Ok(HttpResponse::NoContent().insert_header((header::ALLOW, allow)).finish())
                } else {
                    Err(ApiError::MethodNotAllowed(allow))
                }
            }
        })));
    }
}

/// The `Allow` value of a path: its methods, HEAD wherever GET is (answered by
/// `middleware::head_as_get`), and OPTIONS (answered for every path, CORS preflights included).
pub fn allowed_methods(path: &str) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for endpoint in ENDPOINTS.iter().filter(|e| e.path == path) {
        methods.push(endpoint.method.as_str());
        if endpoint.method == Method::GET {
            methods.push(Method::HEAD.as_str());
        }
    }
    methods.push(Method::OPTIONS.as_str());
    methods.join(", ")
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

//! The per-address buckets of SPEC §11 in front of the routes they guard: a refused request is
//! answered 429 before its body is read or its handler runs.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpRequest, ResponseError};

use super::error::ApiError;
use super::AppState;
use crate::abuse::{Bucket, ClientKey};

/// The client a request is limited as (SPEC §11: the peer, or `X-Forwarded-For` through
/// `TRUSTED_PROXIES`).
pub fn client_of(req: &HttpRequest, state: &AppState) -> ClientKey {
    // Collected: the walk goes from the right, and a header map iterates one way only.
    let forwarded: Vec<&str> = req.headers().get_all(header::X_FORWARDED_FOR).filter_map(|v| v.to_str().ok()).collect();
    ClientKey::resolve(req.peer_addr().map(|a| a.ip()), forwarded.into_iter(), &state.settings.trusted_proxies)
}

async fn throttle(bucket: Bucket, req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let client = client_of(req.request(), state);
        if let Err(refused) = state.abuse.admit(bucket, client) {
            let res = ApiError::from(refused).error_response();
            return Ok(req.into_response(res));
        }
    }
    next.call(req).await
}

/// `CREATE_SESSIONS_PER_MINUTE`, on `POST /api/sessions`.
pub async fn creates(req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, Error> {
    throttle(Bucket::CreateSessions, req, next).await
}

/// `JOINS_PER_MINUTE`, on `POST /api/sessions/{id}/join`.
pub async fn joins(req: ServiceRequest, next: Next<BoxBody>) -> Result<ServiceResponse<BoxBody>, Error> {
    throttle(Bucket::Joins, req, next).await
}

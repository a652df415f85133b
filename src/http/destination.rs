//! `/api/sessions/{id}/destination`: the creator sets, moves or clears the meeting point (SPEC §7).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::error::{ApiError, FieldErrors};
use super::{bearer_claims, session_id, AppState};
use crate::domain::{DestinationDraft, DestinationErrors};
use crate::views::DestinationView;

/// `PUT /api/sessions/{id}/destination` body, and the `destination` of `POST /api/sessions`:
/// a place, or in an end-to-end encrypted session a sealed one; unknown fields are ignored.
/// (Documentation only: the body is read by `DestinationDraft::parse`.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DestinationRequest {
    /// In a session without `e2e`.
    Place(PlaceRequest),
    /// In an end-to-end encrypted session (SPEC §10), the only kind it accepts.
    Sealed(SealedDestinationRequest),
}

/// A sealed destination, for an end-to-end encrypted session.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SealedDestinationRequest {
    /// `base64url(iv ‖ ciphertext ‖ tag)`, AES-256-GCM with the additional data
    /// `"{session_id}:destination"`, opening to `{"lat","lng","radius_m","label"?}` padded with
    /// spaces to a multiple of 256 bytes (README, "Sealing, for interoperable clients").
    #[schema(pattern = "^[A-Za-z0-9_-]{24,2048}$", min_length = 24, max_length = 2048)]
    pub sealed: String,
}

/// A meeting point in the clear.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceRequest {
    /// Latitude, -90..=90.
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    /// Longitude, -180..=180.
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lng: f64,
    /// Within this many metres a participant has arrived; 100 when absent.
    #[schema(minimum = 20.0, maximum = 5000.0)]
    pub radius_m: Option<f64>,
    /// What the place is called: at most 100 characters after trimming, no control character;
    /// blank is none.
    // The pattern of a session's name (`SessionName::parse`), which a label follows.
    #[schema(
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*([^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([^\u0000-\u001f\u007f-\u009f]{0,98}[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?)?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub label: Option<String>,
}

/// Reads a destination for a session that is end-to-end encrypted (`e2e`) or not, its field
/// errors named `{prefix}{field}`.
pub fn parse_destination(body: &Map<String, Value>, prefix: &str, e2e: bool) -> Result<DestinationDraft, ApiError> {
    DestinationDraft::parse(body, e2e).map_err(|errors: DestinationErrors| {
        let fields: FieldErrors =
            errors.into_iter().map(|(field, messages)| (format!("{prefix}{field}"), messages)).collect();
        ApiError::Validation(fields)
    })
}

/// Sets or moves the destination (creator only); everyone gets `destination_set`, arrivals reset.
#[utoipa::path(
    put, path = "/api/sessions/{id}/destination", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = [])),
    request_body(content = DestinationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The destination, as broadcast", body = DestinationView),
        (status = 400, description = "Malformed JSON", body = super::openapi::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = super::openapi::ErrorBody),
        (status = 403, description = "Not this session's creator token", body = super::openapi::ErrorBody),
        (status = 404, description = "Unknown session", body = super::openapi::ErrorBody),
        (status = 410, description = "Session ended", body = super::openapi::ErrorBody),
        (status = 413, description = "Body over 16384 bytes", body = super::openapi::ErrorBody),
        (status = 415, description = "Body is not application/json", body = super::openapi::ErrorBody),
        (status = 422, description = "Validation failed", body = super::openapi::ValidationErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn put(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let claims = bearer_claims(&req, state.sessions.tokens())?;
    let id = session_id(&path)?;
    // Whether the session is end-to-end encrypted decides which body is valid; it never changes.
    let e2e = state.sessions.load(id, Utc::now()).await?.e2e;
    let draft = parse_destination(&body.0, "", e2e)?;
    let destination = state.sessions.set_destination(&claims, id, draft).await?;
    Ok(HttpResponse::Ok().json(destination))
}

/// Clears the destination (creator only); everyone gets `destination_cleared`.
#[utoipa::path(
    delete, path = "/api/sessions/{id}/destination", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared"),
        (status = 401, description = "Missing or invalid token", body = super::openapi::ErrorBody),
        (status = 403, description = "Not this session's creator token", body = super::openapi::ErrorBody),
        (status = 404, description = "Unknown session, or no destination is set", body = super::openapi::ErrorBody),
        (status = 410, description = "Session ended", body = super::openapi::ErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn clear(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let claims = bearer_claims(&req, state.sessions.tokens())?;
    let id = session_id(&path)?;
    state.sessions.clear_destination(&claims, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

//! `/api/sessions`: create, show and end sessions.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::destination::{parse_destination, DestinationRequest};
use super::error::{ApiError, FieldErrors};
use super::{bearer_claims, session_id, AppState};
use crate::db::sessions::Changes;
use crate::domain::{Destination, ExpiresInMinutes, SessionName, HIDDEN};
use crate::sessions::{Created, NewSession};
use crate::views::{rfc3339, DestinationView, SessionView};

/// `POST /api/sessions` body; unknown fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// Optional title: at most 100 characters after trimming whitespace, none of them a control
    /// character; blank is no title.
    // The pattern is `SessionName::parse` exactly; a length limit alone would refuse padded names
    // that the server accepts.
    #[schema(
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*([^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([^\u0000-\u001f\u007f-\u009f]{0,98}[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?)?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: Option<String>,
    /// Lifetime in whole minutes, 1..=1440 (`518.0` counts as whole); 1440 when absent.
    // A JSON number, not an i64, so that a whole number written `518.0` is read as JSON Schema reads it.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1440)]
    pub expires_in_minutes: Option<serde_json::Number>,
    /// Where everyone is heading, set at once (as `PUT …/destination` would); errors are named
    /// `destination.lat` and so on.
    // Any JSON here, so that a wrong-typed destination is a 422 naming its own fields.
    #[schema(value_type = Option<DestinationRequest>)]
    pub destination: Option<serde_json::Value>,
    /// End-to-end encrypted (SPEC §10): positions and the destination travel sealed, and the
    /// server cannot read them; false when absent. Fixed for the session's life.
    pub e2e: Option<bool>,
}

/// `POST /api/sessions` answer; `Debug` hides the token.
#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    /// The new session's id.
    pub session_id: String,
    /// The link to share: `JOIN_BASE_URL/join/{id}`.
    pub join_link: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// The title, if any.
    pub name: Option<String>,
    /// The creator's token (JWT), for ending the session and removing participants.
    pub creator_token: String,
    /// The destination it was created with, or `null`.
    #[schema(value_type = Option<DestinationView>)]
    pub destination: Option<Destination>,
    /// Always false for a new session.
    pub locked: bool,
    /// Whether positions and the destination are sealed (SPEC §10).
    pub e2e: bool,
}

impl std::fmt::Debug for SessionCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCreated")
            .field("session_id", &self.session_id)
            .field("join_link", &self.join_link)
            .field("expires_at", &self.expires_at)
            .field("name", &self.name)
            .field("creator_token", &HIDDEN)
            .finish()
    }
}

/// Creates a session.
#[utoipa::path(
    post, path = "/api/sessions", tag = "sessions",
    // Not required (`openapi::OptionalBodies`): an empty body is read as `{}`, a session with the defaults.
    request_body(content = CreateSessionRequest, content_type = "application/json",
        description = "Optional: an empty body is the same as `{}`"),
    responses(
        (status = 201, description = "Session created", body = SessionCreated),
        (status = 400, description = "Malformed JSON", body = super::openapi::ErrorBody),
        (status = 413, description = "Body over 16384 bytes", body = super::openapi::ErrorBody),
        (status = 415, description = "Body is not application/json", body = super::openapi::ErrorBody),
        (status = 422, description = "Validation failed", body = super::openapi::ValidationErrorBody),
        (status = 429, description = "Too many sessions created from this address", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds to wait before trying again")),
            example = json!({"errors": {"detail": "too many requests"}})),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    body: JsonBody<CreateSessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(req) = body;
    let mut errors = FieldErrors::new();
    let name = match req.name.as_deref().map(SessionName::parse).transpose() {
        Ok(name) => name.flatten(),
        Err(e) => {
            errors.entry("name".into()).or_default().push(e.to_string());
            None
        }
    };
    let expires_in = match req.expires_in_minutes.as_ref().map(ExpiresInMinutes::parse_number).transpose() {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => {
            errors.entry("expires_in_minutes".into()).or_default().push(e.to_string());
            ExpiresInMinutes::default()
        }
    };
    let e2e = req.e2e.unwrap_or(false);
    let destination = match &req.destination {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(body)) => match parse_destination(body, "destination.", e2e) {
            Ok(d) => Some(d),
            Err(ApiError::Validation(fields)) => {
                errors.extend(fields);
                None
            }
            Err(e) => return Err(e),
        },
        Some(_) => {
            errors.entry("destination".into()).or_default().push("must be an object".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let new = NewSession { name, expires_in, destination, e2e };
    let Created { session, creator_token } = state.sessions.create(new).await?;
    Ok(HttpResponse::Created().json(SessionCreated {
        session_id: session.id.to_string(),
        join_link: state.settings.join_link(session.id),
        expires_at: rfc3339(&session.expires_at),
        name: session.name,
        creator_token,
        destination: session.destination,
        locked: session.locked,
        e2e: session.e2e,
    }))
}

/// Shows a session.
#[utoipa::path(
    get, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "Unknown or purged session", body = super::openapi::ErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn show(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let now = Utc::now();
    let session = state.sessions.load(id, now).await?;
    Ok(HttpResponse::Ok().json(SessionView::new(&session, state.sessions.is_active(&session, now))))
}

/// Ends a session (creator only): everyone gets `session_ended` and the channels close.
#[utoipa::path(
    delete, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Session ended"),
        (status = 401, description = "Missing or invalid token", body = super::openapi::ErrorBody),
        (status = 403, description = "Not this session's creator token", body = super::openapi::ErrorBody),
        (status = 404, description = "Unknown session", body = super::openapi::ErrorBody),
        (status = 410, description = "Session already ended", body = super::openapi::ErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn end(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let claims = bearer_claims(&req, state.sessions.tokens())?;
    let id = session_id(&path)?;
    state.sessions.end(&claims, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PATCH /api/sessions/{id}` body: each field changes only when present; unknown fields are
/// ignored. (Documentation only: the body is read field by field, so that `null` and absent differ.)
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateSessionRequest {
    /// Lock (joins answer 403) or unlock.
    pub locked: Option<bool>,
    /// A new title (the rules of `POST /api/sessions`), or `null` to clear it.
    // The pattern is `SessionName::parse` exactly, as for `CreateSessionRequest::name`.
    #[schema(
        nullable,
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*([^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([^\u0000-\u001f\u007f-\u009f]{0,98}[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?)?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub name: Option<String>,
}

/// Reads a `PATCH` body into the changes it asks for.
fn changes_of(body: &serde_json::Map<String, serde_json::Value>) -> Result<Changes, ApiError> {
    use serde_json::Value;
    let mut errors = FieldErrors::new();
    // `null` counts as absent, as for every field; only `name` gives null a meaning (clear it).
    let locked = match body.get("locked") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.entry("locked".into()).or_default().push("must be true or false".into());
            None
        }
    };
    let name = match body.get("name") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match SessionName::parse(s) {
            Ok(name) => Some(name.map(SessionName::into_string)),
            Err(e) => {
                errors.entry("name".into()).or_default().push(e.to_string());
                None
            }
        },
        Some(_) => {
            errors.entry("name".into()).or_default().push("must be a string or null".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Changes { locked, name })
}

/// Locks, unlocks or renames a session (creator only); everyone gets `session_updated`.
#[utoipa::path(
    patch, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    security(("bearer" = [])),
    request_body(content = UpdateSessionRequest, content_type = "application/json",
        description = "Optional: an empty body changes nothing"),
    responses(
        (status = 200, description = "The session as it is now", body = SessionView),
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
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let claims = bearer_claims(&req, state.sessions.tokens())?;
    let id = session_id(&path)?;
    let changes = changes_of(&body.0)?;
    let session = state.sessions.update(&claims, id, changes).await?;
    let now = Utc::now();
    Ok(HttpResponse::Ok().json(SessionView::new(&session, state.sessions.is_active(&session, now))))
}

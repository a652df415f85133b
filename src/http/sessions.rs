//! `/api/sessions`: create, show and end sessions.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::error::{ApiError, FieldErrors};
use super::{bearer_claims, session_id, AppState};
use crate::auth::{Claims, Role};
use crate::db;
use crate::domain::{EndReason, ExpiresInMinutes, Session, SessionId, SessionName};
use crate::realtime::messages::SessionEnded;
use crate::views::{rfc3339, SessionView};

/// `POST /api/sessions` body; unknown fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// Optional title, at most 100 characters after trimming.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Lifetime in minutes, 1..=1440; 1440 when absent.
    #[schema(minimum = 1, maximum = 1440)]
    pub expires_in_minutes: Option<i64>,
}

/// `POST /api/sessions` answer.
#[derive(Debug, Serialize, ToSchema)]
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
}

/// The current time to the second, as the API shows and tokens carry it.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now)
}

/// Creates a session.
#[utoipa::path(
    post, path = "/api/sessions", tag = "sessions",
    request_body(content = CreateSessionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Session created", body = SessionCreated),
        (status = 400, description = "Malformed JSON", body = super::openapi::ErrorBody),
        (status = 413, description = "Body over 16384 bytes", body = super::openapi::ErrorBody),
        (status = 415, description = "Body is not application/json", body = super::openapi::ErrorBody),
        (status = 422, description = "Validation failed", body = super::openapi::ValidationErrorBody),
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
    let expires = match req.expires_in_minutes.map(ExpiresInMinutes::parse).transpose() {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => {
            errors.entry("expires_in_minutes".into()).or_default().push(e.to_string());
            ExpiresInMinutes::default()
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let now = now();
    let session = Session {
        id: SessionId::new(),
        name: name.map(SessionName::into_string),
        created_at: now,
        expires_at: now + expires.duration(),
        last_activity_at: now,
        ended: None,
        participant_count: 0,
    };
    let creator_token = state.tokens.issue(&Claims::creator(&session, now))?;
    let stored = session.clone();
    state.db.run(move |conn| db::sessions::insert(conn, &stored)).await?;

    Ok(HttpResponse::Created().json(SessionCreated {
        session_id: session.id.to_string(),
        join_link: format!("{}/join/{}", state.settings.join_base_url, session.id),
        expires_at: rfc3339(&session.expires_at),
        name: session.name,
        creator_token,
    }))
}

/// Loads a session that has not been purged yet; anything else is 404.
pub async fn load(state: &AppState, id: SessionId, now: DateTime<Utc>) -> Result<Session, ApiError> {
    let found = state.db.run(move |conn| db::sessions::find(conn, id)).await?;
    settle(state, found, now).await
}

/// Whether SQL's last activity of the session must be checked against the ephemeral store
/// before it is believed: it lags behind the sockets by up to a flush, so a session SQL calls
/// inactive may not be.
pub fn activity_in_doubt(session: &Session, now: DateTime<Utc>, inactivity: chrono::Duration) -> bool {
    session.ended.is_none() && now >= session.last_activity_at + inactivity && now < session.expires_at
}

/// Makes a session just read from SQL fit to act on: a missing or purged one is 404, and
/// when its activity is in doubt, the store's is taken and written back so joins see it too.
pub async fn settle(state: &AppState, found: Option<Session>, now: DateTime<Utc>) -> Result<Session, ApiError> {
    let mut session = found.ok_or(ApiError::NotFound("session not found"))?;
    let inactivity = state.inactivity();
    if activity_in_doubt(&session, now, inactivity) {
        if let Ok(Some(at)) = state.store.last_activity(session.id).await {
            if at > session.last_activity_at {
                session.last_activity_at = at;
                let id = session.id;
                state.db.run(move |conn| db::sessions::touch_activity(conn, id, at)).await?;
            }
        }
    }
    // Past its retention an ended session is as good as purged, whether or not the sweep ran.
    if session.end_reason(now, inactivity).is_some()
        && session.ends_at(inactivity) + chrono_duration(state.settings.limits.ended_retention) <= now
    {
        return Err(ApiError::NotFound("session not found"));
    }
    Ok(session)
}

/// A std duration as a chrono one (saturating).
pub fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
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
    let session = load(&state, id, now).await?;
    let active = session.is_active(now, state.inactivity());
    Ok(HttpResponse::Ok().json(SessionView::new(&session, active)))
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
    let claims = bearer_claims(&req, &state.tokens)?;
    let id = session_id(&path)?;
    if claims.role != Role::Creator || claims.sid != id {
        return Err(ApiError::Forbidden("only the session's creator can end it"));
    }
    let now = now();
    let session = load(&state, id, now).await?;
    if session.end_reason(now, state.inactivity()).is_some() {
        return Err(ApiError::SessionEnded);
    }
    let ended = state.db.run(move |conn| db::sessions::mark_ended(conn, id, EndReason::EndedByCreator, now)).await?;
    if !ended {
        return Err(ApiError::SessionEnded);
    }
    state.registry.do_send(SessionEnded { session: id, reason: EndReason::EndedByCreator });
    Ok(HttpResponse::NoContent().finish())
}

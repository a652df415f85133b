//! `/api/sessions/{id}/join` and `/api/sessions/{id}/participants`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::error::{ApiError, FieldErrors};
use super::{bearer_claims, session_id, AppState};
use crate::domain::{AvatarColor, DisplayName, ParticipantId, HIDDEN};
use crate::sessions::NewParticipant;
use crate::views::{ParticipantList, ParticipantView};

/// `POST /api/sessions/{id}/join` body; unknown fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct JoinRequest {
    /// 1..=50 characters after trimming whitespace, none of them a control character.
    // Read as an Option so that a missing name is a 422 naming the field. The pattern is
    // `DisplayName::parse` exactly (Unicode whitespace, the Cc controls): leading and trailing
    // whitespace, then 1..=50 characters that start and end with neither.
    #[schema(value_type = String, required = true, pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*([^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]|[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]{0,48}[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    pub display_name: Option<String>,
    /// `#RRGGBB`; a palette colour when absent.
    // The lengths keep out the trailing newline that some regex engines let `$` match before.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$", min_length = 7, max_length = 7)]
    pub avatar_color: Option<String>,
}

/// `POST /api/sessions/{id}/join` answer; `Debug` hides the token.
#[derive(Serialize, ToSchema)]
pub struct Joined {
    /// The new participant's id.
    pub user_id: String,
    /// The participant's token (JWT) for the WebSocket and for leaving.
    pub websocket_token: String,
    /// Where to open the socket: `PUBLIC_URL` (ws/wss) + `/socket/websocket`.
    pub websocket_url: String,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("user_id", &self.user_id)
            .field("websocket_token", &HIDDEN)
            .field("websocket_url", &self.websocket_url)
            .finish()
    }
}

/// Joins a session; everyone in it gets `participant_joined`.
#[utoipa::path(
    post, path = "/api/sessions/{id}/join", tag = "participants",
    params(("id" = String, Path, description = "Session id")),
    request_body(content = JoinRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Joined", body = Joined),
        (status = 400, description = "Malformed JSON", body = super::openapi::ErrorBody),
        (status = 403, description = "Session locked by its creator", body = super::openapi::ErrorBody,
            example = json!({"errors": {"detail": "session is locked"}})),
        (status = 404, description = "Unknown session", body = super::openapi::ErrorBody),
        (status = 409, description = "Session full", body = super::openapi::ErrorBody),
        (status = 410, description = "Session ended", body = super::openapi::ErrorBody),
        (status = 413, description = "Body over 16384 bytes", body = super::openapi::ErrorBody),
        (status = 415, description = "Body is not application/json", body = super::openapi::ErrorBody),
        (status = 422, description = "Validation failed", body = super::openapi::ValidationErrorBody),
        (status = 429, description = "Too many joins from this address", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds to wait before trying again")),
            example = json!({"errors": {"detail": "too many requests"}})),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn join(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<JoinRequest>,
) -> Result<HttpResponse, ApiError> {
    let sid = session_id(&path)?;
    let JsonBody(req) = body;
    let mut errors = FieldErrors::new();
    let display_name = DisplayName::parse(req.display_name.as_deref().unwrap_or_default())
        .map_err(|e| errors.entry("display_name".into()).or_default().push(e.to_string()))
        .ok();
    let avatar_color = match req.avatar_color.as_deref().map(AvatarColor::parse).transpose() {
        Ok(color) => color.unwrap_or_else(AvatarColor::random),
        Err(e) => {
            errors.entry("avatar_color".into()).or_default().push(e.to_string());
            AvatarColor::random()
        }
    };
    let Some(display_name) = display_name.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };

    let joined = state.sessions.join(sid, NewParticipant { display_name, avatar_color }).await?;
    Ok(HttpResponse::Created().json(Joined {
        user_id: joined.participant.id.to_string(),
        websocket_token: joined.websocket_token,
        websocket_url: state.settings.websocket_url_for(sid),
    }))
}

/// Lists a session's participants (removed ones are not listed).
#[utoipa::path(
    get, path = "/api/sessions/{id}/participants", tag = "participants",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "Participants", body = ParticipantList),
        (status = 404, description = "Unknown session", body = super::openapi::ErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn list(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let sid = session_id(&path)?;
    let participants = state.sessions.participants(sid).await?;
    let participants = participants.iter().map(|p| ParticipantView::new(&p.participant, p.is_active)).collect();
    Ok(HttpResponse::Ok().json(ParticipantList { participants }))
}

/// Removes a participant: with its own token (`left`) or the creator's (`removed`).
#[utoipa::path(
    delete, path = "/api/sessions/{id}/participants/{user_id}", tag = "participants",
    params(
        ("id" = String, Path, description = "Session id"),
        ("user_id" = String, Path, description = "Participant id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed; everyone gets participant_left"),
        (status = 401, description = "Missing, invalid or revoked token", body = super::openapi::ErrorBody),
        (status = 403, description = "Another participant's token, or another session's", body = super::openapi::ErrorBody),
        (status = 404, description = "Unknown session or participant", body = super::openapi::ErrorBody),
        (status = 410, description = "Session ended", body = super::openapi::ErrorBody),
        (status = 503, description = "Database unavailable", body = super::openapi::ErrorBody),
    )
)]
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let claims = bearer_claims(&req, state.sessions.tokens())?;
    let (raw_sid, raw_uid) = path.into_inner();
    let sid = session_id(&raw_sid)?;
    let uid: ParticipantId = raw_uid.parse().map_err(|_| ApiError::NotFound("participant not found"))?;
    state.sessions.remove(&claims, sid, uid).await?;
    Ok(HttpResponse::NoContent().finish())
}

//! `/api/sessions/{id}/join` and `/api/sessions/{id}/participants`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::error::{ApiError, FieldErrors};
use super::sessions::{activity_in_doubt, chrono_duration, load, now, settle};
use super::{bearer_claims, session_id, AppState};
use crate::auth::{Claims, Role};
use crate::db::{self, participants::JoinOutcome, Step};
use crate::domain::{AvatarColor, DisplayName, LeaveReason, Participant, ParticipantId};
use crate::realtime::messages::{ParticipantJoined, ParticipantLeft};
use crate::views::{ParticipantList, ParticipantView};

/// `POST /api/sessions/{id}/join` body; unknown fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct JoinRequest {
    /// 1..=50 characters after trimming.
    #[schema(min_length = 1, max_length = 50)]
    pub display_name: Option<String>,
    /// `#RRGGBB`; a palette colour when absent.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$")]
    pub avatar_color: Option<String>,
}

/// `POST /api/sessions/{id}/join` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    /// The new participant's id.
    pub user_id: String,
    /// The participant's token (JWT) for the WebSocket and for leaving.
    pub websocket_token: String,
    /// Where to open the socket: `PUBLIC_URL` (ws/wss) + `/socket/websocket`.
    pub websocket_url: String,
}

/// Joins a session; everyone in it gets `participant_joined`.
#[utoipa::path(
    post, path = "/api/sessions/{id}/join", tag = "participants",
    params(("id" = String, Path, description = "Session id")),
    request_body(content = JoinRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Joined", body = Joined),
        (status = 400, description = "Malformed JSON", body = super::openapi::ErrorBody),
        (status = 404, description = "Unknown session", body = super::openapi::ErrorBody),
        (status = 409, description = "Session full", body = super::openapi::ErrorBody),
        (status = 410, description = "Session ended", body = super::openapi::ErrorBody),
        (status = 413, description = "Body over 16384 bytes", body = super::openapi::ErrorBody),
        (status = 415, description = "Body is not application/json", body = super::openapi::ErrorBody),
        (status = 422, description = "Validation failed", body = super::openapi::ValidationErrorBody),
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

    let now = now();
    let participant = Participant {
        id: ParticipantId::new(),
        session_id: sid,
        display_name,
        avatar_color,
        // Not truncated to the second: the list is ordered by it, and joins within one second
        // would otherwise come out in the order of their random ids.
        joined_at: Utc::now(),
        last_seen_at: now,
        removed_at: None,
    };
    let limits = &state.settings.limits;
    let (max, inactivity) = (limits.max_participants, state.inactivity());
    let join = {
        let participant = participant.clone();
        move |conn: &mut db::DbConnection| db::participants::join(conn, &participant, now, max, inactivity)
    };
    // One trip to the database: the session is read and joined together, unless its activity
    // must first be taken from the store (the join itself re-checks the session's state).
    let (found, outcome) = state
        .db
        .run(move |conn| {
            let found = db::sessions::find(conn, sid)?;
            let ready = found.as_ref().is_some_and(|s| !activity_in_doubt(s, now, inactivity));
            Ok((found, Step::run_if(ready, conn, join)?))
        })
        .await?;
    let session = settle(&state, found, now).await?;
    match outcome.finish(&state.db).await? {
        JoinOutcome::Joined => {}
        JoinOutcome::SessionNotFound => return Err(ApiError::NotFound("session not found")),
        JoinOutcome::SessionEnded => return Err(ApiError::SessionEnded),
        JoinOutcome::SessionFull => return Err(ApiError::SessionFull),
    }

    let websocket_token = state.tokens.issue(&Claims::participant(participant.id, &session, now))?;
    let user_id = participant.id.to_string();
    state.registry.do_send(ParticipantJoined { session: sid, participant });
    Ok(HttpResponse::Created().json(Joined { user_id, websocket_token, websocket_url: state.settings.websocket_url() }))
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
    let now = Utc::now();
    let session = load(&state, sid, now).await?;
    let live = session.is_active(now, state.inactivity());
    let idle = chrono_duration(state.settings.limits.participant_idle);
    let mut participants = state.db.run(move |conn| db::participants::list_live(conn, sid)).await?;
    // SQL's last_seen lags behind socket activity; the ephemeral store has the latest.
    match state.store.last_seen(sid).await {
        Ok(seen) => {
            for p in &mut participants {
                if let Some(at) = seen.get(&p.id) {
                    p.last_seen_at = p.last_seen_at.max(*at);
                }
            }
        }
        Err(e) => log::warn!("{e}"),
    }
    let participants = participants.iter().map(|p| ParticipantView::new(p, p.is_active(now, idle, live))).collect();
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
    let claims = bearer_claims(&req, &state.tokens)?;
    let (raw_sid, raw_uid) = path.into_inner();
    let sid = session_id(&raw_sid)?;
    let uid: ParticipantId = raw_uid.parse().map_err(|_| ApiError::NotFound("participant not found"))?;
    let reason = match claims.role {
        _ if claims.sid != sid => return Err(ApiError::Forbidden("token belongs to another session")),
        Role::Creator => LeaveReason::Removed,
        Role::Participant if claims.participant_id() == Some(uid) => LeaveReason::Left,
        Role::Participant => return Err(ApiError::Forbidden("participants can only remove themselves")),
    };
    let now = now();
    let inactivity = state.inactivity();
    let left = reason == LeaveReason::Left;
    let remove = move |conn: &mut db::DbConnection| db::participants::remove(conn, sid, uid, reason, now);
    // One trip to the database when nothing below can refuse the removal; otherwise the
    // checks come first and the removal takes a second trip.
    let (me, found, removed) = state
        .db
        .run(move |conn| {
            let me = if left { db::participants::find(conn, uid)? } else { None };
            let found = db::sessions::find(conn, sid)?;
            let clear = (!left || me.as_ref().is_some_and(|p| p.removed_at.is_none()))
                && found
                    .as_ref()
                    .is_some_and(|s| !activity_in_doubt(s, now, inactivity) && s.end_reason(now, inactivity).is_none());
            Ok((me, found, Step::run_if(clear, conn, remove)?))
        })
        .await?;
    // A participant's token dies with its membership.
    if left && me.is_none_or(|p| p.removed_at.is_some()) {
        return Err(ApiError::Unauthorized("token no longer valid: participant has left"));
    }
    let session = settle(&state, found, now).await?;
    if session.end_reason(now, inactivity).is_some() {
        return Err(ApiError::SessionEnded);
    }
    if !removed.finish(&state.db).await? {
        return Err(ApiError::NotFound("participant not found"));
    }
    state.registry.do_send(ParticipantLeft { session: sid, user: uid, reason });
    Ok(HttpResponse::NoContent().finish())
}

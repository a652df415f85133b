//! The one mapping from failures to HTTP responses, in Phoenix's error shape.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::abuse::Refused;
use crate::auth::AuthError;
use crate::db::DbError;
use crate::sessions::SessionsError;
use crate::telemetry::Chain;

/// Validation messages per field, as `{"errors": {"field": ["message"]}}`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Everything an API call can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not valid JSON.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or a token that is invalid, expired or revoked.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: a valid token that does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: unknown (or malformed) session, participant or route.
    #[error("{0}")]
    NotFound(&'static str),
    /// 405: a known path that does not serve this method; carries the path's `Allow` value.
    #[error("Method Not Allowed")]
    MethodNotAllowed(String),
    /// 408: the body did not arrive in time; the connection closes.
    #[error("request body took too long")]
    RequestTimeout,
    /// 409: the session has its maximum of participants.
    #[error("session is full")]
    SessionFull,
    /// 410: the session has ended.
    #[error("session has ended")]
    SessionEnded,
    /// 413: the body is over the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415: a body that is not `application/json`.
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// 422: fields that fail validation.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 429: an abuse limit (SPEC §11); `Retry-After` says when to try again.
    #[error("too many requests")]
    TooManyRequests(#[from] Refused),
    /// 503: a dependency (database, Redis) is down or too slow.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// 500: a bug or an unexpected failure; details are logged, never shown.
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    /// A 422 for a single field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(field.into(), vec![message.into()])]))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::SessionFull => StatusCode::CONFLICT,
            Self::SessionEnded => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            Self::Validation(fields) => json!({ "errors": fields }),
            other => json!({ "errors": { "detail": other.to_string() } }),
        };
        let mut res = HttpResponse::build(self.status_code());
        match self {
            Self::MethodNotAllowed(allow) => {
                res.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
            }
            Self::Unauthorized(_) => {
                res.insert_header(("www-authenticate", "Bearer"));
            }
            Self::Unavailable(_) => {
                res.insert_header(("retry-after", "1"));
            }
            Self::TooManyRequests(refused) => {
                res.insert_header(("retry-after", refused.retry_after_secs.to_string()));
            }
            // The rest of a slow body is not worth waiting for.
            Self::RequestTimeout => {
                res.force_close();
            }
            _ => {}
        }
        res.json(body)
    }
}

impl From<SessionsError> for ApiError {
    fn from(err: SessionsError) -> Self {
        match err {
            SessionsError::NotFound(what) => Self::NotFound(what),
            SessionsError::SessionEnded => Self::SessionEnded,
            SessionsError::SessionFull => Self::SessionFull,
            SessionsError::Forbidden(why) => Self::Forbidden(why),
            SessionsError::Revoked(why) => Self::Unauthorized(why),
            SessionsError::Database(e) => e.into(),
            SessionsError::Token(e) => e.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(_) | DbError::Timeout | DbError::Task(_) => {
                log::warn!("{}", Chain(&err));
                Self::Unavailable("database unavailable")
            }
            DbError::Query(_) | DbError::Migration(_) | DbError::CreateDir { .. } => {
                log::error!("{}", Chain(&err));
                Self::Internal
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => Self::Unauthorized("missing bearer token"),
            AuthError::Invalid(_) => Self::Unauthorized("invalid or expired token"),
            AuthError::Signing(_) => {
                log::error!("{}", Chain(&err));
                Self::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(err: ApiError) -> serde_json::Value {
        let bytes = to_bytes(err.error_response().into_body()).await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    #[actix_web::test]
    async fn shapes() {
        assert_eq!(body_of(ApiError::SessionFull).await, json!({"errors": {"detail": "session is full"}}));
        assert_eq!(
            body_of(ApiError::field("display_name", "can't be blank")).await,
            json!({"errors": {"display_name": ["can't be blank"]}})
        );
        assert_eq!(ApiError::Internal.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let refused = ApiError::from(Refused { limit: crate::abuse::Limit::Joins, retry_after_secs: 3 });
        let res = refused.error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
        assert_eq!(body_of(refused).await, json!({"errors": {"detail": "too many requests"}}));
        assert_eq!(ApiError::from(DbError::Timeout).status_code(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

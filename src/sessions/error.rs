//! What a use case can refuse or fail with; `http::error` maps it to a status once.

use crate::auth::AuthError;
use crate::db::DbError;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// 404: no such session or participant (or a session purged, or past its retention).
    #[error("{0}")]
    NotFound(&'static str),
    /// 410: the session is over.
    #[error("session has ended")]
    SessionEnded,
    /// 409: the session has its maximum of participants.
    #[error("session is full")]
    SessionFull,
    /// 403: a valid token that does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 401: the token was valid once, but its participant has left.
    #[error("{0}")]
    Revoked(&'static str),
    /// 503 or 500: the database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// 500: a token could not be signed.
    #[error(transparent)]
    Token(#[from] AuthError),
}

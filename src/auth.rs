//! Token issue and check: HS256 JWTs with the algorithm pinned.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{ParticipantId, Session, SessionId};

/// The `iss` claim of every token this server issues.
pub const ISSUER: &str = "location-sharing";

/// Clock skew allowed on `exp`: none, because `exp` is the session's own end.
const LEEWAY_SECONDS: u64 = 0;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ends the session and removes participants.
    Creator,
    /// Opens sockets and leaves.
    Participant,
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, always [`ISSUER`].
    pub iss: String,
    /// The participant's id, or the session id for the creator.
    pub sub: String,
    /// The session the token belongs to.
    pub sid: SessionId,
    /// Creator or participant.
    pub role: Role,
    /// Expiry (Unix seconds): the session's `expires_at`.
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
}

impl Claims {
    /// The creator's claims for a session.
    pub fn creator(session: &Session, now: DateTime<Utc>) -> Self {
        Self::new(session.id.to_string(), session, Role::Creator, now)
    }

    /// A participant's claims.
    pub fn participant(id: ParticipantId, session: &Session, now: DateTime<Utc>) -> Self {
        Self::new(id.to_string(), session, Role::Participant, now)
    }

    fn new(sub: String, session: &Session, role: Role, now: DateTime<Utc>) -> Self {
        Self {
            iss: ISSUER.to_owned(),
            sub,
            sid: session.id,
            role,
            exp: session.expires_at.timestamp(),
            iat: now.timestamp(),
        }
    }

    /// The participant a participant token speaks for.
    pub fn participant_id(&self) -> Option<ParticipantId> {
        match self.role {
            Role::Participant => self.sub.parse().ok(),
            Role::Creator => None,
        }
    }

    /// When the token stops working.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.exp, 0)
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token was presented.
    #[error("missing token")]
    Missing,
    /// The token is malformed, forged, expired or of another issuer.
    #[error("invalid token")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// A token could not be signed.
    #[error("cannot sign token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// Issues and checks tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    /// Keys for an HMAC secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// Signs claims.
    pub fn issue(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(AuthError::Signing)
    }

    /// Checks signature, algorithm, issuer and expiry, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn session(expires_in: Duration) -> Session {
        let now = Utc::now();
        Session {
            id: SessionId::new(),
            name: None,
            created_at: now,
            expires_at: now + expires_in,
            last_activity_at: now,
            ended: None,
            participant_count: 0,
            locked: false,
            e2e: false,
            destination: None,
        }
    }

    fn b64(json: &str) -> String {
        use std::fmt::Write;
        // Minimal base64url without padding, enough to forge headers in tests.
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = json.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                let _ = write!(out, "{}", ALPHABET[idx] as char);
            }
        }
        out
    }

    #[test]
    fn round_trip() {
        let tokens = Tokens::new(b"0123456789abcdef0123456789abcdef");
        let s = session(Duration::minutes(5));
        let pid = ParticipantId::new();
        let claims = Claims::participant(pid, &s, Utc::now());
        let token = tokens.issue(&claims).unwrap_or_else(|e| panic!("{e}"));
        let back = tokens.verify(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, claims);
        assert_eq!(back.participant_id(), Some(pid));
        assert_eq!(back.exp, s.expires_at.timestamp());
    }

    #[test]
    fn refuses_other_secret_expired_and_alg_none() {
        let tokens = Tokens::new(b"secret-one");
        let other = Tokens::new(b"secret-two");
        let s = session(Duration::minutes(5));
        let token = other.issue(&Claims::creator(&s, Utc::now())).unwrap_or_else(|e| panic!("{e}"));
        assert!(tokens.verify(&token).is_err());

        let expired = session(Duration::seconds(-5));
        let token = tokens.issue(&Claims::creator(&expired, Utc::now())).unwrap_or_else(|e| panic!("{e}"));
        assert!(tokens.verify(&token).is_err());

        let payload = serde_json::to_string(&Claims::creator(&s, Utc::now())).unwrap_or_default();
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&payload));
        assert!(tokens.verify(&none).is_err());
        assert!(tokens.verify("").is_err());
        assert!(tokens.verify("garbage").is_err());
    }

    #[test]
    fn creator_has_no_participant_id() {
        let s = session(Duration::minutes(5));
        assert_eq!(Claims::creator(&s, Utc::now()).participant_id(), None);
    }
}

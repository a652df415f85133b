//! JSON shapes shared by the REST API and the WebSocket snapshot.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::domain::{Destination, Participant, Session};

/// RFC 3339 UTC with a `Z`, to the second.
pub fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ser_time<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(at))
}

/// `GET /api/sessions/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Session id (UUID v4).
    pub id: String,
    /// Optional title.
    pub name: Option<String>,
    /// Creation time.
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    /// Expiry time.
    #[serde(serialize_with = "ser_time")]
    pub expires_at: DateTime<Utc>,
    /// Non-removed participants.
    pub participant_count: u32,
    /// False once the session has ended, expired or gone inactive.
    pub is_active: bool,
    /// While true, joins are refused (403); participants already in are unaffected.
    pub locked: bool,
    /// Whether positions and the destination are sealed (SPEC §10).
    pub e2e: bool,
    /// Where everyone is heading, or `null`.
    #[schema(value_type = Option<DestinationView>)]
    pub destination: Option<Destination>,
}

/// A session's destination, as REST answers it and `destination_set` broadcasts it: a place in
/// the clear, or sealed in an end-to-end encrypted session. (Documentation only: the wire form is
/// `domain::Destination`'s.)
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DestinationView {
    /// A meeting point the server measures everyone against.
    Place(PlaceView),
    /// An end-to-end encrypted session's (SPEC §10).
    Sealed(SealedDestinationView),
}

/// A sealed destination: the server keeps and relays it, and computes no distance, ETA or arrival.
#[derive(Debug, Serialize, ToSchema)]
pub struct SealedDestinationView {
    /// `base64url(iv ‖ ciphertext ‖ tag)`, AES-256-GCM with the additional data
    /// `"{session_id}:destination"`.
    #[schema(pattern = "^[A-Za-z0-9_-]{24,2048}$", min_length = 24, max_length = 2048)]
    pub sealed: String,
    /// When it was set (RFC 3339).
    pub set_at: String,
}

/// A meeting point in the clear.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaceView {
    /// Latitude of the meeting point.
    pub lat: f64,
    /// Longitude of the meeting point.
    pub lng: f64,
    /// Within this many metres a participant has arrived (20..=5000).
    pub radius_m: f64,
    /// What the place is called, or `null`.
    pub label: Option<String>,
    /// When it was set (RFC 3339).
    pub set_at: String,
}

impl SessionView {
    /// The view of a session at `now`.
    pub fn new(session: &Session, is_active: bool) -> Self {
        Self {
            id: session.id.to_string(),
            name: session.name.clone(),
            created_at: session.created_at,
            expires_at: session.expires_at,
            participant_count: session.participant_count,
            is_active,
            locked: session.locked,
            e2e: session.e2e,
            destination: session.destination.clone(),
        }
    }
}

/// One participant, as listed by REST and in the join snapshot.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParticipantView {
    /// Participant id (UUID v4).
    pub user_id: String,
    /// Name shown to others.
    pub display_name: String,
    /// Marker colour, `#RRGGBB`.
    pub avatar_color: String,
    /// When it was last seen.
    #[serde(serialize_with = "ser_time")]
    pub last_seen: DateTime<Utc>,
    /// Seen within `PARTICIPANT_IDLE_SECONDS` and not left.
    pub is_active: bool,
}

impl ParticipantView {
    /// The view of a participant with its activity already worked out.
    pub fn new(p: &Participant, is_active: bool) -> Self {
        Self {
            user_id: p.id.to_string(),
            display_name: p.display_name.as_str().to_owned(),
            avatar_color: p.avatar_color.as_str().to_owned(),
            last_seen: p.last_seen_at,
            is_active,
        }
    }
}

/// `GET /api/sessions/{id}/participants`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantList {
    /// Non-removed participants in joining order.
    pub participants: Vec<ParticipantView>,
}

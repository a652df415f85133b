//! What an end-to-end encrypted session carries instead of coordinates (SPEC §10): a sealed
//! message the server can check the form of, keep and relay, but not open.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::location::LocationErrors;
use super::{Invalid, ParticipantId};

/// A sealed message: base64url (`A-Za-z0-9-_`, no padding), 24 to 2,048 characters.
///
/// Its form and size are all the server knows of it; what it holds (the IV, the ciphertext and
/// the tag of AES-256-GCM) only the session's members can read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sealed(String);

impl Sealed {
    /// The shortest accepted.
    pub const MIN_CHARS: usize = 24;
    /// The longest accepted.
    pub const MAX_CHARS: usize = 2048;
    /// The refusal of a payload that carries clear location fields (or numbers) where only a
    /// sealed message may be.
    pub const CLEAR_FIELDS_REFUSED: &'static str =
        "must replace the location fields: this session is end-to-end encrypted";

    /// Checks the form and size of a sealed message; a refusal is the message for its field.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        // The bounds are in the messages as literals, so that a refusal needs no allocation.
        if s.len() < Self::MIN_CHARS {
            return Err("should be at least 24 character(s)");
        }
        if s.len() > Self::MAX_CHARS {
            return Err("should be at most 2048 character(s)");
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("must be base64url (A-Z, a-z, 0-9, - and _, without padding)");
        }
        Ok(Self(s.to_owned()))
    }

    /// Reads the `sealed` field of a payload; a refusal is the field's message.
    pub fn of_field(body: &Map<String, Value>) -> Result<Self, &'static str> {
        match body.get("sealed") {
            None | Some(Value::Null) => Err("can't be blank"),
            Some(Value::String(s)) => Self::parse(s),
            Some(_) => Err("must be a string"),
        }
    }

    /// The message as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sealed {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s).map_err(Invalid::new)
    }
}

impl From<Sealed> for String {
    fn from(s: Sealed) -> Self {
        s.0
    }
}

// Not secret to the server, but not worth a log line either: only its size says anything.
impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} chars)", self.0.len())
    }
}

/// The location fields of SPEC §3: none may travel in the clear in an end-to-end encrypted session.
const CLEAR_FIELDS: [&str; 6] = ["lat", "lng", "accuracy", "heading", "speed", "timestamp"];

/// Reads an e2e session's `location_update` payload: `{"sealed": S}` and no clear location field.
pub fn sealed_location(payload: &Map<String, Value>) -> Result<Sealed, LocationErrors> {
    let refuse = |message: &'static str| LocationErrors::from([("sealed", vec![message])]);
    if CLEAR_FIELDS.iter().any(|f| payload.contains_key(*f)) {
        return Err(refuse(Sealed::CLEAR_FIELDS_REFUSED));
    }
    Sealed::of_field(payload).map_err(refuse)
}

/// A sealed location as broadcast and listed: `{"user_id","sealed","received_at"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedView {
    /// Whose location.
    pub user_id: String,
    /// The message, byte for byte as its sender sent it.
    pub sealed: Sealed,
    /// When the server received it (RFC 3339 UTC, milliseconds): the only time it can vouch for.
    pub received_at: String,
}

impl SealedView {
    /// The wire form of `participant`'s sealed location, received at `at`.
    pub fn new(participant: ParticipantId, sealed: Sealed, at: DateTime<Utc>) -> Self {
        Self { user_id: participant.to_string(), sealed, received_at: at.to_rfc3339_opts(SecondsFormat::Millis, true) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn accepts_the_alphabet_and_the_bounds() {
        for ok in ["A".repeat(24), "a-_9".repeat(512), "Zz09-_".repeat(4)] {
            assert!(Sealed::parse(&ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_short_long_and_foreign_characters() {
        for (bad, message) in [
            ("A".repeat(23), "should be at least 24 character(s)"),
            ("A".repeat(2049), "should be at most 2048 character(s)"),
            (format!("{}=", "A".repeat(24)), "must be base64url (A-Z, a-z, 0-9, - and _, without padding)"),
            (format!("{}+/", "A".repeat(24)), "must be base64url (A-Z, a-z, 0-9, - and _, without padding)"),
            (format!("{}é", "A".repeat(24)), "must be base64url (A-Z, a-z, 0-9, - and _, without padding)"),
        ] {
            let errors = sealed_location(&payload(json!({ "sealed": bad }))).err().unwrap_or_default();
            assert_eq!(errors.get("sealed"), Some(&vec![message]), "{bad}");
        }
    }

    #[test]
    fn refuses_clear_coordinates_and_wrong_types() {
        let s = "A".repeat(32);
        for bad in [
            json!({"lat": 1, "lng": 2}),
            json!({"sealed": s, "lat": 1}),
            json!({"sealed": s, "timestamp": "2026-01-01T00:00:00Z"}),
            json!({}),
            json!({"sealed": 5}),
            json!({"sealed": null}),
        ] {
            let errors = sealed_location(&payload(bad.clone())).err().unwrap_or_default();
            assert!(errors.contains_key("sealed") && errors.len() == 1, "{bad}: {errors:?}");
        }
        assert!(sealed_location(&payload(json!({"sealed": s, "extra": true}))).is_ok(), "unknown keys are ignored");
    }

    #[test]
    fn the_view_relays_the_message_as_sent() {
        let s = Sealed::parse("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ").unwrap_or_else(|e| panic!("{e}"));
        let at = DateTime::parse_from_rfc3339("2026-12-02T18:04:00.5Z").map(|t| t.with_timezone(&Utc));
        let view = SealedView::new(ParticipantId::new(), s, at.unwrap_or_default());
        let wire = serde_json::to_value(&view).unwrap_or_default();
        assert_eq!(wire["sealed"], "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ");
        assert_eq!(wire["received_at"], "2026-12-02T18:04:00.500Z");
        assert_eq!(wire.as_object().map(Map::len), Some(3));
        let back: SealedView = serde_json::from_value(wire).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, view);
        assert!(serde_json::from_value::<SealedView>(json!({"user_id": "x", "sealed": "short", "received_at": ""}))
            .is_err());
    }
}

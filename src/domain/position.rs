//! A participant's position in either kind of session: in the clear (SPEC §3), or sealed in an
//! end-to-end encrypted one (§10). A session holds one kind only; the session's kind decides
//! which is read, so a payload of the other kind is refused, never guessed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::location::{Location, LocationErrors, LocationView};
use super::sealed::{sealed_location, Sealed, SealedView};
use super::ParticipantId;

/// A `location_update` as a socket read it, checked for its session's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// Coordinates the server can read (and measure against the destination).
    Clear(Location),
    /// A sealed message only the session's members can open.
    Sealed(Sealed),
}

impl Position {
    /// Reads a payload for a session that is end-to-end encrypted (`e2e`) or not; `now` is the
    /// receive time.
    pub fn parse(payload: &Map<String, Value>, e2e: bool, now: DateTime<Utc>) -> Result<Self, LocationErrors> {
        if e2e {
            sealed_location(payload).map(Self::Sealed)
        } else if payload.contains_key("sealed") {
            Err(LocationErrors::from([("sealed", vec!["is only accepted in end-to-end encrypted sessions"])]))
        } else {
            Location::parse(payload, now).map(Self::Clear)
        }
    }
}

/// A position as broadcast, kept with its TTL and listed in snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PositionView {
    /// `{"user_id","lat","lng",…}`.
    Clear(LocationView),
    /// `{"user_id","sealed","received_at"}`.
    Sealed(SealedView),
}

impl PositionView {
    /// Whose position it is (as sent).
    pub fn user_id(&self) -> &str {
        match self {
            Self::Clear(view) => &view.user_id,
            Self::Sealed(view) => &view.user_id,
        }
    }

    /// The view of `participant`'s sealed position received at `at`.
    pub fn sealed(participant: ParticipantId, sealed: Sealed, at: DateTime<Utc>) -> Self {
        Self::Sealed(SealedView::new(participant, sealed, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, e2e: bool) -> Result<Position, LocationErrors> {
        Position::parse(v.as_object().unwrap_or(&Map::new()), e2e, Utc::now())
    }

    #[test]
    fn each_kind_of_session_reads_its_own_kind_only() {
        let sealed = "A".repeat(40);
        assert!(matches!(parse(json!({"lat": 1, "lng": 2}), false), Ok(Position::Clear(_))));
        assert!(matches!(parse(json!({ "sealed": sealed }), true), Ok(Position::Sealed(_))));
        for (bad, e2e) in [(json!({"lat": 1, "lng": 2}), true), (json!({ "sealed": sealed }), false)] {
            let errors = parse(bad.clone(), e2e).err().unwrap_or_default();
            assert_eq!(errors.keys().collect::<Vec<_>>(), vec![&"sealed"], "{bad}");
        }
    }

    #[test]
    fn views_read_back_as_their_own_kind() {
        let clear = match parse(json!({"lat": 1.5, "lng": 2.5}), false) {
            Ok(Position::Clear(l)) => PositionView::Clear(l.view(ParticipantId::new())),
            other => panic!("{other:?}"),
        };
        let sealed = match parse(json!({"sealed": "B".repeat(30)}), true) {
            Ok(Position::Sealed(s)) => PositionView::sealed(ParticipantId::new(), s, Utc::now()),
            other => panic!("{other:?}"),
        };
        for view in [clear, sealed] {
            let wire = serde_json::to_string(&view).unwrap_or_default();
            let back: PositionView = serde_json::from_str(&wire).unwrap_or_else(|e| panic!("{e}: {wire}"));
            assert_eq!(back, view);
        }
    }
}

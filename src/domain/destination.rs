//! The meeting point of a session (SPEC §7): where everyone is heading, set by its creator; in
//! an end-to-end encrypted session, sealed like its positions (§10).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::geo::Point;
use super::location::{optional, required, LocationErrors};
use super::{Sealed, SessionName, HIDDEN};

/// Messages per field for a refused destination.
pub type DestinationErrors = BTreeMap<&'static str, Vec<String>>;

/// A destination as the creator sends it, checked; it becomes a [`Destination`] when it is set.
#[derive(Debug, Clone, PartialEq)]
pub enum DestinationDraft {
    /// A meeting point in the clear.
    Place(PlaceDraft),
    /// An end-to-end encrypted session's, sealed.
    Sealed(Sealed),
}

/// The location fields of a destination: none may travel in the clear in an e2e session.
const PLACE_FIELDS: [&str; 4] = ["lat", "lng", "radius_m", "label"];

impl DestinationDraft {
    /// Checks a destination for a session that is end-to-end encrypted (`e2e`) or not: `{"sealed"}`
    /// there, `{"lat","lng","radius_m"?,"label"?}` elsewhere; a body of the other kind is refused.
    pub fn parse(body: &Map<String, Value>, e2e: bool) -> Result<Self, DestinationErrors> {
        let refuse = |message: &str| Err(DestinationErrors::from([("sealed", vec![message.to_owned()])]));
        if e2e {
            if PLACE_FIELDS.iter().any(|f| body.contains_key(*f)) {
                return refuse("must replace the destination fields: this session is end-to-end encrypted");
            }
            Sealed::of_field(body).map(Self::Sealed).or_else(refuse)
        } else if body.contains_key("sealed") {
            refuse("is only accepted in end-to-end encrypted sessions")
        } else {
            PlaceDraft::parse(body).map(Self::Place)
        }
    }

    /// The destination, set at `set_at`.
    pub fn set_at(self, set_at: DateTime<Utc>) -> Destination {
        match self {
            Self::Place(draft) => Destination::Place(draft.set_at(set_at)),
            Self::Sealed(sealed) => Destination::Sealed { sealed, set_at },
        }
    }
}

/// A meeting point as the creator sends it, checked.
#[derive(Clone, PartialEq)]
pub struct PlaceDraft {
    point: Point,
    radius_m: f64,
    label: Option<String>,
}

impl PlaceDraft {
    /// The radius when none is given, in metres.
    pub const DEFAULT_RADIUS_M: f64 = 100.0;
    /// The radii accepted, in metres.
    pub const RADIUS_M: std::ops::RangeInclusive<f64> = 20.0..=5000.0;

    /// Checks `{"lat","lng","radius_m"?,"label"?}`; unknown keys are ignored, as everywhere.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, DestinationErrors> {
        let mut errors = LocationErrors::new();
        let lat = required(body, "lat", -90.0..=90.0, &mut errors);
        let lng = required(body, "lng", -180.0..=180.0, &mut errors);
        let radius_m = optional(body, "radius_m", |r| Self::RADIUS_M.contains(&r), &mut errors);
        let mut errors: DestinationErrors = errors
            .into_iter()
            .map(|(field, messages)| (field, messages.into_iter().map(str::to_owned).collect()))
            .collect();
        if let Some(list) = errors.get_mut("radius_m") {
            // "is out of range" alone does not say which range.
            for m in list.iter_mut().filter(|m| *m == "is out of range") {
                *m = "must be between 20 and 5000".to_owned();
            }
        }
        let label = match body.get("label") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match SessionName::parse(s) {
                Ok(label) => label.map(SessionName::into_string),
                Err(e) => {
                    errors.entry("label").or_default().push(e.to_string());
                    None
                }
            },
            Some(_) => {
                errors.entry("label").or_default().push("must be a string".to_owned());
                None
            }
        };
        match (lat, lng) {
            (Some(lat), Some(lng)) if errors.is_empty() => {
                Ok(Self { point: Point { lat, lng }, radius_m: radius_m.unwrap_or(Self::DEFAULT_RADIUS_M), label })
            }
            _ => Err(errors),
        }
    }

    /// The meeting point, set at `set_at`.
    pub fn set_at(self, set_at: DateTime<Utc>) -> Place {
        Place { lat: self.point.lat, lng: self.point.lng, radius_m: self.radius_m, label: self.label, set_at }
    }
}

impl std::fmt::Debug for PlaceDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaceDraft").field("point", &HIDDEN).field("radius_m", &self.radius_m).finish()
    }
}

/// A session's destination, the same on the wire whichever replica sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Destination {
    /// `{"lat","lng","radius_m","label","set_at"}`: the server measures everyone against it.
    Place(Place),
    /// `{"sealed","set_at"}` in an end-to-end encrypted session: clients measure, locally.
    Sealed {
        /// The meeting point, sealed with the destination's additional data.
        sealed: Sealed,
        /// When it was set (to the second).
        #[serde(with = "rfc3339_secs")]
        set_at: DateTime<Utc>,
    },
}

impl Destination {
    /// The meeting point the server can measure against, if it can see it.
    pub fn place(&self) -> Option<&Place> {
        match self {
            Self::Place(place) => Some(place),
            Self::Sealed { .. } => None,
        }
    }

    /// When it was set.
    pub fn set_at(&self) -> DateTime<Utc> {
        match self {
            Self::Place(place) => place.set_at,
            Self::Sealed { set_at, .. } => *set_at,
        }
    }

    /// Names this destination among the session's successive ones, the same on every replica:
    /// arrivals are kept per destination, so a new one starts with nobody arrived.
    pub fn epoch(&self) -> u64 {
        match self {
            Self::Place(place) => place.epoch(),
            Self::Sealed { sealed, set_at } => {
                fnv1a(&[sealed.as_str().as_bytes(), &set_at.timestamp_micros().to_le_bytes()])
            }
        }
    }
}

/// A meeting point in the clear: `{"lat","lng","radius_m","label","set_at"}` on the wire.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// Latitude of the meeting point.
    pub lat: f64,
    /// Longitude of the meeting point.
    pub lng: f64,
    /// Within this many metres a participant has arrived.
    #[serde(serialize_with = "whole_if_whole")]
    pub radius_m: f64,
    /// What the place is called, if the creator said.
    pub label: Option<String>,
    /// When it was set (to the second).
    #[serde(with = "rfc3339_secs")]
    pub set_at: DateTime<Utc>,
}

impl Place {
    /// The meeting point.
    pub fn point(&self) -> Point {
        Point { lat: self.lat, lng: self.lng }
    }

    /// The epoch of the destination this place is ([`Destination::epoch`]).
    pub fn epoch(&self) -> u64 {
        let label = self.label.as_deref().unwrap_or_default().as_bytes();
        fnv1a(&[
            &self.lat.to_bits().to_le_bytes()[..],
            &self.lng.to_bits().to_le_bytes(),
            &self.radius_m.to_bits().to_le_bytes(),
            &self.set_at.timestamp_micros().to_le_bytes(),
            label,
        ])
    }
}

/// FNV-1a: stable across builds and replicas, unlike the standard library's hasher.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("point", &HIDDEN)
            .field("radius_m", &self.radius_m)
            .field("set_at", &self.set_at)
            .finish()
    }
}

/// `100` rather than `100.0` for a whole radius, as the creator most likely wrote it.
fn whole_if_whole<S: Serializer>(r: &f64, s: S) -> Result<S::Ok, S::Error> {
    if r.fract() == 0.0 && r.abs() < 1e15 {
        s.serialize_i64(*r as i64)
    } else {
        s.serialize_f64(*r)
    }
}

/// RFC 3339 UTC to the second with a `Z`, as every time of the API.
pub(crate) mod rfc3339_secs {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time.
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    /// Reads any RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<PlaceDraft, DestinationErrors> {
        PlaceDraft::parse(v.as_object().unwrap_or(&Map::new()))
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T18:04:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn defaults_and_wire_form() {
        let d = parse(json!({"lat": 48.8584, "lng": 2.2945})).map(|d| d.set_at(at()));
        let d = d.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            serde_json::to_value(&d).unwrap_or_default(),
            json!({"lat": 48.8584, "lng": 2.2945, "radius_m": 100, "label": null, "set_at": "2026-12-02T18:04:00Z"})
        );
        let labelled = parse(json!({"lat": 0, "lng": 0, "radius_m": 20.5, "label": "  Café  ", "extra": 1}))
            .map(|d| d.set_at(at()))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let wire = serde_json::to_value(&labelled).unwrap_or_default();
        assert_eq!((wire["radius_m"].clone(), wire["label"].clone()), (json!(20.5), json!("Café")));
        let back: Destination = serde_json::from_value(wire).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Destination::Place(labelled), "the cluster's copy reads back the same");
        assert_eq!(parse(json!({"lat": 0, "lng": 0, "label": "   "})).map(|d| d.label), Ok(None));
    }

    #[test]
    fn refusals_name_their_fields() {
        for (bad, field) in [
            (json!({"lng": 0}), "lat"),
            (json!({"lat": 0}), "lng"),
            (json!({"lat": 90.5, "lng": 0}), "lat"),
            (json!({"lat": 0, "lng": "2"}), "lng"),
            (json!({"lat": 0, "lng": 0, "radius_m": 19.9}), "radius_m"),
            (json!({"lat": 0, "lng": 0, "radius_m": 5001}), "radius_m"),
            (json!({"lat": 0, "lng": 0, "radius_m": "100"}), "radius_m"),
            (json!({"lat": 0, "lng": 0, "label": 5}), "label"),
            (json!({"lat": 0, "lng": 0, "label": "x".repeat(101)}), "label"),
            (json!({"lat": 0, "lng": 0, "label": "a\u{0007}b"}), "label"),
        ] {
            let errors = parse(bad.clone()).err().unwrap_or_default();
            assert!(errors.contains_key(field), "{bad} should fail on {field}: {errors:?}");
        }
        let errors = parse(json!({"lat": 0, "lng": 0, "radius_m": 10})).err().unwrap_or_default();
        assert_eq!(errors.get("radius_m"), Some(&vec!["must be between 20 and 5000".to_owned()]));
    }

    #[test]
    fn each_destination_has_its_own_epoch() {
        let a = parse(json!({"lat": 1, "lng": 2})).map(|d| d.set_at(at())).unwrap_or_else(|e| panic!("{e:?}"));
        let mut b = a.clone();
        assert_eq!(a.epoch(), b.epoch());
        b.lat = 1.0001;
        assert_ne!(a.epoch(), b.epoch());
        let mut c = a.clone();
        c.set_at += chrono::Duration::seconds(1);
        assert_ne!(a.epoch(), c.epoch());
    }

    #[test]
    fn debug_hides_the_point() {
        let d = parse(json!({"lat": 48.8584, "lng": 2.2945})).unwrap_or_else(|e| panic!("{e:?}"));
        let printed = format!("{d:?} {:?}", d.clone().set_at(at()));
        assert!(!printed.contains("48.85") && !printed.contains("2.29"), "{printed}");
    }

    fn draft(v: Value, e2e: bool) -> Result<DestinationDraft, DestinationErrors> {
        DestinationDraft::parse(v.as_object().unwrap_or(&Map::new()), e2e)
    }

    #[test]
    fn an_e2e_session_takes_a_sealed_destination_only() {
        let sealed = "C".repeat(60);
        let d = draft(json!({ "sealed": sealed }), true).map(|d| d.set_at(at())).unwrap_or_else(|e| panic!("{e:?}"));
        let wire = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(wire, json!({"sealed": sealed, "set_at": "2026-12-02T18:04:00Z"}));
        let back: Destination = serde_json::from_value(wire).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((back.place(), back.epoch()), (None, d.epoch()));
        for (bad, e2e) in [
            (json!({"lat": 1, "lng": 2}), true),
            (json!({"sealed": sealed, "radius_m": 50}), true),
            (json!({"sealed": "short"}), true),
            (json!({}), true),
            (json!({ "sealed": sealed }), false),
        ] {
            let errors = draft(bad.clone(), e2e).err().unwrap_or_default();
            assert_eq!(errors.keys().collect::<Vec<_>>(), vec![&"sealed"], "{bad}");
        }
        assert!(matches!(draft(json!({"lat": 1, "lng": 2}), false), Ok(DestinationDraft::Place(_))));
    }
}

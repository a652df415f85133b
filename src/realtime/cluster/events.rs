//! What replicas tell each other about a session, as typed events in JSON.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::super::session::PresenceMeta;
use crate::domain::{
    AvatarColor, Destination, DisplayName, EndReason, LeaveReason, LocationView, ParticipantId, PositionView,
    SealedView,
};
use crate::sessions::SessionEvent;

/// What replicas tell each other about a session: one JSON object per message, its kind in `t`.
///
/// A replica of a newer version may send kinds this one does not know; they are counted
/// (`pubsub_refused_total{reason="unknown_event"}`), logged once per kind, and ignored — never
/// read as something else. Fields this version does not know are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A participant's location: fan it out to local sockets.
    Location {
        /// The location as broadcast.
        view: LocationView,
    },
    /// A participant's sealed location, in an end-to-end encrypted session: fan it out as it came.
    SealedLocation {
        /// The location as broadcast.
        view: SealedView,
    },
    /// A participant joined through REST.
    Joined {
        /// The new participant.
        user_id: ParticipantId,
        /// Its name, checked again on the way in.
        display_name: DisplayName,
        /// Its colour, checked again on the way in.
        avatar_color: AvatarColor,
        /// When it joined (RFC 3339).
        joined_at: DateTime<Utc>,
    },
    /// A participant left or was removed.
    Left {
        /// The participant gone from the session.
        user_id: ParticipantId,
        /// `left`, `removed` or `inactive`.
        reason: LeaveReason,
    },
    /// The session ended.
    Ended {
        /// `expired`, `inactive` or `ended_by_creator`.
        reason: EndReason,
    },
    /// The full set of participants online on the sending replica, with their Presence metas
    /// (which say who is viewing, for every replica's `rate_advice`).
    Presence {
        /// User id → meta.
        online: HashMap<ParticipantId, PresenceMeta>,
    },
    /// The creator set or moved the destination.
    DestinationSet {
        /// The new destination.
        destination: Destination,
    },
    /// The creator cleared the destination.
    DestinationCleared,
    /// The creator locked, unlocked or renamed the session.
    SessionUpdated {
        /// The title now.
        name: Option<String>,
        /// Whether joins are refused now.
        locked: bool,
    },
    /// A participant arrived at the destination; the sending replica won the store's claim, so
    /// it is announced once.
    Arrived {
        /// Who.
        user_id: ParticipantId,
        /// When (RFC 3339).
        arrived_at: DateTime<Utc>,
        /// The destination it arrived at ([`Destination::epoch`]); stale ones are ignored.
        epoch: u64,
    },
    /// The sending replica subscribed to the session's channel: whoever held the session's
    /// positions back, because nobody else listened, sends them from now on. Handled by the bus
    /// itself, never delivered to a session.
    Listening,
    /// A participant departed from the destination, announced once like an arrival.
    Departed {
        /// Who.
        user_id: ParticipantId,
        /// When (RFC 3339).
        departed_at: DateTime<Utc>,
        /// The destination it departed from.
        epoch: u64,
    },
}

impl From<&SessionEvent> for ClusterEvent {
    fn from(event: &SessionEvent) -> Self {
        match event {
            SessionEvent::ParticipantJoined { participant: p } => Self::Joined {
                user_id: p.id,
                display_name: p.display_name.clone(),
                avatar_color: p.avatar_color.clone(),
                joined_at: p.joined_at,
            },
            SessionEvent::ParticipantLeft { user, reason, .. } => Self::Left { user_id: *user, reason: *reason },
            SessionEvent::SessionEnded { reason, .. } => Self::Ended { reason: *reason },
            SessionEvent::DestinationSet { destination, .. } => {
                Self::DestinationSet { destination: destination.clone() }
            }
            SessionEvent::DestinationCleared { .. } => Self::DestinationCleared,
            SessionEvent::SessionUpdated { name, locked, .. } => {
                Self::SessionUpdated { name: name.clone(), locked: *locked }
            }
        }
    }
}

/// Why a message from another replica was not delivered.
#[derive(Debug)]
pub(super) enum Refused {
    /// A kind of event this version does not know (a newer replica's).
    Unknown(String),
    /// Not an event at all.
    Unreadable(serde_json::Error),
}

impl ClusterEvent {
    /// The event that carries a position of either kind.
    pub fn position(view: PositionView) -> Self {
        match view {
            PositionView::Clear(view) => Self::Location { view },
            PositionView::Sealed(view) => Self::SealedLocation { view },
        }
    }

    /// Reads one event, telling an unknown kind apart from a broken message.
    pub(super) fn decode(body: &[u8]) -> Result<Self, Refused> {
        /// Only the kind, to name what could not be read.
        #[derive(Deserialize)]
        struct Kind {
            t: String,
        }
        serde_json::from_slice(body).map_err(|e| match serde_json::from_slice::<Kind>(body) {
            Ok(Kind { t }) if !Self::KINDS.contains(&t.as_str()) => Refused::Unknown(t),
            _ => Refused::Unreadable(e),
        })
    }

    /// Every kind this version reads (`t`).
    pub(super) const KINDS: [&'static str; 12] = [
        "location",
        "listening",
        "sealed_location",
        "joined",
        "left",
        "ended",
        "presence",
        "destination_set",
        "destination_cleared",
        "session_updated",
        "arrived",
        "departed",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Place, Sealed};

    #[test]
    fn events_keep_their_wire_form() {
        let user = ParticipantId::new();
        let left = ClusterEvent::Left { user_id: user, reason: LeaveReason::Removed };
        let json = serde_json::to_value(&left).unwrap_or_default();
        assert_eq!(json, serde_json::json!({"t": "left", "user_id": user.to_string(), "reason": "removed"}));
        let joined = serde_json::json!({"t": "joined", "user_id": user.to_string(), "display_name": " Ana ",
            "avatar_color": "#1e90ff", "joined_at": "2026-12-01T10:00:00Z", "from_a_newer_version": 1});
        match ClusterEvent::decode(joined.to_string().as_bytes()) {
            Ok(ClusterEvent::Joined { display_name, avatar_color, .. }) => {
                assert_eq!((display_name.as_str(), avatar_color.as_str()), ("Ana", "#1E90FF"));
            }
            other => panic!("{other:?}"),
        }
        for kind in ClusterEvent::KINDS {
            let known = serde_json::json!({ "t": kind }).to_string();
            assert!(!matches!(ClusterEvent::decode(known.as_bytes()), Err(Refused::Unknown(_))), "{kind}");
        }
    }

    #[test]
    fn every_kind_sent_is_a_kind_read() {
        let user = ParticipantId::new();
        let p = crate::domain::DisplayName::from_trusted("Ana".into());
        let c = crate::domain::AvatarColor::from_trusted("#1E90FF".into());
        let view = LocationView {
            user_id: user.to_string(),
            lat: 0.0,
            lng: 0.0,
            accuracy: None,
            heading: None,
            speed: None,
            timestamp: "2026-12-01T10:00:00Z".into(),
            distance_m: None,
            eta_s: None,
        };
        let every = [
            ClusterEvent::Location { view },
            ClusterEvent::Joined { user_id: user, display_name: p, avatar_color: c, joined_at: Utc::now() },
            ClusterEvent::Left { user_id: user, reason: LeaveReason::Left },
            ClusterEvent::Ended { reason: EndReason::Expired },
            ClusterEvent::Presence { online: HashMap::new() },
            ClusterEvent::DestinationSet {
                destination: Destination::Place(Place {
                    lat: 1.0,
                    lng: 2.0,
                    radius_m: 100.0,
                    label: Some("Café".into()),
                    set_at: "2026-12-01T10:00:00Z".parse().unwrap_or_default(),
                }),
            },
            ClusterEvent::DestinationSet {
                destination: Destination::Sealed {
                    sealed: Sealed::parse(&"D".repeat(48)).unwrap_or_else(|e| panic!("{e}")),
                    set_at: "2026-12-01T10:00:00Z".parse().unwrap_or_default(),
                },
            },
            ClusterEvent::SealedLocation {
                view: SealedView::new(
                    user,
                    Sealed::parse(&"E".repeat(40)).unwrap_or_else(|e| panic!("{e}")),
                    Utc::now(),
                ),
            },
            ClusterEvent::DestinationCleared,
            ClusterEvent::Listening,
            ClusterEvent::SessionUpdated { name: None, locked: true },
            ClusterEvent::Arrived {
                user_id: user,
                arrived_at: "2026-12-01T10:00:00Z".parse().unwrap_or_default(),
                epoch: u64::MAX,
            },
            ClusterEvent::Departed {
                user_id: user,
                departed_at: "2026-12-01T10:00:01Z".parse().unwrap_or_default(),
                epoch: 7,
            },
        ];
        for event in every {
            let json = serde_json::to_value(&event).unwrap_or_default();
            let kind = json["t"].as_str().unwrap_or_default().to_owned();
            assert!(ClusterEvent::KINDS.contains(&kind.as_str()), "{kind} is missing from KINDS");
            assert_eq!(ClusterEvent::decode(json.to_string().as_bytes()).ok(), Some(event), "{kind} round-trips");
        }
    }

    #[test]
    fn unknown_and_broken_events_are_refused_not_misread() {
        let unknown = br#"{"t":"teleported","user_id":"x"}"#;
        assert!(matches!(ClusterEvent::decode(unknown), Err(Refused::Unknown(k)) if k == "teleported"));
        for broken in [
            &br#"{"t":"left","user_id":"not-an-id","reason":"left"}"#[..],
            br#"{"t":"left","user_id":"0b0e5b3a-1d6e-4a55-9a57-2f5a3c7e9d10","reason":"kicked"}"#,
            br#"{"t":"ended","reason":"whatever"}"#,
            b"not json",
            br#"{"no":"kind"}"#,
        ] {
            assert!(
                matches!(ClusterEvent::decode(broken), Err(Refused::Unreadable(_))),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }
}

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{AvatarColor, Destination, DisplayName, Invalid, ParticipantId, SessionId};

/// Why a session ended (the `reason` of `session_ended`); serialised as its wire spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It reached `expires_at`.
    Expired,
    /// Nobody was seen in it for the inactivity limit.
    Inactive,
    /// Its creator ended it.
    EndedByCreator,
}

impl EndReason {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Inactive => "inactive",
            Self::EndedByCreator => "ended_by_creator",
        }
    }
}

impl FromStr for EndReason {
    type Err = Invalid;

    /// Reads the wire and database spelling back; anything else is refused, never guessed.
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "expired" => Ok(Self::Expired),
            "inactive" => Ok(Self::Inactive),
            "ended_by_creator" => Ok(Self::EndedByCreator),
            _ => Err(Invalid::new("is not an end reason")),
        }
    }
}

/// Why a participant left (the `reason` of `participant_left`); serialised as its wire spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It left with its own token.
    Left,
    /// The creator removed it.
    Removed,
    /// It was not seen for the inactivity limit.
    Inactive,
}

impl LeaveReason {
    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Removed => "removed",
            Self::Inactive => "inactive",
        }
    }
}

/// A sharing session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// Optional title.
    pub name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// When somebody was last seen in it (joins and socket frames).
    pub last_activity_at: DateTime<Utc>,
    /// When and why it ended, once it has been recorded as ended.
    pub ended: Option<(DateTime<Utc>, EndReason)>,
    /// Non-removed participants.
    pub participant_count: u32,
    /// While true, nobody new may join (SPEC §9).
    pub locked: bool,
    /// End-to-end encrypted (SPEC §10): positions and the destination are sealed, fixed at creation.
    pub e2e: bool,
    /// Where everyone is heading, if the creator said (SPEC §7).
    pub destination: Option<Destination>,
}

impl Session {
    /// Why the session is over at `now`, if it is: recorded, or due by its clock even before any timer ran.
    pub fn end_reason(&self, now: DateTime<Utc>, inactivity: Duration) -> Option<EndReason> {
        if let Some((_, reason)) = self.ended {
            return Some(reason);
        }
        if now >= self.expires_at {
            return Some(EndReason::Expired);
        }
        if now >= self.last_activity_at + inactivity {
            return Some(EndReason::Inactive);
        }
        None
    }

    /// When the session ended or is due to end by inactivity or expiry, whichever comes first.
    pub fn ends_at(&self, inactivity: Duration) -> DateTime<Utc> {
        match self.ended {
            Some((at, _)) => at,
            None => self.expires_at.min(self.last_activity_at + inactivity),
        }
    }

    /// The `is_active` of the API.
    pub fn is_active(&self, now: DateTime<Utc>, inactivity: Duration) -> bool {
        self.end_reason(now, inactivity).is_none()
    }
}

/// A participant as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    /// Its id (`user_id`).
    pub id: ParticipantId,
    /// The session it joined.
    pub session_id: SessionId,
    /// Name shown to others.
    pub display_name: DisplayName,
    /// Marker colour.
    pub avatar_color: AvatarColor,
    /// When it joined.
    pub joined_at: DateTime<Utc>,
    /// When it was last seen (join or any socket frame).
    pub last_seen_at: DateTime<Utc>,
    /// Set once it left or was removed.
    pub removed_at: Option<DateTime<Utc>>,
}

impl Participant {
    /// The `is_active` of the API: not removed, seen within `idle`, and its session not over.
    pub fn is_active(&self, now: DateTime<Utc>, idle: Duration, session_live: bool) -> bool {
        session_live && self.removed_at.is_none() && now < self.last_seen_at + idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: DateTime<Utc>) -> Session {
        Session {
            id: SessionId::new(),
            name: None,
            created_at: now,
            expires_at: now + Duration::minutes(10),
            last_activity_at: now,
            ended: None,
            participant_count: 0,
            locked: false,
            e2e: false,
            destination: None,
        }
    }

    #[test]
    fn ends_by_clock_before_any_timer() {
        let now = Utc::now();
        let s = session(now);
        let hour = Duration::hours(1);
        assert_eq!(s.end_reason(now, hour), None);
        assert_eq!(s.end_reason(now + Duration::minutes(10), hour), Some(EndReason::Expired));
        assert_eq!(s.end_reason(now + Duration::minutes(5), Duration::minutes(5)), Some(EndReason::Inactive));
        assert_eq!(s.ends_at(Duration::minutes(5)), now + Duration::minutes(5));
    }

    #[test]
    fn recorded_end_wins() {
        let now = Utc::now();
        let mut s = session(now);
        s.ended = Some((now, EndReason::EndedByCreator));
        assert!(!s.is_active(now, Duration::hours(1)));
        assert_eq!(s.end_reason(now + Duration::days(1), Duration::hours(1)), Some(EndReason::EndedByCreator));
    }

    #[test]
    fn reasons_round_trip() {
        for r in [EndReason::Expired, EndReason::Inactive, EndReason::EndedByCreator] {
            assert_eq!(r.as_str().parse::<EndReason>(), Ok(r));
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::Value::from(r.as_str())));
        }
        for r in [LeaveReason::Left, LeaveReason::Removed, LeaveReason::Inactive] {
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::Value::from(r.as_str())));
        }
        assert!("ended_by_somebody".parse::<EndReason>().is_err());
        assert!(serde_json::from_str::<LeaveReason>("\"kicked\"").is_err());
    }
}

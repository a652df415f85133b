use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = super::Invalid;

            /// Only canonical, hyphenated v4 UUIDs are ids: anything else names nothing.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let parsed = Uuid::try_parse(s).map_err(|_| super::Invalid::new("is not a valid id"))?;
                if parsed.get_version_num() != 4 || s.len() != 36 {
                    return Err(super::Invalid::new("is not a valid id"));
                }
                Ok(Self(parsed))
            }
        }

        impl TryFrom<String> for $name {
            type Error = super::Invalid;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The id of a sharing session.
    SessionId
);
uuid_id!(
    /// The id of a participant (the `user_id` of the API).
    ParticipantId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_round_trips() {
        let id = SessionId::new();
        let again: SessionId = id.to_string().parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id, again);
    }

    #[test]
    fn refuses_malformed_nil_and_other_versions() {
        for bad in [
            "",
            "12345",
            "not-a-uuid",
            "00000000-0000-0000-0000-000000000000",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "{6ba7b810-9dad-41d1-80b4-00c04fd430c8}",
            "6ba7b8109dad41d180b400c04fd430c8",
        ] {
            assert!(bad.parse::<ParticipantId>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn accepts_uppercase_and_prints_lowercase() {
        let id: SessionId = "6BA7B810-9DAD-41D1-80B4-00C04FD430C8".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.to_string(), "6ba7b810-9dad-41d1-80b4-00c04fd430c8");
    }
}

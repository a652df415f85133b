use std::fmt;

use super::Invalid;

/// A participant's display name: 1 to 50 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest name, in characters (Unicode scalar values), after trimming.
    pub const MAX_CHARS: usize = 50;

    /// Trims and checks a name as typed by a person.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Invalid::new("can't be blank"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new("should be at most 50 character(s)"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a name read back from the database, where it was checked on the way in.
    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

/// Read back (from another replica) only as a valid name.
impl TryFrom<String> for DisplayName {
    type Error = Invalid;

    fn try_from(raw: String) -> Result<Self, Invalid> {
        Self::parse(&raw)
    }
}

impl From<DisplayName> for String {
    fn from(name: DisplayName) -> String {
        name.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_inner_spaces() {
        let name = DisplayName::parse("  Ana  María ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name.as_str(), "Ana  María");
    }

    #[test]
    fn refuses_blank() {
        for blank in ["", "   ", "\t\n"] {
            assert!(DisplayName::parse(blank).is_err());
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(DisplayName::parse(&"é".repeat(50)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(51)).is_err());
        assert!(DisplayName::parse(&format!("  {}  ", "x".repeat(50))).is_ok());
    }

    #[test]
    fn refuses_control_characters() {
        assert!(DisplayName::parse("a\u{0007}b").is_err());
        assert!(DisplayName::parse("a\nb").is_err());
    }
}

use super::Invalid;

/// An optional session title: at most 100 characters after trimming; blank means none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionName(String);

impl SessionName {
    /// The longest name, in characters, after trimming.
    pub const MAX_CHARS: usize = 100;

    /// Trims and checks a name; a blank one gives `None`.
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new("should be at most 100 character(s)"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Some(Self(trimmed.to_owned())))
    }

    /// The name as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the name out.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_none() {
        assert_eq!(SessionName::parse("   "), Ok(None));
    }

    #[test]
    fn limits_length_in_characters() {
        assert!(SessionName::parse(&"✈".repeat(100)).is_ok());
        assert!(SessionName::parse(&"n".repeat(101)).is_err());
    }

    #[test]
    fn trims() {
        let name = SessionName::parse(" Trip ").ok().flatten().map(SessionName::into_string);
        assert_eq!(name.as_deref(), Some("Trip"));
    }
}

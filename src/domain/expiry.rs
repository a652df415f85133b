use chrono::Duration;

use super::Invalid;

/// How long a new session lives: 1 to 1440 minutes (24 h), 1440 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresInMinutes(u16);

impl ExpiresInMinutes {
    /// The longest (and default) lifetime.
    pub const MAX: u16 = 1440;

    /// Checks a lifetime in whole minutes.
    pub fn parse(minutes: i64) -> Result<Self, Invalid> {
        match u16::try_from(minutes) {
            Ok(m) if (1..=Self::MAX).contains(&m) => Ok(Self(m)),
            _ => Err(Invalid::new("must be between 1 and 1440")),
        }
    }

    /// The lifetime as a duration.
    pub fn duration(self) -> Duration {
        Duration::minutes(i64::from(self.0))
    }
}

impl Default for ExpiresInMinutes {
    fn default() -> Self {
        Self(Self::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(ExpiresInMinutes::parse(0).is_err());
        assert!(ExpiresInMinutes::parse(-5).is_err());
        assert!(ExpiresInMinutes::parse(1441).is_err());
        assert!(ExpiresInMinutes::parse(i64::MAX).is_err());
        assert_eq!(ExpiresInMinutes::parse(1).map(|e| e.duration()), Ok(Duration::minutes(1)));
        assert_eq!(ExpiresInMinutes::default().duration(), Duration::minutes(1440));
    }
}

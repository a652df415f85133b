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

    /// Checks a lifetime given as a JSON number: a whole number may be written `518.0` or
    /// `5.18e2` (JSON Schema counts those as integers too), a fraction such as `30.5` may not.
    pub fn parse_number(minutes: &serde_json::Number) -> Result<Self, Invalid> {
        if let Some(whole) = minutes.as_i64() {
            return Self::parse(whole);
        }
        match minutes.as_f64() {
            Some(m) if m.is_finite() && m.fract() == 0.0 => {
                if (1.0..=f64::from(Self::MAX)).contains(&m) {
                    // In range and whole, so the conversion is exact.
                    Self::parse(m as i64)
                } else {
                    Self::parse(0)
                }
            }
            _ => Err(Invalid::new("must be a whole number")),
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

    fn number(json: &str) -> serde_json::Number {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn whole_numbers_in_any_notation() {
        for whole in ["518", "518.0", "5.18e2", "518E0", "1.0", "1440.0"] {
            assert!(ExpiresInMinutes::parse_number(&number(whole)).is_ok(), "{whole}");
        }
        assert_eq!(ExpiresInMinutes::parse_number(&number("5.18e2")), ExpiresInMinutes::parse(518));
        for fraction in ["30.5", "1.0000001", "1439.9"] {
            assert_eq!(
                ExpiresInMinutes::parse_number(&number(fraction)),
                Err(Invalid::new("must be a whole number")),
                "{fraction}"
            );
        }
        for out_of_range in ["0.0", "-5.0", "1441.0", "1e20", "18446744073709551616", "-0.0"] {
            assert_eq!(
                ExpiresInMinutes::parse_number(&number(out_of_range)),
                Err(Invalid::new("must be between 1 and 1440")),
                "{out_of_range}"
            );
        }
    }
}

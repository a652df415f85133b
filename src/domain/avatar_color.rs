use std::fmt;

use rand::Rng;

use super::Invalid;

/// A marker colour as `#RRGGBB`, stored in upper case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AvatarColor(String);

/// Colours handed out when a participant picks none: distinct on a map and readable with white text.
const PALETTE: [&str; 12] = [
    "#E6194B", "#3CB44B", "#4363D8", "#F58231", "#911EB4", "#008080", "#F032E6", "#9A6324", "#800000", "#808000",
    "#000075", "#1E90FF",
];

impl AvatarColor {
    /// Checks a `#RRGGBB` colour (either case of hex digits).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bytes = raw.as_bytes();
        let valid = bytes.len() == 7 && bytes[0] == b'#' && bytes[1..].iter().all(u8::is_ascii_hexdigit);
        if !valid {
            return Err(Invalid::new("must be a colour in the form #RRGGBB"));
        }
        Ok(Self(raw.to_ascii_uppercase()))
    }

    /// A colour picked at random from the fixed palette.
    pub fn random() -> Self {
        let index = rand::rng().random_range(0..PALETTE.len());
        Self(PALETTE[index % PALETTE.len()].to_owned())
    }

    /// The colour as `#RRGGBB`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a colour read back from the database, where it was checked on the way in.
    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

/// Read back (from another replica) only as a valid colour.
impl TryFrom<String> for AvatarColor {
    type Error = Invalid;

    fn try_from(raw: String) -> Result<Self, Invalid> {
        Self::parse(&raw)
    }
}

impl From<AvatarColor> for String {
    fn from(color: AvatarColor) -> String {
        color.0
    }
}

impl fmt::Display for AvatarColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hex_colours_and_normalises_case() {
        let c = AvatarColor::parse("#1e90ff").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.as_str(), "#1E90FF");
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["red", "#12345", "#GGGGGG", "1E90FF1", "#1E90FF0", "", "#", "＃1E90FF"] {
            assert!(AvatarColor::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn random_colours_are_valid() {
        for _ in 0..50 {
            let c = AvatarColor::random();
            assert!(AvatarColor::parse(c.as_str()).is_ok());
        }
    }
}

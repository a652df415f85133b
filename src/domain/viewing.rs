use serde_json::{Map, Value};

use super::Invalid;

/// A `viewing` payload (SPEC §8): whether the socket's user is looking at the map now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewing {
    visible: bool,
}

impl Viewing {
    /// Checks a `viewing` payload, `{"visible": true|false}`.
    ///
    /// Other keys are ignored, as they are in a `location_update` payload, so a client that
    /// sends more (a newer client, say) is still understood.
    pub fn parse(payload: &Map<String, Value>) -> Result<Self, Invalid> {
        match payload.get("visible") {
            Some(Value::Bool(visible)) => Ok(Self { visible: *visible }),
            None | Some(Value::Null) => Err(Invalid::new("can't be blank")),
            Some(_) => Err(Invalid::new("must be true or false")),
        }
    }

    /// Whether the user is looking at the map.
    pub fn visible(&self) -> bool {
        self.visible
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Viewing, Invalid> {
        Viewing::parse(v.as_object().unwrap_or(&Map::new()))
    }

    #[test]
    fn accepts_true_and_false() {
        assert_eq!(parse(json!({"visible": true})).map(|v| v.visible()), Ok(true));
        assert_eq!(parse(json!({"visible": false})).map(|v| v.visible()), Ok(false));
    }

    #[test]
    fn ignores_other_keys() {
        assert_eq!(parse(json!({"visible": false, "since": 5, "visible_": 1})).map(|v| v.visible()), Ok(false));
    }

    #[test]
    fn refuses_missing_null_and_other_types() {
        assert_eq!(parse(json!({})), Err(Invalid::new("can't be blank")));
        assert_eq!(parse(json!({"visible": null})), Err(Invalid::new("can't be blank")));
        for bad in [json!(1), json!(0), json!("true"), json!([true]), json!({"visible": true})] {
            assert_eq!(parse(json!({ "visible": bad })), Err(Invalid::new("must be true or false")), "{bad}");
        }
    }

    #[test]
    fn keys_are_case_sensitive() {
        assert!(parse(json!({"Visible": true})).is_err());
    }
}

//! The wire: Phoenix Channels frames in the V2 (array) and V1 (object) serializers, and the plain
//! `{"type","data"}` envelope. Decoding yields one [`InFrame`]; encoding writes each frame once.

use bytestring::ByteString;
use serde::Serialize;
use serde_json::{json, Value};

/// Which framing a socket speaks, from its `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vsn {
    /// `vsn=2.x`: `[join_ref, ref, topic, event, payload]`.
    V2,
    /// `vsn=1.x`: `{join_ref, ref, topic, event, payload}`.
    V1,
    /// No `vsn`: `{"type": event, "data": payload}`, joined to the token's session at connect.
    Plain,
}

impl Vsn {
    /// Reads the `vsn` parameter; `None` for a version this server does not speak.
    pub fn from_param(vsn: Option<&str>) -> Option<Self> {
        match vsn {
            None => Some(Self::Plain),
            Some(v) if v == "2" || v.starts_with("2.") => Some(Self::V2),
            Some(v) if v == "1" || v.starts_with("1.") => Some(Self::V1),
            Some(_) => None,
        }
    }

    /// Index into per-serializer arrays.
    pub fn index(self) -> usize {
        match self {
            Self::V2 => 0,
            Self::V1 => 1,
            Self::Plain => 2,
        }
    }

    /// All serializers.
    pub const ALL: [Vsn; 3] = [Vsn::V2, Vsn::V1, Vsn::Plain];
}

/// A frame from a client, whatever its framing.
#[derive(Debug, Clone, PartialEq)]
pub struct InFrame {
    /// The channel join this message belongs to (`null` when absent).
    pub join_ref: Value,
    /// The message ref a reply must carry (`null` when absent).
    pub msg_ref: Value,
    /// The topic; the session's topic for plain frames.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// The payload (an object, or `{}` when absent).
    pub payload: Value,
}

/// A frame that could not be read; carries its ref when one could be found, so it can be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Unparsable {
    /// The ref, if the frame had a recognisable one.
    pub msg_ref: Option<Value>,
    /// The join ref, if any.
    pub join_ref: Value,
    /// The topic, if any.
    pub topic: Option<String>,
}

/// Reads one text frame; `plain_topic` is the topic plain frames belong to.
pub fn decode(vsn: Vsn, text: &str, plain_topic: &str) -> Result<InFrame, Unparsable> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| Unparsable { msg_ref: None, join_ref: Value::Null, topic: None })?;
    match vsn {
        Vsn::V2 => decode_v2(value),
        Vsn::V1 => decode_v1(value),
        Vsn::Plain => decode_plain(value, plain_topic),
    }
}

fn scalar_ref(v: Option<&Value>) -> Value {
    match v {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        _ => Value::Null,
    }
}

fn decode_v2(value: Value) -> Result<InFrame, Unparsable> {
    let Value::Array(mut items) = value else {
        return Err(Unparsable { msg_ref: None, join_ref: Value::Null, topic: None });
    };
    let msg_ref = scalar_ref(items.get(1));
    let join_ref = scalar_ref(items.first());
    let topic = items.get(2).and_then(Value::as_str).map(str::to_owned);
    let event = items.get(3).and_then(Value::as_str).map(str::to_owned);
    match (items.len(), topic, event) {
        (5, Some(topic), Some(event)) => {
            let payload = normalise_payload(items.pop().unwrap_or(Value::Null));
            Ok(InFrame { join_ref, msg_ref, topic, event, payload })
        }
        (_, topic, _) => Err(Unparsable { msg_ref: Some(msg_ref).filter(|r| !r.is_null()), join_ref, topic }),
    }
}

fn decode_v1(value: Value) -> Result<InFrame, Unparsable> {
    let Value::Object(mut map) = value else {
        return Err(Unparsable { msg_ref: None, join_ref: Value::Null, topic: None });
    };
    let msg_ref = scalar_ref(map.get("ref"));
    let join_ref = scalar_ref(map.get("join_ref"));
    let topic = map.get("topic").and_then(Value::as_str).map(str::to_owned);
    let event = map.get("event").and_then(Value::as_str).map(str::to_owned);
    match (topic, event) {
        (Some(topic), Some(event)) => {
            let payload = normalise_payload(map.remove("payload").unwrap_or(Value::Null));
            Ok(InFrame { join_ref, msg_ref, topic, event, payload })
        }
        (topic, _) => Err(Unparsable { msg_ref: Some(msg_ref).filter(|r| !r.is_null()), join_ref, topic }),
    }
}

fn decode_plain(value: Value, topic: &str) -> Result<InFrame, Unparsable> {
    let Value::Object(mut map) = value else {
        return Err(Unparsable { msg_ref: None, join_ref: Value::Null, topic: None });
    };
    let msg_ref = scalar_ref(map.get("ref"));
    match map.get("type").and_then(Value::as_str).map(str::to_owned) {
        Some(event) => {
            let payload = normalise_payload(map.remove("data").unwrap_or(Value::Null));
            Ok(InFrame { join_ref: Value::Null, msg_ref, topic: topic.to_owned(), event, payload })
        }
        None => Err(Unparsable { msg_ref: None, join_ref: Value::Null, topic: Some(topic.to_owned()) }),
    }
}

/// `null` payloads become `{}`; the wrapped form `{"type": E, "data": {...}}` is unwrapped.
fn normalise_payload(payload: Value) -> Value {
    match payload {
        Value::Null => Value::Object(Default::default()),
        Value::Object(mut map)
            if map.len() == 2 && map.get("type").is_some_and(Value::is_string) && map.contains_key("data") =>
        {
            map.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// A server push (broadcast or event), encoded for one serializer.
pub fn encode_push(vsn: Vsn, join_ref: &Value, topic: &str, event: &str, payload: &impl Serialize) -> ByteString {
    let text = match vsn {
        Vsn::V2 => serde_json::to_string(&(join_ref, Value::Null, topic, event, payload)),
        Vsn::V1 => serde_json::to_string(&json!({
            "join_ref": join_ref, "ref": Value::Null, "topic": topic, "event": event, "payload": payload
        })),
        Vsn::Plain => serde_json::to_string(&PlainFrame { kind: event, data: payload }),
    };
    ByteString::from(text.unwrap_or_default())
}

/// A channel lifecycle event (`phx_close`, `phx_error`) for one join: Phoenix sends these with
/// the join's ref as both `join_ref` and `ref`, so a client ignores one meant for an older join.
pub fn encode_lifecycle(vsn: Vsn, join_ref: &Value, topic: &str, event: &str) -> ByteString {
    let empty = serde_json::Map::new();
    let text = match vsn {
        Vsn::V2 => serde_json::to_string(&(join_ref, join_ref, topic, event, &empty)),
        Vsn::V1 => serde_json::to_string(&json!({
            "join_ref": join_ref, "ref": join_ref, "topic": topic, "event": event, "payload": empty
        })),
        Vsn::Plain => serde_json::to_string(&PlainFrame { kind: event, data: &empty }),
    };
    ByteString::from(text.unwrap_or_default())
}

/// Reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `ok`.
    Ok,
    /// `error`.
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// A `phx_reply` (or, plain, `{"type":"reply","data":{"status","response","to"}}`).
pub fn encode_reply(vsn: Vsn, frame: &ReplyTo, status: Status, response: &impl Serialize) -> ByteString {
    let body = ReplyBody { status: status.as_str(), response };
    let text = match vsn {
        Vsn::V2 => serde_json::to_string(&(&frame.join_ref, &frame.msg_ref, &frame.topic, "phx_reply", &body)),
        Vsn::V1 => serde_json::to_string(&json!({
            "join_ref": frame.join_ref, "ref": frame.msg_ref, "topic": frame.topic, "event": "phx_reply", "payload": body
        })),
        Vsn::Plain => serde_json::to_string(&PlainFrame {
            kind: "reply",
            data: PlainReply { status: status.as_str(), response, to: &frame.event },
        }),
    };
    ByteString::from(text.unwrap_or_default())
}

/// Where a reply goes: the refs, topic and event of the message it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTo {
    /// Join ref of the message.
    pub join_ref: Value,
    /// Ref of the message.
    pub msg_ref: Value,
    /// Topic of the message.
    pub topic: String,
    /// Event answered (the plain envelope's `to`).
    pub event: String,
}

impl From<&InFrame> for ReplyTo {
    fn from(f: &InFrame) -> Self {
        Self {
            join_ref: f.join_ref.clone(),
            msg_ref: f.msg_ref.clone(),
            topic: f.topic.clone(),
            event: f.event.clone(),
        }
    }
}

#[derive(Serialize)]
struct ReplyBody<'a, R: Serialize> {
    status: &'a str,
    response: &'a R,
}

#[derive(Serialize)]
struct PlainFrame<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: D,
}

#[derive(Serialize)]
struct PlainReply<'a, R: Serialize> {
    status: &'a str,
    response: &'a R,
    to: &'a str,
}

/// The topic of a session's channel.
pub fn topic_of(session: &crate::domain::SessionId) -> String {
    format!("location:{session}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_round_trip() {
        let f = decode(Vsn::V2, r#"["1","2","location:x","location_update",{"lat":1,"lng":2}]"#, "")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.join_ref, json!("1"));
        assert_eq!(f.msg_ref, json!("2"));
        assert_eq!(f.event, "location_update");
        let reply = encode_reply(Vsn::V2, &ReplyTo::from(&f), Status::Ok, &json!({}));
        assert_eq!(&*reply, r#"["1","2","location:x","phx_reply",{"status":"ok","response":{}}]"#);
    }

    #[test]
    fn wrapped_payload_is_unwrapped() {
        let f = decode(Vsn::V2, r#"[null,"3","t","location_update",{"type":"location_update","data":{"lat":1}}]"#, "")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.payload, json!({"lat": 1}));
    }

    #[test]
    fn v1_and_plain() {
        let f = decode(Vsn::V1, r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"9"}"#, "")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((f.topic.as_str(), f.msg_ref.clone()), ("phoenix", json!("9")));
        let push = encode_push(Vsn::V1, &Value::Null, "t", "e", &json!({"a": 1}));
        let v: Value = serde_json::from_str(&push).unwrap_or_default();
        assert_eq!(v, json!({"join_ref": null, "ref": null, "topic": "t", "event": "e", "payload": {"a": 1}}));

        let p = decode(Vsn::Plain, r#"{"type":"location_update","data":{"lat":1}}"#, "location:s")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((p.topic.as_str(), p.event.as_str()), ("location:s", "location_update"));
        let reply = encode_reply(Vsn::Plain, &ReplyTo::from(&p), Status::Error, &json!({"reason": "x"}));
        assert_eq!(
            &*reply,
            r#"{"type":"reply","data":{"status":"error","response":{"reason":"x"},"to":"location_update"}}"#
        );
        assert_eq!(
            &*encode_push(Vsn::Plain, &Value::Null, "t", "joined", &json!({})),
            r#"{"type":"joined","data":{}}"#
        );
    }

    #[test]
    fn unparsable_keeps_ref_when_it_can() {
        assert_eq!(decode(Vsn::V2, "not json", "").err().and_then(|e| e.msg_ref), None);
        let e = decode(Vsn::V2, r#"[null,"7","t"]"#, "").err();
        assert_eq!(e.and_then(|e| e.msg_ref), Some(json!("7")));
        assert!(decode(Vsn::Plain, r#"{"data":{}}"#, "t").is_err());
    }

    #[test]
    fn vsn_param() {
        assert_eq!(Vsn::from_param(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::from_param(Some("1.0.0")), Some(Vsn::V1));
        assert_eq!(Vsn::from_param(None), Some(Vsn::Plain));
        assert_eq!(Vsn::from_param(Some("3.0.0")), None);
    }
}

//! The wire: Phoenix Channels frames in the V2 (array) and V1 (object) serializers, and the plain
//! `{"type","data"}` envelope. Decoding yields one [`InFrame`]; encoding writes each frame once.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Which framing a socket speaks, from its `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vsn {
    /// `vsn=2.x`: `[join_ref, ref, topic, event, payload]`.
    V2,
    /// `vsn=1.x`: `{join_ref, ref, topic, event, payload}`.
    V1,
    /// No `vsn` (or `vsn=`): `{"type": event, "data": payload}`, joined to the token's session at connect.
    Plain,
}

impl Vsn {
    /// Reads the `vsn` parameter; `None` for a version this server does not speak.
    pub fn from_param(vsn: Option<&str>) -> Option<Self> {
        match vsn {
            // `vsn=` is what a URL template sends for an unset version: the same as none at all.
            None | Some("") => Some(Self::Plain),
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

/// A frame from a client, whatever its framing; `Debug` hides the payload (it may be a position).
#[derive(Clone, PartialEq)]
pub struct InFrame {
    /// The channel join this message belongs to (`null` when absent).
    pub join_ref: Value,
    /// The message ref a reply must carry (`null` when absent).
    pub msg_ref: Value,
    /// The topic; the session's topic for plain frames.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// The payload (an object, or `{}` when absent; `null` when unreadable).
    pub payload: Value,
    /// The payload was not readable JSON values (e.g. a number beyond f64).
    pub payload_unreadable: bool,
}

impl std::fmt::Debug for InFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFrame")
            .field("join_ref", &self.join_ref)
            .field("msg_ref", &self.msg_ref)
            .field("topic", &self.topic)
            .field("event", &self.event)
            .field("payload", &crate::domain::HIDDEN)
            .field("payload_unreadable", &self.payload_unreadable)
            .finish()
    }
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
///
/// The envelope is read first with the payload left raw, so a payload that cannot be read (a
/// number beyond f64, say) still leaves the refs known and the frame answerable.
pub fn decode(vsn: Vsn, text: &str, plain_topic: &str) -> Result<InFrame, Unparsable> {
    match vsn {
        Vsn::V2 => decode_v2(text),
        Vsn::V1 => decode_v1(text),
        Vsn::Plain => decode_plain(text, plain_topic),
    }
}

fn nothing() -> Unparsable {
    Unparsable { msg_ref: None, join_ref: Value::Null, topic: None }
}

fn scalar_ref(v: Option<Value>) -> Value {
    match v {
        Some(v @ (Value::String(_) | Value::Number(_))) => v,
        _ => Value::Null,
    }
}

fn raw_scalar(raw: Option<&&RawValue>) -> Option<Value> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

fn raw_str(raw: Option<&&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// The payload, or `None` when it is not readable JSON values.
fn payload_of(raw: Option<&RawValue>) -> Option<Value> {
    match raw {
        None => Some(Value::Object(Default::default())),
        Some(raw) => serde_json::from_str(raw.get()).ok().map(normalise_payload),
    }
}

fn frame(join_ref: Value, msg_ref: Value, topic: String, event: String, payload: Option<Value>) -> InFrame {
    let payload_unreadable = payload.is_none();
    InFrame { join_ref, msg_ref, topic, event, payload: payload.unwrap_or(Value::Null), payload_unreadable }
}

fn decode_v2(text: &str) -> Result<InFrame, Unparsable> {
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| nothing())?;
    let msg_ref = scalar_ref(raw_scalar(items.get(1)));
    let join_ref = scalar_ref(raw_scalar(items.first()));
    let topic = raw_str(items.get(2));
    let event = raw_str(items.get(3));
    match (items.len(), topic, event) {
        (5, Some(topic), Some(event)) => Ok(frame(join_ref, msg_ref, topic, event, payload_of(items.get(4).copied()))),
        (_, topic, _) => Err(Unparsable { msg_ref: Some(msg_ref).filter(|r| !r.is_null()), join_ref, topic }),
    }
}

#[derive(Deserialize)]
struct V1Frame<'a> {
    join_ref: Option<Value>,
    #[serde(rename = "ref")]
    msg_ref: Option<Value>,
    topic: Option<Value>,
    event: Option<Value>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

fn decode_v1(text: &str) -> Result<InFrame, Unparsable> {
    let f: V1Frame<'_> = serde_json::from_str(text).map_err(|_| nothing())?;
    let msg_ref = scalar_ref(f.msg_ref);
    let join_ref = scalar_ref(f.join_ref);
    let as_string = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    match (as_string(f.topic), as_string(f.event)) {
        (Some(topic), Some(event)) => Ok(frame(join_ref, msg_ref, topic, event, payload_of(f.payload))),
        (topic, _) => Err(Unparsable { msg_ref: Some(msg_ref).filter(|r| !r.is_null()), join_ref, topic }),
    }
}

#[derive(Deserialize)]
struct PlainFrameIn<'a> {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(rename = "ref")]
    msg_ref: Option<Value>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

fn decode_plain(text: &str, topic: &str) -> Result<InFrame, Unparsable> {
    let f: PlainFrameIn<'_> = serde_json::from_str(text).map_err(|_| nothing())?;
    let msg_ref = scalar_ref(f.msg_ref);
    match f.kind {
        Some(Value::String(event)) => Ok(frame(Value::Null, msg_ref, topic.to_owned(), event, payload_of(f.data))),
        _ => Err(Unparsable { msg_ref: None, join_ref: Value::Null, topic: Some(topic.to_owned()) }),
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
    fn an_unreadable_payload_keeps_the_refs() {
        let f = decode(Vsn::V2, r#"["1","5","t","location_update",{"lat":1e400,"lng":0}]"#, "")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(f.payload_unreadable);
        assert_eq!(f.msg_ref, json!("5"));
        let p = decode(Vsn::Plain, r#"{"type":"location_update","data":{"lat":-1e999}}"#, "t")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p.payload_unreadable);
        let ok = decode(Vsn::V1, r#"{"topic":"t","event":"e","ref":"1","payload":null}"#, "")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((ok.payload, ok.payload_unreadable), (json!({}), false));
    }

    #[test]
    fn vsn_param() {
        assert_eq!(Vsn::from_param(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::from_param(Some("1.0.0")), Some(Vsn::V1));
        assert_eq!(Vsn::from_param(None), Some(Vsn::Plain));
        assert_eq!(Vsn::from_param(Some("")), Some(Vsn::Plain));
        assert_eq!(Vsn::from_param(Some("3.0.0")), None);
    }
}

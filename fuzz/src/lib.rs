//! Checks shared by the fuzz targets: what must hold for whatever a client sends.
//!
//! A failed check panics, which libFuzzer reports as a crash with the input that caused it.

use chrono::{DateTime, Duration, Utc};
use location_sharing::domain::{Location, ParticipantId, Viewing};
use location_sharing::realtime::protocol::{
    decode, encode_lifecycle, encode_push, encode_reply, InFrame, ReplyTo, Status, Unparsable, Vsn,
};
use serde_json::{json, Map, Value};

/// The topic plain frames belong to (any session's would do).
pub const PLAIN_TOPIC: &str = "location:6f9619ff-8b86-4d11-b42d-00c04fc964ff";

/// A fixed receive time, so every crash reproduces: 2026-06-01T12:00:00Z.
pub fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_315_200, 0).unwrap_or_default()
}

/// One WebSocket text frame in `vsn`'s framing, then what the socket does with it.
pub fn fuzz_frame(vsn: Vsn, data: &[u8]) {
    // A WebSocket text frame is UTF-8 by the time it reaches the decoder.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match decode(vsn, text, PLAIN_TOPIC) {
        Ok(frame) => decoded(vsn, &frame),
        Err(bad) => unparsable(vsn, bad),
    }
}

fn is_ref(v: &Value) -> bool {
    matches!(v, Value::Null | Value::String(_) | Value::Number(_))
}

fn decoded(vsn: Vsn, frame: &InFrame) {
    assert!(is_ref(&frame.join_ref) && is_ref(&frame.msg_ref), "refs are scalars: {frame:?}");
    assert_eq!(frame.payload_unreadable, frame.payload.is_null(), "only an unreadable payload is null: {frame:?}");
    if vsn == Vsn::Plain {
        assert_eq!(frame.topic, PLAIN_TOPIC);
        assert!(frame.join_ref.is_null());
    }
    let to = ReplyTo::from(frame);
    check_reply(vsn, &to, Status::Ok, &json!({}));
    check_reply(vsn, &to, Status::Error, &json!({"reason": "unknown_event"}));
    round_trip(vsn, frame);

    // What the socket's dispatch does next with the payload, as far as it is pure.
    match frame.event.as_str() {
        "location_update" => match frame.payload.as_object() {
            Some(payload) if !frame.payload_unreadable => {
                let result = Location::parse(payload, fixed_now());
                check_location(payload, fixed_now(), &result);
                match result {
                    Ok(location) => {
                        let view = location.view(ParticipantId::new());
                        check_json(&encode_push(vsn, &frame.join_ref, &frame.topic, "location_update", &view));
                    }
                    Err(errors) => {
                        check_reply(vsn, &to, Status::Error, &json!({"reason": "invalid_location", "errors": errors}))
                    }
                }
            }
            _ => check_reply(vsn, &to, Status::Error, &json!({"reason": "invalid_location"})),
        },
        "viewing" => {
            if let Some(payload) = frame.payload.as_object() {
                check_viewing(payload, &Viewing::parse(payload).map(|v| v.visible()));
            }
        }
        "phx_join" | "phx_leave" => {
            check_json(&encode_lifecycle(vsn, &frame.join_ref, &frame.topic, "phx_close"));
        }
        _ => {}
    }
}

fn unparsable(vsn: Vsn, bad: Unparsable) {
    assert!(is_ref(&bad.join_ref), "{bad:?}");
    if vsn == Vsn::Plain {
        assert_eq!(bad.msg_ref, None, "plain frames are answered only when readable");
    }
    // As the socket does: a ref gets an `invalid_message` reply, on `phoenix` when no topic was found.
    if let Some(msg_ref) = bad.msg_ref {
        assert!(matches!(msg_ref, Value::String(_) | Value::Number(_)), "a found ref is a scalar: {msg_ref:?}");
        let to = ReplyTo {
            join_ref: bad.join_ref,
            msg_ref,
            topic: bad.topic.unwrap_or_else(|| "phoenix".into()),
            event: String::new(),
        };
        check_reply(vsn, &to, Status::Error, &json!({"reason": "invalid_message"}));
    }
}

/// A reply is valid JSON in the framing of `vsn` and carries the refs, topic and event it answers.
fn check_reply(vsn: Vsn, to: &ReplyTo, status: Status, response: &Value) {
    let text = encode_reply(vsn, to, status, response);
    let v = check_json(&text);
    let status = match status {
        Status::Ok => "ok",
        Status::Error => "error",
    };
    let body = json!({"status": status, "response": response});
    let expected = match vsn {
        Vsn::V2 => json!([to.join_ref, to.msg_ref, to.topic, "phx_reply", body]),
        Vsn::V1 => json!({"join_ref": to.join_ref, "ref": to.msg_ref, "topic": to.topic, "event": "phx_reply",
            "payload": body}),
        Vsn::Plain => json!({"type": "reply", "data": {"status": status, "response": response, "to": to.event}}),
    };
    assert!(json_close(&v, &expected), "reply {text} is not {expected}");
}

/// The frame a client would send for `frame`, read back, is the same frame.
fn round_trip(vsn: Vsn, frame: &InFrame) {
    let wrapped = frame
        .payload
        .as_object()
        .is_some_and(|m| m.len() == 2 && m.get("type").is_some_and(Value::is_string) && m.contains_key("data"));
    // A payload that is itself in the wrapped form would be unwrapped once more: not a round trip.
    if frame.payload_unreadable || wrapped {
        return;
    }
    let text = match vsn {
        Vsn::V2 => json!([frame.join_ref, frame.msg_ref, frame.topic, frame.event, frame.payload]),
        Vsn::V1 => json!({"join_ref": frame.join_ref, "ref": frame.msg_ref, "topic": frame.topic,
            "event": frame.event, "payload": frame.payload}),
        Vsn::Plain => json!({"type": frame.event, "ref": frame.msg_ref, "data": frame.payload}),
    }
    .to_string();
    let again = decode(vsn, &text, PLAIN_TOPIC).unwrap_or_else(|e| panic!("{text} no longer decodes: {e:?}"));
    assert!(
        json_close(&again.join_ref, &frame.join_ref)
            && json_close(&again.msg_ref, &frame.msg_ref)
            && again.topic == frame.topic
            && again.event == frame.event
            && json_close(&again.payload, &frame.payload)
            && !again.payload_unreadable,
        "{frame:?} read back as {again:?}"
    );
}

/// Parses `text` as JSON, or fails the run.
pub fn check_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Equal JSON, numbers within a rounding error: serde_json's default float parser may be one
/// unit in the last place off on a round trip, which no client could tell.
pub fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

fn finite_number(payload: &Map<String, Value>, field: &str) -> Result<Option<f64>, ()> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()).map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// What SPEC §3 says of a `location_update` payload, checked against what `Location::parse` did.
pub fn check_location(
    payload: &Map<String, Value>,
    now: DateTime<Utc>,
    result: &Result<Location, location_sharing::domain::LocationErrors>,
) {
    let ranged = |field: &str, required: bool, ok: &dyn Fn(f64) -> bool| match finite_number(payload, field) {
        Ok(Some(v)) => ok(v),
        Ok(None) => !required,
        Err(()) => false,
    };
    let mut bad: Vec<&str> = Vec::new();
    for (field, required, ok) in [
        ("lat", true, &(|v: f64| (-90.0..=90.0).contains(&v)) as &dyn Fn(f64) -> bool),
        ("lng", true, &|v: f64| (-180.0..=180.0).contains(&v)),
        ("accuracy", false, &|v: f64| (0.0..=100_000.0).contains(&v)),
        ("heading", false, &|v: f64| (0.0..360.0).contains(&v)),
        ("speed", false, &|v: f64| v >= 0.0),
    ] {
        if !ranged(field, required, ok) {
            bad.push(field);
        }
    }
    let timestamp_ok = match payload.get("timestamp") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .is_ok_and(|t| t.with_timezone(&Utc) <= now + Duration::seconds(60) && rfc3339_year(&t)),
        Some(_) => false,
    };
    if !timestamp_ok {
        bad.push("timestamp");
    }
    bad.sort_unstable();

    match result {
        Ok(loc) => {
            assert!(bad.is_empty(), "accepted {payload:?} although {bad:?} are invalid");
            assert!(loc.lat.is_finite() && (-90.0..=90.0).contains(&loc.lat), "{loc:?}");
            assert!(loc.lng.is_finite() && (-180.0..=180.0).contains(&loc.lng), "{loc:?}");
            assert!(loc.accuracy.is_none_or(|a| a.is_finite() && (0.0..=100_000.0).contains(&a)), "{loc:?}");
            assert!(loc.heading.is_none_or(|h| h.is_finite() && (0.0..360.0).contains(&h)), "{loc:?}");
            assert!(loc.speed.is_none_or(|s| s.is_finite() && s >= 0.0), "{loc:?}");
            assert!(loc.timestamp <= now + Duration::seconds(60), "{loc:?}");
            if matches!(payload.get("timestamp"), None | Some(Value::Null)) {
                assert_eq!(loc.timestamp, now, "no client time: the receive time");
            }
            let view = loc.view(ParticipantId::new());
            let text = serde_json::to_string(&view).unwrap_or_else(|e| panic!("{view:?} does not serialize: {e}"));
            check_json(&text);
            // Broadcast times are RFC 3339 UTC with a `Z` (SPEC §2), and the same instant.
            assert!(view.timestamp.ends_with('Z'), "{}", view.timestamp);
            let back = DateTime::parse_from_rfc3339(&view.timestamp)
                .unwrap_or_else(|e| panic!("broadcast time {:?} is not RFC 3339: {e}", view.timestamp));
            assert_eq!(back.with_timezone(&Utc), loc.timestamp, "{}", view.timestamp);
        }
        Err(errors) => {
            let mut fields: Vec<&str> = errors.keys().copied().collect();
            fields.sort_unstable();
            assert_eq!(fields, bad, "refused {payload:?} with {errors:?}");
            assert!(errors.values().all(|m| !m.is_empty()), "{errors:?}");
            check_json(&json!({"reason": "invalid_location", "errors": errors}).to_string());
        }
    }
}

/// RFC 3339 has four-digit years: the instant in UTC must be in 0000..=9999 to be written back.
fn rfc3339_year(t: &DateTime<chrono::FixedOffset>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&t.with_timezone(&Utc).year())
}

/// What SPEC §8 says of a `viewing` payload, checked against what `Viewing::parse` did.
pub fn check_viewing(payload: &Map<String, Value>, result: &Result<bool, location_sharing::domain::Invalid>) {
    match (payload.get("visible"), result) {
        (Some(Value::Bool(expected)), Ok(visible)) => assert_eq!(visible, expected, "{payload:?}"),
        (Some(Value::Bool(_)), Err(e)) => panic!("refused {payload:?}: {e}"),
        (_, Ok(v)) => panic!("accepted {payload:?} as visible={v}"),
        (_, Err(e)) => assert!(!e.0.is_empty()),
    }
}

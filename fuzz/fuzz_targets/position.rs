//! `Position::parse` on a `location_update` payload of either kind of session (SPEC §10).
//!
//! In an end-to-end encrypted session a payload is accepted only as `{"sealed": S}` with `S`
//! base64url of 24 to 2,048 characters and no clear location field; every refusal names `sealed`
//! alone. In any other session `sealed` is refused, and the rest is `Location::parse`'s. Inputs are
//! JSON text, and payloads built from the fuzzer's bytes with sealed strings near the length
//! edges and characters just outside the alphabet, which raw mutation rarely reaches.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use location_sharing::domain::{ParticipantId, Position, PositionView};
use location_sharing_fuzz::fixed_now;
use serde_json::{Map, Value};

const CLEAR: [&str; 6] = ["lat", "lng", "accuracy", "heading", "speed", "timestamp"];

fuzz_target!(|data: &[u8]| {
    if let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(data) {
        check(&payload);
    }
    if let Ok(payload) = structured(&mut Unstructured::new(data)) {
        check(&payload);
    }
});

fn check(payload: &Map<String, Value>) {
    let sealed = Position::parse(payload, true, fixed_now());
    let valid = !CLEAR.iter().any(|f| payload.contains_key(*f))
        && payload.get("sealed").and_then(Value::as_str).is_some_and(|s| {
            (24..=2048).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    match &sealed {
        Ok(Position::Sealed(s)) => {
            assert!(valid, "accepted {payload:?}");
            assert_eq!(Some(s.as_str()), payload.get("sealed").and_then(Value::as_str), "relayed as sent");
            // The broadcast is the message as sent, and reads back as a sealed view.
            let view = PositionView::sealed(ParticipantId::new(), s.clone(), fixed_now());
            let text = serde_json::to_string(&view).unwrap_or_default();
            let back: PositionView = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(back, view);
        }
        Ok(Position::Clear(_)) => panic!("a clear position in an e2e session from {payload:?}"),
        Err(errors) => {
            assert!(!valid, "refused {payload:?}: {errors:?}");
            assert_eq!(errors.keys().copied().collect::<Vec<_>>(), vec!["sealed"], "{payload:?}");
        }
    }
    let clear = Position::parse(payload, false, fixed_now());
    match &clear {
        Ok(Position::Sealed(_)) => panic!("a sealed position in a normal session from {payload:?}"),
        Ok(Position::Clear(_)) => assert!(!payload.contains_key("sealed"), "took sealed in {payload:?}"),
        Err(errors) if payload.contains_key("sealed") => {
            assert_eq!(errors.keys().copied().collect::<Vec<_>>(), vec!["sealed"], "{payload:?}");
        }
        Err(errors) => assert!(!errors.contains_key("sealed"), "{payload:?}: {errors:?}"),
    }
}

fn structured(u: &mut Unstructured<'_>) -> Result<Map<String, Value>> {
    let mut payload = Map::new();
    let len = match u.int_in_range(0..=5u8)? {
        0 => 23,
        1 => 24,
        2 => 2048,
        3 => 2049,
        _ => u.int_in_range(0..=2100usize)?,
    };
    // Mostly the alphabet, now and then a neighbour of it: `+`, `/`, `=`, `.`, a space, non-ASCII.
    const NEAR: [char; 8] = ['+', '/', '=', '.', ' ', 'é', '\u{0}', '~'];
    let alphabet: Vec<char> = ('A'..='Z').chain('a'..='z').chain('0'..='9').chain(['-', '_']).collect();
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(if u.ratio(1, 200)? { *u.choose(&NEAR)? } else { *u.choose(&alphabet)? });
    }
    match u.int_in_range(0..=4u8)? {
        0 => {}
        1 => {
            payload.insert("sealed".into(), Value::Null);
        }
        2 => {
            payload.insert("sealed".into(), Value::from(u.arbitrary::<i64>()?));
        }
        _ => {
            payload.insert("sealed".into(), Value::String(s));
        }
    }
    if u.ratio(1, 4)? {
        payload.insert((*u.choose(&CLEAR)?).into(), Value::from(u.arbitrary::<f64>().map(|f| f.clamp(-90.0, 90.0))?));
    }
    if u.arbitrary()? {
        payload.insert(u.arbitrary()?, Value::String(u.arbitrary()?));
    }
    Ok(payload)
}

//! `Location::parse` on a `location_update` payload, checked against SPEC §3.
//!
//! Every input is tried twice: as JSON text (what a client sends), and as the seed of a payload
//! built field by field, where values sit near the edges of their ranges and timestamps are
//! well-formed RFC 3339 with any year, offset and fraction, which raw JSON mutation rarely reaches.
#![no_main]

use arbitrary::{Result, Unstructured};
use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use location_sharing::domain::Location;
use location_sharing_fuzz::{check_location, fixed_now};
use serde_json::{Map, Number, Value};

fuzz_target!(|data: &[u8]| {
    if let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(data) {
        check_location(&payload, fixed_now(), &Location::parse(&payload, fixed_now()));
    }
    if let Ok((payload, now)) = structured(&mut Unstructured::new(data)) {
        check_location(&payload, now, &Location::parse(&payload, now));
    }
});

const EDGES: [f64; 16] = [
    0.0,
    -0.0,
    90.0,
    -90.0,
    180.0,
    -180.0,
    360.0,
    359.999_999_999_999_94,
    100_000.0,
    100_000.000_000_000_01,
    f64::MIN_POSITIVE,
    -f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    1e-320,
    90.000_000_000_000_01,
];

fn structured(u: &mut Unstructured<'_>) -> Result<(Map<String, Value>, DateTime<Utc>)> {
    // A receive time from 1970 to 2100: the server's clock, not the client's.
    let now = DateTime::from_timestamp(u.int_in_range(0..=4_102_444_800)?, 0).unwrap_or_default();
    let mut payload = Map::new();
    for field in ["lat", "lng", "accuracy", "heading", "speed"] {
        if let Some(v) = value(u)? {
            payload.insert(field.into(), v);
        }
    }
    let timestamp = match u.int_in_range(0..=4u8)? {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(Value::String(rfc3339(u)?)),
        3 => Some(Value::String((now + Duration::seconds(u.int_in_range(-3600..=3600)?)).to_rfc3339())),
        _ => value(u)?,
    };
    if let Some(t) = timestamp {
        payload.insert("timestamp".into(), t);
    }
    if u.arbitrary()? {
        payload.insert(u.arbitrary()?, Value::String(u.arbitrary()?));
    }
    Ok((payload, now))
}

fn value(u: &mut Unstructured<'_>) -> Result<Option<Value>> {
    Ok(Some(match u.int_in_range(0..=8u8)? {
        0 => return Ok(None),
        1 => Value::Null,
        2 => Value::Bool(u.arbitrary()?),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => Value::from(u.arbitrary::<u64>()?),
        // Any bit pattern: NaN and infinities cannot be JSON numbers and become null.
        5 => Number::from_f64(f64::from_bits(u.arbitrary()?)).map_or(Value::Null, Value::Number),
        6 => Number::from_f64(*u.choose(&EDGES)?).map_or(Value::Null, Value::Number),
        7 => Value::String(u.arbitrary()?),
        _ => Value::Array(vec![Value::from(u.arbitrary::<f64>()?)]),
    }))
}

/// A well-formed RFC 3339 time with any year, offset, leap second and fraction.
fn rfc3339(u: &mut Unstructured<'_>) -> Result<String> {
    let year = u.int_in_range(0..=9999u32)?;
    let (month, day) = (u.int_in_range(1..=12u32)?, u.int_in_range(1..=31u32)?);
    let (hour, minute, second) = (u.int_in_range(0..=23u32)?, u.int_in_range(0..=59u32)?, u.int_in_range(0..=60u32)?);
    let fraction = match u.int_in_range(0..=12usize)? {
        0 => String::new(),
        digits => format!(".{:0>digits$}", u.int_in_range(0..=999_999_999u64)?, digits = digits),
    };
    let offset = match u.int_in_range(0..=2u8)? {
        0 => "Z".to_owned(),
        1 => "z".to_owned(),
        _ => {
            let sign = if u.arbitrary()? { '+' } else { '-' };
            format!("{sign}{:02}:{:02}", u.int_in_range(0..=23u32)?, u.int_in_range(0..=59u32)?)
        }
    };
    let t = if u.arbitrary()? { 'T' } else { ' ' };
    Ok(format!("{year:04}-{month:02}-{day:02}{t}{hour:02}:{minute:02}:{second:02}{fraction}{offset}"))
}

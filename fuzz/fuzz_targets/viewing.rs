//! `Viewing::parse` on a `viewing` payload (SPEC §8): `{"visible": true|false}`, else refused.
//!
//! The payload is tried as sent, and inside a V2 frame, so the decoder's unwrapping of
//! `{"type","data"}` payloads is covered on the way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use location_sharing::domain::Viewing;
use location_sharing::realtime::protocol::{decode, Vsn};
use location_sharing_fuzz::check_viewing;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Value::Object(payload)) = serde_json::from_str::<Value>(text) {
        check_viewing(&payload, &Viewing::parse(&payload).map(|v| v.visible()));
    }
    let frame = format!(r#"["1","2","location:s","viewing",{text}]"#);
    if let Ok(frame) = decode(Vsn::V2, &frame, "") {
        if let Some(payload) = frame.payload.as_object() {
            check_viewing(payload, &Viewing::parse(payload).map(|v| v.visible()));
        }
    }
});

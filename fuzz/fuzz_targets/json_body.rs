//! The JSON body checks of `POST /api/sessions` and `POST …/join`, then the routes' field checks.
//!
//! Input: one control byte, then the body. The control byte's low three bits pick the
//! `Content-Type` (7: the header value is the body's first line, read as actix reads a header),
//! bits 3–4 the `Content-Length` (absent, the body's, one over the limit, the limit).
#![no_main]

use actix_web::http::header::HeaderValue;
use actix_web::ResponseError;
use libfuzzer_sys::fuzz_target;
use location_sharing::domain::{AvatarColor, DisplayName, ExpiresInMinutes, SessionName};
use location_sharing::http::body::{parse_json_body, MAX_BODY_BYTES};
use location_sharing::http::error::ApiError;
use location_sharing::http::participants::JoinRequest;
use location_sharing::http::sessions::CreateSessionRequest;
use serde_json::Value;

const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    Some("application/vnd.api+json"),
    Some("APPLICATION/JSON"),
    Some("application/x-www-form-urlencoded"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let (content_type, body) = match CONTENT_TYPES.get(usize::from(control & 7)) {
        Some(ct) => (ct.map(str::to_owned), rest),
        None => {
            let (line, body) = rest.split_at(rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1));
            let header = HeaderValue::from_bytes(line.strip_suffix(b"\n").unwrap_or(line)).ok();
            (header.as_ref().and_then(|h| h.to_str().ok()).map(str::to_owned), body)
        }
    };
    let declared_len = match (control >> 3) & 3 {
        0 => None,
        1 => Some(body.len()),
        2 => Some(MAX_BODY_BYTES + 1),
        _ => Some(MAX_BODY_BYTES),
    };
    let expected = expected_status(body, content_type.as_deref(), declared_len);

    match parse_json_body::<CreateSessionRequest>(body, content_type.as_deref(), declared_len) {
        Ok(req) => {
            assert!(matches!(expected, None | Some(422)), "accepted, expected {expected:?}");
            if let Some(name) = req.name.as_deref() {
                check_session_name(name);
            }
            if let Some(minutes) = req.expires_in_minutes {
                // A whole number in 1..=1440, however it is written (30, 30.0, 3e1).
                let whole = minutes.as_f64().filter(|m| m.fract() == 0.0 && (1.0..=1440.0).contains(m));
                assert_eq!(ExpiresInMinutes::parse_number(&minutes).is_ok(), whole.is_some(), "{minutes}");
            }
        }
        Err(e) => check_error(&e, expected),
    }
    match parse_json_body::<JoinRequest>(body, content_type.as_deref(), declared_len) {
        Ok(req) => {
            assert!(matches!(expected, None | Some(422)), "accepted, expected {expected:?}");
            check_display_name(req.display_name.as_deref().unwrap_or_default());
            if let Some(color) = req.avatar_color.as_deref() {
                check_avatar_color(color);
            }
        }
        Err(e) => check_error(&e, expected),
    }
});

/// The status SPEC §2 gives the body, before the request type is known: `None` for a JSON
/// object, which may still be refused with 422 for a field of the wrong type.
fn expected_status(body: &[u8], content_type: Option<&str>, declared_len: Option<usize>) -> Option<u16> {
    // Only a body of no bytes counts as `{}`; whitespace alone is no JSON text.
    let empty = body.is_empty();
    let json_type = content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    });
    if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) || body.len() > MAX_BODY_BYTES {
        Some(413)
    } else if empty {
        None
    } else if !json_type {
        Some(415)
    } else {
        match serde_json::from_slice::<Value>(body) {
            Err(_) => Some(400),
            Ok(Value::Object(_)) => None,
            Ok(_) => Some(422),
        }
    }
}

fn check_error(e: &ApiError, expected: Option<u16>) {
    let status = e.status_code().as_u16();
    assert!(matches!(status, 400 | 413 | 415 | 422), "{e:?} is {status}");
    assert_eq!(status, expected.unwrap_or(422), "{e:?}");
    if let ApiError::Validation(fields) = e {
        assert!(!fields.is_empty() && fields.values().all(|m| !m.is_empty()), "{fields:?}");
    }
    // The response is built without a runtime; its body is the error's JSON.
    assert_eq!(e.error_response().status().as_u16(), status);
}

fn check_session_name(raw: &str) {
    match SessionName::parse(raw) {
        Ok(None) => assert!(raw.trim().is_empty()),
        Ok(Some(name)) => {
            let s = name.as_str();
            assert!(s == raw.trim() && !s.is_empty() && s.chars().count() <= 100, "{raw:?} -> {s:?}");
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
        Err(e) => {
            let trimmed = raw.trim();
            assert!(trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control), "{raw:?}: {e}")
        }
    }
}

fn check_display_name(raw: &str) {
    let trimmed = raw.trim();
    let valid = (1..=50).contains(&trimmed.chars().count()) && !trimmed.chars().any(char::is_control);
    match DisplayName::parse(raw) {
        Ok(name) => assert!(valid && name.as_str() == trimmed, "{raw:?} -> {name:?}"),
        Err(e) => assert!(!valid, "{raw:?}: {e}"),
    }
}

fn check_avatar_color(raw: &str) {
    let valid = raw.len() == 7 && raw.starts_with('#') && raw[1..].bytes().all(|b| b.is_ascii_hexdigit());
    match AvatarColor::parse(raw) {
        Ok(c) => assert!(valid && c.as_str() == raw.to_ascii_uppercase(), "{raw:?} -> {c:?}"),
        Err(e) => assert!(!valid, "{raw:?}: {e}"),
    }
}

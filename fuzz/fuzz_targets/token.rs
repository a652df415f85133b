//! Tokens: the `Authorization` header, `Tokens::verify` on whatever a client sends, and a round
//! trip of issued tokens, mutated, which must never verify as someone else.
//!
//! The seeds hold tokens signed with [`SECRET`] for [`known`] claims; any other claims that
//! verify from the raw input would be a forgery.
#![no_main]

use std::sync::OnceLock;

use actix_web::ResponseError;
use arbitrary::{Result, Unstructured};
use chrono::Utc;
use libfuzzer_sys::fuzz_target;
use location_sharing::auth::{AuthError, Claims, Role, Tokens, ISSUER};
use location_sharing::domain::SessionId;
use location_sharing::http::bearer_token;
use location_sharing::http::error::ApiError;

/// The secret the seed tokens are signed with.
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef0123456789";
const SEED_SESSION: &str = "6f9619ff-8b86-4d11-b42d-00c04fc964ff";
const SEED_PARTICIPANT: &str = "0b6f4a47-3c1e-4f6a-9d3e-2a5b7c8d9e0f";
/// 2100-01-01T00:00:00Z: the seed tokens stay valid.
const SEED_EXP: i64 = 4_102_444_800;
const SEED_IAT: i64 = 1_780_315_200;

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| Tokens::new(SECRET))
}

/// The claims of the seed tokens: the only ones that raw input may verify as.
fn known() -> &'static [Claims] {
    static KNOWN: OnceLock<Vec<Claims>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let sid: SessionId = SEED_SESSION.parse().unwrap_or_default();
        let claims =
            |sub: &str, role| Claims { iss: ISSUER.into(), sub: sub.into(), sid, role, exp: SEED_EXP, iat: SEED_IAT };
        vec![claims(SEED_SESSION, Role::Creator), claims(SEED_PARTICIPANT, Role::Participant)]
    })
}

fuzz_target!(|data: &[u8]| {
    // As an `Authorization` header value.
    match bearer_token(data) {
        Ok(token) => {
            let (scheme, rest) = data.split_at(7.min(data.len()));
            assert!(scheme.eq_ignore_ascii_case(b"bearer "), "{data:?}");
            assert_eq!(token.as_bytes(), String::from_utf8_lossy(rest).trim().as_bytes());
            check_raw(tokens().verify(token));
        }
        Err(e) => assert_eq!(e.status_code().as_u16(), 401, "{e:?}"),
    }
    // As the socket's `token` query parameter.
    if let Ok(text) = std::str::from_utf8(data) {
        check_raw(tokens().verify(text));
    }
    let _ = round_trip(&mut Unstructured::new(data));
});

fn check_raw(result: std::result::Result<Claims, AuthError>) {
    match result {
        Ok(claims) => assert!(known().contains(&claims), "forged: {claims:?}"),
        Err(e) => assert_eq!(ApiError::from(e).status_code().as_u16(), 401),
    }
}

fn v4_uuid(u: &mut Unstructured<'_>) -> Result<String> {
    let n: u128 = u.arbitrary()?;
    let n = (n & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{n:032x}");
    Ok(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let now = Utc::now().timestamp();
    let exp = match u.int_in_range(0..=3u8)? {
        0 => now + u.int_in_range(60..=10 * 365 * 86_400)?,
        1 => now - u.int_in_range(60..=4_000_000_000)?,
        2 => u.arbitrary()?,
        _ => SEED_EXP,
    };
    let iss = if u.ratio(1, 8)? { u.arbitrary()? } else { ISSUER.to_owned() };
    let sid: SessionId = v4_uuid(u)?.parse().unwrap_or_else(|e| panic!("a v4 uuid: {e}"));
    let role = if u.arbitrary()? { Role::Creator } else { Role::Participant };
    let sub = if u.arbitrary()? { v4_uuid(u)? } else { u.arbitrary()? };
    let claims = Claims { iss, sub, sid, role, exp, iat: u.arbitrary()? };

    let token = tokens().issue(&claims).unwrap_or_else(|e| panic!("cannot sign {claims:?}: {e}"));
    // A margin either side of `exp`: the check reads the clock again.
    let live = claims.iss == ISSUER && exp > now + 5;
    let dead = claims.iss != ISSUER || exp < now - 5;
    match tokens().verify(&token) {
        Ok(back) => assert!(!dead && back == claims, "{claims:?} verified as {back:?}"),
        Err(e) => assert!(!live, "{claims:?} refused: {e}"),
    }
    let scheme = *u.choose(&["Bearer", "bearer", "BEARER"])?;
    let header = format!("{scheme} {token}");
    assert_eq!(bearer_token(header.as_bytes()).ok(), Some(token.as_str()), "{header}");

    let mut bytes = token.clone().into_bytes();
    for _ in 0..u.int_in_range(1..=4u8)? {
        match u.int_in_range(0..=2u8)? {
            0 => {
                let i = u.choose_index(bytes.len())?;
                bytes[i] = u.arbitrary()?;
            }
            1 => {
                let i = u.choose_index(bytes.len() + 1)?;
                bytes.insert(i, u.arbitrary()?);
            }
            _ if bytes.len() > 1 => {
                bytes.remove(u.choose_index(bytes.len())?);
            }
            _ => {}
        }
    }
    if let Ok(mutated) = std::str::from_utf8(&bytes) {
        if mutated != token {
            if let Ok(back) = tokens().verify(mutated) {
                assert_eq!(back, claims, "{mutated:?}, a mutation of {token:?}, verified as another identity");
            }
        }
    }
    Ok(())
}

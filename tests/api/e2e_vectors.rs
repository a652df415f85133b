//! The test vectors of end-to-end encrypted sessions (docs/e2e-vectors.json, made by
//! tests/e2e/vectors.js with Node's crypto), checked with an independent implementation of the
//! sealing (README, "Sealing, for interoperable clients"): RustCrypto's `aes-gcm`. No server:
//! this is the format every client shares, which the server never opens.

use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

const BLOCK: usize = 256;
const IV_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

#[derive(Debug, Deserialize)]
struct Document {
    description: String,
    vectors: Vec<Vector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    description: String,
    key: String,
    session_id: String,
    /// None for the destination.
    user_id: Option<String>,
    aad: String,
    iv: String,
    plaintext: String,
    sealed: String,
}

/// The 96-bit nonce of AES-GCM, from the first 12 bytes of `bytes` (checked 12 or more long).
fn nonce(bytes: &[u8]) -> Nonce<Aes256Gcm> {
    Nonce::<Aes256Gcm>::try_from(&bytes[..IV_BYTES]).unwrap_or_else(|e| panic!("a 12-byte nonce: {e}"))
}

/// A vector's values, decoded.
struct Decoded<'a> {
    v: &'a Vector,
    cipher: Aes256Gcm,
    iv: Vec<u8>,
    sealed: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/e2e-vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let doc: Document = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not the vectors' shape: {e}"));
    assert!(!doc.description.is_empty(), "{path}: no description");
    assert!(!doc.vectors.is_empty(), "{path}: no vectors");
    doc.vectors
}

fn b64(what: &str, v: &Vector, s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("{}: {what} is not base64url without padding: {e}", v.description))
}

fn decode(v: &Vector) -> Decoded<'_> {
    let key = b64("key", v, &v.key);
    assert_eq!(key.len(), 32, "{}: the key is 32 bytes", v.description);
    let cipher = Aes256Gcm::new_from_slice(&key).unwrap_or_else(|e| panic!("{}: key: {e}", v.description));
    let iv = b64("iv", v, &v.iv);
    assert_eq!(iv.len(), IV_BYTES, "{}: the iv is 12 bytes", v.description);
    let sealed = b64("sealed", v, &v.sealed);
    assert!(sealed.len() >= IV_BYTES + TAG_BYTES, "{}: sealed is too short", v.description);
    Decoded { v, cipher, iv, sealed }
}

impl Decoded<'_> {
    fn seal(&self) -> String {
        let payload = Payload { msg: self.v.plaintext.as_bytes(), aad: self.v.aad.as_bytes() };
        let body = self
            .cipher
            .encrypt(&nonce(&self.iv), payload)
            .unwrap_or_else(|e| panic!("{}: cannot seal: {e}", self.v.description));
        let mut out = self.iv.clone();
        out.extend_from_slice(&body);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens `sealed` (iv ‖ ciphertext ‖ tag) under `aad`; None when it does not open.
    fn open(&self, sealed: &[u8], aad: &str) -> Option<String> {
        let (iv, body) = sealed.split_at(IV_BYTES);
        let plain = self.cipher.decrypt(&nonce(iv), Payload { msg: body, aad: aad.as_bytes() }).ok()?;
        Some(String::from_utf8(plain).unwrap_or_else(|e| panic!("{}: opens to non-UTF-8: {e}", self.v.description)))
    }
}

#[test]
fn the_additional_data_is_the_senders() {
    for v in vectors() {
        let sender = v.user_id.as_deref().unwrap_or("destination");
        assert_eq!(v.aad, format!("{}:{sender}", v.session_id), "{}", v.description);
        uuid::Uuid::try_parse(&v.session_id).unwrap_or_else(|e| panic!("{}: session_id: {e}", v.description));
        if let Some(user) = &v.user_id {
            uuid::Uuid::try_parse(user).unwrap_or_else(|e| panic!("{}: user_id: {e}", v.description));
        }
    }
}

#[test]
fn each_plaintext_seals_to_exactly_its_sealed_value() {
    for v in vectors() {
        let d = decode(&v);
        assert_eq!(d.seal(), v.sealed, "{}", v.description);
        assert_eq!(&d.sealed[..IV_BYTES], &d.iv[..], "{}: sealed starts with the iv", v.description);
        assert_eq!(d.sealed.len(), IV_BYTES + v.plaintext.len() + TAG_BYTES, "{}", v.description);
    }
}

#[test]
fn each_sealed_value_opens_to_its_plaintext() {
    for v in vectors() {
        let d = decode(&v);
        let opened = d.open(&d.sealed, &v.aad).unwrap_or_else(|| panic!("{}: does not open", v.description));
        assert_eq!(opened, v.plaintext, "{}", v.description);
    }
}

#[test]
fn each_plaintext_is_a_json_object_padded_with_spaces_to_a_multiple_of_256_bytes() {
    for v in vectors() {
        let bytes = v.plaintext.len();
        assert!(bytes > 0 && bytes % BLOCK == 0, "{}: {bytes} bytes", v.description);
        let parsed: Value =
            serde_json::from_str(&v.plaintext).unwrap_or_else(|e| panic!("{}: not JSON: {e}", v.description));
        let object = parsed.as_object().unwrap_or_else(|| panic!("{}: not a JSON object", v.description));
        // Spaces only after the object, and no more than needed to reach the multiple.
        let json = v.plaintext.trim_end_matches(' ');
        assert!(json.ends_with('}'), "{}: only spaces pad the object", v.description);
        assert!(bytes - json.len() < BLOCK, "{}: padded past the next multiple of 256", v.description);
        // A location's or a destination's fields (README).
        let number = |field: &str| object.get(field).and_then(Value::as_f64);
        assert!(number("lat").is_some() && number("lng").is_some(), "{}: lat and lng", v.description);
        if v.user_id.is_some() {
            assert!(
                object.get("timestamp").and_then(Value::as_str).is_some(),
                "{}: a location's timestamp",
                v.description
            );
        } else {
            assert!(number("radius_m").is_some(), "{}: a destination's radius_m", v.description);
        }
    }
}

#[test]
fn another_senders_additional_data_or_a_flipped_byte_does_not_open() {
    let someone_else = "00000000-0000-4000-8000-000000000000";
    for v in vectors() {
        let d = decode(&v);
        let wrong = match &v.user_id {
            Some(_) => vec![format!("{}:{someone_else}", v.session_id), format!("{}:destination", v.session_id)],
            None => vec![format!("{}:{someone_else}", v.session_id)],
        };
        let other_session = v.aad.replacen(&v.session_id, someone_else, 1);
        for aad in wrong.iter().chain([&other_session]) {
            assert_eq!(d.open(&d.sealed, aad), None, "{}: opens with the additional data {aad}", v.description);
        }
        // A flipped bit in the iv, the ciphertext and the tag.
        for at in [0, IV_BYTES, IV_BYTES + v.plaintext.len() / 2, d.sealed.len() - 1] {
            let mut tampered = d.sealed.clone();
            tampered[at] ^= 0x01;
            assert_eq!(d.open(&tampered, &v.aad), None, "{}: opens with byte {at} flipped", v.description);
        }
    }
}

#[test]
fn the_vectors_cover_locations_destinations_and_a_second_block() {
    let all = vectors();
    let fields = |v: &Vector| -> usize {
        serde_json::from_str::<Value>(&v.plaintext).ok().and_then(|p| p.as_object().map(|o| o.len())).unwrap_or(0)
    };
    assert!(all.iter().any(|v| v.user_id.is_some() && fields(v) == 6), "a full location");
    assert!(all.iter().any(|v| v.user_id.is_some() && fields(v) == 3), "a minimal location");
    assert!(all.iter().any(|v| v.user_id.is_none()), "a destination");
    assert!(all.iter().any(|v| v.user_id.is_none() && !v.plaintext.is_ascii()), "a non-ASCII label");
    assert!(all.iter().any(|v| v.plaintext.len() > BLOCK), "a plaintext of more than 256 bytes");
}

//! Tokens: the claims the server issues, and every forged or stale token it must refuse.

use chrono::{TimeDelta, Utc};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::helpers::{
    assert_rfc3339_z, base64url_encode, decode_jwt, sign, spawn_app, unsigned, Created, Joined, TestApp, JWT_SECRET,
};

#[actix_rt::test]
async fn creator_token_carries_the_session_claims() {
    let app = spawn_app().await;
    let resp = app.create_session(&json!({"expires_in_minutes": 45})).await;
    resp.assert_status(201, "create");
    let sid = resp.json["session_id"].as_str().expect("session_id");
    let expires_at = assert_rfc3339_z(&resp.json["expires_at"], "expires_at");
    let (header, claims) = decode_jwt(resp.json["creator_token"].as_str().expect("creator_token"));

    assert_eq!(header["alg"], "HS256");
    assert!(header.get("typ").is_none_or(|t| t == "JWT"), "typ {header}");
    assert_eq!(claims["role"], "creator");
    assert_eq!(claims["sid"], sid);
    assert!(claims["sub"].as_str().is_some_and(|s| !s.is_empty()), "sub in {claims}");
    assert!(claims["iss"].as_str().is_some_and(|s| !s.is_empty()), "iss in {claims}");
    assert_eq!(claims["exp"].as_i64(), Some(expires_at.timestamp()), "exp == expires_at");
}

#[actix_rt::test]
async fn websocket_token_carries_the_participant_claims() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let expires_at = assert_rfc3339_z(&session.json["expires_at"], "expires_at");
    let (_, creator) = decode_jwt(&session.creator_token);
    let ana = app.join_as(&session.id, "Ana").await;
    let (header, claims) = decode_jwt(&ana.token);

    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["role"], "participant");
    assert_eq!(claims["sid"], session.id.as_str());
    assert_eq!(claims["sub"], ana.user_id.as_str());
    assert_eq!(claims["iss"], creator["iss"], "one issuer");
    assert_eq!(claims["exp"].as_i64(), Some(expires_at.timestamp()), "exp == session expires_at");
}

/// Claims like the server's for `session`, as a JSON object the test may then spoil.
fn claims_for(app_session: &Created, role: &str, sub: &str) -> Value {
    let (_, creator) = decode_jwt(&app_session.creator_token);
    json!({
        "iss": creator["iss"],
        "sub": sub,
        "sid": app_session.id,
        "role": role,
        "exp": creator["exp"],
        "iat": Utc::now().timestamp(),
    })
}

/// The server refuses `token` with 401 both for ending the session and for removing `ana`.
async fn assert_refused(app: &TestApp, session: &Created, ana: &Joined, token: &str, context: &str) {
    app.end_session(&session.id, Some(token)).await.assert_detail_error(401, &format!("{context}: end session"));
    app.remove(&session.id, &ana.user_id, Some(token))
        .await
        .assert_detail_error(401, &format!("{context}: remove participant"));
}

async fn setup() -> (TestApp, Created, Joined) {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    (app, session, ana)
}

/// Everything is still in place after the refusals.
async fn assert_untouched(app: &TestApp, session: &Created, ana: &Joined) {
    let resp = app.get_session(&session.id).await;
    assert_eq!(resp.json["is_active"], true, "session still live");
    assert_eq!(app.participant_ids(&session.id).await, vec![ana.user_id.clone()], "Ana still there");
}

#[actix_rt::test]
async fn tokens_signed_like_the_servers_are_accepted() {
    // The forging below is only meaningful if a well-formed token passes.
    let (app, session, ana) = setup().await;
    let participant = sign(Algorithm::HS256, JWT_SECRET, &claims_for(&session, "participant", &ana.user_id));
    app.remove(&session.id, &ana.user_id, Some(&participant)).await.assert_no_content("forged-alike participant");
    let creator = sign(Algorithm::HS256, JWT_SECRET, &claims_for(&session, "creator", &session.id));
    app.end_session(&session.id, Some(&creator)).await.assert_no_content("forged-alike creator");
}

#[actix_rt::test]
async fn an_expired_token_is_refused() {
    let (app, session, ana) = setup().await;
    for role in ["creator", "participant"] {
        let sub = if role == "creator" { session.id.clone() } else { ana.user_id.clone() };
        let mut claims = claims_for(&session, role, &sub);
        claims["exp"] = json!((Utc::now() - TimeDelta::seconds(30)).timestamp());
        claims["iat"] = json!((Utc::now() - TimeDelta::minutes(10)).timestamp());
        assert_refused(&app, &session, &ana, &sign(Algorithm::HS256, JWT_SECRET, &claims), role).await;
    }
    assert_untouched(&app, &session, &ana).await;
}

#[actix_rt::test]
async fn a_token_without_expiry_is_refused() {
    let (app, session, ana) = setup().await;
    let mut claims = claims_for(&session, "creator", &session.id);
    claims.as_object_mut().expect("object").remove("exp");
    assert_refused(&app, &session, &ana, &sign(Algorithm::HS256, JWT_SECRET, &claims), "no exp").await;
    assert_untouched(&app, &session, &ana).await;
}

#[actix_rt::test]
async fn a_bad_signature_is_refused() {
    let (app, session, ana) = setup().await;
    let claims = claims_for(&session, "creator", &session.id);
    let other_secret = sign(Algorithm::HS256, "another-secret-another-secret-another", &claims);
    assert_refused(&app, &session, &ana, &other_secret, "other secret").await;

    // The server's own token with its payload swapped for another session's claims.
    let other = app.new_session().await;
    let mut parts: Vec<String> = other.creator_token.split('.').map(str::to_owned).collect();
    parts[1] = base64url_encode(claims.to_string().as_bytes());
    assert_refused(&app, &session, &ana, &parts.join("."), "tampered payload").await;

    // Signature stripped.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_refused(&app, &session, &ana, &stripped, "no signature").await;
    assert_untouched(&app, &session, &ana).await;
}

#[actix_rt::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let (app, session, ana) = setup().await;
    let creator = unsigned(&claims_for(&session, "creator", &session.id));
    assert_refused(&app, &session, &ana, &creator, "alg none creator").await;
    assert_refused(&app, &session, &ana, creator.trim_end_matches('.'), "alg none, two parts").await;
    let participant = unsigned(&claims_for(&session, "participant", &ana.user_id));
    assert_refused(&app, &session, &ana, &participant, "alg none participant").await;
    assert_untouched(&app, &session, &ana).await;
}

#[actix_rt::test]
async fn the_algorithm_is_pinned_to_hs256() {
    let (app, session, ana) = setup().await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let creator = sign(alg, JWT_SECRET, &claims_for(&session, "creator", &session.id));
        assert_refused(&app, &session, &ana, &creator, &format!("{alg:?} creator")).await;
        let participant = sign(alg, JWT_SECRET, &claims_for(&session, "participant", &ana.user_id));
        assert_refused(&app, &session, &ana, &participant, &format!("{alg:?} participant")).await;
    }
    assert_untouched(&app, &session, &ana).await;
}

#[actix_rt::test]
async fn another_issuer_is_refused() {
    let (app, session, ana) = setup().await;
    for iss in [json!("someone-else"), json!(""), Value::Null] {
        let mut claims = claims_for(&session, "creator", &session.id);
        claims["iss"] = iss.clone();
        assert_refused(&app, &session, &ana, &sign(Algorithm::HS256, JWT_SECRET, &claims), &format!("iss {iss}")).await;
    }
    let mut claims = claims_for(&session, "creator", &session.id);
    claims.as_object_mut().expect("object").remove("iss");
    assert_refused(&app, &session, &ana, &sign(Algorithm::HS256, JWT_SECRET, &claims), "no iss").await;
    assert_untouched(&app, &session, &ana).await;
}

#[actix_rt::test]
async fn malformed_claims_are_refused() {
    let (app, session, ana) = setup().await;
    for (field, value) in [("role", json!("admin")), ("role", json!(null)), ("sid", json!("not-a-uuid"))] {
        let mut claims = claims_for(&session, "creator", &session.id);
        claims[field] = value.clone();
        let token = sign(Algorithm::HS256, JWT_SECRET, &claims);
        for resp in [
            app.end_session(&session.id, Some(&token)).await,
            app.remove(&session.id, &ana.user_id, Some(&token)).await,
        ] {
            // Unusable claims are an invalid token (401), never a success or a server error.
            assert!(matches!(resp.status, 401 | 403), "{field}={value}: status {}", resp.status);
            assert!(resp.json.pointer("/errors/detail").is_some_and(Value::is_string), "{}", resp.json);
        }
    }
    assert_untouched(&app, &session, &ana).await;
}

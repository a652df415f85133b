//! `POST /api/sessions`, `GET /api/sessions/{id}` and `DELETE /api/sessions/{id}`.

use std::time::Duration;

use actix_web::web::Bytes;
use awc::http::Method;
use chrono::TimeDelta;
use serde_json::{json, Value};

use crate::helpers::{
    assert_keys, assert_rfc3339_z, assert_uuid_v4, spawn_app, spawn_app_with, Body, TestApp, JWT_SECRET,
};

const CREATED_KEYS: [&str; 8] =
    ["session_id", "join_link", "expires_at", "name", "creator_token", "destination", "locked", "e2e"];
const SESSION_KEYS: [&str; 9] =
    ["id", "name", "created_at", "expires_at", "participant_count", "is_active", "locked", "destination", "e2e"];

/// `expires_at - created_at` of a session, as GET shows it.
async fn lifetime(app: &TestApp, sid: &str) -> TimeDelta {
    let resp = app.get_session(sid).await;
    resp.assert_status(200, "show session");
    assert_rfc3339_z(&resp.json["expires_at"], "expires_at") - assert_rfc3339_z(&resp.json["created_at"], "created_at")
}

#[actix_rt::test]
async fn create_with_no_fields_uses_the_defaults() {
    let app = spawn_app().await;
    let resp = app.create_session(&json!({})).await;
    resp.assert_status(201, "create");
    assert_keys(&resp.json, &CREATED_KEYS, "create");
    let sid = assert_uuid_v4(&resp.json["session_id"], "session_id");
    assert_eq!(resp.json["name"], Value::Null);
    assert!(resp.json["creator_token"].as_str().is_some_and(|t| !t.is_empty()));
    let expires_at = assert_rfc3339_z(&resp.json["expires_at"], "expires_at");
    assert_eq!(lifetime(&app, &sid).await, TimeDelta::minutes(1440));

    let shown = app.get_session(&sid).await;
    assert_eq!(assert_rfc3339_z(&shown.json["expires_at"], "GET expires_at"), expires_at);
}

#[actix_rt::test]
async fn create_echoes_name_and_expiry() {
    let app = spawn_app().await;
    let resp = app.create_session(&json!({"name": "Weekend hike", "expires_in_minutes": 30})).await;
    resp.assert_status(201, "create");
    assert_keys(&resp.json, &CREATED_KEYS, "create");
    assert_eq!(resp.json["name"], "Weekend hike");
    let sid = assert_uuid_v4(&resp.json["session_id"], "session_id");
    assert_eq!(lifetime(&app, &sid).await, TimeDelta::minutes(30));
    assert_eq!(app.get_session(&sid).await.json["name"], "Weekend hike");
}

#[actix_rt::test]
async fn expiry_bounds_are_accepted() {
    let app = spawn_app().await;
    for minutes in [1, 1440] {
        let resp = app.create_session(&json!({ "expires_in_minutes": minutes })).await;
        resp.assert_status(201, &format!("expires_in_minutes {minutes}"));
        let sid = assert_uuid_v4(&resp.json["session_id"], "session_id");
        assert_eq!(lifetime(&app, &sid).await, TimeDelta::minutes(minutes));
    }
}

#[actix_rt::test]
async fn null_fields_count_as_absent() {
    let app = spawn_app().await;
    let resp = app.create_session(&json!({"name": null, "expires_in_minutes": null})).await;
    resp.assert_status(201, "nulls");
    assert_eq!(resp.json["name"], Value::Null);
    let sid = assert_uuid_v4(&resp.json["session_id"], "session_id");
    assert_eq!(lifetime(&app, &sid).await, TimeDelta::minutes(1440));
}

#[actix_rt::test]
async fn name_is_trimmed_and_blank_means_none() {
    let app = spawn_app().await;
    let resp = app.create_session(&json!({"name": "  Trip to the coast \t"})).await;
    resp.assert_status(201, "padded name");
    assert_eq!(resp.json["name"], "Trip to the coast");
    let sid = resp.json["session_id"].as_str().expect("session_id").to_owned();
    assert_eq!(app.get_session(&sid).await.json["name"], "Trip to the coast");

    let resp = app.create_session(&json!({"name": "   "})).await;
    resp.assert_status(201, "blank name");
    assert_eq!(resp.json["name"], Value::Null);
}

#[actix_rt::test]
async fn name_limit_is_100_characters_not_bytes() {
    let app = spawn_app().await;
    for name in ["✈".repeat(100), "n".repeat(100), "é".repeat(100), format!("  {}  ", "x".repeat(100))] {
        let resp = app.create_session(&json!({ "name": name })).await;
        resp.assert_status(201, &format!("{} chars", name.chars().count()));
        assert_eq!(resp.json["name"], name.trim());
    }
    for name in ["n".repeat(101), "é".repeat(101), "✈".repeat(101)] {
        app.create_session(&json!({ "name": name })).await.assert_field_errors(&["name"], "101 chars");
    }
}

#[actix_rt::test]
async fn invalid_expiry_is_422_on_expires_in_minutes() {
    let app = spawn_app().await;
    for bad in [json!(0), json!(1441), json!(-1), json!("30"), json!(30.5), json!(true), json!(1e20), json!([30])] {
        app.create_session(&json!({ "expires_in_minutes": bad }))
            .await
            .assert_field_errors(&["expires_in_minutes"], &format!("expires_in_minutes {bad}"));
    }
}

#[actix_rt::test]
async fn wrong_type_name_is_422_on_name() {
    let app = spawn_app().await;
    for bad in [json!(5), json!(true), json!(["a"]), json!({"a": 1})] {
        app.create_session(&json!({ "name": bad })).await.assert_field_errors(&["name"], &format!("name {bad}"));
    }
}

#[actix_rt::test]
async fn every_invalid_field_is_reported() {
    let app = spawn_app().await;
    app.create_session(&json!({"name": "n".repeat(101), "expires_in_minutes": 0}))
        .await
        .assert_field_errors(&["expires_in_minutes", "name"], "both invalid");
}

#[actix_rt::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_app().await;
    let resp = app.create_session(&json!({"name": "x", "colour": "blue", "nested": {"a": [1, 2]}, "id": 7})).await;
    resp.assert_status(201, "unknown fields");
    assert_keys(&resp.json, &CREATED_KEYS, "create");
    assert_eq!(resp.json["name"], "x");
}

#[actix_rt::test]
async fn an_empty_body_creates_a_default_session() {
    let app = spawn_app().await;
    for (context, headers) in
        [("no content-type", vec![]), ("application/json", vec![("content-type", "application/json")])]
    {
        let resp = app.send(Method::POST, "/api/sessions", &headers, Body::None).await;
        resp.assert_status(201, context);
        assert_keys(&resp.json, &CREATED_KEYS, context);
        assert_eq!(resp.json["name"], Value::Null);
        let sid = assert_uuid_v4(&resp.json["session_id"], context);
        assert_eq!(lifetime(&app, &sid).await, TimeDelta::minutes(1440));
    }
}

#[actix_rt::test]
async fn json_media_types_with_parameters_or_a_json_suffix_are_accepted() {
    let app = spawn_app().await;
    for ct in ["application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"] {
        let resp = app
            .send(Method::POST, "/api/sessions", &[("content-type", ct)], Body::Raw(Bytes::from(r#"{"name":"ct"}"#)))
            .await;
        resp.assert_status(201, ct);
        assert_eq!(resp.json["name"], "ct");
    }
}

#[actix_rt::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in
        [r#"{"name":"#, r#"{name: "x"}"#, "not json", r#"{"name":"x"} trailing"#, "{\"name\":\"\u{1}\"", "\u{feff}"]
    {
        app.send(
            Method::POST,
            "/api/sessions",
            &[("content-type", "application/json")],
            Body::Raw(Bytes::from(body.to_owned())),
        )
        .await
        .assert_detail_error(400, &format!("body {body:?}"));
    }
}

#[actix_rt::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    for (ct, body) in [
        (Some("text/plain"), r#"{"name":"x"}"#),
        (Some("application/x-www-form-urlencoded"), "name=x"),
        (Some("application/xml"), "<name>x</name>"),
        (Some("multipart/form-data; boundary=x"), "--x--"),
        (None, r#"{"name":"x"}"#),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|ct| ("content-type", ct)).into_iter().collect();
        app.send(Method::POST, "/api/sessions", &headers, Body::Raw(Bytes::from(body)))
            .await
            .assert_detail_error(415, &format!("content-type {ct:?}"));
    }
}

#[actix_rt::test]
async fn a_json_value_that_is_not_an_object_is_422() {
    let app = spawn_app().await;
    for body in ["[]", r#"[{"name":"x"}]"#, r#""name""#, "42", "null", "true"] {
        app.send(Method::POST, "/api/sessions", &[("content-type", "application/json")], Body::Raw(Bytes::from(body)))
            .await
            .assert_some_field_error(&format!("body {body}"));
    }
}

/// A JSON object of exactly `len` bytes, with an ignored padding field.
fn padded_body(len: usize) -> Bytes {
    let skeleton = r#"{"name":"pad","pad":""}"#;
    let pad = "a".repeat(len - skeleton.len());
    let body = format!(r#"{{"name":"pad","pad":"{pad}"}}"#);
    assert_eq!(body.len(), len);
    Bytes::from(body)
}

#[actix_rt::test]
async fn bodies_up_to_16384_bytes_pass_and_larger_are_413() {
    let app = spawn_app().await;
    let json = [("content-type", "application/json")];
    let resp = app.send(Method::POST, "/api/sessions", &json, Body::Raw(padded_body(16_384))).await;
    resp.assert_status(201, "16384 bytes");
    assert_eq!(resp.json["name"], "pad");
    for len in [16_385, 100_000, 1_000_000] {
        app.send(Method::POST, "/api/sessions", &json, Body::Raw(padded_body(len)))
            .await
            .assert_detail_error(413, &format!("{len} bytes"));
    }
    // Also on join.
    let session = app.new_session().await;
    app.send(Method::POST, &format!("/api/sessions/{}/join", session.id), &json, Body::Raw(padded_body(16_385)))
        .await
        .assert_detail_error(413, "join 16385 bytes");
}

/// Splits a body into chunks of `size` bytes.
fn chunks(body: &Bytes, size: usize) -> Vec<Bytes> {
    body.chunks(size).map(Bytes::copy_from_slice).collect()
}

#[actix_rt::test]
async fn chunked_bodies_are_limited_too() {
    let app = spawn_app().await;
    let json = [("content-type", "application/json")];
    let small =
        app.send(Method::POST, "/api/sessions", &json, Body::Chunked(chunks(&padded_body(16_384), 4_000))).await;
    small.assert_status(201, "chunked 16384 bytes");
    assert_eq!(small.json["name"], "pad");

    for (len, size) in [(16_385, 4_000), (20_000, 5_000), (200_000, 8_192)] {
        app.send(Method::POST, "/api/sessions", &json, Body::Chunked(chunks(&padded_body(len), size)))
            .await
            .assert_detail_error(413, &format!("chunked {len} bytes in chunks of {size}"));
    }
    // The server still answers normally afterwards.
    app.new_session().await;
}

#[actix_rt::test]
async fn links_follow_the_default_public_url() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    assert_eq!(session.json["join_link"], format!("http://localhost:4000/join/{}", session.id));
    let joined = app.join_as(&session.id, "Ana").await;
    assert_eq!(joined.json["websocket_url"], "ws://localhost:4000/socket/websocket");
}

#[actix_rt::test]
async fn links_follow_public_url_and_join_base_url() {
    let app = spawn_app_with(|vars| {
        vars.insert("PUBLIC_URL".into(), "https://example.test".into());
    })
    .await;
    let session = app.new_session().await;
    assert_eq!(session.json["join_link"], format!("https://example.test/join/{}", session.id));
    let joined = app.join_as(&session.id, "Ana").await;
    assert_eq!(joined.json["websocket_url"], "wss://example.test/socket/websocket");

    let app = spawn_app_with(|vars| {
        vars.insert("PUBLIC_URL".into(), "https://api.example.test/".into());
        vars.insert("JOIN_BASE_URL".into(), "https://share.example.test".into());
    })
    .await;
    let session = app.new_session().await;
    assert_eq!(session.json["join_link"], format!("https://share.example.test/join/{}", session.id));
    let joined = app.join_as(&session.id, "Ana").await;
    assert_eq!(joined.json["websocket_url"], "wss://api.example.test/socket/websocket");
}

#[actix_rt::test]
async fn websocket_url_names_the_session_for_affine_routing_when_asked() {
    let app = spawn_app_with(|vars| {
        vars.insert("WEBSOCKET_URL_SID".into(), "true".into());
    })
    .await;
    let session = app.new_session().await;
    let joined = app.join_as(&session.id, "Ana").await;
    let expected = format!("ws://localhost:4000/socket/websocket?sid={}", session.id);
    assert_eq!(joined.json["websocket_url"], expected.as_str());
    // A client that keeps the URL's query and adds its own is served as any other.
    let handshake = crate::ws_client::Handshake {
        token: Some(joined.token.clone()),
        vsn: Some("2.0.0".into()),
        query: vec![("sid".into(), session.id.clone())],
        ..Default::default()
    };
    let mut socket = crate::ws_client::WsClient::connect_with(&app, &handshake)
        .await
        .unwrap_or_else(|status| panic!("the handshake with ?sid= was refused with {status}"));
    socket.join(&format!("location:{}", session.id)).await.assert_ok("join through the sid URL");
}

#[actix_rt::test]
async fn show_session_has_the_full_shape() {
    let app = spawn_app().await;
    let created = app.create_session(&json!({"name": "Shape", "expires_in_minutes": 90})).await;
    created.assert_status(201, "create");
    let sid = created.json["session_id"].as_str().expect("session_id").to_owned();

    let resp = app.get_session(&sid).await;
    resp.assert_status(200, "show");
    assert_keys(&resp.json, &SESSION_KEYS, "show");
    assert_eq!(resp.json["id"], sid.as_str());
    assert_eq!(resp.json["name"], "Shape");
    assert_eq!(resp.json["participant_count"], 0);
    assert_eq!(resp.json["is_active"], true);
    let created_at = assert_rfc3339_z(&resp.json["created_at"], "created_at");
    let expires_at = assert_rfc3339_z(&resp.json["expires_at"], "expires_at");
    assert_eq!(expires_at, assert_rfc3339_z(&created.json["expires_at"], "create expires_at"));
    assert_eq!(expires_at - created_at, TimeDelta::minutes(90));
    let age = chrono::Utc::now() - created_at;
    assert!(age >= TimeDelta::seconds(-1) && age < TimeDelta::minutes(5), "created_at {created_at} is not now");
}

#[actix_rt::test]
async fn participant_count_follows_joins_and_leaves() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    assert_eq!(app.participant_count(&session.id).await, 1);
    let bo = app.join_as(&session.id, "Bo").await;
    let cy = app.join_as(&session.id, "Cy").await;
    assert_eq!(app.participant_count(&session.id).await, 3);

    app.remove(&session.id, &ana.user_id, Some(&ana.token)).await.assert_no_content("Ana leaves");
    assert_eq!(app.participant_count(&session.id).await, 2);
    app.remove(&session.id, &bo.user_id, Some(&session.creator_token)).await.assert_no_content("Bo removed");
    assert_eq!(app.participant_count(&session.id).await, 1);

    let resp = app.get_session(&session.id).await;
    assert_eq!(resp.json["is_active"], true);
    assert_eq!(app.participant_ids(&session.id).await, vec![cy.user_id]);
}

#[actix_rt::test]
async fn unknown_and_malformed_session_ids_are_404() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [
        unknown.as_str(),
        "not-a-uuid",
        "12345",
        "00000000-0000-0000-0000-000000000000",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "%20",
    ] {
        app.get_session(id).await.assert_detail_error(404, &format!("GET {id}"));
        app.participants(id).await.assert_detail_error(404, &format!("participants of {id}"));
        app.join(id, &json!({"display_name": "Ana"})).await.assert_detail_error(404, &format!("join {id}"));
        // A valid creator token of another session does not make these exist.
        let resp = app.end_session(id, Some(&session.creator_token)).await;
        assert!(matches!(resp.status, 403 | 404), "DELETE {id}: {}", resp.status);
        assert!(resp.json.pointer("/errors/detail").is_some_and(Value::is_string), "DELETE {id}: {}", resp.json);
    }
}

#[actix_rt::test]
async fn ending_an_unknown_session_with_its_own_valid_token_is_404() {
    let app = spawn_app().await;
    let sid = uuid::Uuid::new_v4().to_string();
    let exp = (chrono::Utc::now() + TimeDelta::minutes(10)).timestamp();
    let iss = {
        let session = app.new_session().await;
        crate::helpers::decode_jwt(&session.creator_token).1["iss"].clone()
    };
    let token = crate::helpers::sign(
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET,
        &json!({"iss": iss, "sub": sid, "sid": sid, "role": "creator", "exp": exp, "iat": exp - 600}),
    );
    app.end_session(&sid, Some(&token)).await.assert_detail_error(404, "unknown session");
}

#[actix_rt::test]
async fn the_creator_ends_a_session() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;

    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");

    let resp = app.get_session(&session.id).await;
    resp.assert_status(200, "show ended");
    assert_keys(&resp.json, &SESSION_KEYS, "show ended");
    assert_eq!(resp.json["is_active"], false);
    assert_eq!(resp.json["id"], session.id.as_str());

    app.join(&session.id, &json!({"display_name": "Late"})).await.assert_detail_error(410, "join ended");
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_detail_error(410, "end twice");
    app.remove(&session.id, &ana.user_id, Some(&ana.token)).await.assert_detail_error(410, "leave ended");
    app.remove(&session.id, &ana.user_id, Some(&session.creator_token)).await.assert_detail_error(410, "remove ended");

    // Still listed until purged, no longer active.
    let list = app.participants(&session.id).await;
    list.assert_status(200, "list ended");
    let participants = list.json["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 1);
    assert_eq!(participants[0]["user_id"], ana.user_id.as_str());
    assert_eq!(participants[0]["is_active"], false);
}

#[actix_rt::test]
async fn only_this_sessions_creator_can_end_it() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let other = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let stranger = app.join_as(&other.id, "Stranger").await;

    app.end_session(&session.id, Some(&ana.token)).await.assert_detail_error(403, "participant token");
    app.end_session(&session.id, Some(&other.creator_token)).await.assert_detail_error(403, "other creator");
    app.end_session(&session.id, Some(&stranger.token)).await.assert_detail_error(403, "other participant");
    app.end_session(&session.id, None).await.assert_detail_error(401, "no token");
    for auth in [
        "Bearer garbage".to_owned(),
        "Bearer ".to_owned(),
        "Bearer a.b.c".to_owned(),
        format!("Basic {}", session.creator_token),
        session.creator_token.clone(),
        format!("Token {}", session.creator_token),
    ] {
        app.delete_with_auth(&format!("/api/sessions/{}", session.id), &auth)
            .await
            .assert_detail_error(401, &format!("authorization {auth:?}"));
    }

    assert_eq!(app.get_session(&session.id).await.json["is_active"], true, "still live");
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("creator ends");
}

#[actix_rt::test]
async fn an_expired_session_is_inactive_and_refuses_joins() {
    let app = spawn_app().await;
    let session = app.create_session(&json!({"expires_in_minutes": 1})).await;
    session.assert_status(201, "create");
    let sid = session.json["session_id"].as_str().expect("session_id").to_owned();
    let token = session.json["creator_token"].as_str().expect("creator_token").to_owned();
    let ana = app.join_as(&sid, "Ana").await;

    app.expire_session(&sid).await;

    let resp = app.get_session(&sid).await;
    resp.assert_status(200, "show expired");
    assert_keys(&resp.json, &SESSION_KEYS, "show expired");
    assert_eq!(resp.json["is_active"], false);
    app.join(&sid, &json!({"display_name": "Late"})).await.assert_detail_error(410, "join expired");
    app.end_session(&sid, Some(&token)).await.assert_detail_error(410, "end expired");
    app.remove(&sid, &ana.user_id, Some(&ana.token)).await.assert_detail_error(410, "leave expired");
}

#[actix_rt::test]
async fn a_session_nobody_was_seen_in_goes_inactive() {
    let app = spawn_app_with(|vars| {
        vars.insert("SESSION_INACTIVITY_SECONDS".into(), "3".into());
    })
    .await;
    let session = app.new_session().await;
    // Three seconds leave a loaded CI machine room for this first look.
    assert_eq!(app.get_session(&session.id).await.json["is_active"], true);

    // Times are kept to the second: three seconds and a bit after creation the limit has passed.
    actix_rt::time::sleep(Duration::from_millis(3_100)).await;

    let resp = app.get_session(&session.id).await;
    resp.assert_status(200, "show inactive");
    assert_keys(&resp.json, &SESSION_KEYS, "show inactive");
    assert_eq!(resp.json["is_active"], false);
    app.join(&session.id, &json!({"display_name": "Late"})).await.assert_detail_error(410, "join inactive");
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_detail_error(410, "end inactive");
}

#[actix_rt::test]
async fn ended_sessions_are_gone_after_their_retention() {
    let app = spawn_app_with(|vars| {
        vars.insert("ENDED_RETENTION_SECONDS".into(), "1".into());
    })
    .await;
    let session = app.new_session().await;
    app.join_as(&session.id, "Ana").await;
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");
    assert_eq!(app.get_session(&session.id).await.json["is_active"], false);

    actix_rt::time::sleep(Duration::from_millis(1_100)).await;

    app.get_session(&session.id).await.assert_detail_error(404, "show purged");
    app.participants(&session.id).await.assert_detail_error(404, "list purged");
    app.join(&session.id, &json!({"display_name": "Late"})).await.assert_detail_error(404, "join purged");
}

#[actix_rt::test]
async fn concurrent_ends_succeed_exactly_once() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let responses =
        futures_util::future::join_all((0..8).map(|_| app.end_session(&session.id, Some(&session.creator_token))))
            .await;
    let ended = responses.iter().filter(|r| r.status == 204).count();
    assert_eq!(ended, 1, "exactly one DELETE ends the session");
    for resp in responses.iter().filter(|r| r.status != 204) {
        resp.assert_detail_error(410, "already ended");
    }
    assert_eq!(app.get_session(&session.id).await.json["is_active"], false);
}

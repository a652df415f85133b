//! What the OpenAPI document promises and schemathesis (`.ci/schemathesis`) checks, pinned here
//! one behaviour at a time: 405 with `Allow` for a wrong method on every known path, 404 for an
//! unknown path, a whole number written `518.0` is an integer, an optional create body, and
//! `vsn=` as no `vsn`.

use std::collections::BTreeSet;

use actix_web::web::Bytes;
use awc::http::Method;
use chrono::Duration;
use serde_json::{json, Value};

use crate::helpers::{assert_rfc3339_z, spawn_app, Body, Resp, TestApp};
use crate::ws_client::WsClient;

/// Every route pattern, a concrete path for it, its `Allow` and methods it does not serve.
fn known_paths(sid: &str, uid: &str) -> Vec<(&'static str, String, &'static str, Vec<Method>)> {
    let get_only = "GET, HEAD, OPTIONS";
    let writes = || vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::TRACE];
    vec![
        ("/api/openapi.json", "/api/openapi.json".into(), get_only, writes()),
        ("/api/sessions", "/api/sessions".into(), "POST, OPTIONS", vec![Method::GET, Method::HEAD, Method::PUT]),
        ("/api/sessions/{id}", format!("/api/sessions/{sid}"), "GET, HEAD, PATCH, DELETE, OPTIONS", {
            vec![Method::PUT, Method::POST, Method::TRACE]
        }),
        ("/api/sessions/{id}/destination", format!("/api/sessions/{sid}/destination"), "PUT, DELETE, OPTIONS", {
            vec![Method::GET, Method::POST, Method::PATCH]
        }),
        ("/api/sessions/{id}/join", format!("/api/sessions/{sid}/join"), "POST, OPTIONS", {
            vec![Method::GET, Method::PUT, Method::DELETE]
        }),
        ("/api/sessions/{id}/participants", format!("/api/sessions/{sid}/participants"), get_only, writes()),
        (
            "/api/sessions/{id}/participants/{user_id}",
            format!("/api/sessions/{sid}/participants/{uid}"),
            "DELETE, OPTIONS",
            vec![Method::GET, Method::POST, Method::PUT],
        ),
        ("/api/sessions/{id}/qr", format!("/api/sessions/{sid}/qr"), get_only, writes()),
        ("/", "/".into(), get_only, vec![Method::POST]),
        ("/join/{id}", format!("/join/{sid}"), get_only, vec![Method::POST]),
        ("/assets/{version}/{path:.+}", "/assets/v/app.js".into(), get_only, vec![Method::PUT]),
        ("/dev/dashboard", "/dev/dashboard".into(), get_only, vec![Method::POST]),
        ("/dev/dashboard/stats", "/dev/dashboard/stats".into(), get_only, vec![Method::DELETE]),
        ("/socket/websocket", "/socket/websocket".into(), get_only, vec![Method::POST]),
        ("/metrics", "/metrics".into(), get_only, vec![Method::POST]),
        ("/health", "/health".into(), get_only, writes()),
        ("/health/detailed", "/health/detailed".into(), get_only, vec![Method::POST]),
        ("/health/ready", "/health/ready".into(), get_only, vec![Method::DELETE]),
        ("/health/live", "/health/live".into(), get_only, vec![Method::PUT]),
    ]
}

fn allow_of(resp: &Resp) -> BTreeSet<String> {
    resp.header_tokens("allow").into_iter().map(|m| m.to_ascii_uppercase()).collect()
}

fn methods(allow: &str) -> BTreeSet<String> {
    allow.split(", ").map(str::to_owned).collect()
}

#[test]
fn the_test_knows_every_route() {
    let listed: BTreeSet<&str> = known_paths("s", "u").iter().map(|(pattern, ..)| *pattern).collect();
    let routed: BTreeSet<&str> = location_sharing::http::ENDPOINTS.iter().map(|e| e.path).collect();
    assert_eq!(listed, routed, "known_paths() lists every route of the server");
}

#[actix_rt::test]
async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    for (_, path, allow, wrong) in known_paths(&session.id, &people[0].user_id) {
        for method in wrong {
            let context = format!("{method} {path}");
            let resp = app.send(method.clone(), &path, &[], Body::None).await;
            assert_eq!(allow_of(&resp), methods(allow), "{context}: Allow");
            resp.assert_status(405, &context);
            assert!(resp.header("x-request-id").is_some(), "{context}: a request id");
            if method != Method::HEAD {
                assert_eq!(resp.json, json!({"errors": {"detail": "Method Not Allowed"}}), "{context}");
            }
        }
    }
    assert_eq!(app.get_session(&session.id).await.json["is_active"], true, "nothing happened to the session");
    assert_eq!(app.participant_ids(&session.id).await, [people[0].user_id.clone()], "nor to Ana");
}

#[actix_rt::test]
async fn options_on_a_known_path_lists_its_methods() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    for (_, path, allow, _) in known_paths(&session.id, "00000000-0000-4000-8000-000000000000") {
        let resp = app.send(Method::OPTIONS, &path, &[], Body::None).await;
        resp.assert_no_content(&format!("OPTIONS {path}"));
        assert_eq!(allow_of(&resp), methods(allow), "OPTIONS {path}");
    }
    // A CORS preflight is still answered as one, on known and unknown paths alike.
    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "POST")];
    for path in ["/api/sessions", "/nope"] {
        let resp = app.send(Method::OPTIONS, path, &preflight, Body::None).await;
        resp.assert_status(204, &format!("preflight {path}"));
        assert!(resp.header("access-control-allow-methods").is_some(), "preflight {path}");
    }
}

#[actix_rt::test]
async fn any_method_on_an_unknown_path_is_404() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::PUT, "/nope"),
        (Method::POST, "/api"),
        (Method::DELETE, "/api/nope"),
        (Method::PATCH, "/api/sessions/x/y/z"),
        (Method::OPTIONS, "/health/nope"),
        (Method::TRACE, "/socket"),
    ] {
        let resp = app.send(method.clone(), path, &[], Body::None).await;
        resp.assert_detail_error(404, &format!("{method} {path}"));
        assert_eq!(resp.json, json!({"errors": {"detail": "Not Found"}}), "{method} {path}");
        assert!(resp.header("allow").is_none(), "{method} {path}: no Allow on a 404");
    }
}

/// `POST /api/sessions` with this raw JSON.
async fn create_raw(app: &TestApp, body: &str) -> Resp {
    let json = [("content-type", "application/json")];
    app.send(Method::POST, "/api/sessions", &json, Body::Raw(Bytes::from(body.to_owned()))).await
}

/// The lifetime the session got, `expires_at - created_at`.
async fn lifetime(app: &TestApp, created: &Resp) -> Duration {
    let sid = created.json["session_id"].as_str().unwrap_or_default();
    let shown = app.get_session(sid).await;
    shown.assert_status(200, "show");
    assert_rfc3339_z(&shown.json["expires_at"], "expires_at")
        - assert_rfc3339_z(&shown.json["created_at"], "created_at")
}

#[actix_rt::test]
async fn a_whole_number_of_minutes_may_be_written_as_a_float() {
    let app = spawn_app().await;
    for body in
        [r#"{"expires_in_minutes": 518.0}"#, r#"{"expires_in_minutes": 5.18e2}"#, r#"{"expires_in_minutes": 518}"#]
    {
        let resp = create_raw(&app, body).await;
        resp.assert_status(201, body);
        assert_eq!(lifetime(&app, &resp).await, Duration::minutes(518), "{body}");
    }
    let resp = create_raw(&app, r#"{"expires_in_minutes": 1440.0}"#).await;
    resp.assert_status(201, "1440.0");
}

#[actix_rt::test]
async fn a_fraction_of_a_minute_is_422_on_expires_in_minutes() {
    let app = spawn_app().await;
    for body in [r#"{"expires_in_minutes": 30.5}"#, r#"{"expires_in_minutes": 1.0e-1}"#] {
        let resp = create_raw(&app, body).await;
        resp.assert_field_errors(&["expires_in_minutes"], body);
        assert_eq!(resp.json["errors"]["expires_in_minutes"], json!(["must be a whole number"]), "{body}");
    }
    for body in [r#"{"expires_in_minutes": 1441.0}"#, r#"{"expires_in_minutes": 0.0}"#] {
        let resp = create_raw(&app, body).await;
        assert_eq!(resp.json["errors"]["expires_in_minutes"], json!(["must be between 1 and 1440"]), "{body}");
    }
}

#[actix_rt::test]
async fn the_create_body_is_optional_but_whitespace_is_no_json() {
    let app = spawn_app().await;
    let resp = app.send(Method::POST, "/api/sessions", &[], Body::None).await;
    resp.assert_status(201, "no body at all");
    assert_eq!(lifetime(&app, &resp).await, Duration::minutes(1440), "the default lifetime");
    create_raw(&app, "\t").await.assert_detail_error(400, "a body of whitespace");
    let plain = [("content-type", "text/plain")];
    app.send(Method::POST, "/api/sessions", &plain, Body::Raw(Bytes::from(" ")))
        .await
        .assert_detail_error(415, "whitespace that is not even JSON");
    let doc = app.get("/api/openapi.json").await.json;
    assert_eq!(doc["paths"]["/api/sessions"]["post"]["requestBody"]["required"], false, "documented as optional");
    assert_eq!(doc["paths"]["/api/sessions/{id}/join"]["post"]["requestBody"]["required"], true);
}

#[actix_rt::test]
async fn an_empty_vsn_speaks_the_plain_envelope() {
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let mut socket = WsClient::connect(&app, &people[0].token, Some(""))
        .await
        .unwrap_or_else(|status| panic!("vsn= was refused with {status}"));
    let joined = socket.next_msg().await;
    assert_eq!(joined.event, "joined", "the plain envelope's first frame: {}", joined.raw);
    let raw: Value = serde_json::from_str(&joined.raw).unwrap();
    assert!(raw.get("type").is_some() && raw.get("data").is_some(), "{{type, data}}: {raw}");
    let doc = app.get("/api/openapi.json").await.json;
    let vsn = doc["paths"]["/socket/websocket"]["get"]["parameters"]
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "vsn"))
        .cloned()
        .unwrap_or_default();
    let pattern = regex::Regex::new(vsn["schema"]["pattern"].as_str().unwrap_or("^$")).unwrap();
    for (value, valid) in [("", true), ("2.0.0", true), ("1.0.0", true), ("2", true), ("3.0.0", false), ("x", false)] {
        assert_eq!(pattern.is_match(value), valid, "the documented pattern and vsn={value:?}");
    }
}

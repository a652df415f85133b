//! What every response shares: request ids, CORS, the Phoenix 404 for unknown routes, and the
//! OpenAPI document (wrong methods and the document's other promises: contract.rs).

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Body, Resp, TestApp};

/// One request of each kind of answer: success, created, validation, not found, unauthorized.
async fn sample_responses(app: &TestApp, headers: &[(&str, &str)]) -> Vec<(String, Resp)> {
    let session = app.new_session().await;
    let mut out = Vec::new();
    for (method, path, body) in [
        (Method::GET, "/health".to_owned(), Body::None),
        (Method::POST, "/api/sessions".to_owned(), Body::Json(json!({}))),
        (Method::POST, "/api/sessions".to_owned(), Body::Json(json!({"expires_in_minutes": 0}))),
        (Method::GET, format!("/api/sessions/{}", session.id), Body::None),
        (Method::GET, "/api/sessions/not-a-uuid".to_owned(), Body::None),
        (Method::DELETE, format!("/api/sessions/{}", session.id), Body::None),
        (Method::GET, "/no/such/route".to_owned(), Body::None),
        (Method::PUT, "/api/sessions".to_owned(), Body::None),
    ] {
        let context = format!("{method} {path}");
        out.push((context, app.send(method, &path, headers, body).await));
    }
    let statuses: Vec<u16> = out.iter().map(|(_, r)| r.status).collect();
    assert_eq!(statuses, [200, 201, 422, 200, 404, 401, 404, 405], "the sample covers each kind of answer");
    out
}

#[actix_rt::test]
async fn every_response_gets_a_fresh_request_id() {
    let app = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for (context, resp) in sample_responses(&app, &[]).await {
        let id = resp.header("x-request-id").unwrap_or_else(|| panic!("{context}: no x-request-id"));
        assert!(!id.is_empty(), "{context}: empty x-request-id");
        assert!(seen.insert(id.clone()), "{context}: request id {id} reused");
    }
}

#[actix_rt::test]
async fn a_callers_request_id_is_echoed() {
    let app = spawn_app().await;
    for (context, resp) in sample_responses(&app, &[("x-request-id", "caller-id-123")]).await {
        assert_eq!(resp.header("x-request-id").as_deref(), Some("caller-id-123"), "{context}");
    }
    // Even on a body refused before any handler ran.
    let resp = app
        .send(
            Method::POST,
            "/api/sessions",
            &[("x-request-id", "big-one"), ("content-type", "application/json")],
            Body::Raw(actix_web::web::Bytes::from(vec![b' '; 20_000])),
        )
        .await;
    resp.assert_detail_error(413, "too large");
    assert_eq!(resp.header("x-request-id").as_deref(), Some("big-one"));
}

#[actix_rt::test]
async fn an_unusable_request_id_is_replaced() {
    let app = spawn_app().await;
    let long = "a".repeat(500);
    for bad in ["has spaces in it", "quote\"d", long.as_str()] {
        let resp = app.send(Method::GET, "/health", &[("x-request-id", bad)], Body::None).await;
        resp.assert_status(200, bad);
        let id = resp.header("x-request-id").expect("x-request-id");
        assert!(!id.is_empty() && id != bad, "{bad:?} should have been replaced, got {id:?}");
    }
}

/// `Vary` names `Origin`.
#[track_caller]
fn assert_varies_on_origin(resp: &Resp, context: &str) {
    assert!(
        resp.header_tokens("vary").iter().any(|v| v == "origin"),
        "{context}: Vary {:?}",
        resp.header_tokens("vary")
    );
}

async fn listed_origin_app() -> TestApp {
    spawn_app_with(|vars| {
        vars.insert("CORS_ALLOWED_ORIGINS".into(), "https://a.example".into());
    })
    .await
}

#[actix_rt::test]
async fn cors_echoes_a_listed_origin() {
    let app = listed_origin_app().await;
    for (context, resp) in sample_responses(&app, &[("origin", "https://a.example")]).await {
        assert_eq!(resp.header("access-control-allow-origin").as_deref(), Some("https://a.example"), "{context}");
        assert_varies_on_origin(&resp, &context);
    }
}

#[actix_rt::test]
async fn cors_ignores_an_unlisted_origin_but_still_varies() {
    let app = listed_origin_app().await;
    for origin in ["https://b.example", "http://a.example", "https://a.example.evil", "null"] {
        for (context, resp) in sample_responses(&app, &[("origin", origin)]).await {
            assert_eq!(resp.header("access-control-allow-origin"), None, "{origin} {context}");
            assert_varies_on_origin(&resp, &format!("{origin} {context}"));
        }
    }
    // No Origin at all (native apps): Vary still says the answer depends on it.
    let resp = app.get("/health").await;
    assert_eq!(resp.header("access-control-allow-origin"), None);
    assert_varies_on_origin(&resp, "no origin");
}

#[actix_rt::test]
async fn cors_with_a_wildcard_echoes_origins_but_never_null() {
    let app = spawn_app().await;
    let resp = app.send(Method::GET, "/health", &[("origin", "https://anywhere.example")], Body::None).await;
    assert_eq!(resp.header("access-control-allow-origin").as_deref(), Some("https://anywhere.example"));
    assert_varies_on_origin(&resp, "wildcard");

    for (context, resp) in sample_responses(&app, &[("origin", "null")]).await {
        assert_eq!(resp.header("access-control-allow-origin"), None, "null origin: {context}");
        assert_varies_on_origin(&resp, &context);
    }
    let preflight = app
        .send(
            Method::OPTIONS,
            "/api/sessions",
            &[("origin", "null"), ("access-control-request-method", "POST")],
            Body::None,
        )
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None, "null preflight");
}

#[actix_rt::test]
async fn cors_preflight_allows_the_api_methods_and_headers() {
    let app = listed_origin_app().await;
    let session = app.new_session().await;
    for (path, method) in [("/api/sessions".to_owned(), "POST"), (format!("/api/sessions/{}", session.id), "DELETE")] {
        let resp = app
            .send(
                Method::OPTIONS,
                &path,
                &[
                    ("origin", "https://a.example"),
                    ("access-control-request-method", method),
                    ("access-control-request-headers", "authorization, content-type"),
                    ("x-request-id", "preflight-1"),
                ],
                Body::None,
            )
            .await;
        assert!(matches!(resp.status, 200 | 204), "preflight {method} {path}: {}", resp.status);
        assert_eq!(resp.header("access-control-allow-origin").as_deref(), Some("https://a.example"));
        let methods = resp.header_tokens("access-control-allow-methods");
        assert!(methods.iter().any(|m| m == &method.to_ascii_lowercase()), "allow-methods {methods:?}");
        let headers = resp.header_tokens("access-control-allow-headers");
        for h in ["authorization", "content-type"] {
            assert!(headers.iter().any(|x| x == h || x == "*"), "allow-headers {headers:?} lacks {h}");
        }
        assert_varies_on_origin(&resp, "preflight");
        assert_eq!(resp.header("x-request-id").as_deref(), Some("preflight-1"));
    }

    let refused = app
        .send(
            Method::OPTIONS,
            "/api/sessions",
            &[("origin", "https://b.example"), ("access-control-request-method", "POST")],
            Body::None,
        )
        .await;
    assert_eq!(refused.header("access-control-allow-origin"), None, "unlisted preflight");
    assert_eq!(refused.header("access-control-allow-methods"), None, "unlisted preflight");
    assert_varies_on_origin(&refused, "unlisted preflight");
    // The preflight changed nothing.
    assert_eq!(app.get_session(&session.id).await.json["is_active"], true);
}

#[actix_rt::test]
async fn unknown_routes_are_a_phoenix_404() {
    let app = spawn_app().await;
    for path in ["/nope", "/api", "/api/nope", "/api/sessions/x/y/z", "/health/nope", "/socket", "/dev"] {
        let resp = app.get(path).await;
        resp.assert_detail_error(404, &format!("GET {path}"));
        assert!(resp.header("x-request-id").is_some());
    }
}

#[actix_rt::test]
async fn openapi_describes_every_route() {
    let app = spawn_app().await;
    let resp = app.get("/api/openapi.json").await;
    resp.assert_status(200, "openapi");
    let doc = &resp.json;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "openapi version {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "info {}", doc["info"]);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/api/sessions", &["post"][..]),
        ("/api/sessions/{id}", &["get", "delete"][..]),
        ("/api/sessions/{id}/join", &["post"][..]),
        ("/api/sessions/{id}/participants", &["get"][..]),
        ("/api/sessions/{id}/participants/{user_id}", &["delete"][..]),
        ("/health", &["get"][..]),
        ("/health/detailed", &["get"][..]),
        ("/health/ready", &["get"][..]),
        ("/health/live", &["get"][..]),
    ] {
        let item = paths.get(path).unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
        for method in methods {
            assert!(item.get(*method).is_some_and(Value::is_object), "{method} {path}");
        }
    }
    let create = &paths["/api/sessions"]["post"]["responses"];
    for status in ["201", "400", "413", "415", "422"] {
        assert!(create.get(status).is_some(), "POST /api/sessions documents {status}");
    }
}

#[actix_rt::test]
async fn head_is_answered_like_get() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    for path in ["/health".to_owned(), "/health/ready".to_owned(), format!("/api/sessions/{}", session.id)] {
        let resp = app.send(Method::HEAD, &path, &[], Body::None).await;
        resp.assert_status(200, &format!("HEAD {path}"));
        assert!(resp.body.is_empty(), "HEAD {path} has no body");
        assert!(resp.header("x-request-id").is_some(), "HEAD {path} has a request id");
    }
}

#[actix_rt::test]
async fn a_trailing_slash_names_the_same_route() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let resp = app.get(&format!("/api/sessions/{}/", session.id)).await;
    resp.assert_status(200, "GET with a trailing slash");
    assert_eq!(resp.json["id"], session.id.as_str());
    let resp = app.post_json("/api/sessions/", &json!({})).await;
    resp.assert_status(201, "POST with a trailing slash");
}

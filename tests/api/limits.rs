//! The abuse limits of SPEC §11, tried as clients would: per-address buckets for creations,
//! joins and handshakes (429, `Retry-After`, Phoenix body; a handshake refused before the
//! upgrade), open sockets per address and per participant, `TRUSTED_PROXIES` and
//! `X-Forwarded-For`, `0` turning a limit off, the refusals in `/metrics`, and the limiter
//! forgetting idle addresses.

use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::json;

use crate::helpers::{spawn_app_with, Body, Resp, TestApp};
use crate::ws_client::{Ended, WsClient};

const UPGRADE: [(&str, &str); 4] = [
    ("connection", "upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

async fn app_with(pairs: &[(&str, &str)]) -> TestApp {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    spawn_app_with(move |vars| vars.extend(pairs)).await
}

async fn create_from(app: &TestApp, forwarded_for: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = forwarded_for.map(|f| ("x-forwarded-for", f)).into_iter().collect();
    app.send(Method::POST, "/api/sessions", &headers, Body::Json(json!({}))).await
}

/// A WebSocket handshake as plain HTTP, so a refusal's headers and body can be read.
async fn handshake(app: &TestApp, query: &str, forwarded_for: Option<&str>) -> Resp {
    let mut headers = UPGRADE.to_vec();
    if let Some(f) = forwarded_for {
        headers.push(("x-forwarded-for", f));
    }
    app.send(Method::GET, &format!("/socket/websocket?{query}"), &headers, Body::None).await
}

fn assert_too_many(resp: &Resp, context: &str) -> u64 {
    resp.assert_detail_error(429, context);
    assert_eq!(resp.json, json!({"errors": {"detail": "too many requests"}}), "{context}");
    let retry = resp.header("retry-after").unwrap_or_else(|| panic!("{context}: no Retry-After"));
    let secs: u64 = retry.parse().unwrap_or_else(|_| panic!("{context}: Retry-After {retry:?} is not whole seconds"));
    assert!(secs >= 1, "{context}: Retry-After {secs}");
    secs
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = String::from_utf8_lossy(&app.get("/metrics").await.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("location_sharing_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[actix_rt::test]
async fn session_creation_past_the_bucket_is_429_with_retry_after() {
    let app = app_with(&[("CREATE_SESSIONS_PER_MINUTE", "3")]).await;
    for n in 0..3 {
        create_from(&app, None).await.assert_status(201, &format!("creation {n}"));
    }
    let secs = assert_too_many(&create_from(&app, None).await, "the 4th creation in a minute");
    assert!((1..=20).contains(&secs), "a cell comes back every 20 s; Retry-After {secs}");
    // Without TRUSTED_PROXIES a client cannot escape by claiming another address.
    assert_too_many(&create_from(&app, Some("203.0.113.50")).await, "a spoofed X-Forwarded-For");
    // The refusal costs nothing else: reading is not limited.
    app.get("/health").await.assert_status(200, "health");
    assert_eq!(metric(&app, "limit_refusals_total{limit=\"create_sessions\"}").await, 2.0);
    assert_eq!(metric(&app, "limit_refusals_total{limit=\"joins\"}").await, 0.0);
}

#[actix_rt::test]
async fn a_refused_creation_is_answered_before_its_body_is_read() {
    let app = app_with(&[("CREATE_SESSIONS_PER_MINUTE", "1")]).await;
    create_from(&app, None).await.assert_status(201, "first creation");
    // Malformed JSON would be 400; the bucket answers first.
    let resp = app
        .send(Method::POST, "/api/sessions", &[("content-type", "application/json")], Body::Raw("{oops".into()))
        .await;
    assert_too_many(&resp, "malformed body past the bucket");
}

#[actix_rt::test]
async fn joins_past_the_bucket_are_429() {
    let app = app_with(&[("JOINS_PER_MINUTE", "2")]).await;
    let session = app.new_session().await;
    app.join_as(&session.id, "Ana").await;
    app.join_as(&session.id, "Bo").await;
    let resp = app.join(&session.id, &json!({"display_name": "Cy"})).await;
    assert_too_many(&resp, "the 3rd join in a minute");
    // Joins to another session share the address's bucket.
    let other = app.new_session().await;
    assert_too_many(&app.join(&other.id, &json!({"display_name": "Di"})).await, "a join elsewhere");
    let listed = app.participant_ids(&session.id).await;
    assert_eq!(listed.len(), 2, "the refused join left nothing behind");
}

#[actix_rt::test]
async fn handshakes_past_the_bucket_are_refused_before_the_upgrade() {
    let app = app_with(&[("SOCKET_CONNECTS_PER_MINUTE", "2")]).await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let token = &people[0].token;
    let _a = WsClient::v2(&app, token).await;
    // A handshake with a bad token still takes a cell.
    assert_eq!(WsClient::connect(&app, "not-a-token", Some("2.0.0")).await.err(), Some(403));
    let resp = handshake(&app, &format!("token={token}&vsn=2.0.0"), None).await;
    assert_too_many(&resp, "the 3rd handshake in a minute");
    assert!(resp.header("upgrade").is_none(), "no upgrade after a refusal");
    assert_eq!(metric(&app, "limit_refusals_total{limit=\"socket_connects\"}").await, 1.0);
}

#[actix_rt::test]
async fn open_sockets_per_address_are_capped_and_freed_on_close() {
    let app = app_with(&[("MAX_SOCKETS_PER_ADDRESS", "2"), ("MAX_SOCKETS_PER_PARTICIPANT", "0")]).await;
    let (_, people) = app.session_with(&["Ana", "Bo"]).await;
    let mut a = WsClient::v2(&app, &people[0].token).await;
    let _b = WsClient::v2(&app, &people[1].token).await;
    let resp = handshake(&app, &format!("token={}&vsn=2.0.0", people[0].token), None).await;
    assert_too_many(&resp, "a 3rd open socket from one address");
    assert_eq!(metric(&app, "limit_refusals_total{limit=\"sockets_per_address\"}").await, 1.0);
    a.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match WsClient::connect(&app, &people[0].token, Some("2.0.0")).await {
            Ok(_) => break,
            Err(429) if Instant::now() < deadline => actix_rt::time::sleep(Duration::from_millis(50)).await,
            Err(status) => panic!("a socket closed, yet the next handshake got {status}"),
        }
    }
}

#[actix_rt::test]
async fn a_participants_socket_past_the_cap_closes_its_own_oldest_with_1008() {
    let app = app_with(&[("MAX_SOCKETS_PER_PARTICIPANT", "2")]).await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let mut first = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut second = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut bo = WsClient::joined(&app, &people[1].token, &session.id).await;
    // The phone reconnects without closing the old ones: it gets in, its oldest goes.
    let mut third = WsClient::joined(&app, &people[0].token, &session.id).await;
    assert_eq!(first.close_code().await, 1008);
    assert_eq!(first.ended(), Some(&Ended::Close(Some(1008), Some("too many sockets".into()))));
    second.heartbeat().await.assert_ok("the second socket stays");
    third.heartbeat().await.assert_ok("the new socket works");
    bo.heartbeat().await.assert_ok("another participant is not affected");
    assert_eq!(metric(&app, "limit_refusals_total{limit=\"sockets_per_participant\"}").await, 1.0);
}

#[actix_rt::test]
async fn trusted_proxies_name_the_client_and_only_they_do() {
    let app = app_with(&[("CREATE_SESSIONS_PER_MINUTE", "1"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    create_from(&app, Some("198.51.100.1")).await.assert_status(201, "client 1 through the proxy");
    create_from(&app, Some("198.51.100.2")).await.assert_status(201, "client 2 has its own bucket");
    assert_too_many(&create_from(&app, Some("198.51.100.1")).await, "client 1 again");
    // A client that writes its own header: the proxy appends the real address, which counts.
    assert_too_many(&create_from(&app, Some("203.0.113.77, 198.51.100.1")).await, "spoofed left-most hop");
    // IPv6 is limited per /64.
    create_from(&app, Some("2001:db8:aa:bb::1")).await.assert_status(201, "an IPv6 client");
    assert_too_many(&create_from(&app, Some("2001:db8:aa:bb:ffff::2")).await, "same /64");
    create_from(&app, Some("2001:db8:aa:bc::1")).await.assert_status(201, "another /64");
    // The proxy itself, with no header, is one client.
    create_from(&app, None).await.assert_status(201, "the proxy's own request");
    assert_too_many(&create_from(&app, None).await, "the proxy's second request");
}

#[actix_rt::test]
async fn zero_turns_the_limits_off() {
    let app = app_with(&[
        ("CREATE_SESSIONS_PER_MINUTE", "0"),
        ("JOINS_PER_MINUTE", "0"),
        ("SOCKET_CONNECTS_PER_MINUTE", "0"),
        ("MAX_SOCKETS_PER_PARTICIPANT", "0"),
    ])
    .await;
    let mut last = None;
    for _ in 0..65 {
        last = Some(app.new_session().await);
    }
    let session = last.unwrap();
    let joined = app.join_as(&session.id, "Ana").await;
    let mut sockets = Vec::new();
    for _ in 0..8 {
        sockets.push(WsClient::v2(&app, &joined.token).await);
    }
    for s in &mut sockets {
        s.heartbeat().await.assert_ok("every socket of the participant stays open");
    }
}

#[actix_rt::test]
async fn the_limiter_forgets_idle_addresses() {
    // A figure this large refills within a millisecond, so an address is idle right after use.
    let app = app_with(&[("SOCKET_CONNECTS_PER_MINUTE", "600000"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    for n in 0..2000u32 {
        let [_, _, b, c] = n.to_be_bytes();
        let address = format!("10.77.{b}.{c}");
        let resp = handshake(&app, "vsn=2.0.0", Some(&address)).await;
        resp.assert_status(403, "a handshake without a token");
    }
    let held = metric(&app, "limiter_addresses").await;
    assert!(held >= 2000.0, "2000 addresses seen, {held} held");
    let deadline = Instant::now() + location_sharing::abuse::FORGET_INTERVAL * 2;
    while metric(&app, "limiter_addresses").await > 0.0 {
        assert!(Instant::now() < deadline, "idle addresses are still held after two passes");
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
}

#[actix_rt::test]
async fn a_peer_outside_trusted_proxies_is_the_client_whatever_it_forwards() {
    // Proxies are trusted, but not this peer (127.0.0.1): its X-Forwarded-For is not read.
    let app = app_with(&[("CREATE_SESSIONS_PER_MINUTE", "1"), ("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.1")]).await;
    create_from(&app, Some("198.51.100.1")).await.assert_status(201, "first creation");
    assert_too_many(&create_from(&app, Some("198.51.100.2")).await, "another claimed address, same peer");
}

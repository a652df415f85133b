//! SPEC §8: the `viewing` event, `viewing` in Presence metas, `rate_advice` pushes that follow how
//! many *other* participants look (on any replica), the `sockets_by_advice` gauges, and the start
//! refusing an idle interval the location TTL would outlive.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::ws_client::{assert_presence_entry, topic, WsClient, DEADLINE};

const FAST: u64 = 500;
const IDLE: u64 = 3000;

fn intervals(vars: &mut HashMap<String, String>) {
    vars.insert("FAST_UPDATE_INTERVAL_MS".into(), FAST.to_string());
    vars.insert("IDLE_UPDATE_INTERVAL_MS".into(), IDLE.to_string());
}

async fn app() -> TestApp {
    spawn_app_with(intervals).await
}

fn advice(interval_ms: u64, watchers: u64) -> Value {
    json!({"interval_ms": interval_ms, "watchers": watchers})
}

/// Waits (up to 5 s) for a `rate_advice` equal to `expected`; asserts it came within `within`.
async fn assert_advice(client: &mut WsClient, expected: &Value, within: Duration, context: &str) {
    let start = Instant::now();
    let want = expected.clone();
    client.assert_push_within("rate_advice", DEADLINE, move |p| *p == want).await;
    let took = start.elapsed();
    assert!(took <= within, "{context}: {expected} took {took:?} (more than {within:?})");
}

/// The last `rate_advice` this socket received (all of them are recorded).
fn last_advice(client: &WsClient) -> Value {
    client.inbox().iter().rev().find(|m| m.event == "rate_advice").map(|m| m.payload.clone()).unwrap_or(Value::Null)
}

/// Polls `/metrics` until the gauge line equals `value` (5 s).
async fn assert_gauge(app: &TestApp, mode: &str, value: f64) {
    let name = format!("location_sharing_sockets_by_advice{{mode=\"{mode}\"}}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = app.try_metric(&name).await;
        if got == Some(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got:?}, expected {value}");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn viewing(client: &mut WsClient, sid: &str, visible: bool) {
    let reply = client.push(&topic(sid), "viewing", json!({ "visible": visible })).await;
    assert_eq!(reply.assert_ok("viewing"), &json!({}), "viewing replies ok {{}}");
}

#[actix_rt::test]
async fn viewing_replies_ok_and_refuses_anything_but_a_boolean() {
    let app = app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let sid = &session.id;
    let mut a = WsClient::joined(&app, &people[0].token, sid).await;
    viewing(&mut a, sid, false).await;
    viewing(&mut a, sid, true).await;
    for payload in [json!({"visible": "yes"}), json!({"visible": 1}), json!([true])] {
        let reply = a.push(&topic(sid), "viewing", payload.clone()).await;
        let response = reply.assert_error("invalid_payload", &format!("viewing {payload}"));
        assert_eq!(
            response,
            &json!({"reason": "invalid_payload", "errors": {"visible": ["must be true or false"]}}),
            "viewing {payload}"
        );
    }
    // Without the key: invalid_payload, naming "visible" (the exact message: see the next test).
    for payload in [json!({}), json!({"visible": null})] {
        let reply = a.push(&topic(sid), "viewing", payload.clone()).await;
        let response = reply.assert_error("invalid_payload", &format!("viewing {payload}"));
        assert!(response["errors"]["visible"].as_array().is_some_and(|m| !m.is_empty()), "{response}");
    }
    // The plain envelope too.
    let mut p = WsClient::plain(&app, &people[0].token).await;
    p.next_event("joined").await;
    assert_eq!(p.push("", "viewing", json!({"visible": false})).await.assert_ok("plain viewing"), &json!({}));
    p.push("", "viewing", json!({"visible": "no"})).await.assert_error("invalid_payload", "plain viewing");
}

#[actix_rt::test]
/// A missing `visible` is Ecto's `can't be blank`, as a missing `lat` is; a wrong type is not a boolean.
async fn viewing_without_visible_says_it_cannot_be_blank() {
    let app = app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let sid = &session.id;
    let mut a = WsClient::joined(&app, &people[0].token, sid).await;
    for payload in [json!({}), json!({"visible": null})] {
        let reply = a.push(&topic(sid), "viewing", payload.clone()).await;
        assert_eq!(
            reply.assert_error("invalid_payload", &format!("viewing {payload}")),
            &json!({"reason": "invalid_payload", "errors": {"visible": ["can't be blank"]}}),
            "viewing {payload}"
        );
    }
}

#[actix_rt::test]
async fn presence_metas_carry_viewing_and_a_change_is_a_leave_and_a_join() {
    let app = app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let sid = &session.id;
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let state = a.next_event("presence_state").await;
    assert_presence_entry(&state.payload[&ana.user_id], "Ana", "presence_state");
    assert_eq!(state.payload[&ana.user_id]["metas"][0]["viewing"], json!(true), "visible by default");

    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let joined = a.assert_push("presence_diff", |p| p["joins"].get(&bo.user_id).is_some()).await;
    let old = joined.payload["joins"][&bo.user_id]["metas"][0].clone();
    assert_eq!(old["viewing"], json!(true), "Bo visible by default: {old}");

    viewing(&mut b, sid, false).await;
    let diff = a.assert_push("presence_diff", |p| p["leaves"].get(&bo.user_id).is_some()).await;
    let leave = &diff.payload["leaves"][&bo.user_id]["metas"][0];
    let join = &diff.payload["joins"][&bo.user_id]["metas"][0];
    assert_eq!(leave, &old, "leaves carries the old meta: {}", diff.payload);
    assert_eq!(join["viewing"], json!(false), "joins carries the new meta: {}", diff.payload);
    assert_eq!(join["phx_ref_prev"], old["phx_ref"], "phx_ref_prev is the old phx_ref: {}", diff.payload);
    assert_ne!(join["phx_ref"], old["phx_ref"], "a new phx_ref: {}", diff.payload);
    assert_eq!(join["display_name"], "Bo");
    // Bo hears his own change too.
    b.assert_push("presence_diff", |p| p["joins"][&bo.user_id]["metas"][0]["viewing"] == json!(false)).await;

    // Saying the same again changes nothing; a new socket's presence_state shows it.
    viewing(&mut b, sid, false).await;
    a.refute_push("presence_diff", crate::ws_client::QUIET).await;
    let mut c = WsClient::joined(&app, &ana.token, sid).await;
    let state = c.next_event("presence_state").await;
    assert_eq!(state.payload[&bo.user_id]["metas"][0]["viewing"], json!(false), "{}", state.payload);

    // Back to visible.
    viewing(&mut b, sid, true).await;
    a.assert_push("presence_diff", |p| {
        p["leaves"].get(&bo.user_id).is_some() && p["joins"][&bo.user_id]["metas"][0]["viewing"] == json!(true)
    })
    .await;

    // Two sockets: the participant views while either is visible.
    let mut b2 = WsClient::joined(&app, &bo.token, sid).await;
    viewing(&mut b, sid, false).await;
    a.refute_push_where("presence_diff", crate::ws_client::QUIET, |p| {
        p["joins"][&bo.user_id]["metas"][0]["viewing"] == json!(false)
    })
    .await;
    viewing(&mut b2, sid, false).await;
    a.assert_push("presence_diff", |p| p["joins"][&bo.user_id]["metas"][0]["viewing"] == json!(false)).await;
}

#[actix_rt::test]
async fn advice_follows_the_other_participants_who_look() {
    let app = app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let sid = &session.id;
    let (ana, bo) = (&people[0], &people[1]);

    // Alone: idle, right after presence_state.
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let state = a.next_event("presence_state").await;
    let first = a.next_msg().await;
    assert_eq!(first.event, "rate_advice", "rate_advice right after presence_state: {}", first.raw);
    assert_eq!(first.seq, state.seq + 1);
    assert_eq!(first.payload, advice(IDLE, 0), "alone");
    assert_gauge(&app, "idle", 1.0).await;
    assert_gauge(&app, "fast", 0.0).await;

    // Ana's own visibility does not count.
    viewing(&mut a, sid, false).await;
    viewing(&mut a, sid, true).await;
    a.refute_push("rate_advice", Duration::from_millis(2500)).await;

    // Bo joins, visible: both fast, one watcher each.
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let state = b.next_event("presence_state").await;
    let first = b.next_msg().await;
    assert_eq!((first.event.as_str(), first.seq), ("rate_advice", state.seq + 1), "{}", first.raw);
    assert_eq!(first.payload, advice(FAST, 1), "Bo sees Ana looking");
    assert_advice(&mut a, &advice(FAST, 1), Duration::from_secs(3), "Ana once Bo looks").await;
    assert_gauge(&app, "fast", 2.0).await;
    assert_gauge(&app, "idle", 0.0).await;

    // Bo hides his page: Ana goes idle within 3 s; Bo's own advice does not change.
    viewing(&mut b, sid, false).await;
    assert_advice(&mut a, &advice(IDLE, 0), Duration::from_secs(3), "Ana once Bo hides").await;
    assert_gauge(&app, "fast", 1.0).await;
    assert_gauge(&app, "idle", 1.0).await;
    b.refute_push("rate_advice", Duration::from_millis(2500)).await;
    assert_eq!(last_advice(&b), advice(FAST, 1), "Bo still has a watcher");

    // Ana hides too: Bo goes idle.
    viewing(&mut a, sid, false).await;
    assert_advice(&mut b, &advice(IDLE, 0), Duration::from_secs(3), "Bo once Ana hides").await;
    assert_gauge(&app, "idle", 2.0).await;

    // Bo looks again: Ana fast again.
    viewing(&mut b, sid, true).await;
    assert_advice(&mut a, &advice(FAST, 1), Duration::from_secs(3), "Ana once Bo looks again").await;

    // A third participant looking: two watchers for Ana.
    let cy = app.join_as(sid, "Cy").await;
    let mut c = WsClient::joined(&app, &cy.token, sid).await;
    c.assert_push("rate_advice", |p| p == &advice(FAST, 1)).await; // Bo looks; Ana does not.
    assert_advice(&mut a, &advice(FAST, 2), Duration::from_secs(3), "Ana with two watchers").await;

    // A socket closing is a watcher fewer.
    drop(c);
    assert_advice(&mut a, &advice(FAST, 1), Duration::from_secs(3), "Cy gone").await;
    drop(b);
    assert_advice(&mut a, &advice(IDLE, 0), Duration::from_secs(3), "Bo gone").await;
    assert_gauge(&app, "idle", 1.0).await;
    assert_gauge(&app, "fast", 0.0).await;
}

#[actix_rt::test]
async fn watchers_are_counted_across_replicas() {
    let Some(_) = crate::helpers::test_redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set (replicas need Redis)");
        return;
    };
    let one = app().await;
    let (database_url, redis_url) = (
        match &one.settings.database_url {
            location_sharing::config::DatabaseUrl::Postgres(url) => url.clone(),
            location_sharing::config::DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
        },
        one.settings.redis_url.as_ref().map(|u| u.expose().to_owned()).unwrap(),
    );
    let two = spawn_app_with(move |vars| {
        intervals(vars);
        vars.insert("DATABASE_URL".into(), database_url);
        vars.insert("REDIS_URL".into(), redis_url);
    })
    .await;
    let (session, people) = one.session_with(&["Ana", "Bo"]).await;
    let sid = &session.id;
    let (ana, bo) = (&people[0], &people[1]);

    let mut a = WsClient::joined(&one, &ana.token, sid).await;
    a.assert_push("rate_advice", |p| p == &advice(IDLE, 0)).await;
    assert_gauge(&one, "idle", 1.0).await;

    // A viewer on replica two makes Ana's advice on replica one fast.
    let mut b = WsClient::joined(&two, &bo.token, sid).await;
    assert_advice(&mut a, &advice(FAST, 1), Duration::from_secs(3), "viewer on replica two").await;
    // ...and Bo on replica two sees Ana on replica one looking.
    assert_advice(&mut b, &advice(FAST, 1), Duration::from_secs(3), "viewer on replica one").await;
    assert_gauge(&one, "fast", 1.0).await;
    assert_gauge(&two, "fast", 1.0).await;

    viewing(&mut b, sid, false).await;
    assert_advice(&mut a, &advice(IDLE, 0), Duration::from_secs(3), "replica two's viewer hides").await;
    assert_gauge(&one, "idle", 1.0).await;
    // Presence on replica one shows Bo not viewing.
    let mut a2 = WsClient::joined(&one, &ana.token, sid).await;
    let state = a2.next_event("presence_state").await;
    assert_eq!(state.payload[&bo.user_id]["metas"][0]["viewing"], json!(false), "{}", state.payload);

    viewing(&mut b, sid, true).await;
    assert_advice(&mut a, &advice(FAST, 1), Duration::from_secs(3), "replica two's viewer looks again").await;
    drop(b);
    assert_advice(&mut a, &advice(IDLE, 0), Duration::from_secs(5), "replica two's viewer gone").await;
}

#[test]
fn an_idle_interval_the_location_ttl_would_outlive_is_refused() {
    use location_sharing::config::Settings;
    let base = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = HashMap::from([("JWT_SECRET".into(), "x".repeat(40))]);
        vars.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        vars
    };
    for pairs in [
        vec![("IDLE_UPDATE_INTERVAL_MS", "30000")],
        vec![("IDLE_UPDATE_INTERVAL_MS", "31000"), ("LOCATION_TTL_SECONDS", "30")],
        vec![("LOCATION_TTL_SECONDS", "10")],
    ] {
        let err = Settings::from_map(&base(&pairs)).err();
        assert_eq!(err.map(|e| e.variable), Some("IDLE_UPDATE_INTERVAL_MS"), "{pairs:?}");
    }
    let ok = Settings::from_map(&base(&[("IDLE_UPDATE_INTERVAL_MS", "29999"), ("LOCATION_TTL_SECONDS", "30")]));
    assert!(ok.is_ok(), "just below the TTL is fine");

    // The binary itself refuses to start, naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_location-sharing"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("db.sqlite3").display()))
        .env("JWT_SECRET", crate::helpers::JWT_SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", crate::helpers::free_port().to_string())
        .env("LOCATION_TTL_SECONDS", "10")
        .env("IDLE_UPDATE_INTERVAL_MS", "10000")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run the binary");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "the start must fail, got {status:?}: {text}");
    assert!(text.contains("IDLE_UPDATE_INTERVAL_MS"), "the error names the variable: {text}");
}

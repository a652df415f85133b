//! SPEC §10, over real sockets: `e2e` at creation and in GET, sealed positions relayed byte for
//! byte in every framing and refused in every other form, kept in snapshots and the store with the
//! TTL and deleted on leave, removal and end, the unchanged rate limit and order, the sealed
//! destination that is never measured, and sealed positions across two replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use location_sharing::domain::{LocationView, PositionView, Sealed, SealedView, SessionId};
use location_sharing::realtime::messages::{ClusterEvent, Crash, RemoteEvent};
use location_sharing::redis_link::RedisLink;
use location_sharing::store::redis::RedisStore;
use location_sharing::store::EphemeralStore;
use serde_json::{json, Value};

use crate::helpers::{
    assert_keys, assert_rfc3339_z, base64url_encode, spawn_app, spawn_app_with, test_redis_url, Created, Joined,
    TestApp,
};
use crate::ws_client::{loc, topic, Proto, Reply, WsClient, DEADLINE, QUIET};

/// A sealed message of exactly `len` characters, different for each `seed`, with both `-` and `_`
/// in it (what a client's base64url of `iv ‖ ciphertext ‖ tag` looks like).
fn sealed(seed: u64, len: usize) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut s = base64url_encode(&bytes);
    s.truncate(len);
    s.replace_range(1..3, "-_");
    assert_eq!(s.len(), len);
    s
}

/// The length of a sealed location as the README's clients send it (256 bytes of padded plaintext).
const USUAL: usize = 379;

/// A new session created with `"e2e": true` (asserts 201), and these participants.
async fn e2e_session(app: &TestApp, names: &[&str]) -> (Created, Vec<Joined>) {
    e2e_session_with(app, json!({"e2e": true}), names).await
}

/// A new session created with this body (asserts 201 and `e2e: true`), and these participants.
async fn e2e_session_with(app: &TestApp, body: Value, names: &[&str]) -> (Created, Vec<Joined>) {
    let resp = app.create_session(&body).await;
    resp.assert_status(201, &format!("create {body}"));
    assert_eq!(resp.json["e2e"], json!(true), "the 201 answer says e2e: {}", resp.json);
    let session = Created {
        id: resp.json["session_id"].as_str().unwrap_or_else(|| panic!("session_id in {}", resp.json)).to_owned(),
        creator_token: resp.json["creator_token"]
            .as_str()
            .unwrap_or_else(|| panic!("creator_token in {}", resp.json))
            .to_owned(),
        json: resp.json,
    };
    let mut joined = Vec::new();
    for name in names {
        joined.push(app.join_as(&session.id, name).await);
    }
    (session, joined)
}

/// A sealed `location_update` (or snapshot location): exactly `{"user_id","sealed","received_at"}`,
/// `sealed` as sent, `received_at` a recent RFC 3339 UTC time.
#[track_caller]
fn assert_sealed_view(payload: &Value, user_id: &str, sealed: &str, context: &str) {
    assert_keys(payload, &["user_id", "sealed", "received_at"], &format!("{context}: sealed location"));
    assert_eq!(payload["user_id"], user_id, "{context}: user_id of {payload}");
    assert_eq!(payload["sealed"], sealed, "{context}: sealed of {payload}");
    let at = assert_rfc3339_z(&payload["received_at"], &format!("{context}: received_at"));
    let age = Utc::now().signed_duration_since(at);
    assert!(age.num_seconds().abs() < 600, "{context}: received_at {at} is the server's receive time");
}

/// The next `location_update` of a socket, checked as a sealed one of `user_id` carrying `sealed`,
/// and byte for byte in the frame as received.
async fn assert_sealed_push(client: &mut WsClient, user_id: &str, sealed: &str, context: &str) -> Value {
    let got = client.next_event("location_update").await;
    assert_sealed_view(&got.payload, user_id, sealed, context);
    assert!(got.raw.contains(&format!("\"sealed\":\"{sealed}\"")), "{context}: byte for byte in {}", got.raw);
    got.payload
}

/// An `invalid_location` refusal with exactly one field error, on `sealed`; gives its messages.
#[track_caller]
fn assert_refused_on_sealed(reply: &Reply, context: &str) -> Vec<String> {
    let response = reply.assert_error("invalid_location", context);
    assert_keys(response, &["reason", "errors"], context);
    assert_keys(&response["errors"], &["sealed"], context);
    let messages = response["errors"]["sealed"].as_array().cloned().unwrap_or_default();
    assert!(!messages.is_empty(), "{context}: messages of {response}");
    messages.iter().map(|m| m.as_str().unwrap_or_else(|| panic!("{context}: {m} is a string")).to_owned()).collect()
}

/// A 422 whose only field error is `field`.
#[track_caller]
fn assert_422_only_on(resp: &crate::helpers::Resp, field: &str, context: &str) {
    resp.assert_field_errors(&[field], context);
}

/// The join snapshot of a new V2 socket of `token`.
async fn snapshot(app: &TestApp, token: &str, sid: &str) -> Value {
    let mut c = WsClient::v2(app, token).await;
    c.join(&topic(sid)).await.assert_ok("join").clone()
}

/// The `locations` of a snapshot, by user id.
fn locations_of(snapshot: &Value) -> Vec<Value> {
    let mut list = snapshot["locations"].as_array().unwrap_or_else(|| panic!("locations in {snapshot}")).clone();
    list.sort_by_key(|l| l["user_id"].as_str().unwrap_or_default().to_owned());
    list
}

/// What the store holds, seen by a session actor that starts afresh: the session's actor is
/// crashed (the registry restarts it, and the new one loads the session's positions from the store,
/// in memory or on Redis), then `watcher`, a joined V1 or V2 socket, rejoins and gets its snapshot.
async fn store_snapshot(app: &TestApp, watcher: &mut WsClient, sid: &str) -> Value {
    let session: SessionId = sid.parse().unwrap_or_else(|e| panic!("{sid} is a session id: {e:?}"));
    app.registry.do_send(Crash { session });
    watcher.next_event("phx_error").await;
    // phoenix.js waits a second before rejoining; a shorter wait is enough here.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    watcher.join(&topic(sid)).await.assert_ok("rejoin after the restart").clone()
}

/// A Redis store on the test Redis (the app's keys and layout), when the run has one.
fn redis_store(app: &TestApp) -> Option<RedisStore> {
    let url = app.settings.redis_url.as_ref()?;
    let link = RedisLink::new(url, None, None).unwrap_or_else(|e| panic!("a Redis link to {url}: {e}"));
    Some(RedisStore::new(link, app.settings.limits.location_ttl, Duration::from_secs(600)))
}

/// The positions Redis holds for a session, by user id.
async fn stored(store: &RedisStore, sid: &str) -> Vec<PositionView> {
    let session: SessionId = sid.parse().unwrap_or_else(|e| panic!("{sid} is a session id: {e:?}"));
    let mut views = store.locations(session).await.unwrap_or_else(|e| panic!("read the store: {e}"));
    views.sort_by_key(|v| v.user_id().to_owned());
    views
}

/// Waits (generously) until Redis holds exactly these users' positions for the session.
async fn until_stored(store: &RedisStore, sid: &str, users: &[&str], context: &str) -> Vec<PositionView> {
    let mut want: Vec<String> = users.iter().map(|u| (*u).to_owned()).collect();
    want.sort_unstable();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views = stored(store, sid).await;
        let have: Vec<String> = views.iter().map(|v| v.user_id().to_owned()).collect();
        if have == want {
            return views;
        }
        assert!(Instant::now() < deadline, "{context}: Redis holds positions of {have:?}, expected {want:?}");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A sealed view as Redis keeps it, in its wire form.
fn wire(view: &PositionView) -> Value {
    assert!(matches!(view, PositionView::Sealed(_)), "a sealed position reads back as one: {view:?}");
    serde_json::to_value(view).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------- REST

#[actix_rt::test]
async fn e2e_is_chosen_at_creation_and_shown_by_get() {
    let app = spawn_app().await;
    let created = app.create_session(&json!({"name": "Secret dinner", "e2e": true})).await;
    created.assert_status(201, "create with e2e");
    assert_keys(
        &created.json,
        &["session_id", "join_link", "expires_at", "name", "creator_token", "destination", "locked", "e2e"],
        "201 answer",
    );
    assert_eq!(created.json["e2e"], json!(true), "{}", created.json);
    assert_eq!(created.json["destination"], Value::Null);
    let sid = created.json["session_id"].as_str().unwrap().to_owned();
    let creator = created.json["creator_token"].as_str().unwrap().to_owned();
    let shown = app.get_session(&sid).await;
    shown.assert_status(200, "GET");
    assert_eq!(shown.json["e2e"], json!(true), "GET: {}", shown.json);
    assert_eq!(shown.json["name"], "Secret dinner");

    // Fixed for the session's life: PATCH ignores it as an unknown field.
    let patched = app.patch_session(&sid, Some(&creator), &json!({"e2e": false, "locked": false})).await;
    patched.assert_status(200, "PATCH with e2e");
    assert_eq!(patched.json["e2e"], json!(true), "PATCH answer: {}", patched.json);
    assert_eq!(app.get_session(&sid).await.json["e2e"], json!(true), "GET after PATCH");

    // Default false, and explicit false.
    for body in [json!({}), json!({"e2e": false}), json!({"name": "Open"})] {
        let resp = app.create_session(&body).await;
        resp.assert_status(201, &format!("create {body}"));
        assert_eq!(resp.json["e2e"], json!(false), "{body}: {}", resp.json);
        let sid = resp.json["session_id"].as_str().unwrap();
        assert_eq!(app.get_session(sid).await.json["e2e"], json!(false), "GET of {body}");
    }

    // Wrong types are a 422 naming e2e, and create nothing.
    for bad in [json!("yes"), json!(1), json!("true"), json!({}), json!([true])] {
        let resp = app.create_session(&json!({ "e2e": bad })).await;
        resp.assert_field_errors(&["e2e"], &format!("e2e: {bad}"));
    }
}

// ---------------------------------------------------------------- relaying

#[actix_rt::test]
async fn sealed_updates_reach_every_other_socket_byte_for_byte_in_every_framing() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo", "Cy", "Di"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo, cy, di) = (&people[0], &people[1], &people[2], &people[3]);

    // Senders: Ana on V2, Bo on V1, Cy plain. Listeners: Di on all three framings, Ana's second device.
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::v1(&app, &bo.token).await;
    b.join(&t).await.assert_ok("Bo's V1 join");
    let mut c = WsClient::plain(&app, &cy.token).await;
    c.next_event("joined").await;
    let mut d2 = WsClient::joined(&app, &di.token, sid).await;
    let mut d1 = WsClient::v1(&app, &di.token).await;
    d1.join(&t).await.assert_ok("Di's V1 join");
    let mut dp = WsClient::plain(&app, &di.token).await;
    dp.next_event("joined").await;
    let mut a_other = WsClient::joined(&app, &ana.token, sid).await;
    assert_eq!((b.proto, c.proto, d1.proto, dp.proto), (Proto::V1, Proto::Plain, Proto::V1, Proto::Plain));

    // (sender index, user, payload as pushed, the sealed message it carries)
    let steps: Vec<(usize, &str, Value, String)> = vec![
        (0, &ana.user_id, json!({"sealed": sealed(1, USUAL)}), sealed(1, USUAL)),
        (0, &ana.user_id, json!({"type": "location_update", "data": {"sealed": sealed(2, USUAL)}}), sealed(2, USUAL)),
        (1, &bo.user_id, json!({"sealed": sealed(3, 100)}), sealed(3, 100)),
        (1, &bo.user_id, json!({"type": "location_update", "data": {"sealed": sealed(4, 60)}}), sealed(4, 60)),
        (2, &cy.user_id, json!({"sealed": sealed(5, USUAL)}), sealed(5, USUAL)),
        (2, &cy.user_id, json!({"type": "location_update", "data": {"sealed": sealed(6, 30)}}), sealed(6, 30)),
        // Unknown keys beside `sealed` are ignored, as anywhere else, and not relayed.
        (0, &ana.user_id, json!({"sealed": sealed(7, USUAL), "v": 1}), sealed(7, USUAL)),
    ];
    for (i, (sender, user, payload, message)) in steps.iter().enumerate() {
        let context = format!("step {i} ({payload})");
        let mut clients = [
            ("Ana V2", &mut a),
            ("Bo V1", &mut b),
            ("Cy plain", &mut c),
            ("Di V2", &mut d2),
            ("Di V1", &mut d1),
            ("Di plain", &mut dp),
            ("Ana's other device", &mut a_other),
        ];
        let reply = clients[*sender].1.location(&t, payload.clone()).await;
        assert_eq!(reply.assert_ok(&context), &json!({}), "{context}: the ok reply is {{}}");
        let mut seen = Vec::new();
        for (who, client) in clients.iter_mut().enumerate().filter(|(k, _)| k != sender).map(|(_, c)| c) {
            let got = assert_sealed_push(client, user, message, &format!("{context}, {who}")).await;
            if client.proto != Proto::Plain {
                let last = client.inbox().last().cloned().unwrap_or_else(|| panic!("{who}: a message"));
                assert_eq!(last.topic, t, "{context}, {who}: on the session's topic");
            }
            seen.push(got);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{context}: the same payload everywhere: {seen:?}");
        clients[*sender].1.refute_push("location_update", QUIET).await;
    }
    for (who, user, client) in [("Ana", &ana.user_id, &a), ("Bo", &bo.user_id, &b), ("Cy", &cy.user_id, &c)] {
        let own =
            client.inbox().iter().filter(|m| m.event == "location_update" && m.payload["user_id"] == user.as_str());
        assert_eq!(own.count(), 0, "{who} never gets its own update back on the sending socket");
    }
}

#[actix_rt::test]
async fn the_size_limits_are_inclusive() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let mut p = WsClient::plain(&app, &bo.token).await;
    p.next_event("joined").await;

    for len in [Sealed::MIN_CHARS, Sealed::MAX_CHARS, 25, 2047] {
        let s = sealed(len as u64, len);
        a.location(&t, json!({ "sealed": s })).await.assert_ok(&format!("{len} characters"));
        assert_sealed_push(&mut b, &ana.user_id, &s, &format!("{len}, V2")).await;
        assert_sealed_push(&mut p, &ana.user_id, &s, &format!("{len}, plain")).await;
    }
    // The whole alphabet, and only it.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    a.location(&t, json!({ "sealed": alphabet })).await.assert_ok("the alphabet");
    assert_sealed_push(&mut b, &ana.user_id, alphabet, "the alphabet").await;
    for (len, expected) in [(23, "should be at least 24 character(s)"), (2049, "should be at most 2048 character(s)")] {
        let reply = a.location(&t, json!({ "sealed": sealed(9, len) })).await;
        assert_eq!(assert_refused_on_sealed(&reply, &format!("{len} characters")), vec![expected]);
    }
    b.refute_push("location_update", QUIET).await;
}

// ---------------------------------------------------------------- refusals

#[actix_rt::test]
async fn anything_but_a_valid_sealed_alone_is_refused_in_an_e2e_session() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut a1 = WsClient::v1(&app, &ana.token).await;
    a1.join(&t).await.assert_ok("Ana's V1 join");
    let mut ap = WsClient::plain(&app, &ana.token).await;
    ap.next_event("joined").await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let mut bp = WsClient::plain(&app, &bo.token).await;
    bp.next_event("joined").await;

    let ok = sealed(1, USUAL);
    let base64url = "must be base64url";
    let blank = "can't be blank";
    let clear = "must replace the location fields: this session is end-to-end encrypted";
    let cases: Vec<(Value, Option<&str>)> = vec![
        (json!({ "sealed": sealed(2, 23) }), Some("should be at least 24 character(s)")),
        (json!({ "sealed": sealed(3, 2049) }), Some("should be at most 2048 character(s)")),
        (json!({ "sealed": "" }), None),
        (json!({ "sealed": format!("{}+", &ok[..30]) }), Some(base64url)),
        (json!({ "sealed": format!("{}/", &ok[..30]) }), Some(base64url)),
        (json!({ "sealed": format!("{}==", &ok[..30]) }), Some(base64url)),
        (json!({ "sealed": format!("{}=", &ok[..24]) }), Some(base64url)),
        (json!({ "sealed": format!("{}é", &ok[..30]) }), Some(base64url)),
        (json!({ "sealed": format!("{}ÄÖÜ", &ok[..24]) }), Some(base64url)),
        (json!({ "sealed": format!("{} {}", &ok[..20], &ok[20..40]) }), Some(base64url)),
        (json!({ "sealed": format!("{}\n", &ok[..30]) }), Some(base64url)),
        (json!({ "sealed": 12_345 }), None),
        (json!({ "sealed": true }), None),
        (json!({ "sealed": [ok] }), None),
        (json!({ "sealed": {"iv": "x"} }), None),
        (json!({ "sealed": null }), Some(blank)),
        (json!({}), Some(blank)),
        (json!({"lat": 48.8566, "lng": 2.3522}), Some(clear)),
        (json!({"lat": 48.8566, "lng": 2.3522, "accuracy": 5.0, "speed": 1.0}), Some(clear)),
        (json!({"type": "location_update", "data": {"lat": 1.0, "lng": 2.0}}), Some(clear)),
        (json!({"sealed": ok, "lat": 48.8566}), Some(clear)),
        (json!({"sealed": ok, "lng": 2.3522}), Some(clear)),
        (json!({"sealed": ok, "accuracy": 5.0}), Some(clear)),
        (json!({"sealed": ok, "heading": 90.0}), Some(clear)),
        (json!({"sealed": ok, "speed": 1.5}), Some(clear)),
        (json!({"sealed": ok, "timestamp": Utc::now().to_rfc3339()}), Some(clear)),
        (json!({"sealed": ok, "lat": null}), Some(clear)),
        (json!({"type": "location_update", "data": {"sealed": ok, "lat": 1.0, "lng": 2.0}}), Some(clear)),
    ];
    for (payload, expected) in &cases {
        let context = format!("V2 {payload}");
        let messages = assert_refused_on_sealed(&a.location(&t, payload.clone()).await, &context);
        match expected {
            Some(e) if e.ends_with(')') || *e == blank || *e == clear => {
                assert_eq!(messages, vec![(*e).to_owned()], "{context}")
            }
            Some(prefix) => assert!(messages.iter().all(|m| m.starts_with(prefix)), "{context}: {messages:?}"),
            None => {}
        }
    }
    // The other framings answer the same refusals in their own reply shapes.
    for payload in [json!({"lat": 1.0, "lng": 2.0}), json!({"sealed": "short"}), json!({"sealed": ok, "speed": 0})] {
        assert_refused_on_sealed(&a1.location(&t, payload.clone()).await, &format!("V1 {payload}"));
        let reply = ap.location(&t, payload.clone()).await;
        assert_eq!(reply.msg.payload["to"], "location_update", "plain reply: {}", reply.msg.raw);
        assert_refused_on_sealed(&reply, &format!("plain {payload}"));
    }
    // A payload that is not an object is refused on `sealed` too: the only field the session takes.
    for payload in [json!(ok), json!([ok]), json!(5)] {
        let reply = a.location(&t, payload.clone()).await;
        assert_eq!(assert_refused_on_sealed(&reply, &format!("{payload}")), vec!["can't be blank"]);
    }

    // Nothing refused was broadcast, kept, or queued ahead of the next valid update.
    for client in [&mut b, &mut bp] {
        client.refute_push("location_update", QUIET).await;
    }
    assert_eq!(locations_of(&snapshot(&app, &bo.token, sid).await), Vec::<Value>::new(), "no location kept");
    a.location(&t, json!({ "sealed": ok })).await.assert_ok("a valid one after the refusals");
    assert_sealed_push(&mut b, &ana.user_id, &ok, "the first one Bo gets").await;
    assert_sealed_push(&mut bp, &ana.user_id, &ok, "the first one Bo's plain socket gets").await;
    for client in [&mut a, &mut a1, &mut ap, &mut b, &mut bp] {
        client.drain_for(QUIET).await;
        let wrong = client.inbox().iter().filter(|m| m.event == "location_update" && m.payload["sealed"] != ok);
        assert_eq!(wrong.count(), 0, "only the valid update was ever broadcast");
    }
}

#[actix_rt::test]
async fn sealed_is_refused_in_a_session_without_e2e() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    assert_eq!(session.json["e2e"], json!(false));
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut ap = WsClient::plain(&app, &ana.token).await;
    ap.next_event("joined").await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;

    let s = sealed(1, USUAL);
    let only = "is only accepted in end-to-end encrypted sessions";
    for payload in [
        json!({ "sealed": s }),
        json!({"sealed": s, "lat": 1.0, "lng": 2.0}),
        json!({"type": "location_update", "data": {"sealed": s}}),
        json!({"sealed": "short", "lat": 1.0, "lng": 2.0}),
        json!({"sealed": null, "lat": 1.0, "lng": 2.0}),
    ] {
        let messages = assert_refused_on_sealed(&a.location(&t, payload.clone()).await, &format!("V2 {payload}"));
        assert_eq!(messages, vec![only.to_owned()], "{payload}");
        let messages = assert_refused_on_sealed(&ap.location(&t, payload.clone()).await, &format!("plain {payload}"));
        assert_eq!(messages, vec![only.to_owned()], "{payload}");
    }
    b.refute_push("location_update", QUIET).await;
    assert_eq!(locations_of(&snapshot(&app, &bo.token, sid).await), Vec::<Value>::new());

    // Coordinates still work there, in their own shape.
    a.location(&t, loc(1.0, 2.0)).await.assert_ok("a clear location");
    let got = b.next_event("location_update").await;
    crate::ws_client::assert_location_view(&got.payload, &ana.user_id, "clear");
}

// ---------------------------------------------------------------- snapshots, TTL, deletion

#[actix_rt::test]
async fn a_later_joiner_gets_sealed_locations_in_its_snapshot_and_so_does_a_restarted_actor() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo", "Cy"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo, cy) = (&people[0], &people[1], &people[2]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut c = WsClient::joined(&app, &cy.token, sid).await;

    let first = sealed(1, USUAL);
    a.location(&t, json!({ "sealed": first })).await.assert_ok("Ana's first");
    let broadcast = assert_sealed_push(&mut c, &ana.user_id, &first, "Cy").await;

    // A later joiner, in each framing, gets exactly what was broadcast.
    assert_eq!(locations_of(&snapshot(&app, &bo.token, sid).await), vec![broadcast.clone()], "V2 snapshot");
    let mut b1 = WsClient::v1(&app, &bo.token).await;
    let snap = b1.join(&t).await.assert_ok("V1 join").clone();
    assert_eq!(locations_of(&snap), vec![broadcast.clone()], "V1 snapshot");
    let mut bp = WsClient::plain(&app, &bo.token).await;
    let joined = bp.next_event("joined").await;
    assert_eq!(locations_of(&joined.payload), vec![broadcast], "plain snapshot");
    assert!(joined.raw.contains(&format!("\"sealed\":\"{first}\"")), "byte for byte: {}", joined.raw);

    // The latest position replaces the previous one; each participant has one.
    let second = sealed(2, USUAL);
    a.location(&t, json!({ "sealed": second })).await.assert_ok("Ana's second");
    let ana_latest = assert_sealed_push(&mut c, &ana.user_id, &second, "Cy, Ana's second").await;
    let third = sealed(3, 48);
    bp.location(&t, json!({ "sealed": third })).await.assert_ok("Bo's, from the plain socket");
    let bo_latest = assert_sealed_push(&mut c, &bo.user_id, &third, "Cy, Bo's").await;
    let mut expected = vec![ana_latest, bo_latest];
    expected.sort_by_key(|l| l["user_id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(locations_of(&snapshot(&app, &cy.token, sid).await), expected, "one per participant, the latest");
    for l in &expected {
        let user = l["user_id"].as_str().unwrap_or_default();
        assert_sealed_view(l, user, l["sealed"].as_str().unwrap_or_default(), "snapshot");
    }

    // A fresh actor reads them back from the store (memory, or Redis), in the same shape.
    if let Some(store) = redis_store(&app) {
        let views = until_stored(&store, sid, &[&ana.user_id, &bo.user_id], "both stored").await;
        let mut on_redis: Vec<Value> = views.iter().map(wire).collect();
        on_redis.sort_by_key(|l| l["user_id"].as_str().unwrap_or_default().to_owned());
        assert_eq!(on_redis, expected, "Redis keeps the broadcast form");
    } else {
        actix_rt::time::sleep(Duration::from_secs(1)).await; // the store write waits 100 ms
    }
    let restarted = store_snapshot(&app, &mut c, sid).await;
    assert_eq!(locations_of(&restarted), expected, "a restarted actor's snapshot: {restarted}");
}

#[actix_rt::test]
async fn sealed_locations_expire_with_the_location_ttl() {
    let app = spawn_app_with(|vars| {
        vars.insert("LOCATION_TTL_SECONDS".into(), "5".into());
        vars.insert("IDLE_UPDATE_INTERVAL_MS".into(), "4000".into());
    })
    .await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo", "Cy"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut c = WsClient::joined(&app, &people[2].token, sid).await;

    let s = sealed(1, USUAL);
    let sent_at = Instant::now();
    a.location(&t, json!({ "sealed": s })).await.assert_ok("sealed");
    let view = assert_sealed_push(&mut c, &ana.user_id, &s, "Cy").await;
    assert_eq!(locations_of(&snapshot(&app, &bo.token, sid).await), vec![view.clone()], "fresh");
    let store = redis_store(&app);
    if let Some(store) = &store {
        until_stored(store, sid, &[&ana.user_id], "stored").await;
    } else {
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
    let restarted = store_snapshot(&app, &mut c, sid).await;
    assert_eq!(locations_of(&restarted), vec![view], "in the store while fresh");

    // Gone from snapshots (and from Redis) once the TTL has passed, within a generous while.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if locations_of(&snapshot(&app, &bo.token, sid).await).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the sealed location outlived its TTL by far");
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(sent_at.elapsed() >= Duration::from_secs(4), "not gone before its TTL: {:?}", sent_at.elapsed());
    if let Some(store) = &store {
        until_stored(store, sid, &[], "expired on Redis").await;
    }
    let restarted = store_snapshot(&app, &mut c, sid).await;
    assert_eq!(locations_of(&restarted), Vec::<Value>::new(), "gone from the store: {restarted}");
}

#[actix_rt::test]
async fn leaving_or_being_removed_deletes_the_sealed_location_at_once() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo", "Cy", "Di"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo, cy, di) = (&people[0], &people[1], &people[2], &people[3]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let mut c = WsClient::joined(&app, &cy.token, sid).await;
    let mut d = WsClient::joined(&app, &di.token, sid).await;
    for (n, client) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        client.location(&t, json!({ "sealed": sealed(n as u64, USUAL) })).await.assert_ok("sealed");
    }
    for _ in 0..3 {
        d.next_event("location_update").await;
    }
    let store = redis_store(&app);
    if let Some(store) = &store {
        until_stored(store, sid, &[&ana.user_id, &bo.user_id, &cy.user_id], "all three stored").await;
    } else {
        actix_rt::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(locations_of(&store_snapshot(&app, &mut d, sid).await).len(), 3, "all three in the store");

    // Ana leaves, Cy is removed by the creator.
    app.remove(sid, &ana.user_id, Some(&ana.token)).await.assert_no_content("Ana leaves");
    app.remove(sid, &cy.user_id, Some(&session.creator_token)).await.assert_no_content("Cy is removed");
    for user in [&ana.user_id, &cy.user_id] {
        d.assert_push("participant_left", |p| p["user_id"] == user.as_str()).await;
    }
    let left: Vec<String> = locations_of(&snapshot(&app, &di.token, sid).await)
        .iter()
        .map(|l| l["user_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(left, vec![bo.user_id.clone()], "only Bo's location is left in the snapshot");
    if let Some(store) = &store {
        until_stored(store, sid, &[&bo.user_id], "deleted from Redis").await;
    }
    let restarted = store_snapshot(&app, &mut d, sid).await;
    let users: Vec<Value> = locations_of(&restarted).iter().map(|l| l["user_id"].clone()).collect();
    assert_eq!(users, vec![json!(bo.user_id)], "only Bo's location is left in the store: {restarted}");
}

#[actix_rt::test]
async fn an_ended_session_deletes_its_sealed_locations() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    a.location(&t, json!({ "sealed": sealed(1, USUAL) })).await.assert_ok("sealed");
    b.next_event("location_update").await;
    let store = redis_store(&app);
    if let Some(store) = &store {
        until_stored(store, sid, &[&ana.user_id], "stored").await;
    }

    app.end_session(sid, Some(&session.creator_token)).await.assert_no_content("end");
    assert_eq!(b.next_event("session_ended").await.payload, json!({"reason": "ended_by_creator"}));
    app.join(sid, &json!({"display_name": "Late"})).await.assert_status(410, "join after the end");
    // No snapshot to be had any more: the handshake itself is refused.
    assert_eq!(WsClient::connect(&app, &bo.token, Some("2.0.0")).await.err(), Some(403), "a socket after the end");
    if let Some(store) = &store {
        until_stored(store, sid, &[], "deleted from Redis at the end").await;
    }
}

// ---------------------------------------------------------------- rate limit, order

#[actix_rt::test]
async fn the_rate_limit_and_the_order_per_sender_are_unchanged() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let mut b1 = WsClient::v1(&app, &bo.token).await;
    b1.join(&t).await.assert_ok("V1 join");
    let mut bp = WsClient::plain(&app, &bo.token).await;
    bp.next_event("joined").await;

    // Eleven in one burst: the bucket's ten pass, in order; the eleventh is rate limited.
    let messages: Vec<String> = (0..11).map(|i| sealed(100 + i, USUAL)).collect();
    let refs = a.send_pushes(&t, "location_update", messages.iter().map(|s| json!({ "sealed": s })).collect()).await;
    for (i, r) in refs.iter().enumerate() {
        let reply = a.reply(&t, "location_update", r).await;
        if i < 10 {
            assert_eq!(reply.assert_ok(&format!("update {i}")), &json!({}));
        } else {
            reply.assert_refusal("rate_limited", "the eleventh");
        }
    }
    for (who, client) in [("V2", &mut b), ("V1", &mut b1), ("plain", &mut bp)] {
        for (i, s) in messages[..10].iter().enumerate() {
            assert_sealed_push(client, &ana.user_id, s, &format!("{who}, update {i} in order")).await;
        }
        client.refute_push("location_update", QUIET).await;
    }
    assert_eq!(app.metric("location_sharing_rate_limited_updates_total").await, 1.0);
    let snap = snapshot(&app, &bo.token, sid).await;
    assert_eq!(locations_of(&snap)[0]["sealed"], messages[9].as_str(), "the last accepted one is kept");
}

// ---------------------------------------------------------------- the destination

#[actix_rt::test]
async fn the_destination_of_an_e2e_session_is_sealed() {
    let app = spawn_app().await;
    let (session, people) = e2e_session(&app, &["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let creator = &session.creator_token;
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut bp = WsClient::plain(&app, &bo.token).await;
    bp.next_event("joined").await;

    let d1 = sealed(1, USUAL);
    app.put_destination(sid, Some(&ana.token), &json!({ "sealed": d1 })).await.assert_detail_error(403, "participant");
    let put = app.put_destination(sid, Some(creator), &json!({ "sealed": d1 })).await;
    put.assert_status(200, "PUT a sealed destination");
    assert_keys(&put.json, &["sealed", "set_at"], "PUT answer");
    assert_eq!(put.json["sealed"], d1.as_str());
    assert_rfc3339_z(&put.json["set_at"], "set_at");
    for client in [&mut a, &mut bp] {
        let ev = client.next_event("destination_set").await;
        assert_eq!(ev.payload, put.json, "destination_set carries the same object ({:?})", client.proto);
        assert!(ev.raw.contains(&format!("\"sealed\":\"{d1}\"")), "byte for byte: {}", ev.raw);
    }
    let shown = app.get_session(sid).await;
    shown.assert_status(200, "GET");
    assert_eq!(shown.json["destination"], put.json, "GET carries it");
    assert_eq!(shown.json["e2e"], json!(true));
    let snap = snapshot(&app, &bo.token, sid).await;
    assert_eq!(snap["destination"], put.json, "the join snapshot carries it");
    assert_eq!(snap["arrivals"], json!({}));

    // Replaced by another; a restarted actor reads it back from SQL.
    let d2 = sealed(2, 2048);
    let put2 = app.put_destination(sid, Some(creator), &json!({"sealed": d2, "note": "ignored"})).await;
    put2.assert_status(200, "PUT another");
    assert_keys(&put2.json, &["sealed", "set_at"], "second PUT");
    assert_eq!(put2.json["sealed"], d2.as_str());
    assert_eq!(a.next_event("destination_set").await.payload, put2.json);
    assert_eq!(bp.next_event("destination_set").await.payload, put2.json);
    assert_eq!(app.get_session(sid).await.json["destination"], put2.json);
    let restarted = store_snapshot(&app, &mut a, sid).await;
    assert_eq!(restarted["destination"], put2.json, "after a restart");
    // The restart closed the plain socket (it cannot rejoin): a new one.
    assert_eq!(bp.close_code().await, 1011);
    let mut bp = WsClient::plain(&app, &bo.token).await;
    assert_eq!(bp.next_event("joined").await.payload["destination"], put2.json, "plain snapshot after a restart");

    // Cleared.
    app.delete_destination(sid, Some(creator)).await.assert_no_content("DELETE destination");
    assert_eq!(a.next_event("destination_cleared").await.payload, json!({}));
    assert_eq!(bp.next_event("destination_cleared").await.payload, json!({}));
    assert_eq!(app.get_session(sid).await.json["destination"], Value::Null, "GET after DELETE");
    assert_eq!(snapshot(&app, &bo.token, sid).await["destination"], Value::Null, "snapshot after DELETE");
    app.delete_destination(sid, Some(creator)).await.assert_detail_error(404, "DELETE again");
    a.location(&t, json!({ "sealed": sealed(3, USUAL) })).await.assert_ok("positions go on");
}

#[actix_rt::test]
async fn a_destination_of_the_wrong_kind_is_refused_on_sealed() {
    let app = spawn_app().await;
    let (e2e, people) = e2e_session(&app, &["Ana"]).await;
    let mut a = WsClient::joined(&app, &people[0].token, &e2e.id).await;
    let d = sealed(1, USUAL);
    for body in [
        json!({"lat": 48.85, "lng": 2.35}),
        json!({"lat": 48.85, "lng": 2.35, "radius_m": 50, "label": "Café"}),
        json!({"sealed": d, "radius_m": 50}),
        json!({"sealed": d, "label": "Café"}),
        json!({"sealed": d, "lat": 48.85, "lng": 2.35}),
        json!({"sealed": "short"}),
        json!({ "sealed": sealed(2, 2049) }),
        json!({ "sealed": format!("{d}=") }),
        json!({ "sealed": format!("{}+/", &d[..30]) }),
        json!({"sealed": 7}),
        json!({"sealed": null}),
        json!({}),
    ] {
        let resp = app.put_destination(&e2e.id, Some(&e2e.creator_token), &body).await;
        assert_422_only_on(&resp, "sealed", &format!("e2e PUT {body}"));
    }
    a.refute_push("destination_set", QUIET).await;
    assert_eq!(app.get_session(&e2e.id).await.json["destination"], Value::Null, "nothing was set");

    let plain = app.new_session().await;
    for body in [json!({ "sealed": d }), json!({"sealed": d, "lat": 1.0, "lng": 2.0}), json!({"sealed": "x"})] {
        let resp = app.put_destination(&plain.id, Some(&plain.creator_token), &body).await;
        assert_422_only_on(&resp, "sealed", &format!("normal PUT {body}"));
        assert_eq!(resp.json["errors"]["sealed"], json!(["is only accepted in end-to-end encrypted sessions"]));
    }
    assert_eq!(app.get_session(&plain.id).await.json["destination"], Value::Null);

    // At creation, the same, named destination.sealed.
    for body in [
        json!({"e2e": true, "destination": {"lat": 1.0, "lng": 2.0}}),
        json!({"e2e": true, "destination": {"sealed": "short"}}),
        json!({"e2e": true, "destination": {}}),
        json!({"destination": { "sealed": d }}),
        json!({"e2e": false, "destination": { "sealed": d }}),
    ] {
        let resp = app.create_session(&body).await;
        assert_422_only_on(&resp, "destination.sealed", &format!("POST {body}"));
    }
}

#[actix_rt::test]
async fn a_session_created_with_a_sealed_destination_never_measures_anyone() {
    let app = spawn_app().await;
    let d = sealed(1, USUAL);
    let body = json!({"e2e": true, "destination": { "sealed": d }});
    let (session, people) = e2e_session_with(&app, body, &["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let dest = session.json["destination"].clone();
    assert_keys(&dest, &["sealed", "set_at"], "201 destination");
    assert_eq!(dest["sealed"], d.as_str());
    assert_rfc3339_z(&dest["set_at"], "set_at");
    assert_eq!(app.get_session(sid).await.json["destination"], dest, "GET");

    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::v2(&app, &bo.token).await;
    let snap = b.join(&t).await.assert_ok("join").clone();
    assert_eq!((&snap["destination"], &snap["arrivals"]), (&dest, &json!({})), "snapshot");
    let mut bp = WsClient::plain(&app, &bo.token).await;
    assert_eq!(bp.next_event("joined").await.payload["destination"], dest, "plain snapshot");

    // No distance, no ETA, no arrival: the three keys only, however often Ana reports.
    for i in 0..5 {
        let s = sealed(10 + i, USUAL);
        a.location(&t, json!({ "sealed": s })).await.assert_ok("sealed");
        assert_sealed_push(&mut b, &ana.user_id, &s, "V2").await;
        assert_sealed_push(&mut bp, &ana.user_id, &s, "plain").await;
    }
    // A new sealed destination changes nothing of that.
    let put = app.put_destination(sid, Some(&session.creator_token), &json!({ "sealed": sealed(2, 64) })).await;
    put.assert_status(200, "PUT");
    b.next_event("destination_set").await;
    let s = sealed(20, USUAL);
    b.location(&t, json!({ "sealed": s })).await.assert_ok("Bo's");
    assert_sealed_push(&mut a, &bo.user_id, &s, "Ana hears Bo").await;
    for client in [&mut a, &mut b, &mut bp] {
        client.refute_push("participant_arrived", QUIET).await;
        client.refute_push("participant_departed", Duration::ZERO).await;
    }
    assert_eq!(snapshot(&app, &bo.token, sid).await["arrivals"], json!({}));
    assert_eq!(app.metric("location_sharing_arrivals_total").await, 0.0);
}

// ---------------------------------------------------------------- replicas

/// An event as another replica would publish it, handed to this replica's registry.
fn from_another_replica(app: &TestApp, sid: &str, event: ClusterEvent) {
    let session: SessionId = sid.parse().unwrap_or_else(|e| panic!("{sid} is a session id: {e:?}"));
    app.registry.do_send(RemoteEvent { session, origin: Arc::from("another-replica"), event });
}

#[actix_rt::test]
async fn a_replica_relays_only_positions_of_the_sessions_kind() {
    let app = spawn_app().await;
    let (e2e, people) = e2e_session(&app, &["Ana", "Bo"]).await;
    let (normal, others) = app.session_with(&["Cy", "Di"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let (cy, di) = (&others[0], &others[1]);
    let mut b = WsClient::joined(&app, &bo.token, &e2e.id).await;
    let mut d = WsClient::joined(&app, &di.token, &normal.id).await;

    let clear = |user: &str| LocationView {
        user_id: user.to_owned(),
        lat: 48.8566,
        lng: 2.3522,
        accuracy: None,
        heading: None,
        speed: None,
        timestamp: "2026-12-01T10:00:00Z".into(),
        distance_m: None,
        eta_s: None,
    };
    let sealed_of = |user: &str, n: u64| {
        let s = Sealed::parse(&sealed(n, USUAL)).unwrap_or_else(|e| panic!("{e}"));
        let user = user.parse().unwrap_or_else(|e| panic!("{user}: {e:?}"));
        SealedView::new(user, s, Utc::now())
    };

    // Coordinates must never reach an e2e session's sockets, nor a sealed one a normal session's.
    from_another_replica(&app, &e2e.id, ClusterEvent::Location { view: clear(&ana.user_id) });
    from_another_replica(&app, &normal.id, ClusterEvent::SealedLocation { view: sealed_of(&cy.user_id, 1) });
    b.refute_push("location_update", QUIET).await;
    d.refute_push("location_update", Duration::ZERO).await;
    assert_eq!(locations_of(&snapshot(&app, &bo.token, &e2e.id).await), Vec::<Value>::new(), "e2e snapshot");
    assert_eq!(locations_of(&snapshot(&app, &di.token, &normal.id).await), Vec::<Value>::new(), "normal snapshot");

    // Each of its own kind is relayed as it came.
    let view = sealed_of(&ana.user_id, 2);
    let s = view.sealed.as_str().to_owned();
    from_another_replica(&app, &e2e.id, ClusterEvent::SealedLocation { view: view.clone() });
    let got = assert_sealed_push(&mut b, &ana.user_id, &s, "from another replica").await;
    assert_eq!(got["received_at"], view.received_at.as_str(), "the sender's replica's receive time");
    assert_eq!(locations_of(&snapshot(&app, &bo.token, &e2e.id).await), vec![got], "kept for snapshots");
    from_another_replica(&app, &normal.id, ClusterEvent::Location { view: clear(&cy.user_id) });
    let got = d.next_event("location_update").await;
    crate::ws_client::assert_location_view(&got.payload, &cy.user_id, "clear from another replica");
}

#[actix_rt::test]
async fn across_two_replicas_sealed_locations_travel_byte_for_byte() {
    let Some(_) = test_redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set (replicas need Redis)");
        return;
    };
    let one = spawn_app().await;
    let two = one.spawn_replica().await;
    let (session, people) = e2e_session(&one, &["Ana", "Bo", "Cy"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo, cy) = (&people[0], &people[1], &people[2]);
    assert_eq!(two.get_session(sid).await.json["e2e"], json!(true), "GET on replica two");

    let mut a = WsClient::joined(&one, &ana.token, sid).await;
    let mut b2 = WsClient::joined(&two, &bo.token, sid).await;
    let mut b1 = WsClient::v1(&two, &bo.token).await;
    b1.join(&t).await.assert_ok("V1 join on replica two");
    let mut bp = WsClient::plain(&two, &bo.token).await;
    bp.next_event("joined").await;

    // Ana on replica one, heard on replica two in every framing.
    let s = sealed(1, USUAL);
    a.location(&t, json!({ "sealed": s })).await.assert_ok("Ana's on one");
    let mut seen = Vec::new();
    for (who, client) in [("V2@2", &mut b2), ("V1@2", &mut b1), ("plain@2", &mut bp)] {
        seen.push(assert_sealed_push(client, &ana.user_id, &s, who).await);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    a.refute_push("location_update", QUIET).await;
    let ana_view = seen[0].clone();

    // Replica two's later joiner has it in its snapshot.
    assert_eq!(locations_of(&snapshot(&two, &cy.token, sid).await), vec![ana_view.clone()], "snapshot on two");

    // Back the other way, with the biggest message.
    let big = sealed(2, 2048);
    b2.location(&t, json!({ "sealed": big })).await.assert_ok("Bo's on two");
    let bo_view = assert_sealed_push(&mut a, &bo.user_id, &big, "Ana on one").await;
    assert_sealed_push(&mut b1, &bo.user_id, &big, "Bo's other socket on two").await;

    // A third replica, whose session actor starts now, reads both from Redis.
    let store = redis_store(&one).unwrap_or_else(|| panic!("Redis is configured"));
    until_stored(&store, sid, &[&ana.user_id, &bo.user_id], "both on Redis").await;
    let three = one.spawn_replica().await;
    let mut expected = vec![ana_view, bo_view];
    expected.sort_by_key(|l| l["user_id"].as_str().unwrap_or_default().to_owned());
    let deadline = Instant::now() + DEADLINE;
    let snap = loop {
        let snap = snapshot(&three, &cy.token, sid).await;
        if locations_of(&snap).len() == 2 || Instant::now() >= deadline {
            break snap;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(locations_of(&snap), expected, "a fresh replica's snapshot, from Redis");

    // Leaving on replica two deletes Bo's on every replica and in Redis.
    two.remove(sid, &bo.user_id, Some(&bo.token)).await.assert_no_content("Bo leaves");
    a.assert_push("participant_left", |p| p["user_id"] == bo.user_id.as_str()).await;
    until_stored(&store, sid, &[&ana.user_id], "Bo's deleted from Redis").await;
    for (name, app) in [("one", &one), ("two", &two), ("three", &three)] {
        let users: Vec<String> = locations_of(&snapshot(app, &cy.token, sid).await)
            .iter()
            .map(|l| l["user_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(users, vec![ana.user_id.clone()], "replica {name}: only Ana's is left");
    }
}

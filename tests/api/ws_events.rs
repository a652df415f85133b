//! What travels on `location:{session_id}` (SPEC §3): `location_update` in and out, its checks
//! and its rate limit, the membership events, `session_ended`, Presence, and how REST reflects
//! what sockets do.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_keys, assert_rfc3339_z, is_upper_hex_colour, spawn_app, spawn_app_with, TestApp};
use crate::ws_client::{
    assert_location_view, assert_presence_entry, loc, presence_keys, sorted, topic, WsClient, QUIET,
};

fn lats(msgs: &[Value]) -> Vec<f64> {
    msgs.iter().map(|p| p["lat"].as_f64().unwrap()).collect()
}

// ---------------------------------------------------------------- location_update

#[actix_rt::test]
async fn a_location_reaches_every_other_socket_with_every_field_but_never_its_sender() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    let mut a2 = WsClient::joined(&app, &ana.token, &session.id).await; // Ana's second device
    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;

    let fix = json!({"lat": 37.7749, "lng": -122.4194, "accuracy": 5.5, "heading": 359.5, "speed": 0.0,
                     "timestamp": "2024-05-01T12:00:00.250+02:00"});
    let reply = a.location(&t, fix).await;
    assert_eq!(reply.assert_ok("location"), &json!({}), "the ok reply is {{}}");
    let expected = json!({"user_id": ana.user_id, "lat": 37.7749, "lng": -122.4194, "accuracy": 5.5,
                          "heading": 359.5, "speed": 0.0, "timestamp": "2024-05-01T10:00:00.250Z"});
    for (who, client) in [("Bo", &mut b), ("Ana's other device", &mut a2)] {
        let got = client.next_event("location_update").await;
        assert_location_view(&got.payload, &ana.user_id, who);
        assert_eq!(got.payload, expected, "{who}: the client's values, its timestamp in UTC");
        assert_eq!((got.topic.as_str(), &got.join_ref, &got.msg_ref), (t.as_str(), &Value::Null, &Value::Null));
    }

    // Without optional fields: nulls, and the server's receive time.
    let before = Utc::now() - chrono::Duration::seconds(1);
    a.location(&t, loc(-33.9, 18.4)).await.assert_ok("bare location");
    let got = b.next_event("location_update").await;
    assert_location_view(&got.payload, &ana.user_id, "bare");
    assert_eq!(
        (&got.payload["accuracy"], &got.payload["heading"], &got.payload["speed"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let at = assert_rfc3339_z(&got.payload["timestamp"], "server timestamp");
    assert!(at >= before && at <= Utc::now() + chrono::Duration::seconds(1), "timestamp {at} is the receive time");

    a.refute_push("location_update", QUIET).await;
    assert_eq!(a.count("location_update"), 0, "never echoed to the sending socket");
}

#[actix_rt::test]
async fn a_wrapped_location_payload_is_accepted() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let wrapped = json!({"type": "location_update", "data": {"lat": 1.25, "lng": 2.5, "accuracy": 7.0}});
    assert_eq!(a.location(&t, wrapped).await.assert_ok("wrapped"), &json!({}));
    let got = b.next_event("location_update").await;
    assert_eq!((got.payload["lat"].as_f64(), got.payload["accuracy"].as_f64()), (Some(1.25), Some(7.0)));
    let bad = a.location(&t, json!({"type": "location_update", "data": {"lat": 100, "lng": 0}})).await;
    assert_keys(&bad.assert_error("invalid_location", "wrapped, invalid")["errors"], &["lat"], "wrapped errors");
}

#[actix_rt::test]
async fn invalid_locations_are_refused_with_field_errors_and_not_broadcast() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_UPDATES_PER_SECOND".into(), "100".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let future = (Utc::now() + chrono::Duration::seconds(120)).to_rfc3339();
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"lat": 91, "lng": 0}), &["lat"]),
        (json!({"lat": -90.0001, "lng": 0}), &["lat"]),
        (json!({"lat": 0, "lng": -181}), &["lng"]),
        (json!({"lat": 0, "lng": 180.5}), &["lng"]),
        (json!({"lng": 0}), &["lat"]),
        (json!({"lat": null, "lng": 0}), &["lat"]),
        (json!({"lat": 0}), &["lng"]),
        (json!({}), &["lat", "lng"]),
        (json!({"lat": "37.7", "lng": 0}), &["lat"]),
        (json!({"lat": true, "lng": [1]}), &["lat", "lng"]),
        (json!({"lat": 0, "lng": 0, "accuracy": -1}), &["accuracy"]),
        (json!({"lat": 0, "lng": 0, "accuracy": 100_001}), &["accuracy"]),
        (json!({"lat": 0, "lng": 0, "accuracy": "5"}), &["accuracy"]),
        (json!({"lat": 0, "lng": 0, "heading": 360}), &["heading"]),
        (json!({"lat": 0, "lng": 0, "heading": -0.5}), &["heading"]),
        (json!({"lat": 0, "lng": 0, "speed": -1}), &["speed"]),
        (json!({"lat": 0, "lng": 0, "timestamp": future}), &["timestamp"]),
        (json!({"lat": 0, "lng": 0, "timestamp": "yesterday"}), &["timestamp"]),
        (json!({"lat": 0, "lng": 0, "timestamp": "2024-05-01 10:00:00"}), &["timestamp"]),
        (json!({"lat": 0, "lng": 0, "timestamp": 1_714_557_600}), &["timestamp"]),
        (json!({"lat": 91, "lng": 0, "speed": -2, "heading": 400}), &["lat", "speed", "heading"]),
    ];
    for (payload, fields) in &cases {
        let reply = a.location(&t, payload.clone()).await;
        let response = reply.assert_error("invalid_location", &payload.to_string());
        assert_keys(response, &["reason", "errors"], &format!("response to {payload}"));
        assert_keys(&response["errors"], fields, &format!("errors for {payload}"));
        for field in *fields {
            let messages = response["errors"][field].as_array();
            assert!(
                messages.is_some_and(|m| !m.is_empty() && m.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))),
                "errors.{field} is a list of messages: {response}"
            );
        }
    }
    for payload in [json!(42), json!("lat=1"), json!([1, 2]), json!(true)] {
        let reply = a.location(&t, payload.clone()).await;
        let errors = &reply.assert_error("invalid_location", &format!("payload {payload}"))["errors"];
        assert!(errors.as_object().is_some_and(|e| !e.is_empty() && e.values().all(Value::is_array)), "{errors}");
    }
    b.refute_push("location_update", QUIET).await;

    // The edges of every range are accepted.
    let soon = (Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
    let edges = vec![
        json!({"lat": 90, "lng": 180}),
        json!({"lat": -90, "lng": -180}),
        json!({"lat": 0, "lng": 0, "accuracy": 0, "heading": 0, "speed": 0}),
        json!({"lat": 1, "lng": 0, "accuracy": 100_000, "heading": 359.999, "speed": 1000}),
        json!({"lat": 2, "lng": 0, "timestamp": soon}),
        json!({"lat": 3, "lng": 0, "accuracy": null, "heading": null, "speed": null, "timestamp": null, "extra": 1}),
    ];
    for payload in &edges {
        a.location(&t, payload.clone()).await.assert_ok(&payload.to_string());
    }
    let mut got = Vec::new();
    for _ in &edges {
        got.push(b.next_event("location_update").await.payload);
    }
    assert_eq!(lats(&got), vec![90.0, -90.0, 0.0, 1.0, 2.0, 3.0]);
    b.refute_push("location_update", QUIET).await;
}

#[actix_rt::test]
async fn a_location_with_an_infinite_number_gets_an_error_reply() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let join_ref = a.join_ref(&t).unwrap();
    a.send_raw(&format!(r#"["{join_ref}","77","{t}","location_update",{{"lat":1e400,"lng":0}}]"#)).await;
    let reply = a.reply(&t, "location_update", "77").await;
    assert_eq!(reply.status, "error", "{}", reply.msg.raw);
    b.refute_push("location_update", QUIET).await;
}

#[actix_rt::test]
async fn a_participants_updates_arrive_in_the_order_sent() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy", "Di"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let mut c = WsClient::v1(&app, &people[2].token).await;
    c.join(&t).await.assert_ok("V1 join");
    let mut d = WsClient::plain(&app, &people[3].token).await;
    d.next_event("joined").await;

    // Ten updates, the default bucket's size, sent back to back.
    let refs = a.send_pushes(&t, "location_update", (0..10).map(|i| loc(f64::from(i), 0.0)).collect()).await;
    for r in &refs {
        a.reply(&t, "location_update", r).await.assert_ok("under the limit");
    }
    let expected: Vec<f64> = (0..10).map(f64::from).collect();
    for (who, client) in [("V2", &mut b), ("V1", &mut c), ("plain", &mut d)] {
        let mut got = Vec::new();
        for _ in 0..10 {
            got.push(client.next_event("location_update").await.payload);
        }
        assert_eq!(lats(&got), expected, "{who} receiver sees them in order");
    }
}

#[actix_rt::test]
async fn the_rate_limit_is_a_token_bucket_per_participant() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_UPDATES_PER_SECOND".into(), "5".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;

    let refs = a.send_pushes(&t, "location_update", (0..12).map(|i| loc(f64::from(i), 0.0)).collect()).await;
    let mut ok = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let reply = a.reply(&t, "location_update", r).await;
        match reply.status.as_str() {
            "ok" => ok.push(i as f64),
            _ => assert_eq!(reply.response, json!({"reason": "rate_limited"}), "{}", reply.msg.raw),
        }
    }
    assert_eq!(ok, vec![0.0, 1.0, 2.0, 3.0, 4.0], "a burst of 12 gets exactly the bucket's 5");
    b.drain_for(QUIET).await;
    let seen: Vec<Value> =
        b.inbox().iter().filter(|m| m.event == "location_update").map(|m| m.payload.clone()).collect();
    assert_eq!(lats(&seen), ok, "only the accepted ones are broadcast");
    assert_eq!(app.metric("location_sharing_rate_limited_updates_total").await, 7.0);

    // Bo has a bucket of his own.
    b.location(&t, loc(50.0, 0.0)).await.assert_ok("another participant is not limited");

    // A second later the bucket is full again.
    actix_rt::time::sleep(Duration::from_millis(1_100)).await;
    let refs = a.send_pushes(&t, "location_update", (20..25).map(|i| loc(f64::from(i), 0.0)).collect()).await;
    for r in &refs {
        a.reply(&t, "location_update", r).await.assert_ok("after the refill");
    }

    // The bucket is the participant's, not the socket's: two devices share it.
    actix_rt::time::sleep(Duration::from_millis(1_100)).await;
    let mut a2 = WsClient::joined(&app, &people[0].token, &session.id).await;
    let first = a.send_pushes(&t, "location_update", (30..33).map(|i| loc(f64::from(i), 0.0)).collect()).await;
    let second = a2.send_pushes(&t, "location_update", (40..43).map(|i| loc(f64::from(i), 0.0)).collect()).await;
    let mut accepted = 0;
    for r in &first {
        accepted += usize::from(a.reply(&t, "location_update", r).await.status == "ok");
    }
    for r in &second {
        accepted += usize::from(a2.reply(&t, "location_update", r).await.status == "ok");
    }
    assert_eq!(accepted, 5, "six updates from two sockets of one participant share one bucket of 5");
}

// ---------------------------------------------------------------- membership

#[actix_rt::test]
async fn participant_joined_is_broadcast_on_a_rest_join() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;

    let bo = app.join(&session.id, &json!({"display_name": "  Bo  ", "avatar_color": "#1e90ff"})).await;
    bo.assert_status(201, "Bo joins");
    let got = a.next_event("participant_joined").await;
    assert_eq!(got.payload, json!({"user_id": bo.json["user_id"], "display_name": "Bo", "avatar_color": "#1E90FF"}));

    let cy = app.join_as(&session.id, "Cy").await;
    let got = a.next_event("participant_joined").await;
    assert_keys(&got.payload, &["user_id", "display_name", "avatar_color"], "participant_joined");
    assert_eq!(got.payload["user_id"], cy.user_id.as_str());
    assert_eq!(got.payload["display_name"], "Cy");
    let colour = got.payload["avatar_color"].as_str().unwrap();
    assert!(is_upper_hex_colour(colour), "a palette colour: {colour}");
    let listed = app.participants(&session.id).await;
    let cy_listed =
        listed.json["participants"].as_array().unwrap().iter().find(|p| p["user_id"] == cy.user_id.as_str());
    assert_eq!(cy_listed.unwrap()["avatar_color"], colour, "the colour REST lists");
    // A REST join is not a socket: no presence change.
    a.refute_push("presence_diff", QUIET).await;
}

async fn assert_closed_after_own_participant_left(client: &mut WsClient, user_id: &str, reason: &str, who: &str) {
    let left = client.next_event("participant_left").await;
    assert_eq!(left.payload, json!({"user_id": user_id, "reason": reason}), "{who}");
    if client.proto != crate::ws_client::Proto::Plain {
        let close = client.next_event("phx_close").await;
        assert!(close.seq > left.seq, "{who}: phx_close after participant_left");
    }
    assert_eq!(client.close_code().await, 1000, "{who}: closed with 1000");
}

#[actix_rt::test]
async fn a_participant_who_leaves_is_announced_and_its_sockets_closed() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;
    a.next_event("presence_diff").await;

    b.location(&topic(&session.id), loc(5.0, 5.0)).await.assert_ok("Bo's last position");
    a.next_event("location_update").await;
    app.remove(&session.id, &bo.user_id, Some(&bo.token)).await.assert_no_content("Bo leaves");
    let left = a.next_event("participant_left").await;
    assert_eq!(left.payload, json!({"user_id": bo.user_id, "reason": "left"}));
    let diff = a.next_event("presence_diff").await;
    assert_eq!(presence_keys(&diff.payload["leaves"]), vec![bo.user_id.clone()]);
    assert_closed_after_own_participant_left(&mut b, &bo.user_id, "left", "Bo's socket").await;
    assert_eq!(app.participant_ids(&session.id).await, vec![ana.user_id.clone()]);
    a.heartbeat().await.assert_ok("Ana's socket is untouched");
    // Bo's position went with him.
    let snapshot = a.join(&topic(&session.id)).await.assert_ok("Ana rejoins").clone();
    assert_eq!(snapshot["locations"], json!([]), "{snapshot}");
    let listed: Vec<&str> =
        snapshot["participants"].as_array().unwrap().iter().map(|p| p["user_id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![ana.user_id.as_str()]);
}

#[actix_rt::test]
async fn a_removed_participant_is_announced_and_every_socket_of_it_closed() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;
    let mut b_v1 = WsClient::v1(&app, &bo.token).await;
    b_v1.join(&t).await.assert_ok("Bo's V1 socket");
    let mut b_plain = WsClient::plain(&app, &bo.token).await;
    b_plain.next_event("joined").await;

    app.remove(&session.id, &bo.user_id, Some(&session.creator_token)).await.assert_no_content("creator removes Bo");
    let left = a.next_event("participant_left").await;
    assert_eq!(left.payload, json!({"user_id": bo.user_id, "reason": "removed"}));
    for (who, client) in [("V2", &mut b), ("V1", &mut b_v1), ("plain", &mut b_plain)] {
        assert_closed_after_own_participant_left(client, &bo.user_id, "removed", who).await;
    }
    a.assert_push("presence_diff", |p| p["leaves"].get(&bo.user_id).is_some()).await;
    a.location(&t, loc(1.0, 1.0)).await.assert_ok("the session goes on");
}

#[actix_rt::test]
async fn session_ended_by_the_creator_reaches_every_socket_then_phx_close() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::v1(&app, &people[1].token).await;
    b.join(&t).await.assert_ok("V1 join");
    let mut c = WsClient::plain(&app, &people[2].token).await;
    c.next_event("joined").await;

    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");
    for (who, client) in [("V2", &mut a), ("V1", &mut b)] {
        let ended = client.next_event("session_ended").await;
        assert_eq!(ended.payload, json!({"reason": "ended_by_creator"}), "{who}");
        let close = client.next_event("phx_close").await;
        assert!(close.seq > ended.seq, "{who}: phx_close after session_ended");
        let join_ref = json!(client.join_ref(&t).unwrap());
        assert_eq!(
            (&close.join_ref, &close.msg_ref, close.topic.as_str()),
            (&join_ref, &join_ref, t.as_str()),
            "{who}"
        );
        // Phoenix sockets stay open (no reconnect loop); the channel is gone.
        client.heartbeat().await.assert_ok(who);
        let push = client.location(&t, loc(1.0, 1.0)).await;
        assert_eq!(push.status, "error", "{who}: no channel after the end: {}", push.msg.raw);
    }
    let ended = c.next_event("session_ended").await;
    assert_eq!(ended.payload, json!({"reason": "ended_by_creator"}));
    assert_eq!(c.close_code().await, 1000, "a plain socket is closed");
    assert_eq!(app.get_session(&session.id).await.json["is_active"], false);
}

// ---------------------------------------------------------------- presence

#[actix_rt::test]
async fn presence_follows_a_participants_first_and_last_socket() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut a = WsClient::v2(&app, &ana.token).await;
    a.join(&t).await.assert_ok("Ana joins");
    let state = a.next_event("presence_state").await;
    assert_eq!(presence_keys(&state.payload), vec![ana.user_id.clone()]);
    assert_presence_entry(&state.payload[&ana.user_id], "Ana", "Ana alone");

    // Bo's first socket: a diff with him joining.
    let mut b1 = WsClient::v2(&app, &bo.token).await;
    b1.join(&t).await.assert_ok("Bo's first socket");
    let diff = a.next_event("presence_diff").await;
    assert_keys(&diff.payload, &["joins", "leaves"], "presence_diff");
    assert_eq!(presence_keys(&diff.payload["joins"]), vec![bo.user_id.clone()]);
    assert_eq!(diff.payload["leaves"], json!({}));
    assert_presence_entry(&diff.payload["joins"][&bo.user_id], "Bo", "Bo joins");
    let bo_meta = diff.payload["joins"][&bo.user_id]["metas"][0].clone();
    let state = b1.next_event("presence_state").await;
    assert_eq!(presence_keys(&state.payload), sorted(&[&ana.user_id, &bo.user_id]));
    b1.refute_push("presence_diff", Duration::ZERO).await;

    // His second socket: nothing new to tell.
    let mut b2 = WsClient::v2(&app, &bo.token).await;
    b2.join(&t).await.assert_ok("Bo's second socket");
    let state = b2.next_event("presence_state").await;
    assert_eq!(presence_keys(&state.payload), sorted(&[&ana.user_id, &bo.user_id]));
    assert_eq!(state.payload[&bo.user_id]["metas"][0], bo_meta, "one meta per participant");
    a.refute_push("presence_diff", QUIET).await;

    // One socket goes: he is still online.
    b2.close().await;
    drop(b2);
    a.refute_push("presence_diff", QUIET).await;

    // The last one goes: a diff with him leaving.
    b1.close().await;
    drop(b1);
    let diff = a.next_event("presence_diff").await;
    assert_eq!(diff.payload["joins"], json!({}));
    assert_eq!(presence_keys(&diff.payload["leaves"]), vec![bo.user_id.clone()]);
    assert_eq!(diff.payload["leaves"][&bo.user_id]["metas"][0], bo_meta, "the meta that joined leaves");
    // He is still a member.
    assert_eq!(app.participant_ids(&session.id).await.len(), 2);
}

// ---------------------------------------------------------------- snapshots and REST

#[actix_rt::test]
async fn snapshot_locations_expire_with_their_ttl() {
    let app = spawn_app_with(|vars| {
        vars.insert("LOCATION_TTL_SECONDS".into(), "1".into());
        vars.insert("IDLE_UPDATE_INTERVAL_MS".into(), "900".into());
        vars.insert("FAST_UPDATE_INTERVAL_MS".into(), "500".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    b.location(&t, loc(12.0, 34.0)).await.assert_ok("Bo's location");

    let mut a = WsClient::v2(&app, &people[0].token).await;
    let fresh = a.join(&t).await.assert_ok("join right after").clone();
    let locations = fresh["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 1, "{fresh}");
    assert_eq!(locations[0]["user_id"], people[1].user_id.as_str());

    actix_rt::time::sleep(Duration::from_millis(1_500)).await;
    let stale = a.join(&t).await.assert_ok("join 1.5 s later").clone();
    assert_eq!(stale["locations"], json!([]), "the location outlived its TTL: {stale}");
    assert_eq!(stale["participants"].as_array().map(Vec::len), Some(2));
}

async fn last_seen(app: &TestApp, sid: &str, uid: &str) -> (DateTime<Utc>, bool) {
    let list = app.participants(sid).await;
    list.assert_status(200, "participants");
    let p = list.json["participants"].as_array().unwrap().iter().find(|p| p["user_id"] == uid).cloned();
    let p = p.unwrap_or_else(|| panic!("{uid} is not listed: {}", list.json));
    (assert_rfc3339_z(&p["last_seen"], "last_seen"), p["is_active"].as_bool().unwrap())
}

/// Polls REST until `uid`'s `last_seen` is at least `at` (to the second); false at the deadline.
async fn last_seen_reaches(app: &TestApp, sid: &str, uid: &str, at: DateTime<Utc>, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let at = at.timestamp();
    while Instant::now() < deadline {
        if last_seen(app, sid, uid).await.0.timestamp() >= at {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[actix_rt::test]
async fn rest_last_seen_follows_socket_frames() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let ana = &people[0];
    let (joined_seen, _) = last_seen(&app, &session.id, &ana.user_id).await;
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;

    actix_rt::time::sleep(Duration::from_millis(1_200)).await;
    let sent = Utc::now();
    a.heartbeat().await.assert_ok("heartbeat");
    assert!(
        last_seen_reaches(&app, &session.id, &ana.user_id, sent, Duration::from_millis(2_500)).await,
        "a heartbeat moves last_seen forward (joined at {joined_seen}, heartbeat at {sent})"
    );

    // A ping control frame counts too.
    actix_rt::time::sleep(Duration::from_millis(1_100)).await;
    let sent = Utc::now();
    a.send_frame(awc::ws::Message::Ping(actix_web::web::Bytes::from_static(b"hi"))).await;
    assert!(
        last_seen_reaches(&app, &session.id, &ana.user_id, sent, Duration::from_millis(2_500)).await,
        "a ping control frame moves last_seen forward (sent at {sent})"
    );
    a.drain_for(Duration::from_millis(50)).await;
    assert_eq!(a.pongs(), 1, "the ping was answered with a pong");
}

#[actix_rt::test]
async fn frames_of_a_socket_that_has_not_joined_count_as_seen() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let ana = &people[0];
    // Bo keeps the session's actor alive; Ana's socket is open but joins nothing.
    let _b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let mut a = WsClient::v2(&app, &ana.token).await;
    actix_rt::time::sleep(Duration::from_millis(1_200)).await;
    let sent = Utc::now();
    a.heartbeat().await.assert_ok("heartbeat");
    assert!(
        last_seen_reaches(&app, &session.id, &ana.user_id, sent, Duration::from_millis(2_500)).await,
        "a heartbeat of an unjoined socket moves last_seen forward"
    );
}

#[actix_rt::test]
async fn is_active_turns_false_when_idle_and_true_again_after_a_heartbeat() {
    let app = spawn_app_with(|vars| {
        vars.insert("PARTICIPANT_IDLE_SECONDS".into(), "1".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let ana = &people[0];
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    // Bo keeps the session itself busy.
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;

    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        b.heartbeat().await;
        if !last_seen(&app, &session.id, &ana.user_id).await.1 {
            break;
        }
        assert!(Instant::now() < deadline, "Ana never turned inactive");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        a.heartbeat().await.assert_ok("heartbeat");
        if last_seen(&app, &session.id, &ana.user_id).await.1 {
            break;
        }
        assert!(Instant::now() < deadline, "a heartbeat did not make Ana active again");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get_session(&session.id).await.json["is_active"], true);
}

// ---------------------------------------------------------------- replicas

#[actix_rt::test]
async fn sockets_on_two_replicas_share_broadcasts_and_presence() {
    let Some(_) = crate::helpers::test_redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set (replicas need Redis)");
        return;
    };
    let one = spawn_app().await;
    let two = one.spawn_replica().await;
    let (session, people) = one.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut a = WsClient::joined(&one, &ana.token, &session.id).await;
    let mut b = WsClient::joined(&two, &bo.token, &session.id).await;

    // Presence across replicas: each sees the other online.
    a.assert_push("presence_diff", |p| p["joins"].get(&bo.user_id).is_some()).await;
    let b_knows_ana = b.inbox().iter().any(|m| m.event == "presence_state" && m.payload.get(&ana.user_id).is_some());
    if !b_knows_ana {
        b.assert_push("presence_diff", |p| p["joins"].get(&ana.user_id).is_some()).await;
    }

    // Locations both ways, in order.
    let refs = a.send_pushes(&t, "location_update", (0..10).map(|i| loc(f64::from(i), 1.0)).collect()).await;
    for r in &refs {
        a.reply(&t, "location_update", r).await.assert_ok("replica one");
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        let m = b.next_event("location_update").await;
        assert_location_view(&m.payload, &ana.user_id, "across replicas");
        got.push(m.payload);
    }
    assert_eq!(lats(&got), (0..10).map(f64::from).collect::<Vec<_>>());
    b.location(&t, loc(-5.0, -5.0)).await.assert_ok("replica two");
    assert_eq!(a.next_event("location_update").await.payload["user_id"], bo.user_id.as_str());
    a.refute_push("location_update", QUIET).await;

    // REST on one replica reaches sockets on the other.
    let cy = two.join_as(&session.id, "Cy").await;
    a.assert_push("participant_joined", |p| p["user_id"] == cy.user_id.as_str()).await;
    b.assert_push("participant_joined", |p| p["user_id"] == cy.user_id.as_str()).await;
    drop(b);
    a.assert_push("presence_diff", |p| p["leaves"].get(&bo.user_id).is_some()).await;
    let mut b = WsClient::joined(&two, &bo.token, &session.id).await;
    one.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end on replica one");
    for client in [&mut a, &mut b] {
        assert_eq!(client.next_event("session_ended").await.payload, json!({"reason": "ended_by_creator"}));
        client.next_event("phx_close").await;
    }
}

#[actix_rt::test]
async fn events_a_replica_cannot_read_are_counted_never_misread() {
    let Some(redis_url) = crate::helpers::test_redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set (the cluster bus needs Redis)");
        return;
    };
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let ana = &people[0];
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    // What a newer replica might publish: a kind this version does not know, and a known kind
    // with a reason it does not know (a fallback would read that as "removed" and kick Ana).
    let channel = format!("ls:bus:{{{}}}", session.id);
    let payloads = [
        format!(
            r#"newer-replica
{{"t":"teleported","user_id":"{}"}}"#,
            ana.user_id
        ),
        format!(
            r#"newer-replica
{{"t":"left","user_id":"{}","reason":"kicked"}}"#,
            ana.user_id
        ),
    ];
    let client = deadpool_redis::redis::Client::open(redis_url.as_str()).expect("a Redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis answers");
    for payload in &payloads {
        let receivers: i64 = deadpool_redis::redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .expect("PUBLISH");
        assert!(receivers >= 1, "the replica is subscribed to its session's channel");
    }
    a.refute_push("participant_left", QUIET).await;
    let t = topic(&session.id);
    a.location(&t, loc(1.0, 2.0)).await.assert_ok("Ana is still in the session");
    let refused = |reason: &str| format!("location_sharing_pubsub_refused_total{{reason=\"{reason}\"}}");
    assert_eq!(app.metric(&refused("unknown_event")).await, 1.0);
    assert_eq!(app.metric(&refused("unreadable")).await, 1.0);
}

//! The WebSocket handshake and the Phoenix Channels protocol (SPEC §3): who may connect, the three
//! framings, heartbeats, joins and their refusals, `ping`, unknown events, `phx_leave`, and a
//! second join of the same topic.

use chrono::Utc;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::helpers::{assert_keys, assert_rfc3339_z, decode_jwt, sign, spawn_app, spawn_app_with, unsigned, TestApp};
use crate::ws_client::{
    assert_location_view, assert_presence_entry, loc, presence_keys, sorted, topic, Handshake, WsClient, QUIET,
};

fn v2(token: Option<&str>) -> Handshake {
    Handshake { token: token.map(str::to_owned), vsn: Some("2.0.0".into()), ..Handshake::default() }
}

async fn status_of(app: &TestApp, handshake: &Handshake) -> u16 {
    match WsClient::connect_with(app, handshake).await {
        Ok(_) => 101,
        Err(status) => status,
    }
}

// ---------------------------------------------------------------- handshake

#[actix_rt::test]
async fn the_handshake_refuses_missing_and_invalid_tokens_with_403() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let ana = &people[0];
    let (_, claims) = decode_jwt(&ana.token);
    let parts: Vec<&str> = ana.token.split('.').collect();
    let mut wrong_signature = parts[2].to_owned();
    let last = if wrong_signature.ends_with('A') { "B" } else { "A" };
    wrong_signature.replace_range(wrong_signature.len() - 1.., last);

    let refused = [
        ("no token", None),
        ("empty token", Some(String::new())),
        ("garbage", Some("not-a-token".to_owned())),
        ("signature stripped", Some(format!("{}.{}.", parts[0], parts[1]))),
        ("two parts", Some(format!("{}.{}", parts[0], parts[1]))),
        ("wrong signature", Some(format!("{}.{}.{wrong_signature}", parts[0], parts[1]))),
        ("alg none", Some(unsigned(&claims))),
        ("another secret", Some(sign(Algorithm::HS256, "another-secret-another-secret-0123456789", &claims))),
        ("creator token", Some(session.creator_token.clone())),
    ];
    for (what, token) in &refused {
        for vsn in [Some("2.0.0"), Some("1.0.0"), None] {
            let handshake = Handshake { token: token.clone(), vsn: vsn.map(str::to_owned), ..Handshake::default() };
            assert_eq!(
                status_of(&app, &handshake).await,
                403,
                "{what} (vsn {vsn:?}) must be refused before the upgrade"
            );
        }
    }
    // The participant's own token opens a socket, in every framing.
    for vsn in [Some("2.0.0"), Some("1.0.0"), None] {
        let handshake =
            Handshake { token: Some(ana.token.clone()), vsn: vsn.map(str::to_owned), ..Handshake::default() };
        assert_eq!(status_of(&app, &handshake).await, 101, "Ana's token with vsn {vsn:?}");
    }
}

#[actix_rt::test]
async fn the_handshake_refuses_participants_who_left_or_were_removed() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let (ana, bo, cy) = (&people[0], &people[1], &people[2]);
    app.remove(&session.id, &ana.user_id, Some(&ana.token)).await.assert_no_content("Ana leaves");
    app.remove(&session.id, &bo.user_id, Some(&session.creator_token)).await.assert_no_content("Bo is removed");
    assert_eq!(status_of(&app, &v2(Some(&ana.token))).await, 403, "a participant who left");
    assert_eq!(status_of(&app, &v2(Some(&bo.token))).await, 403, "a removed participant");
    assert_eq!(status_of(&app, &v2(Some(&cy.token))).await, 101, "Cy is still in");
}

#[actix_rt::test]
async fn the_handshake_refuses_tokens_of_an_ended_session() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");
    for vsn in [Some("2.0.0"), Some("1.0.0"), None] {
        let handshake =
            Handshake { token: Some(people[0].token.clone()), vsn: vsn.map(str::to_owned), ..Handshake::default() };
        assert_eq!(status_of(&app, &handshake).await, 403, "a token of an ended session, vsn {vsn:?}");
    }
}

#[actix_rt::test]
async fn the_handshake_checks_the_origin() {
    let app = spawn_app_with(|vars| {
        vars.insert("CORS_ALLOWED_ORIGINS".into(), "https://app.example.com,https://other.example.com".into());
    })
    .await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let with_origin = |origin: Option<&str>| Handshake {
        token: Some(people[0].token.clone()),
        vsn: Some("2.0.0".into()),
        origin: origin.map(str::to_owned),
        ..Handshake::default()
    };
    for origin in ["https://evil.example.com", "null", "https://app.example.com.evil.net", "http://app.example.com"] {
        assert_eq!(status_of(&app, &with_origin(Some(origin))).await, 403, "Origin {origin}");
    }
    assert_eq!(status_of(&app, &with_origin(Some("https://app.example.com"))).await, 101, "a listed origin");
    assert_eq!(status_of(&app, &with_origin(Some("https://other.example.com"))).await, 101, "another listed origin");
    assert_eq!(status_of(&app, &with_origin(None)).await, 101, "no Origin, as native apps send");

    // With the default `*`, any origin but `null`.
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let with_origin = |origin: &str| Handshake {
        token: Some(people[0].token.clone()),
        vsn: Some("2.0.0".into()),
        origin: Some(origin.to_owned()),
        ..Handshake::default()
    };
    assert_eq!(status_of(&app, &with_origin("https://anywhere.example")).await, 101, "`*` allows any origin");
    assert_eq!(status_of(&app, &with_origin("null")).await, 403, "never the null origin");
}

#[actix_rt::test]
async fn the_upgrade_carries_a_request_id_and_offers_no_compression() {
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let handshake = Handshake {
        token: Some(people[0].token.clone()),
        vsn: Some("2.0.0".into()),
        headers: vec![
            ("sec-websocket-extensions".into(), "permessage-deflate; client_max_window_bits".into()),
            ("x-request-id".into(), "ws-handshake-1".into()),
        ],
        ..Handshake::default()
    };
    let mut a = WsClient::connect_with(&app, &handshake).await.unwrap_or_else(|s| panic!("refused with {s}"));
    let headers = &a.handshake_headers;
    assert!(headers.get("sec-websocket-extensions").is_none(), "permessage-deflate is not offered: {headers:?}");
    assert_eq!(headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("ws-handshake-1"), "{headers:?}");
    a.heartbeat().await.assert_ok("an uncompressed socket works");
}

#[actix_rt::test]
async fn an_unknown_vsn_is_400() {
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana"]).await;
    for vsn in ["3.0.0", "banana"] {
        let handshake =
            Handshake { token: Some(people[0].token.clone()), vsn: Some(vsn.into()), ..Handshake::default() };
        assert_eq!(status_of(&app, &handshake).await, 400, "vsn={vsn}");
    }
}

// ---------------------------------------------------------------- framings

#[actix_rt::test]
async fn heartbeats_are_answered_ok_in_both_serializers() {
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let mut v2 = WsClient::v2(&app, &people[0].token).await;
    let reply = v2.heartbeat().await;
    assert_eq!(reply.assert_ok("V2 heartbeat"), &json!({}));
    let raw: Value = serde_json::from_str(&reply.msg.raw).unwrap();
    assert_eq!(raw, json!([null, reply.msg.msg_ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}]));

    let mut v1 = WsClient::v1(&app, &people[0].token).await;
    let reply = v1.heartbeat().await;
    assert_eq!(reply.assert_ok("V1 heartbeat"), &json!({}));
    let raw: Value = serde_json::from_str(&reply.msg.raw).unwrap();
    assert_eq!(
        raw,
        json!({"join_ref": null, "ref": reply.msg.msg_ref, "topic": "phoenix", "event": "phx_reply",
               "payload": {"status": "ok", "response": {}}})
    );
    // Heartbeats keep working, joined or not.
    v2.join("location:not-a-session").await.assert_refusal("unauthorized", "a refused join");
    v2.heartbeat().await.assert_ok("heartbeat after a refused join");
}

#[actix_rt::test]
async fn v1_object_frames_work_end_to_end() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);

    let mut a = WsClient::v1(&app, &ana.token).await;
    let joined = a.join(&t).await;
    let snapshot = joined.assert_ok("V1 join");
    assert_keys(snapshot, &["participants", "locations", "destination", "arrivals"], "V1 snapshot");
    let raw: Value = serde_json::from_str(&joined.msg.raw).unwrap();
    assert_eq!(raw["join_ref"], raw["ref"], "a join reply carries the join's ref as join_ref: {raw}");
    assert_eq!(raw["topic"], t.as_str());
    let state = a.next_msg().await;
    assert_eq!(state.event, "presence_state", "presence_state right after the join reply");
    assert_eq!(presence_keys(&state.payload), vec![ana.user_id.clone()]);

    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;
    let reply = a.location(&t, json!({"lat": 1.5, "lng": 2.5, "accuracy": 3.0})).await;
    assert_eq!(reply.assert_ok("V1 location"), &json!({}));
    let seen = b.next_event("location_update").await;
    assert_location_view(&seen.payload, &ana.user_id, "V1 → V2");
    assert_eq!((seen.payload["lat"].as_f64(), seen.payload["lng"].as_f64()), (Some(1.5), Some(2.5)));

    b.location(&t, loc(-1.0, -2.0)).await.assert_ok("V2 location");
    let got = a.next_event("location_update").await;
    assert_location_view(&got.payload, &bo.user_id, "V2 → V1");
    let raw: Value = serde_json::from_str(&got.raw).unwrap();
    assert_keys(&raw, &["join_ref", "ref", "topic", "event", "payload"], "V1 broadcast");
    assert_eq!((&raw["join_ref"], &raw["ref"], &raw["topic"]), (&Value::Null, &Value::Null, &json!(t)));
}

#[actix_rt::test]
async fn the_plain_envelope_joins_at_once_and_replies_with_to() {
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana", "Bo"]).await;
    let ana = &people[0];
    let mut a = WsClient::plain(&app, &ana.token).await;

    let joined = a.next_msg().await;
    assert_eq!(joined.event, "joined", "the first frame is the snapshot: {}", joined.raw);
    assert_keys(&joined.payload, &["participants", "locations", "destination", "arrivals"], "plain snapshot");
    let listed: Vec<&str> =
        joined.payload["participants"].as_array().unwrap().iter().map(|p| p["user_id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![ana.user_id.as_str(), people[1].user_id.as_str()]);
    let state = a.next_msg().await;
    assert_eq!(state.event, "presence_state", "then presence_state: {}", state.raw);
    assert_presence_entry(&state.payload[&ana.user_id], "Ana", "plain presence_state");

    let ping = a.push("", "ping", json!({})).await;
    let raw: Value = serde_json::from_str(&ping.msg.raw).unwrap();
    assert_keys(&raw, &["type", "data"], "plain reply");
    assert_eq!(raw["type"], "reply");
    assert_eq!(raw["data"]["to"], "ping");
    assert_eq!(raw["data"]["status"], "ok");
    assert_keys(&raw["data"]["response"], &["type", "server_time"], "pong");
    assert_eq!(raw["data"]["response"]["type"], "pong");
    assert_rfc3339_z(&raw["data"]["response"]["server_time"], "server_time");

    assert_eq!(a.heartbeat().await.assert_ok("plain heartbeat"), &json!({}));
    let ok = a.location("", json!({"type": "location_update", "data": {"lat": 1, "lng": 2}})).await;
    assert_eq!(ok.assert_ok("plain wrapped location"), &json!({}));
    assert_eq!(ok.msg.payload["to"], "location_update");
    let bad = a.location("", json!({"lat": 91, "lng": 0})).await;
    let errors = &bad.assert_error("invalid_location", "plain invalid location")["errors"];
    assert_keys(errors, &["lat"], "plain invalid location errors");
    let unknown = a.push("", "dance", json!({})).await;
    unknown.assert_refusal("unknown_event", "plain unknown event");
    assert_eq!(unknown.msg.payload["to"], "dance");
}

#[actix_rt::test]
async fn plain_and_phoenix_sockets_exchange_locations() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let (ana, bo, cy) = (&people[0], &people[1], &people[2]);
    let t = topic(&session.id);
    let mut a = WsClient::plain(&app, &ana.token).await;
    a.next_event("joined").await;
    let mut b = WsClient::plain(&app, &bo.token).await;
    b.next_event("joined").await;
    let mut c = WsClient::joined(&app, &cy.token, &session.id).await;

    a.location("", json!({"lat": 10.0, "lng": 20.0, "speed": 1.5})).await.assert_ok("plain sends");
    for (who, client) in [("plain Bo", &mut b), ("V2 Cy", &mut c)] {
        let got = client.next_event("location_update").await;
        assert_location_view(&got.payload, &ana.user_id, who);
        assert_eq!(got.payload["speed"], 1.5, "{who}");
    }
    let raw: Value =
        serde_json::from_str(&b.inbox().iter().rev().find(|m| m.event == "location_update").unwrap().raw).unwrap();
    assert_keys(&raw, &["type", "data"], "plain broadcast");

    c.location(&t, loc(-10.0, -20.0)).await.assert_ok("V2 sends");
    for (who, client) in [("plain Ana", &mut a), ("plain Bo", &mut b)] {
        let got = client.next_event("location_update").await;
        assert_location_view(&got.payload, &cy.user_id, who);
        assert_eq!(got.payload["lat"], -10.0, "{who}");
    }
    a.refute_push_where("location_update", QUIET, |p| p["user_id"] == ana.user_id.as_str()).await;
}

// ---------------------------------------------------------------- phx_join

#[actix_rt::test]
async fn join_replies_with_a_snapshot_then_presence_state() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;
    let fix = json!({"lat": 48.85, "lng": 2.35, "accuracy": 12.5, "heading": 90.0, "speed": 3.0,
                     "timestamp": "2024-05-01T10:00:00Z"});
    b.location(&t, fix).await.assert_ok("Bo's location");

    let mut a = WsClient::v2(&app, &ana.token).await;
    let reply = a.join(&t).await;
    let snapshot = reply.assert_ok("join").clone();
    assert_eq!(reply.msg.topic, t);
    assert_keys(&snapshot, &["participants", "locations", "destination", "arrivals"], "snapshot");

    // The participants exactly as REST lists them (the same keys, order and values but times).
    let rest = app.participants(&session.id).await;
    let rest = rest.json["participants"].as_array().unwrap().clone();
    let listed = snapshot["participants"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "every participant, connected or not: {snapshot}");
    for (got, want) in listed.iter().zip(&rest) {
        assert_keys(
            got,
            &["user_id", "display_name", "avatar_color", "last_seen", "is_active"],
            "snapshot participant",
        );
        for key in ["user_id", "display_name", "avatar_color", "is_active"] {
            assert_eq!(got[key], want[key], "{key} of {got} vs REST {want}");
        }
        assert_rfc3339_z(&got["last_seen"], "snapshot last_seen");
    }

    let locations = snapshot["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 1, "Bo's fresh location only: {snapshot}");
    assert_location_view(&locations[0], &bo.user_id, "snapshot location");
    assert_eq!(
        locations[0],
        json!({"user_id": bo.user_id, "lat": 48.85, "lng": 2.35, "accuracy": 12.5, "heading": 90.0, "speed": 3.0,
               "timestamp": "2024-05-01T10:00:00Z"})
    );

    let state = a.next_msg().await;
    assert_eq!(state.event, "presence_state", "right after the join reply: {}", state.raw);
    assert_eq!(state.topic, t);
    assert_eq!(state.join_ref, Value::Null);
    assert_eq!(presence_keys(&state.payload), sorted(&[&ana.user_id, &bo.user_id]), "who is online");
    assert_presence_entry(&state.payload[&ana.user_id], "Ana", "Ana's presence");
    assert_presence_entry(&state.payload[&bo.user_id], "Bo", "Bo's presence");
}

#[actix_rt::test]
async fn pushes_before_a_join_are_refused() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    let mut a = WsClient::v2(&app, &people[0].token).await;
    for event in ["location_update", "ping", "phx_leave"] {
        let reply = a.push(&t, event, loc(1.0, 1.0)).await;
        assert_eq!(reply.status, "error", "{event} before a join: {}", reply.msg.raw);
    }
    b.refute_push("location_update", QUIET).await;
}

#[actix_rt::test]
async fn join_of_another_sessions_topic_is_unauthorized() {
    let app = spawn_app().await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let (other, others) = app.session_with(&["Zed"]).await;
    let mut a = WsClient::v2(&app, &people[0].token).await;
    a.join(&topic(&other.id)).await.assert_refusal("unauthorized", "another session's topic");
    a.join("location:not-a-session").await.assert_refusal("unauthorized", "a made-up session topic");
    // Zed hears nothing of Ana.
    let mut z = WsClient::joined(&app, &others[0].token, &other.id).await;
    a.push(&topic(&other.id), "location_update", loc(1.0, 1.0)).await.assert_error("unmatched topic", "push");
    z.refute_push("location_update", QUIET).await;
}

#[actix_rt::test]
async fn join_of_a_topic_that_is_not_a_location_topic_is_refused() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let mut a = WsClient::v2(&app, &people[0].token).await;
    for t in ["room:lobby", "phoenix", session.id.as_str(), ""] {
        let reply = a.join(t).await;
        assert_eq!(reply.status, "error", "join of {t:?}: {}", reply.msg.raw);
        assert!(reply.response["reason"].as_str().is_some_and(|r| !r.is_empty()), "a reason: {}", reply.msg.raw);
    }
    a.join(&topic(&session.id)).await.assert_ok("the right topic still joins");
}

#[actix_rt::test]
async fn an_open_socket_of_a_removed_participant_cannot_rejoin() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    // Ana's socket is open but not joined when she is removed; Bo keeps the session's actor busy.
    let mut a = WsClient::v2(&app, &people[0].token).await;
    let _b = WsClient::joined(&app, &people[1].token, &session.id).await;
    app.remove(&session.id, &people[0].user_id, Some(&session.creator_token)).await.assert_no_content("remove Ana");
    assert_join_refused_or_closed(&mut a, &t, "rejoin after removal").await;
    // And with no live session actor at all.
    let (session, people) = app.session_with(&["Cy"]).await;
    let mut c = WsClient::v2(&app, &people[0].token).await;
    app.remove(&session.id, &people[0].user_id, Some(&people[0].token)).await.assert_no_content("Cy leaves");
    assert_join_refused_or_closed(&mut c, &topic(&session.id), "join after leaving").await;
}

/// A socket of a participant who is gone may join nothing: its join is refused with
/// `not_a_participant`, or the socket was already closed with 1000 (SPEC: its sockets are closed).
async fn assert_join_refused_or_closed(client: &mut WsClient, t: &str, context: &str) {
    let msg_ref = client.send_push(t, "phx_join", json!({})).await;
    match client.try_reply(t, "phx_join", &msg_ref, crate::ws_client::DEADLINE).await {
        Some(reply) => reply.assert_refusal("not_a_participant", context),
        None => assert_eq!(client.close_code().await, 1000, "{context}: closed instead"),
    }
}

#[actix_rt::test]
async fn every_socket_of_a_removed_participant_is_closed_joined_or_not() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let mut unjoined = WsClient::v2(&app, &people[0].token).await;
    let _b = WsClient::joined(&app, &people[1].token, &session.id).await;
    app.remove(&session.id, &people[0].user_id, Some(&session.creator_token)).await.assert_no_content("remove Ana");
    assert_eq!(unjoined.close_code().await, 1000);
}

#[actix_rt::test]
async fn join_of_an_ended_session_on_an_open_socket_is_session_ended() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let mut a = WsClient::v2(&app, &people[0].token).await;
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");
    a.join(&topic(&session.id)).await.assert_refusal("session_ended", "join after the end");
    a.heartbeat().await.assert_ok("the socket still answers");
}

#[actix_rt::test]
async fn join_of_a_session_that_ended_while_joined_is_session_ended() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");
    a.next_event("phx_close").await;
    a.join(&t).await.assert_refusal("session_ended", "rejoin after the end");
}

// ---------------------------------------------------------------- client events

#[actix_rt::test]
async fn ping_replies_pong_with_the_server_time() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let before = Utc::now() - chrono::Duration::seconds(2);
    let reply = a.push(&topic(&session.id), "ping", json!({})).await;
    let pong = reply.assert_ok("ping");
    assert_keys(pong, &["type", "server_time"], "pong");
    assert_eq!(pong["type"], "pong");
    let at = assert_rfc3339_z(&pong["server_time"], "server_time");
    assert!(at >= before && at <= Utc::now() + chrono::Duration::seconds(2), "server_time {at} is now");
}

#[actix_rt::test]
async fn an_unknown_event_is_refused() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    for event in ["dance", "phx_reply", "location_updates", "presence_diff"] {
        a.push(&t, event, json!({})).await.assert_refusal("unknown_event", event);
    }
    a.location(&t, loc(0.0, 0.0)).await.assert_ok("still joined");
}

#[actix_rt::test]
async fn phx_leave_replies_ok_then_phx_close_and_the_participant_stays() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;
    let join_ref = a.join_ref(&t).unwrap();

    let reply = a.leave(&t).await;
    assert_eq!(reply.assert_ok("leave"), &json!({}));
    let close = a.next_event("phx_close").await;
    assert!(close.seq > reply.msg.seq, "phx_close comes after the reply");
    assert_eq!(
        (close.topic.as_str(), &close.join_ref, &close.msg_ref),
        (t.as_str(), &json!(join_ref), &json!(join_ref))
    );
    assert_eq!(close.payload, json!({}));

    // Still a member, still listed; only the channel is gone.
    assert!(app.participant_ids(&session.id).await.contains(&ana.user_id), "Ana is still listed");
    a.heartbeat().await.assert_ok("heartbeat after leaving");
    let push = a.location(&t, loc(1.0, 1.0)).await;
    assert_eq!(push.status, "error", "a push on the left topic is refused: {}", push.msg.raw);
    b.refute_push("location_update", QUIET).await;
    b.assert_push("presence_diff", |p| p["leaves"].get(&ana.user_id).is_some()).await;
    b.refute_push_where("participant_left", QUIET, |_| true).await;
    // Joining again works.
    a.join(&t).await.assert_ok("rejoin after leave");
}

#[actix_rt::test]
async fn the_last_join_wins_and_stale_join_refs_are_ignored() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let t = topic(&session.id);
    let mut b = WsClient::joined(&app, &bo.token, &session.id).await;
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    let old = a.join_ref(&t).unwrap();

    let second = a.join(&t).await;
    second.assert_ok("second join");
    let new = a.join_ref(&t).unwrap();
    assert_ne!(old, new);
    let close = a.next_event("phx_close").await;
    assert_eq!(
        (&close.join_ref, &close.msg_ref),
        (&json!(old), &json!(old)),
        "phx_close of the old join: {}",
        close.raw
    );
    assert!(close.seq < second.msg.seq, "the old join is closed before the new one is answered");
    a.next_event("presence_state").await;

    let stale = a.send_push_with(json!(old), &t, "location_update", loc(5.0, 5.0)).await;
    a.refute_reply(&stale, QUIET).await;
    b.refute_push("location_update", QUIET).await;

    a.location(&t, loc(6.0, 6.0)).await.assert_ok("push with the new join_ref");
    let got = b.next_event("location_update").await;
    assert_eq!(got.payload["lat"], 6.0);
    // One channel per socket: Bo never saw Ana go offline.
    b.refute_push_where("presence_diff", QUIET, |p| p["leaves"].get(&ana.user_id).is_some()).await;
}

//! The session's timers as sockets see them (SPEC §1 and §3): a quiet session ends, a quiet
//! participant is removed, an expired session ends and closes its sockets with 1008, and so does
//! an expired token.
//!
//! On the shared PostgreSQL, an app's first cleanup sweep runs 5 s after it starts and acts on the
//! whole database with that app's limits; the tests with a short `SESSION_INACTIVITY_SECONDS` are
//! over well before it (see `spawn_app_with`).

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::helpers::{decode_jwt, sign, spawn_app, spawn_app_with, JWT_SECRET};
use crate::ws_client::{topic, Handshake, WsClient};

/// The SPEC's "within a second" of the deadline, plus the time to get there.
const TIMER: Duration = Duration::from_millis(3_500);

fn short_inactivity(vars: &mut std::collections::HashMap<String, String>) {
    vars.insert("SESSION_INACTIVITY_SECONDS".into(), "2".into());
}

#[actix_rt::test]
async fn a_quiet_session_ends_as_inactive() {
    let app = spawn_app_with(short_inactivity).await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::plain(&app, &people[1].token).await;
    b.next_event("joined").await;

    let ended = a.next_event_within("session_ended", TIMER).await;
    assert_eq!(ended.payload, json!({"reason": "inactive"}));
    let close = a.next_event("phx_close").await;
    assert_eq!(close.join_ref, json!(a.join_ref(&t).unwrap()));
    assert_eq!(a.count("participant_left"), 0, "a quiet session is not emptied one by one first");
    let ended = b.next_event_within("session_ended", TIMER).await;
    assert_eq!(ended.payload, json!({"reason": "inactive"}));
    assert_eq!(b.close_code().await, 1000, "a plain socket is closed");
    assert_eq!(b.count("participant_left"), 0);

    assert_eq!(app.get_session(&session.id).await.json["is_active"], false);
    a.heartbeat().await.assert_ok("a Phoenix socket stays open after phx_close");
}

#[actix_rt::test]
async fn a_participant_not_seen_for_the_inactivity_limit_is_removed() {
    let app = spawn_app_with(short_inactivity).await;
    let (session, people) = app.session_with(&["Ana", "Cy"]).await;
    let (ana, cy) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    // Ana keeps the session alive; Cy never connects.
    a.auto_heartbeat(Some(Duration::from_millis(300)));

    let left = a.next_event_within("participant_left", TIMER).await;
    assert_eq!(left.payload, json!({"user_id": cy.user_id, "reason": "inactive"}));
    a.refute_push("session_ended", Duration::ZERO).await;
    assert_eq!(app.participant_ids(&session.id).await, vec![ana.user_id.clone()]);
    assert_eq!(app.participant_count(&session.id).await, 1, "the slot is freed");
    let refused = WsClient::connect(&app, &cy.token, Some("2.0.0")).await.err();
    assert_eq!(refused, Some(403), "a removed participant's token opens no socket");
}

#[actix_rt::test]
async fn rest_calls_ask_the_store_while_sql_lags_behind_a_busy_session() {
    // SQL hears of socket activity every 30 s; past the inactivity limit by SQL's clock, a
    // leave, a join and a socket must still find the session live through the store.
    let app = spawn_app_with(short_inactivity).await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, &session.id).await;
    let mut b = WsClient::plain(&app, &bo.token).await;
    a.auto_heartbeat(Some(Duration::from_millis(200)));
    b.auto_heartbeat(Some(Duration::from_millis(200)));
    let busy = Duration::from_millis(2_600);
    tokio::join!(a.drain_for(busy), b.drain_for(busy));

    // All at once, so each reads SQL before any of them has brought it up to date.
    let dee = json!({"display_name": "Dee"});
    let (left, joined, socket) = tokio::join!(
        app.remove(&session.id, &bo.user_id, Some(&bo.token)),
        app.join(&session.id, &dee),
        WsClient::connect(&app, &ana.token, Some("2.0.0")),
    );
    left.assert_no_content("leave");
    joined.assert_status(201, "join");
    assert!(socket.is_ok(), "a second socket opens: {:?}", socket.err());
    a.refute_push("session_ended", Duration::ZERO).await;
    a.assert_push("participant_left", |p| p["user_id"] == bo.user_id.as_str() && p["reason"] == "left").await;
}

#[actix_rt::test]
async fn an_expired_session_ends_and_closes_its_sockets_with_1008() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);
    // Before any socket connects, so the session's actor loads the new expiry.
    app.set_expires_at(&session.id, Utc::now() + chrono::Duration::seconds(2)).await;
    let mut a = WsClient::joined(&app, &people[0].token, &session.id).await;
    let mut b = WsClient::plain(&app, &people[1].token).await;
    b.next_event("joined").await;

    let ended = a.next_event_within("session_ended", TIMER).await;
    assert_eq!(ended.payload, json!({"reason": "expired"}));
    let close = a.next_event("phx_close").await;
    assert!(close.seq > ended.seq);
    assert_eq!(close.join_ref, json!(a.join_ref(&t).unwrap()));
    assert_eq!(a.close_code().await, 1008, "then the socket closes with 1008");

    let ended = b.next_event_within("session_ended", TIMER).await;
    assert_eq!(ended.payload, json!({"reason": "expired"}));
    assert_eq!(b.close_code().await, 1008, "a plain socket too");
    assert_eq!(app.get_session(&session.id).await.json["is_active"], false);
}

#[actix_rt::test]
async fn a_socket_whose_token_expires_is_closed_with_1008() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (_, mut claims) = decode_jwt(&people[0].token);
    claims["exp"] = json!(Utc::now().timestamp() + 2);
    claims["iat"] = json!(Utc::now().timestamp());
    let short = sign(Algorithm::HS256, JWT_SECRET, &claims);

    let handshake = Handshake { token: Some(short), vsn: Some("2.0.0".into()), ..Handshake::default() };
    let mut a = WsClient::connect_with(&app, &handshake).await.unwrap_or_else(|s| panic!("refused with {s}"));
    a.join(&topic(&session.id)).await.assert_ok("join with the short-lived token");
    let mut b = WsClient::joined(&app, &people[1].token, &session.id).await;
    // Ana's socket closes though she keeps sending; the session goes on.
    a.auto_heartbeat(Some(Duration::from_millis(500)));
    assert_eq!(a.close_code_within(Duration::from_secs(8)).await, 1008, "an expired token closes its socket");
    a.refute_push("session_ended", Duration::ZERO).await;
    b.heartbeat().await.assert_ok("Bo's socket is untouched");
    b.refute_push("session_ended", Duration::ZERO).await;
    assert_eq!(app.get_session(&session.id).await.json["is_active"], true);
}

//! SPEC §7, arrivals: `participant_arrived` / `participant_departed` once per transition with the
//! hysteresis of SPEC, to every socket (the arriver's own too), the join snapshot's `arrivals`, what
//! clears them, the metric, and exactly once across two replicas.

use std::time::Duration;

use serde_json::{json, Value};

use crate::destination::{north_of_dest, set_dest, DEST};
use crate::helpers::{assert_keys, assert_rfc3339_z, spawn_app, TestApp};
use crate::ws_client::{topic, WsClient, QUIET};

/// `{"lat","lng"}` this far north of the destination, with these extra fields.
fn at(metres: f64, extra: Value) -> Value {
    let (lat, lng) = north_of_dest(metres);
    let mut v = json!({"lat": lat, "lng": lng});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

/// Waits for the `participant_arrived` of `user_id` and checks its shape.
async fn assert_arrived(client: &mut WsClient, user_id: &str, context: &str) -> Value {
    let ev = client.assert_push("participant_arrived", |p| p["user_id"] == user_id).await;
    assert_keys(&ev.payload, &["user_id", "arrived_at"], context);
    assert_rfc3339_z(&ev.payload["arrived_at"], context);
    ev.payload
}

/// The join snapshot of a new V2 socket of `token`.
async fn snapshot(app: &TestApp, token: &str, sid: &str) -> Value {
    let mut c = WsClient::v2(app, token).await;
    c.join(&topic(sid)).await.assert_ok("join").clone()
}

#[actix_rt::test]
async fn arriving_and_departing_are_announced_once_with_hysteresis() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let dest = set_dest(&app, sid, &session.creator_token, 100.0).await;
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let mut p = WsClient::plain(&app, &bo.token).await;
    p.next_event("joined").await;

    // Far away, then inside the radius with no accuracy: arrived, to every socket, Ana's own too.
    a.location(&t, at(2000.0, json!({}))).await.assert_ok("far");
    a.location(&t, at(50.0, json!({"speed": 1.5}))).await.assert_ok("inside");
    let seen = assert_arrived(&mut a, &ana.user_id, "Ana's own socket").await;
    assert_eq!(assert_arrived(&mut b, &ana.user_id, "Bo").await, seen, "the same event everywhere");
    assert_eq!(assert_arrived(&mut p, &ana.user_id, "Bo plain").await, seen);
    // The update that arrived, and any while arrived, carries eta_s 0.
    let upd = b.assert_push("location_update", |p| p["distance_m"].as_u64().is_some_and(|d| d < 100)).await;
    assert_eq!(upd.payload["eta_s"], json!(0), "eta_s while arrived: {}", upd.payload);

    // Further positions inside: no second event.
    a.location(&t, at(30.0, json!({"accuracy": 10.0, "speed": 2.0}))).await.assert_ok("inside again");
    a.location(&t, at(99.0, json!({"accuracy": 5.0}))).await.assert_ok("at the edge");
    let upd = b.assert_push("location_update", |p| p["distance_m"].as_u64().is_some_and(|d| d < 50)).await;
    assert_eq!(upd.payload["eta_s"], json!(0), "eta_s 0 while arrived even at speed: {}", upd.payload);

    // The snapshot of a new socket lists the arrival and the destination.
    let snap = snapshot(&app, &people[2].token, sid).await;
    assert_eq!(snap["destination"], dest, "snapshot destination");
    assert_eq!(snap["arrivals"], json!({ ana.user_id.clone(): seen["arrived_at"] }), "snapshot arrivals");

    // Just outside the radius, within radius + max(accuracy, 50): still arrived.
    a.location(&t, at(140.0, json!({"accuracy": 5.0}))).await.assert_ok("140 m, accuracy 5");
    a.location(&t, at(180.0, json!({"accuracy": 90.0}))).await.assert_ok("180 m, accuracy 90");
    let upd =
        b.assert_push("location_update", |p| p["distance_m"].as_u64().is_some_and(|d| (170..190).contains(&d))).await;
    assert_eq!(upd.payload["eta_s"], json!(0), "still arrived: {}", upd.payload);
    for client in [&mut a, &mut b, &mut p] {
        client.refute_push("participant_departed", QUIET).await;
        client.refute_push("participant_arrived", Duration::ZERO).await;
    }

    // Farther than radius + 50: departed, once.
    a.location(&t, at(200.0, json!({"accuracy": 5.0}))).await.assert_ok("200 m");
    a.location(&t, at(400.0, json!({}))).await.assert_ok("400 m");
    let mut departed = Vec::new();
    for client in [&mut a, &mut b, &mut p] {
        let ev = client.assert_push("participant_departed", |p| p["user_id"] == ana.user_id.as_str()).await;
        assert_keys(&ev.payload, &["user_id", "departed_at"], "participant_departed");
        assert_rfc3339_z(&ev.payload["departed_at"], "departed_at");
        departed.push(ev.payload);
    }
    assert!(departed.windows(2).all(|w| w[0] == w[1]), "{departed:?}");
    let upd =
        b.assert_push("location_update", |p| p["distance_m"].as_u64().is_some_and(|d| (350..450).contains(&d))).await;
    assert_ne!(upd.payload["eta_s"], json!(0), "no longer arrived: {}", upd.payload);
    assert_eq!(snapshot(&app, &people[2].token, sid).await["arrivals"], json!({}), "snapshot after departing");

    // Each transition once: count everything received.
    for client in [&mut a, &mut b, &mut p] {
        client.drain_for(QUIET).await;
        assert_eq!(client.count("participant_arrived"), 1);
        assert_eq!(client.count("participant_departed"), 1);
    }
    assert!(app.metric("location_sharing_arrivals_total").await >= 1.0);
    assert!(app.metric("location_sharing_departures_total").await >= 1.0);
}

#[actix_rt::test]
async fn an_inaccurate_fix_inside_the_radius_is_no_arrival() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    set_dest(&app, sid, &session.creator_token, 100.0).await;
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;

    a.location(&t, at(10.0, json!({"accuracy": 100.5}))).await.assert_ok("accuracy above the radius");
    a.location(&t, at(5.0, json!({"accuracy": 400.0, "speed": 1.0}))).await.assert_ok("very inaccurate");
    let upd = b.assert_push("location_update", |p| p["accuracy"] == json!(400.0)).await;
    assert_ne!(upd.payload["eta_s"], json!(0), "not arrived: {}", upd.payload);
    for client in [&mut a, &mut b] {
        client.refute_push("participant_arrived", QUIET).await;
    }
    assert_eq!(snapshot(&app, &ana.token, sid).await["arrivals"], json!({}));

    // Accuracy equal to the radius counts.
    a.location(&t, at(10.0, json!({"accuracy": 100.0}))).await.assert_ok("accuracy = radius");
    assert_arrived(&mut a, &ana.user_id, "Ana").await;
    assert_arrived(&mut b, &ana.user_id, "Bo").await;
    // Bo's own arrival is his own.
    b.location(&t, at(0.0, json!({}))).await.assert_ok("Bo inside");
    assert_arrived(&mut a, &bo.user_id, "Ana hears Bo").await;
    assert_arrived(&mut b, &bo.user_id, "Bo hears himself").await;
    let arrivals = snapshot(&app, &ana.token, sid).await["arrivals"].clone();
    assert_eq!(arrivals.as_object().map(|m| m.len()), Some(2), "{arrivals}");
}

#[actix_rt::test]
async fn a_new_destination_or_leaving_clears_arrivals_without_events() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo", "Cy"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo, cy) = (&people[0], &people[1], &people[2]);
    set_dest(&app, sid, &session.creator_token, 100.0).await;
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    a.location(&t, at(0.0, json!({}))).await.assert_ok("Ana inside");
    assert_arrived(&mut a, &ana.user_id, "Ana").await;
    assert_arrived(&mut b, &ana.user_id, "Bo").await;

    // A new destination (far away) clears it: no departure, an empty snapshot.
    let far = json!({"lat": DEST.0 + 1.0, "lng": DEST.1, "radius_m": 100});
    app.put_destination(sid, Some(&session.creator_token), &far).await.assert_status(200, "move it");
    b.next_event("destination_set").await;
    assert_eq!(snapshot(&app, &cy.token, sid).await["arrivals"], json!({}), "after a new destination");
    // The same spot set again: Ana arrives anew with her next position.
    set_dest(&app, sid, &session.creator_token, 100.0).await;
    b.next_event("destination_set").await;
    for client in [&mut a, &mut b] {
        client.refute_push("participant_departed", QUIET).await;
        client.refute_push("participant_arrived", Duration::ZERO).await;
    }
    a.location(&t, at(1.0, json!({}))).await.assert_ok("Ana inside again");
    assert_arrived(&mut b, &ana.user_id, "Bo, second arrival").await;

    // Clearing the destination clears it too.
    app.delete_destination(sid, Some(&session.creator_token)).await.assert_no_content("clear");
    assert_eq!(snapshot(&app, &cy.token, sid).await["arrivals"], json!({}), "after clearing");
    set_dest(&app, sid, &session.creator_token, 100.0).await;
    assert_eq!(snapshot(&app, &cy.token, sid).await["arrivals"], json!({}), "set after clearing");
    a.location(&t, at(1.0, json!({}))).await.assert_ok("Ana inside a third time");
    assert_arrived(&mut b, &ana.user_id, "Bo, third arrival").await;

    // Leaving clears it.
    app.remove(sid, &ana.user_id, Some(&ana.token)).await.assert_no_content("Ana leaves");
    b.assert_push("participant_left", |p| p["user_id"] == ana.user_id.as_str()).await;
    assert_eq!(snapshot(&app, &cy.token, sid).await["arrivals"], json!({}), "after leaving");
    b.refute_push("participant_departed", QUIET).await;
}

/// Counts, after a quiet while, how many `participant_arrived` of `user_id` a socket received.
async fn arrivals_of(client: &mut WsClient, user_id: &str) -> usize {
    client.drain_for(Duration::from_secs(2)).await;
    client.inbox().iter().filter(|m| m.event == "participant_arrived" && m.payload["user_id"] == user_id).count()
}

#[actix_rt::test]
async fn across_two_replicas_every_socket_hears_each_arrival_exactly_once() {
    let Some(_) = crate::helpers::test_redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set (replicas need Redis)");
        return;
    };
    let one = spawn_app().await;
    let two = one.spawn_replica().await;
    let (session, people) = one.session_with(&["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&one, &ana.token, sid).await;
    let mut b = WsClient::joined(&two, &bo.token, sid).await;
    let mut b1 = WsClient::joined(&one, &bo.token, sid).await;

    // Set through replica one: replica two's socket hears it and shows it.
    let dest = set_dest(&one, sid, &session.creator_token, 100.0).await;
    assert_eq!(b.next_event("destination_set").await.payload, dest, "across replicas");
    a.next_event("destination_set").await;
    b1.next_event("destination_set").await;
    assert_eq!(two.get_session(sid).await.json["destination"], dest, "GET on replica two");
    assert_eq!(snapshot(&two, &bo.token, sid).await["destination"], dest, "snapshot on replica two");

    // Ana arrives on replica one.
    a.location(&t, at(2000.0, json!({}))).await.assert_ok("far");
    a.location(&t, at(10.0, json!({}))).await.assert_ok("inside");
    for (client, name) in [(&mut a, "a@1"), (&mut b, "b@2"), (&mut b1, "b@1")] {
        assert_arrived(client, &ana.user_id, name).await;
    }
    let upd = b.assert_push("location_update", |p| p["distance_m"].as_u64().is_some_and(|d| d < 100)).await;
    assert_eq!(upd.payload["eta_s"], json!(0), "replica two: {}", upd.payload);
    for (client, name) in [(&mut a, "a@1"), (&mut b, "b@2"), (&mut b1, "b@1")] {
        assert_eq!(arrivals_of(client, &ana.user_id).await, 1, "{name}: Ana's arrival exactly once");
    }
    assert!(
        snapshot(&two, &bo.token, sid).await["arrivals"].get(&ana.user_id).is_some(),
        "replica two's snapshot knows Ana arrived"
    );

    // Bo arrives on replica two.
    b.location(&t, at(2000.0, json!({}))).await.assert_ok("Bo far");
    b.location(&t, at(20.0, json!({}))).await.assert_ok("Bo inside");
    for (client, name) in [(&mut a, "a@1"), (&mut b, "b@2"), (&mut b1, "b@1")] {
        assert_arrived(client, &bo.user_id, name).await;
    }
    for (client, name) in [(&mut a, "a@1"), (&mut b, "b@2"), (&mut b1, "b@1")] {
        assert_eq!(arrivals_of(client, &bo.user_id).await, 1, "{name}: Bo's arrival exactly once");
        assert_eq!(client.count("participant_departed"), 0, "{name}: no departures");
    }

    // Departure from replica two, once everywhere.
    b.location(&t, at(1000.0, json!({}))).await.assert_ok("Bo leaves the spot");
    for client in [&mut a, &mut b, &mut b1] {
        client.assert_push("participant_departed", |p| p["user_id"] == bo.user_id.as_str()).await;
        client.drain_for(Duration::from_secs(2)).await;
        assert_eq!(client.count("participant_departed"), 1, "departure exactly once");
    }
    let total =
        one.metric("location_sharing_arrivals_total").await + two.metric("location_sharing_arrivals_total").await;
    assert!(total >= 2.0, "arrivals counted: {total}");
}

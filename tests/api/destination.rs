//! SPEC §7, REST and the broadcasts: setting and clearing a session's destination, its refusals,
//! the destination at creation and in GET, and `distance_m` / `eta_s` on `location_update`.

use serde_json::{json, Value};

use crate::helpers::{assert_keys, assert_rfc3339_z, spawn_app, Resp, TestApp};
use crate::ws_client::{assert_location_view, loc, topic, Proto, WsClient, QUIET};

/// Paris, the destination of these tests.
pub const DEST: (f64, f64) = (48.8566, 2.3522);

/// Degrees of latitude per metre (mean Earth radius 6 371 km).
pub const DEG_PER_M: f64 = 1.0 / 111_194.9;

/// A point `metres` north of the destination.
pub fn north_of_dest(metres: f64) -> (f64, f64) {
    (DEST.0 + metres * DEG_PER_M, DEST.1)
}

/// A destination object: exactly its five fields.
#[track_caller]
pub fn assert_destination(value: &Value, lat: f64, lng: f64, radius_m: f64, label: &Value, context: &str) {
    assert_keys(value, &["lat", "lng", "radius_m", "label", "set_at"], &format!("{context}: destination"));
    assert_eq!(value["lat"].as_f64(), Some(lat), "{context}: lat of {value}");
    assert_eq!(value["lng"].as_f64(), Some(lng), "{context}: lng of {value}");
    assert_eq!(value["radius_m"].as_f64(), Some(radius_m), "{context}: radius_m of {value}");
    assert_eq!(&value["label"], label, "{context}: label of {value}");
    assert_rfc3339_z(&value["set_at"], &format!("{context}: set_at"));
}

/// Sets the destination at `DEST` with this radius (asserts 200) and gives the object.
pub async fn set_dest(app: &TestApp, sid: &str, creator: &str, radius_m: f64) -> Value {
    let resp =
        app.put_destination(sid, Some(creator), &json!({"lat": DEST.0, "lng": DEST.1, "radius_m": radius_m})).await;
    resp.assert_status(200, "PUT destination");
    resp.json
}

#[track_caller]
fn assert_422_on(resp: &Resp, field: &str, context: &str) {
    resp.assert_status(422, context);
    let errors = resp.json["errors"].as_object();
    assert!(
        errors.is_some_and(|e| e.get(field).and_then(Value::as_array).is_some_and(|m| !m.is_empty())),
        "{context}: expected errors.{field}, got {}",
        resp.json
    );
}

#[actix_rt::test]
async fn the_creator_sets_and_clears_the_destination_and_every_socket_hears_it() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let sid = &session.id;
    let mut a = WsClient::joined(&app, &people[0].token, sid).await;
    let mut b = WsClient::plain(&app, &people[1].token).await;
    b.next_event("joined").await;
    assert_eq!(b.proto, Proto::Plain);

    // Defaults: radius 100, label null.
    let put = app.put_destination(sid, Some(&session.creator_token), &json!({"lat": 48.85, "lng": 2.35})).await;
    put.assert_status(200, "PUT destination");
    assert_destination(&put.json, 48.85, 2.35, 100.0, &Value::Null, "PUT answer");
    for client in [&mut a, &mut b] {
        let ev = client.next_event("destination_set").await;
        assert_eq!(ev.payload, put.json, "destination_set carries the same object ({:?})", client.proto);
    }
    let shown = app.get_session(sid).await;
    shown.assert_status(200, "GET");
    assert_eq!(shown.json["destination"], put.json, "GET carries the destination");
    assert_eq!(shown.json["locked"], json!(false));

    // Replacing it: a radius and a label (trimmed).
    let body = json!({"lat": -33.8688, "lng": 151.2093, "radius_m": 250, "label": "  Opera House "});
    let put2 = app.put_destination(sid, Some(&session.creator_token), &body).await;
    put2.assert_status(200, "PUT again");
    assert_destination(&put2.json, -33.8688, 151.2093, 250.0, &json!("Opera House"), "second PUT");
    for client in [&mut a, &mut b] {
        assert_eq!(client.next_event("destination_set").await.payload, put2.json);
    }
    // A blank label is null; the bounds 20 and 5000 are accepted.
    for (radius, label) in [(20, json!("   ")), (5000, Value::Null)] {
        let body = json!({"lat": 0.0, "lng": 0.0, "radius_m": radius, "label": label});
        let put = app.put_destination(sid, Some(&session.creator_token), &body).await;
        put.assert_status(200, &format!("radius {radius}"));
        assert_destination(&put.json, 0.0, 0.0, f64::from(radius), &Value::Null, "bounds");
        a.next_event("destination_set").await;
        b.next_event("destination_set").await;
    }

    // Clearing it.
    app.delete_destination(sid, Some(&session.creator_token)).await.assert_no_content("DELETE destination");
    for client in [&mut a, &mut b] {
        assert_eq!(client.next_event("destination_cleared").await.payload, json!({}));
    }
    assert_eq!(app.get_session(sid).await.json["destination"], Value::Null, "GET after DELETE");
    let again = app.delete_destination(sid, Some(&session.creator_token)).await;
    again.assert_detail_error(404, "DELETE when none is set");
    assert_eq!(again.json, json!({"errors": {"detail": "no destination is set"}}));
    a.refute_push("destination_cleared", QUIET).await;
}

#[actix_rt::test]
async fn setting_or_clearing_needs_this_sessions_creator_token() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let other = app.new_session().await;
    let sid = &session.id;
    let body = json!({"lat": 1.0, "lng": 2.0});
    let mut a = WsClient::joined(&app, &people[0].token, sid).await;

    app.put_destination(sid, None, &body).await.assert_detail_error(401, "PUT without a token");
    app.put_destination(sid, Some("not-a-jwt"), &body).await.assert_detail_error(401, "PUT with a bad token");
    app.put_destination(sid, Some(&people[0].token), &body).await.assert_detail_error(403, "PUT participant");
    app.put_destination(sid, Some(&other.creator_token), &body).await.assert_detail_error(403, "PUT other creator");
    app.delete_destination(sid, None).await.assert_detail_error(401, "DELETE without a token");
    app.delete_destination(sid, Some(&people[0].token)).await.assert_detail_error(403, "DELETE participant");
    app.delete_destination(sid, Some(&other.creator_token)).await.assert_detail_error(403, "DELETE other creator");
    a.refute_push("destination_set", QUIET).await;
    assert_eq!(app.get_session(sid).await.json["destination"], Value::Null, "nothing was set");

    let (unknown, token) = app.creator_token_for_unknown().await;
    app.put_destination(&unknown, Some(&token), &body).await.assert_detail_error(404, "PUT unknown session");
    app.delete_destination(&unknown, Some(&token)).await.assert_detail_error(404, "DELETE unknown session");

    set_dest(&app, sid, &session.creator_token, 100.0).await;
    app.end_session(sid, Some(&session.creator_token)).await.assert_no_content("end");
    app.put_destination(sid, Some(&session.creator_token), &body).await.assert_detail_error(410, "PUT ended");
    app.delete_destination(sid, Some(&session.creator_token)).await.assert_detail_error(410, "DELETE ended");
}

#[actix_rt::test]
async fn out_of_range_wrong_typed_or_missing_values_are_422() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let sid = &session.id;
    let long = "x".repeat(101);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"lat": 90.5, "lng": 0}), "lat"),
        (json!({"lat": -91, "lng": 0}), "lat"),
        (json!({"lat": 0, "lng": 180.5}), "lng"),
        (json!({"lat": 0, "lng": -181}), "lng"),
        (json!({"lat": "1", "lng": 0}), "lat"),
        (json!({"lat": 0, "lng": true}), "lng"),
        (json!({"lat": null, "lng": 0}), "lat"),
        (json!({"lng": 0}), "lat"),
        (json!({"lat": 0}), "lng"),
        (json!({"lat": 0, "lng": 0, "radius_m": 19}), "radius_m"),
        (json!({"lat": 0, "lng": 0, "radius_m": 5001}), "radius_m"),
        (json!({"lat": 0, "lng": 0, "radius_m": -5}), "radius_m"),
        (json!({"lat": 0, "lng": 0, "radius_m": "100"}), "radius_m"),
        (json!({"lat": 0, "lng": 0, "label": long}), "label"),
        (json!({"lat": 0, "lng": 0, "label": 7}), "label"),
        (json!({"lat": 0, "lng": 0, "label": ["a"]}), "label"),
    ];
    for (body, field) in &cases {
        let resp = app.put_destination(sid, Some(&session.creator_token), body).await;
        assert_422_on(&resp, field, &format!("PUT {body}"));
        resp.assert_some_field_error(&format!("PUT {body}"));
    }
    // Both coordinates missing: both named.
    let resp = app.put_destination(sid, Some(&session.creator_token), &json!({})).await;
    assert_422_on(&resp, "lat", "PUT {}");
    assert_422_on(&resp, "lng", "PUT {}");
    // Exactly 100 characters is fine.
    let ok = json!({"lat": 0, "lng": 0, "label": "y".repeat(100)});
    app.put_destination(sid, Some(&session.creator_token), &ok).await.assert_status(200, "label of 100");

    // At creation: the same checks, field keys prefixed with "destination.".
    for (body, field) in &cases {
        let resp = app.create_session(&json!({ "destination": body })).await;
        assert_422_on(&resp, &format!("destination.{field}"), &format!("POST destination {body}"));
    }
}

#[actix_rt::test]
async fn a_session_created_with_a_destination_shows_it() {
    let app = spawn_app().await;
    let created = app.create_session(&json!({"destination": {"lat": 51.5, "lng": -0.12, "label": "Pub"}})).await;
    created.assert_status(201, "create with a destination");
    assert_destination(&created.json["destination"], 51.5, -0.12, 100.0, &json!("Pub"), "201 answer");
    assert_eq!(created.json["locked"], json!(false));
    let sid = created.json["session_id"].as_str().unwrap().to_owned();
    let shown = app.get_session(&sid).await;
    assert_eq!(shown.json["destination"], created.json["destination"], "GET");
    assert_eq!(shown.json["locked"], json!(false));

    let ana = app.join_as(&sid, "Ana").await;
    let mut a = WsClient::v2(&app, &ana.token).await;
    let snapshot = a.join(&topic(&sid)).await.assert_ok("join").clone();
    assert_eq!(snapshot["destination"], created.json["destination"], "join snapshot");
    assert_eq!(snapshot["arrivals"], json!({}));

    let plain = app.create_session(&json!({})).await;
    assert_eq!(plain.json["destination"], Value::Null, "no destination by default");
    let null = app.create_session(&json!({"destination": null})).await;
    null.assert_status(201, "destination null");
    assert_eq!(null.json["destination"], Value::Null);
}

#[actix_rt::test]
async fn location_updates_carry_distance_and_eta_only_while_a_destination_is_set() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let sid = &session.id;
    let t = topic(sid);
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;
    let mut p = WsClient::plain(&app, &bo.token).await;
    p.next_event("joined").await;

    // No destination: the seven fields only.
    a.location(&t, loc(DEST.0 + 0.1, DEST.1)).await.assert_ok("no destination");
    let seen = b.next_event("location_update").await;
    assert_location_view(&seen.payload, &ana.user_id, "without a destination");
    assert!(seen.payload.get("distance_m").is_none() && seen.payload.get("eta_s").is_none(), "{}", seen.payload);
    let seen = p.next_event("location_update").await;
    assert!(seen.payload.get("distance_m").is_none(), "plain, no destination: {}", seen.payload);

    set_dest(&app, sid, &session.creator_token, 100.0).await;
    b.next_event("destination_set").await;

    // About 1 km away, moving at 2 m/s: distance within 0.5 %, eta = round(distance / speed).
    let (lat, lng) = north_of_dest(1000.0);
    a.location(&t, json!({"lat": lat, "lng": lng, "speed": 2.0})).await.assert_ok("1 km away");
    for client in [&mut b, &mut p] {
        let seen = client.next_event("location_update").await;
        let d = seen.payload["distance_m"].as_u64().unwrap_or_else(|| panic!("distance_m in {}", seen.payload));
        assert!((995..=1005).contains(&d), "distance_m {d} is 1000 m within 0.5 %");
        let eta = seen.payload["eta_s"].as_u64().unwrap_or_else(|| panic!("eta_s in {}", seen.payload));
        let expected = (d as f64 / 2.0).round() as u64;
        assert!(eta.abs_diff(expected) <= 1, "eta_s {eta} ≈ {expected}");
        assert_eq!(seen.payload["user_id"], ana.user_id.as_str());
    }
    // Below 0.5 m/s the ETA is unknown.
    a.location(&t, json!({"lat": lat, "lng": lng, "speed": 0.3})).await.assert_ok("slow");
    let seen = b.next_event("location_update").await;
    assert!(seen.payload["distance_m"].is_u64(), "{}", seen.payload);
    assert_eq!(seen.payload.get("eta_s"), Some(&Value::Null), "speed < 0.5: eta_s null in {}", seen.payload);
    // Faster: 10 m/s.
    a.location(&t, json!({"lat": lat, "lng": lng, "speed": 10.0})).await.assert_ok("fast");
    let seen = b.next_event("location_update").await;
    let d = seen.payload["distance_m"].as_u64().unwrap();
    let eta = seen.payload["eta_s"].as_u64().unwrap();
    assert!(eta.abs_diff((d as f64 / 10.0).round() as u64) <= 1, "eta_s {eta} at 10 m/s for {d} m");

    // Cleared: the keys are gone again.
    app.delete_destination(sid, Some(&session.creator_token)).await.assert_no_content("clear");
    b.next_event("destination_cleared").await;
    a.location(&t, json!({"lat": lat, "lng": lng, "speed": 2.0})).await.assert_ok("after clearing");
    let seen = b.next_event("location_update").await;
    assert_location_view(&seen.payload, &ana.user_id, "after clearing");
}

#[actix_rt::test]
async fn bad_json_or_another_content_type_is_refused() {
    use crate::helpers::Body;
    use actix_web::web::Bytes;
    use awc::http::Method;
    let app = spawn_app().await;
    let session = app.new_session().await;
    let path = format!("/api/sessions/{}/destination", session.id);
    let auth = format!("Bearer {}", session.creator_token);
    let send = |ct: &'static str, body: &'static str| {
        let (app, path, auth) = (&app, path.clone(), auth.clone());
        async move {
            app.send(
                Method::PUT,
                &path,
                &[("authorization", auth.as_str()), ("content-type", ct)],
                Body::Raw(Bytes::from_static(body.as_bytes())),
            )
            .await
        }
    };
    send("application/json", "{\"lat\": 1,").await.assert_status(400, "bad JSON");
    send("text/plain", "{\"lat\": 1, \"lng\": 2}").await.assert_status(415, "not JSON");
    let big: &'static str =
        Box::leak(format!("{{\"lat\": 1, \"lng\": 2, \"label\": \"{}\"}}", "x".repeat(1 << 20)).into_boxed_str());
    send("application/json", big).await.assert_status(413, "too big");
    assert_eq!(app.get_session(&session.id).await.json["destination"], Value::Null);
}

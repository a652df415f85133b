//! SPEC §9: `PATCH /api/sessions/{id}` (lock, unlock, rename), its refusals, `session_updated` to
//! every socket, and joins refused while locked (those already in keep going).

use serde_json::{json, Value};

use crate::helpers::{assert_keys, spawn_app, spawn_app_with};
use crate::ws_client::{loc, topic, WsClient, QUIET};

const SESSION_KEYS: [&str; 9] =
    ["id", "name", "created_at", "expires_at", "participant_count", "is_active", "locked", "destination", "e2e"];

#[actix_rt::test]
async fn the_creator_locks_unlocks_and_renames_and_every_socket_hears_it() {
    let app = spawn_app().await;
    let created = app.create_session(&json!({"name": "Dinner"})).await;
    created.assert_status(201, "create");
    let sid = created.json["session_id"].as_str().unwrap().to_owned();
    let creator = created.json["creator_token"].as_str().unwrap().to_owned();
    let ana = app.join_as(&sid, "Ana").await;
    let mut a = WsClient::joined(&app, &ana.token, &sid).await;
    let mut p = WsClient::plain(&app, &ana.token).await;
    p.next_event("joined").await;

    let steps: Vec<(Value, Value, bool)> = vec![
        (json!({"locked": true}), json!("Dinner"), true),
        (json!({"name": "Drinks"}), json!("Drinks"), true),
        (json!({"locked": false, "name": "  Late drinks "}), json!("Late drinks"), false),
        (json!({"name": null}), Value::Null, false),
        (json!({"name": "Again"}), json!("Again"), false),
        (json!({"name": "   "}), Value::Null, false),
        (json!({"locked": null}), Value::Null, false),
        (json!({}), Value::Null, false),
    ];
    for (body, name, locked) in steps {
        let resp = app.patch_session(&sid, Some(&creator), &body).await;
        resp.assert_status(200, &format!("PATCH {body}"));
        assert_keys(&resp.json, &SESSION_KEYS, &format!("PATCH {body}"));
        assert_eq!((&resp.json["name"], &resp.json["locked"]), (&name, &json!(locked)), "PATCH {body}");
        let shown = app.get_session(&sid).await;
        assert_eq!(shown.json, resp.json, "GET after PATCH {body} shows the same object");
        for client in [&mut a, &mut p] {
            let ev = client.next_event("session_updated").await;
            assert_eq!(ev.payload, json!({"name": name, "locked": locked}), "session_updated after {body}");
        }
    }
    a.refute_push("session_updated", QUIET).await;
}

#[actix_rt::test]
async fn patching_needs_this_sessions_creator_token_and_right_types() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let other = app.new_session().await;
    let sid = &session.id;
    let body = json!({"locked": true});
    let mut a = WsClient::joined(&app, &people[0].token, sid).await;

    app.patch_session(sid, None, &body).await.assert_detail_error(401, "no token");
    app.patch_session(sid, Some("garbage"), &body).await.assert_detail_error(401, "bad token");
    app.patch_session(sid, Some(&people[0].token), &body).await.assert_detail_error(403, "participant token");
    app.patch_session(sid, Some(&other.creator_token), &body).await.assert_detail_error(403, "other creator");
    let (unknown, token) = app.creator_token_for_unknown().await;
    app.patch_session(&unknown, Some(&token), &body).await.assert_detail_error(404, "unknown session");

    let long = "n".repeat(101);
    for (body, field) in [
        (json!({"locked": "yes"}), "locked"),
        (json!({"locked": 1}), "locked"),
        (json!({"name": 5}), "name"),
        (json!({"name": ["x"]}), "name"),
        (json!({"name": long}), "name"),
    ] {
        let resp = app.patch_session(sid, Some(&session.creator_token), &body).await;
        resp.assert_status(422, &format!("PATCH {body}"));
        resp.assert_some_field_error(&format!("PATCH {body}"));
        assert!(resp.json["errors"].get(field).is_some(), "PATCH {body}: errors.{field} in {}", resp.json);
    }
    a.refute_push("session_updated", QUIET).await;
    assert_eq!(app.get_session(sid).await.json["locked"], json!(false), "nothing changed");
    let ok = app.patch_session(sid, Some(&session.creator_token), &json!({"name": "n".repeat(100)})).await;
    ok.assert_status(200, "100 characters");

    app.end_session(sid, Some(&session.creator_token)).await.assert_no_content("end");
    app.patch_session(sid, Some(&session.creator_token), &body).await.assert_detail_error(410, "ended");
}

#[actix_rt::test]
async fn a_locked_session_refuses_joins_and_keeps_those_already_in() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let (sid, t) = (&session.id, topic(&session.id));
    let (ana, bo) = (&people[0], &people[1]);
    let mut a = WsClient::joined(&app, &ana.token, sid).await;
    let mut b = WsClient::joined(&app, &bo.token, sid).await;

    let locked = app.patch_session(sid, Some(&session.creator_token), &json!({"locked": true})).await;
    locked.assert_status(200, "lock");
    assert_eq!(locked.json["locked"], json!(true));
    b.next_event("session_updated").await;
    let refused = app.join(sid, &json!({"display_name": "Eve"})).await;
    refused.assert_detail_error(403, "join while locked");
    assert_eq!(refused.json, json!({"errors": {"detail": "session is locked"}}));
    assert_eq!(app.participant_count(sid).await, 2, "nobody was added");
    b.refute_push("participant_joined", QUIET).await;

    // Those in keep working: locations flow, a new socket of theirs joins the channel.
    a.location(&t, loc(1.0, 2.0)).await.assert_ok("location while locked");
    let seen = b.next_event("location_update").await;
    assert_eq!(seen.payload["user_id"], ana.user_id.as_str());
    let mut b2 = WsClient::joined(&app, &bo.token, sid).await;
    b.location(&t, loc(3.0, 4.0)).await.assert_ok("Bo's location while locked");
    assert_eq!(a.next_event("location_update").await.payload["user_id"], bo.user_id.as_str());
    a.location(&t, loc(5.0, 6.0)).await.assert_ok("Ana again");
    b2.assert_push("location_update", |p| p["user_id"] == ana.user_id.as_str() && p["lat"] == json!(5.0)).await;
    // Leaving still works.
    app.remove(sid, &bo.user_id, Some(&bo.token)).await.assert_no_content("Bo leaves while locked");
    a.assert_push("participant_left", |p| p["user_id"] == bo.user_id.as_str()).await;

    // Unlocked: joins work again.
    let unlocked = app.patch_session(sid, Some(&session.creator_token), &json!({"locked": false})).await;
    assert_eq!(unlocked.json["locked"], json!(false));
    let cy = app.join_as(sid, "Cy").await;
    a.assert_push("participant_joined", |p| p["user_id"] == cy.user_id.as_str()).await;

    // An ended session: 410 wins over 403 locked.
    app.patch_session(sid, Some(&session.creator_token), &json!({"locked": true})).await.assert_status(200, "lock");
    app.end_session(sid, Some(&session.creator_token)).await.assert_no_content("end");
    app.join(sid, &json!({"display_name": "Late"})).await.assert_detail_error(410, "locked and ended");
}

#[actix_rt::test]
async fn locked_wins_over_full() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_PARTICIPANTS".into(), "1".into());
    })
    .await;
    let (session, _) = app.session_with(&["Ana"]).await;
    app.join(&session.id, &json!({"display_name": "Bo"})).await.assert_detail_error(409, "full");
    app.patch_session(&session.id, Some(&session.creator_token), &json!({"locked": true}))
        .await
        .assert_status(200, "lock");
    let refused = app.join(&session.id, &json!({"display_name": "Bo"})).await;
    assert_eq!((refused.status, refused.json.clone()), (403, json!({"errors": {"detail": "session is locked"}})));
}

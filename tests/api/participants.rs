//! `POST /api/sessions/{id}/join`, `GET …/participants` and `DELETE …/participants/{user_id}`.

use std::time::Duration;

use actix_web::web::Bytes;
use awc::http::Method;
use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::helpers::{
    assert_keys, assert_rfc3339_z, assert_uuid_v4, is_upper_hex_colour, spawn_app, spawn_app_with, Body,
};

const JOINED_KEYS: [&str; 3] = ["user_id", "websocket_token", "websocket_url"];
const PARTICIPANT_KEYS: [&str; 5] = ["user_id", "display_name", "avatar_color", "last_seen", "is_active"];

#[actix_rt::test]
async fn join_returns_the_participant_and_its_token() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let resp = app.join(&session.id, &json!({"display_name": "Ana", "avatar_color": "#1E90FF"})).await;
    resp.assert_status(201, "join");
    assert_keys(&resp.json, &JOINED_KEYS, "join");
    let user_id = assert_uuid_v4(&resp.json["user_id"], "user_id");
    assert!(resp.json["websocket_token"].as_str().is_some_and(|t| t.split('.').count() == 3), "a JWT");
    assert_eq!(resp.json["websocket_url"], "ws://localhost:4000/socket/websocket");

    let list = app.participants(&session.id).await;
    list.assert_status(200, "list");
    assert_keys(&list.json, &["participants"], "list");
    let participants = list.json["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 1);
    let p = &participants[0];
    assert_keys(p, &PARTICIPANT_KEYS, "participant");
    assert_eq!(p["user_id"], user_id.as_str());
    assert_eq!(p["display_name"], "Ana");
    assert_eq!(p["avatar_color"], "#1E90FF");
    assert_eq!(p["is_active"], true);
    let last_seen = assert_rfc3339_z(&p["last_seen"], "last_seen");
    let age = Utc::now() - last_seen;
    assert!(age >= TimeDelta::seconds(-1) && age < TimeDelta::minutes(5), "last_seen {last_seen} is not now");
}

#[actix_rt::test]
async fn display_name_is_required_and_limited_to_50_characters() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    for body in [
        json!({}),
        json!({"display_name": null}),
        json!({"display_name": ""}),
        json!({"display_name": "   "}),
        json!({"display_name": "\t\n"}),
        json!({"display_name": "x".repeat(51)}),
        json!({"display_name": "é".repeat(51)}),
        json!({"display_name": 5}),
        json!({"display_name": true}),
        json!({"display_name": ["Ana"]}),
        json!({"display_name": {"first": "Ana"}}),
        json!({"avatar_color": "#1E90FF"}),
    ] {
        app.join(&session.id, &body).await.assert_field_errors(&["display_name"], &format!("body {body}"));
    }
    assert_eq!(app.participant_count(&session.id).await, 0, "nobody joined");
}

#[actix_rt::test]
async fn display_names_of_up_to_50_characters_are_trimmed_and_kept() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let names =
        ["x".repeat(50), "é".repeat(50), "🚲".repeat(50), format!("  {}  ", "y".repeat(50)), "  Ana  María \t".into()];
    let mut ids = Vec::new();
    for name in &names {
        let resp = app.join(&session.id, &json!({ "display_name": name })).await;
        resp.assert_status(201, &format!("name {name:?}"));
        ids.push(resp.json["user_id"].as_str().expect("user_id").to_owned());
    }
    let list = app.participants(&session.id).await;
    let listed = list.json["participants"].as_array().expect("participants");
    for (name, id) in names.iter().zip(&ids) {
        let p = listed.iter().find(|p| p["user_id"] == id.as_str()).expect("listed");
        assert_eq!(p["display_name"], name.trim(), "stored trimmed");
    }
}

#[actix_rt::test]
async fn avatar_color_must_be_hash_rrggbb() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    for bad in [
        json!("red"),
        json!("#12345"),
        json!("#GGGGGG"),
        json!("1E90FF1"),
        json!("1E90FF"),
        json!("#1E90FF0"),
        json!("#1E90F"),
        json!(""),
        json!("#"),
        json!(" #1E90FF"),
        json!("rgb(30,144,255)"),
        json!(0x1E90FF),
        json!(["#1E90FF"]),
    ] {
        app.join(&session.id, &json!({"display_name": "Ana", "avatar_color": bad}))
            .await
            .assert_field_errors(&["avatar_color"], &format!("avatar_color {bad}"));
    }
    assert_eq!(app.participant_count(&session.id).await, 0, "nobody joined");
}

#[actix_rt::test]
async fn both_invalid_fields_are_reported() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    app.join(&session.id, &json!({"display_name": " ", "avatar_color": "red"}))
        .await
        .assert_field_errors(&["avatar_color", "display_name"], "both invalid");
}

#[actix_rt::test]
async fn chosen_colours_are_kept_and_defaults_come_from_a_palette() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let chosen = app.join(&session.id, &json!({"display_name": "Ana", "avatar_color": "#00ff7f"})).await;
    chosen.assert_status(201, "lowercase colour");
    let chosen_id = chosen.json["user_id"].as_str().expect("user_id").to_owned();
    for i in 0..8 {
        let resp = app.join(&session.id, &json!({"display_name": format!("P{i}"), "avatar_color": null})).await;
        resp.assert_status(201, "default colour");
    }
    let list = app.participants(&session.id).await;
    for p in list.json["participants"].as_array().expect("participants") {
        let colour = p["avatar_color"].as_str().expect("avatar_color");
        if p["user_id"] == chosen_id.as_str() {
            assert!(colour.eq_ignore_ascii_case("#00FF7F"), "chosen colour kept, got {colour}");
        } else {
            assert!(is_upper_hex_colour(colour), "default colour {colour} is not ^#[0-9A-F]{{6}}$");
        }
    }
}

#[actix_rt::test]
async fn join_refuses_bad_bodies_like_create() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let path = format!("/api/sessions/{}/join", session.id);
    app.send(Method::POST, &path, &[("content-type", "application/json")], Body::Raw(Bytes::from("{\"display_name\"")))
        .await
        .assert_detail_error(400, "malformed");
    app.send(Method::POST, &path, &[("content-type", "text/plain")], Body::Raw(Bytes::from("Ana")))
        .await
        .assert_detail_error(415, "text/plain");
    app.send(Method::POST, &path, &[("content-type", "application/json")], Body::Raw(Bytes::from("[\"Ana\"]")))
        .await
        .assert_some_field_error("array");
    app.send(Method::POST, &path, &[], Body::None).await.assert_field_errors(&["display_name"], "empty body");
    let resp = app.join(&session.id, &json!({"display_name": "Ana", "user_id": "x", "session_id": "y"})).await;
    resp.assert_status(201, "unknown fields ignored");
    assert_ne!(resp.json["user_id"], "x");
    assert_eq!(app.participant_count(&session.id).await, 1);
}

#[actix_rt::test]
async fn a_full_session_refuses_joins_with_409_and_a_freed_slot_is_reused() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_PARTICIPANTS".into(), "3".into());
    })
    .await;
    let session = app.new_session().await;
    let first = app.join_as(&session.id, "One").await;
    app.join_as(&session.id, "Two").await;
    app.join_as(&session.id, "Three").await;

    app.join(&session.id, &json!({"display_name": "Four"})).await.assert_detail_error(409, "fourth");
    assert_eq!(app.participant_count(&session.id).await, 3);
    assert_eq!(app.participant_ids(&session.id).await.len(), 3);

    app.remove(&session.id, &first.user_id, Some(&first.token)).await.assert_no_content("One leaves");
    assert_eq!(app.participant_count(&session.id).await, 2);
    let five = app.join_as(&session.id, "Five").await;
    assert_eq!(app.participant_count(&session.id).await, 3);
    assert!(app.participant_ids(&session.id).await.contains(&five.user_id));
    app.join(&session.id, &json!({"display_name": "Six"})).await.assert_detail_error(409, "full again");

    // A removal by the creator frees a slot too.
    app.remove(&session.id, &five.user_id, Some(&session.creator_token)).await.assert_no_content("Five removed");
    app.join_as(&session.id, "Seven").await;
    assert_eq!(app.participant_count(&session.id).await, 3);
}

#[actix_rt::test]
async fn join_of_an_ended_session_is_410() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end");
    app.join(&session.id, &json!({"display_name": "Late"})).await.assert_detail_error(410, "join ended");
    assert_eq!(app.participant_count(&session.id).await, 0);
}

#[actix_rt::test]
async fn a_fresh_session_lists_nobody() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let resp = app.participants(&session.id).await;
    resp.assert_status(200, "list");
    assert_eq!(resp.json, json!({"participants": []}));
}

#[actix_rt::test]
async fn participants_are_listed_in_joining_order() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let mut joined = Vec::new();
    for name in ["Ana", "Bo", "Cy", "Di", "Ed", "Flo"] {
        joined.push(app.join_as(&session.id, name).await);
    }
    let resp = app.participants(&session.id).await;
    resp.assert_status(200, "list");
    let listed = resp.json["participants"].as_array().expect("participants");
    let names: Vec<&str> = listed.iter().map(|p| p["display_name"].as_str().expect("display_name")).collect();
    assert_eq!(names, ["Ana", "Bo", "Cy", "Di", "Ed", "Flo"]);
    for (p, j) in listed.iter().zip(&joined) {
        assert_keys(p, &PARTICIPANT_KEYS, "participant");
        assert_eq!(p["user_id"], j.user_id.as_str());
        assert_eq!(p["is_active"], true);
        assert!(is_upper_hex_colour(p["avatar_color"].as_str().expect("avatar_color")));
        assert_rfc3339_z(&p["last_seen"], "last_seen");
    }
}

#[actix_rt::test]
async fn a_participant_leaves_with_its_own_token() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let bo = app.join_as(&session.id, "Bo").await;

    let resp = app.remove(&session.id, &ana.user_id, Some(&ana.token)).await;
    resp.assert_no_content("leave");
    assert_eq!(app.participant_ids(&session.id).await, vec![bo.user_id.clone()]);
    assert_eq!(app.participant_count(&session.id).await, 1);

    // Its token died with its membership.
    app.remove(&session.id, &ana.user_id, Some(&ana.token)).await.assert_detail_error(401, "leave twice");
    // And the creator finds nobody to remove.
    app.remove(&session.id, &ana.user_id, Some(&session.creator_token)).await.assert_detail_error(404, "gone");
    assert_eq!(app.participant_count(&session.id).await, 1);
}

#[actix_rt::test]
async fn the_creator_removes_a_participant() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let bo = app.join_as(&session.id, "Bo").await;

    app.remove(&session.id, &bo.user_id, Some(&session.creator_token)).await.assert_no_content("remove Bo");
    assert_eq!(app.participant_ids(&session.id).await, vec![ana.user_id.clone()]);
    assert_eq!(app.participant_count(&session.id).await, 1);

    // A removed participant's token no longer works.
    app.remove(&session.id, &bo.user_id, Some(&bo.token)).await.assert_detail_error(401, "removed leaves");
    app.remove(&session.id, &bo.user_id, Some(&session.creator_token)).await.assert_detail_error(404, "twice");
}

#[actix_rt::test]
async fn a_participant_cannot_remove_another() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let bo = app.join_as(&session.id, "Bo").await;
    app.remove(&session.id, &bo.user_id, Some(&ana.token)).await.assert_detail_error(403, "Ana removes Bo");
    let unknown = uuid::Uuid::new_v4().to_string();
    app.remove(&session.id, &unknown, Some(&ana.token)).await.assert_detail_error(403, "Ana removes nobody");
    assert_eq!(app.participant_ids(&session.id).await, vec![ana.user_id, bo.user_id]);
}

#[actix_rt::test]
async fn removal_needs_a_bearer_token() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let path = format!("/api/sessions/{}/participants/{}", session.id, ana.user_id);

    let resp = app.remove(&session.id, &ana.user_id, None).await;
    resp.assert_detail_error(401, "no token");
    for auth in [
        "Bearer garbage".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer not.a.jwt".to_owned(),
        format!("Basic {}", ana.token),
        format!("Digest {}", session.creator_token),
        ana.token.clone(),
        String::new(),
    ] {
        app.delete_with_auth(&path, &auth).await.assert_detail_error(401, &format!("authorization {auth:?}"));
    }
    assert_eq!(app.participant_count(&session.id).await, 1, "still there");
}

#[actix_rt::test]
async fn tokens_of_another_session_are_forbidden() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let other = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let stranger = app.join_as(&other.id, "Stranger").await;

    app.remove(&session.id, &ana.user_id, Some(&other.creator_token)).await.assert_detail_error(403, "other creator");
    app.remove(&session.id, &ana.user_id, Some(&stranger.token)).await.assert_detail_error(403, "other participant");
    // Not even for itself: a participant token is bound to its session.
    app.remove(&session.id, &stranger.user_id, Some(&stranger.token))
        .await
        .assert_detail_error(403, "stranger in the wrong session");
    // The creator of a session cannot reach a participant of another through its own session.
    app.remove(&session.id, &stranger.user_id, Some(&session.creator_token))
        .await
        .assert_detail_error(404, "participant of another session");

    assert_eq!(app.participant_ids(&session.id).await, vec![ana.user_id]);
    assert_eq!(app.participant_ids(&other.id).await, vec![stranger.user_id]);
}

#[actix_rt::test]
async fn unknown_or_malformed_participants_are_404() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for uid in [unknown.as_str(), "not-a-uuid", "12345", "00000000-0000-0000-0000-000000000000"] {
        app.remove(&session.id, uid, Some(&session.creator_token))
            .await
            .assert_detail_error(404, &format!("creator removes {uid}"));
    }
    for sid in ["not-a-uuid", "12345"] {
        app.remove(sid, &ana.user_id, Some(&session.creator_token))
            .await
            .assert_detail_error(404, &format!("session {sid}"));
    }
    assert_eq!(app.participant_count(&session.id).await, 1);
}

#[actix_rt::test]
async fn participants_not_seen_lately_are_listed_as_inactive() {
    let app = spawn_app_with(|vars| {
        vars.insert("PARTICIPANT_IDLE_SECONDS".into(), "1".into());
    })
    .await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let list = app.participants(&session.id).await;
    assert_eq!(list.json["participants"][0]["is_active"], true);

    // Times are kept to the second: a second after the join it is past the idle limit.
    actix_rt::time::sleep(Duration::from_millis(1_050)).await;

    let list = app.participants(&session.id).await;
    list.assert_status(200, "list");
    let p = &list.json["participants"][0];
    assert_keys(p, &PARTICIPANT_KEYS, "idle participant");
    assert_eq!(p["user_id"], ana.user_id.as_str());
    assert_eq!(p["is_active"], false);
    // Idle is not gone: still counted, still a member.
    assert_eq!(app.get_session(&session.id).await.json["is_active"], true);
    assert_eq!(app.participant_count(&session.id).await, 1);
    assert_eq!(list.json["participants"].as_array().map(Vec::len), Some(1));
}

#[actix_rt::test]
async fn concurrent_removals_of_one_participant_free_one_slot() {
    let app = spawn_app().await;
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let bo = app.join_as(&session.id, "Bo").await;
    let responses = futures_util::future::join_all((0..8).map(|i| {
        let token = if i % 2 == 0 { &session.creator_token } else { &ana.token };
        app.remove(&session.id, &ana.user_id, Some(token))
    }))
    .await;
    assert_eq!(responses.iter().filter(|r| r.status == 204).count(), 1, "exactly one removal succeeds");
    for resp in responses.iter().filter(|r| r.status != 204) {
        // The creator finds nobody left to remove; Ana's token died with her membership.
        assert!(matches!(resp.status, 401 | 404), "status {}", resp.status);
        resp.assert_detail_error(resp.status, "removed already");
    }
    assert_eq!(app.participant_count(&session.id).await, 1, "the count went down once");
    assert_eq!(app.participant_ids(&session.id).await, vec![bo.user_id]);
}

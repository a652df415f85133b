//! No secret and no coordinate in any log line (SPEC §6), with every log target at `trace`: the
//! real binary runs as a child process with known secrets, the test exercises REST, the dashboard
//! and sockets, stops it with SIGTERM, and scans everything it wrote to stdout and stderr. On
//! PostgreSQL (`TEST_DATABASE_URL`) its URL carries a password; with `TEST_REDIS_URL` positions
//! go to Redis, whose client would be the one to print commands.

use std::time::Duration;

use awc::http::Method;
use serde_json::json;

use crate::helpers::{client, send, test_database_url, test_redis_url, Body, Resp};
use crate::process::ServerProcess;
use crate::ws_client::{topic, Handshake, WsClient};

const JWT_SECRET: &str = "jwt-secret-that-must-never-be-logged-7f3a9c";
const ADMIN_TOKEN: &str = "admin-token-that-must-never-be-logged-51d2";
const DB_PASSWORD: &str = "db-password-that-must-never-be-logged-c0ffee";
// Digits no id, time or counter of the run would contain by chance.
const LAT: f64 = 48.8566123;
const LNG: f64 = 2.3522456;
const ACCURACY: f64 = 17.7654321;
const BAD_LAT: f64 = 91.1357913;

/// `postgres://user@host/db` with [`DB_PASSWORD`] added; an URL that has a password keeps its own.
fn with_password(url: &str) -> (String, String) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), DB_PASSWORD.to_owned());
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((_, password)) => (url.to_owned(), password.to_owned()),
            None => (format!("{scheme}://{userinfo}:{DB_PASSWORD}@{host}"), DB_PASSWORD.to_owned()),
        },
        None => (format!("{scheme}://postgres:{DB_PASSWORD}@{rest}"), DB_PASSWORD.to_owned()),
    }
}

/// The password of a `redis://user:password@host` URL, if it has one.
fn redis_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p.to_owned()).filter(|p| !p.is_empty())
}

async fn call(server: &ServerProcess, method: Method, path: &str, headers: &[(&str, &str)], body: Body) -> Resp {
    send(&client(), method, &format!("{}{path}", server.url()), headers, body).await
}

#[actix_rt::test]
async fn no_secret_token_or_coordinate_reaches_the_logs_even_at_trace() {
    let mut secrets = vec![JWT_SECRET.to_owned(), ADMIN_TOKEN.to_owned()];
    let mut vars = vec![
        ("RUST_LOG", "trace".to_owned()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("SHUTDOWN_GRACE_SECONDS", "5".to_owned()),
    ];
    if let Some(url) = test_database_url() {
        let (url, password) = with_password(&url);
        secrets.push(password);
        vars.push(("DATABASE_URL", url));
    }
    if let Some(url) = test_redis_url() {
        secrets.extend(redis_password(&url));
        vars.push(("REDIS_URL", url));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = ServerProcess::start(&vars);

    // REST: create, show, join two, list, the dashboard with the admin token both ways.
    let created = call(&server, Method::POST, "/api/sessions", &[], Body::Json(json!({"name": "Leak check"}))).await;
    created.assert_status(201, "create");
    let sid = created.json["session_id"].as_str().unwrap().to_owned();
    let creator = created.json["creator_token"].as_str().unwrap().to_owned();
    call(&server, Method::GET, &format!("/api/sessions/{sid}"), &[], Body::None).await.assert_status(200, "show");
    let mut people = Vec::new();
    for name in ["Ana", "Bo"] {
        let joined = call(&server, Method::POST, &format!("/api/sessions/{sid}/join"), &[], {
            Body::Json(json!({ "display_name": name }))
        })
        .await;
        joined.assert_status(201, "join");
        let user = joined.json["user_id"].as_str().unwrap().to_owned();
        people.push((user, joined.json["websocket_token"].as_str().unwrap().to_owned()));
    }
    let list = call(&server, Method::GET, &format!("/api/sessions/{sid}/participants"), &[], Body::None).await;
    list.assert_status(200, "list");
    let bearer_admin = format!("Bearer {ADMIN_TOKEN}");
    for (path, headers) in [
        ("/dev/dashboard".to_owned(), vec![("authorization", bearer_admin.as_str())]),
        (format!("/dev/dashboard/stats?token={ADMIN_TOKEN}"), vec![]),
    ] {
        call(&server, Method::GET, &path, &headers, Body::None).await.assert_status(200, &path);
    }

    // Sockets: Phoenix V2 for both, a location Bo receives, a refused one, heartbeat, leave.
    let connect =
        |token: &str| Handshake { token: Some(token.to_owned()), vsn: Some("2.0.0".into()), ..Default::default() };
    let mut ana = WsClient::connect_to(&server.url(), &connect(&people[0].1)).await.expect("Ana's socket");
    let mut bo = WsClient::connect_to(&server.url(), &connect(&people[1].1)).await.expect("Bo's socket");
    ana.join(&topic(&sid)).await.assert_ok("Ana joins");
    bo.join(&topic(&sid)).await.assert_ok("Bo joins");
    let update = json!({"lat": LAT, "lng": LNG, "accuracy": ACCURACY});
    ana.location(&topic(&sid), update).await.assert_ok("a location");
    let seen = bo.assert_push("location_update", |p| p["lat"] == json!(LAT)).await;
    assert_eq!(seen.payload["lng"], json!(LNG), "Bo sees Ana's position");
    ana.location(&topic(&sid), json!({"lat": BAD_LAT, "lng": LNG})).await.assert_error("invalid_location", "refused");
    ana.heartbeat().await.assert_ok("heartbeat");
    // Long enough for the store's 100-ms write batch, so the position reaches Redis.
    bo.drain_for(Duration::from_millis(400)).await;
    ana.leave(&topic(&sid)).await.assert_ok("leave");
    ana.close().await;
    bo.close().await;

    // A participant leaves by REST; the creator ends the session.
    let bo_path = format!("/api/sessions/{sid}/participants/{}", people[1].0);
    let bo_bearer = format!("Bearer {}", people[1].1);
    call(&server, Method::DELETE, &bo_path, &[("authorization", &bo_bearer)], Body::None)
        .await
        .assert_no_content("leave");
    let creator_bearer = format!("Bearer {creator}");
    let end = call(&server, Method::DELETE, &format!("/api/sessions/{sid}"), &[("authorization", &creator_bearer)], {
        Body::None
    })
    .await;
    end.assert_no_content("end");

    // Stopped as an orchestrator would (SIGTERM: drain, then exit), so the drain's lines count too.
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(20)).is_some(), "the server did not exit:\n{}", server.log());
    let output = server.log();
    assert!(output.contains("TRACE"), "the server logged at trace:\n{output}");
    assert!(output.contains(&format!("/api/sessions/{sid}/join")), "the access log is there:\n{output}");

    secrets.push(creator.clone());
    for (_, token) in &people {
        secrets.push(token.clone());
    }
    // A token's signature alone is as good as a leak: it proves the token was printed in part.
    let signatures: Vec<String> =
        secrets.iter().filter_map(|t| t.rsplit_once('.').map(|(_, sig)| sig.to_owned())).collect();
    let coordinates = [LAT, LNG, ACCURACY, BAD_LAT].map(|c| c.to_string());
    // The digits after the point too, should a coordinate be printed in another notation.
    let fractions = coordinates.clone().map(|c| c.split_once('.').map(|(_, f)| f.to_owned()).unwrap_or(c));
    let leaks: Vec<&String> = secrets
        .iter()
        .chain(&signatures)
        .chain(&coordinates)
        .chain(&fractions)
        .filter(|needle| needle.len() >= 6 && output.contains(needle.as_str()))
        .collect();
    let lines: Vec<&str> = output.lines().filter(|l| leaks.iter().any(|n| l.contains(n.as_str()))).take(20).collect();
    assert!(leaks.is_empty(), "{} leaked into the logs, e.g.:\n{}", leaks.len(), lines.join("\n"));
}

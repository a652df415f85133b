//! The participant cap (`MAX_PARTICIPANTS=50`) holds under concurrent joins, in one process and
//! across two server processes sharing one PostgreSQL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use awc::http::Method;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{client, free_port, send, spawn_app_with, test_database_url, Body, Resp, JWT_SECRET};

/// Counts 201s and 409s, and fails on anything else.
#[track_caller]
fn tally(responses: &[Resp]) -> (usize, usize) {
    let mut created = 0;
    let mut full = 0;
    for resp in responses {
        match resp.status {
            201 => {
                assert!(resp.json["user_id"].is_string() && resp.json["websocket_token"].is_string(), "{}", resp.json);
                created += 1;
            }
            409 => {
                resp.assert_detail_error(409, "full");
                full += 1;
            }
            other => panic!("unexpected status {other}: {}", String::from_utf8_lossy(&resp.body)),
        }
    }
    (created, full)
}

/// The list has exactly the participants that got a 201, each once.
#[track_caller]
fn assert_listed_exactly(list: &Resp, responses: &[Resp]) {
    list.assert_status(200, "list");
    let mut listed: Vec<&str> = list.json["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["user_id"].as_str().expect("user_id"))
        .collect();
    let mut joined: Vec<&str> =
        responses.iter().filter(|r| r.status == 201).map(|r| r.json["user_id"].as_str().expect("user_id")).collect();
    listed.sort_unstable();
    joined.sort_unstable();
    assert_eq!(listed, joined, "the listed participants are the ones that got a 201");
}

#[actix_rt::test]
async fn sixty_concurrent_joins_fill_exactly_fifty_slots() {
    let app = spawn_app_with(|vars| {
        vars.remove("DB_POOL_SIZE");
    })
    .await;
    let session = app.new_session().await;
    let responses = join_all((0..60).map(|i| {
        let app = &app;
        let sid = session.id.clone();
        async move { app.join(&sid, &json!({ "display_name": format!("Runner {i}") })).await }
    }))
    .await;

    assert_eq!(tally(&responses), (50, 10), "exactly 50 joins succeed and 10 find the session full");
    let shown = app.get_session(&session.id).await;
    shown.assert_status(200, "show");
    assert_eq!(shown.json["participant_count"], 50);
    assert_eq!(shown.json["is_active"], true);
    assert_listed_exactly(&app.participants(&session.id).await, &responses);
    app.join(&session.id, &json!({"display_name": "Late"})).await.assert_detail_error(409, "still full");
}

/// Server processes that are killed when the test ends, however it ends.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the real binary on a free port.
fn start_server(database_url: &str, port: u16, workdir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_location-sharing"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        // No stray .env file is read from the working directory.
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .expect("start the location-sharing binary")
}

/// Waits until `/health` answers 200.
async fn wait_healthy(client: &awc::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server at {base} exited early: {status}");
        }
        if let Ok(res) = client.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await {
            if res.status().as_u16() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the server at {base} did not become healthy");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn two_server_processes_share_the_cap() {
    let Some(database_url) = test_database_url() else {
        eprintln!("skipped: the multi-process cap test needs PostgreSQL (TEST_DATABASE_URL)");
        return;
    };
    let workdir = tempfile::tempdir().expect("a working directory");
    let ports = [free_port(), free_port()];
    let mut servers = Servers(ports.iter().map(|port| start_server(&database_url, *port, workdir.path())).collect());
    let bases: Vec<String> = ports.iter().map(|port| format!("http://127.0.0.1:{port}")).collect();
    let client = client();
    for (base, child) in bases.iter().zip(servers.0.iter_mut()) {
        wait_healthy(&client, base, child).await;
    }

    let created = send(&client, Method::POST, &format!("{}/api/sessions", bases[0]), &[], Body::Json(json!({}))).await;
    created.assert_status(201, "create on the first server");
    let sid = created.json["session_id"].as_str().expect("session_id").to_owned();

    let responses = join_all((0..60).map(|i| {
        let (client, url) = (&client, format!("{}/api/sessions/{sid}/join", bases[i % 2]));
        async move {
            send(client, Method::POST, &url, &[], Body::Json(json!({ "display_name": format!("Runner {i}") }))).await
        }
    }))
    .await;

    assert_eq!(tally(&responses), (50, 10), "exactly 50 joins succeed across both servers");
    for base in &bases {
        let shown = send(&client, Method::GET, &format!("{base}/api/sessions/{sid}"), &[], Body::None).await;
        shown.assert_status(200, "show");
        assert_eq!(shown.json["participant_count"], Value::from(50), "{base}");
        let list =
            send(&client, Method::GET, &format!("{base}/api/sessions/{sid}/participants"), &[], Body::None).await;
        assert_listed_exactly(&list, &responses);
    }
    // Tokens from one server work on the other (one secret), and a freed slot is reusable anywhere.
    let (_, joined) =
        responses.iter().enumerate().find(|(i, r)| i % 2 == 1 && r.status == 201).expect("a participant of server 2");
    let uid = joined.json["user_id"].as_str().expect("user_id");
    let token = joined.json["websocket_token"].as_str().expect("websocket_token");
    for base in &bases {
        let auth = format!("Bearer {token}");
        let resp = send(
            &client,
            Method::DELETE,
            &format!("{base}/api/sessions/{sid}/participants/{uid}"),
            &[("authorization", auth.as_str())],
            Body::None,
        )
        .await;
        if base == &bases[0] {
            resp.assert_no_content("leave on the other server");
        } else {
            resp.assert_detail_error(401, "the token died with the membership, on every server");
        }
    }
    let again = send(
        &client,
        Method::POST,
        &format!("{}/api/sessions/{sid}/join", bases[1]),
        &[],
        Body::Json(json!({"display_name": "Reuser"})),
    )
    .await;
    again.assert_status(201, "the freed slot is reused");
    drop(servers);
}

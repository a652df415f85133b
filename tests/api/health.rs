//! `/health`, `/health/detailed`, `/health/ready`, `/health/live`, with Redis and the database
//! present, absent and gone.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::ws_client::{loc, WsClient};

use crate::helpers::{
    assert_keys, spawn_app, spawn_app_with, test_database_url, test_redis_url, without_redis, Resp, TestApp,
};

/// `{"status","checks":{"database","redis"},"sessions_live","sockets",…}` with the given statuses.
#[track_caller]
fn assert_detailed(resp: &Resp, status: &str, database: &str, redis: &str) {
    let body = &resp.json;
    assert_eq!(body["status"], status, "{body}");
    assert!(body["sessions_live"].is_u64(), "sessions_live in {body}");
    assert!(body["sockets"].is_u64(), "sockets in {body}");
    for (name, expected) in [("database", database), ("redis", redis)] {
        let check = &body["checks"][name];
        assert!(check.is_object(), "checks.{name} in {body}");
        assert_eq!(check["status"], expected, "checks.{name} in {body}");
        assert!(check.get("latency_ms").is_some(), "checks.{name}.latency_ms in {body}");
        if expected == "ok" {
            assert!(check["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "checks.{name}.latency_ms in {body}");
        }
    }
}

#[actix_rt::test]
async fn health_is_ok_with_the_version() {
    let app = spawn_app().await;
    let resp = app.get("/health").await;
    resp.assert_status(200, "/health");
    assert_keys(&resp.json, &["status", "version"], "/health");
    assert_eq!(resp.json["status"], "ok");
    assert_eq!(resp.json["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_rt::test]
async fn detailed_health_reports_every_check() {
    let app = spawn_app_with(without_redis).await;
    let resp = app.get("/health/detailed").await;
    resp.assert_status(200, "/health/detailed");
    // Without REDIS_URL, Redis is not in use and does not make the server degraded.
    assert_detailed(&resp, "ok", "ok", "disabled");
}

#[actix_rt::test]
async fn ready_and_live_answer_200() {
    let app = spawn_app().await;
    let ready = app.get("/health/ready").await;
    ready.assert_status(200, "/health/ready");
    assert!(ready.json.is_object(), "a JSON body: {:?}", ready.body);
    let live = app.get("/health/live").await;
    live.assert_status(200, "/health/live");
    assert!(live.json.is_object(), "a JSON body: {:?}", live.body);
}

#[actix_rt::test]
async fn with_redis_every_check_is_ok() {
    let Some(redis) = test_redis_url() else {
        eprintln!("skipped: TEST_REDIS_URL is not set");
        return;
    };
    let app = spawn_app_with(|vars| {
        vars.insert("REDIS_URL".into(), redis);
    })
    .await;
    let resp = app.get("/health/detailed").await;
    resp.assert_status(200, "/health/detailed");
    assert_detailed(&resp, "ok", "ok", "ok");
    app.get("/health/ready").await.assert_status(200, "/health/ready");
    // The REST API works as without Redis.
    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    assert_eq!(app.participant_count(&session.id).await, 1);
    let list = app.participants(&session.id).await;
    list.assert_status(200, "list with Redis");
    assert_eq!(list.json["participants"][0]["user_id"], ana.user_id.as_str());
    assert_eq!(list.json["participants"][0]["is_active"], true);
    app.remove(&session.id, &ana.user_id, Some(&ana.token)).await.assert_no_content("leave with Redis");
    app.end_session(&session.id, Some(&session.creator_token)).await.assert_no_content("end with Redis");
}

#[actix_rt::test]
async fn an_unreachable_redis_makes_the_server_unready_quickly() {
    // Nothing listens on port 1.
    let app = spawn_app_with(|vars| {
        vars.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
    })
    .await;

    let started = Instant::now();
    let ready = app.get("/health/ready").await;
    assert!(started.elapsed() < Duration::from_secs(3), "/health/ready took {:?}", started.elapsed());
    ready.assert_status(503, "/health/ready");
    assert!(ready.json.is_object(), "a JSON body: {:?}", ready.body);

    let started = Instant::now();
    let detailed = app.get("/health/detailed").await;
    assert!(started.elapsed() < Duration::from_secs(3), "/health/detailed took {:?}", started.elapsed());
    detailed.assert_status(503, "/health/detailed");
    assert_detailed(&detailed, "degraded", "ok", "error");

    app.get("/health").await.assert_status(200, "/health");
    app.get("/health/live").await.assert_status(200, "/health/live");
}

/// A TCP proxy to PostgreSQL that the test can cut: it stops accepting and drops every
/// forwarded connection, as if the database host went away.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (thread_stop, thread_streams) = (stop.clone(), streams.clone());
        std::thread::spawn(move || {
            // The listener is dropped when this loop ends: new connections are then refused.
            while !thread_stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => break,
                };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let Ok(mut all) = thread_streams.lock() {
                    all.extend([c2, s2]);
                }
                let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s3, c3));
            }
        });
        Self { port, stop, streams }
    }

    /// Stops accepting and cuts every forwarded connection.
    fn kill(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut all) = self.streams.lock() {
            for stream in all.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `from` to `to` until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// `host:port` of a `postgres://[user[:password]@]host[:port]/db` URL, and the URL with another
/// `host:port` put in its place.
fn split_pg_url(url: &str) -> (String, impl Fn(&str) -> String + '_) {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, rest),
    };
    let end = hostpart.find(['/', '?']).unwrap_or(hostpart.len());
    let (host, tail) = hostpart.split_at(end);
    let host = if host.is_empty() { "127.0.0.1:5432".to_owned() } else { host.to_owned() };
    let host = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        host
    } else {
        format!("{host}:5432")
    };
    let rebuild = move |addr: &str| match userinfo {
        Some(userinfo) => format!("{scheme}://{userinfo}@{addr}{tail}"),
        None => format!("{scheme}://{addr}{tail}"),
    };
    (host, rebuild)
}

#[actix_rt::test]
async fn a_database_that_goes_down_gives_503_quickly_while_sockets_keep_streaming() {
    let Some(database_url) = test_database_url() else {
        eprintln!("skipped: the database outage test needs PostgreSQL (TEST_DATABASE_URL)");
        return;
    };
    let (upstream, rebuild) = split_pg_url(&database_url);
    let proxy = Proxy::start(upstream);
    let proxied = rebuild(&format!("127.0.0.1:{}", proxy.port));
    let app: TestApp = spawn_app_with(|vars| {
        vars.insert("DATABASE_URL".into(), proxied);
    })
    .await;

    let session = app.new_session().await;
    let ana = app.join_as(&session.id, "Ana").await;
    let bo = app.join_as(&session.id, "Bo").await;
    let mut ana_socket = WsClient::joined(&app, &ana.token, &session.id).await;
    let mut bo_socket = WsClient::joined(&app, &bo.token, &session.id).await;
    app.get("/health/ready").await.assert_status(200, "ready before");

    proxy.kill();

    // Live sockets keep streaming: the location path never touches SQL.
    let topic = format!("location:{}", session.id);
    let reply = ana_socket.location(&topic, loc(12.5, 34.5)).await;
    assert_eq!(reply.status, "ok", "location while the database is down: {}", reply.msg.raw);
    let got = bo_socket.next_event("location_update").await;
    assert_eq!(
        (got.payload["lat"].as_f64(), got.payload["user_id"].as_str()),
        (Some(12.5), Some(ana.user_id.as_str()))
    );

    let started = Instant::now();
    let resp = app.create_session(&json!({})).await;
    let took = started.elapsed();
    resp.assert_detail_error(503, "create while the database is down");
    assert!(took < Duration::from_millis(2_500), "503 took {took:?}");

    let started = Instant::now();
    let resp = app.get_session(&session.id).await;
    resp.assert_detail_error(503, "show while the database is down");
    assert!(started.elapsed() < Duration::from_millis(2_500), "503 took {:?}", started.elapsed());

    let ready = app.get("/health/ready").await;
    ready.assert_status(503, "ready while down");
    assert!(ready.json.is_object(), "a JSON body: {:?}", ready.body);
    let detailed = app.get("/health/detailed").await;
    detailed.assert_status(503, "detailed while down");
    assert_eq!(detailed.json["status"], "degraded");
    assert_eq!(detailed.json["checks"]["database"]["status"], "error");
    app.get("/health/live").await.assert_status(200, "live while down");
    let health = app.get("/health").await;
    health.assert_status(200, "health while down");
    assert_eq!(health.json["status"], "ok");
}

//! The built-in web client's routes, against the real app on a free port: pages and their
//! security headers, embedded assets, the QR code of a join link, and the operator dashboard
//! with its access rules.

use std::collections::BTreeSet;

use actix_web::web::Bytes;
use awc::http::header::HeaderMap;
use serde_json::{json, Value};

use crate::helpers::{self, spawn_app_with, TestApp};

const ADMIN_TOKEN: &str = "web-tests-admin-token-0123456789";

struct App {
    address: String,
    client: awc::Client,
    _app: TestApp,
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The test server with the test's settings on top of the defaults.
async fn spawn(vars: &[(&str, &str)]) -> App {
    spawn_with(vars, |_| {}).await
}

/// The same, with a last say over the variables.
async fn spawn_with(vars: &[(&str, &str)], last: impl FnOnce(&mut std::collections::HashMap<String, String>)) -> App {
    let app = spawn_app_with(|map| {
        for (k, v) in vars {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        last(map);
    })
    .await;
    App { address: app.address.clone(), client: app.client.clone(), _app: app }
}

impl App {
    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.get(format!("{}{path}", self.address));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = res.body().limit(1 << 20).await.expect("a body");
        Resp { status: res.status().as_u16(), headers: res.headers().clone(), body }
    }

    async fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[]).await
    }

    async fn new_session(&self) -> Value {
        let mut res =
            self.client.post(format!("{}/api/sessions", self.address)).send_json(&json!({})).await.expect("create");
        assert_eq!(res.status().as_u16(), 201);
        res.json::<Value>().await.expect("JSON")
    }
}

/// Every `src="…"` and `href="…"` under `/assets/` in a page.
fn asset_urls(html: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let url = &rest[..rest.find('"').unwrap_or(0)];
            if url.starts_with("/assets/") {
                out.insert(url.to_owned());
            }
        }
    }
    out
}

/// The relative modules a script imports (`from './x.js'`).
fn imports(js: &str) -> Vec<String> {
    js.match_indices("from './")
        .map(|(i, _)| {
            let rest = &js[i + "from './".len()..];
            rest[..rest.find('\'').unwrap_or(0)].to_owned()
        })
        .collect()
}

const CSP_DEFAULT: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: https://tile.openstreetmap.org; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'; object-src 'none'";

#[track_caller]
fn assert_page(resp: &Resp, csp: &str, context: &str) {
    assert_eq!(resp.status, 200, "{context}: {}", resp.text());
    assert_eq!(resp.header("content-type"), "text/html; charset=utf-8", "{context}");
    assert_eq!(resp.header("content-security-policy"), csp, "{context}");
    assert_eq!(resp.header("x-content-type-options"), "nosniff", "{context}");
    assert_eq!(resp.header("referrer-policy"), "no-referrer", "{context}");
    assert!(!resp.header("etag").is_empty(), "{context}: an ETag");
    assert!(!resp.header("x-request-id").is_empty(), "{context}: a request id");
    let html = resp.text();
    assert!(html.starts_with("<!doctype html>"), "{context}");
    // No inline script: every <script> names its source; no inline style either.
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..i + html[i..].find('>').unwrap_or(0)];
        assert!(tag.contains(" src=\"/assets/"), "{context}: inline script {tag}");
    }
    assert!(!html.contains(" style=") && !html.contains("<style"), "{context}: inline style");
    assert!(!html.contains("{{"), "{context}: an unfilled placeholder");
}

#[actix_rt::test]
async fn pages_have_the_csp_and_no_inline_script() {
    let app = spawn(&[]).await;
    let session = app.new_session().await;
    let sid = session["session_id"].as_str().unwrap();
    for path in ["/".to_owned(), format!("/join/{sid}"), format!("/join/{sid}/"), "/join/not-a-session".to_owned()] {
        let resp = app.get(&path).await;
        assert_page(&resp, CSP_DEFAULT, &path);
        let html = resp.text();
        assert!(html.contains(r#"<meta name="tile-url" content="https://tile.openstreetmap.org/{z}/{x}/{y}.png">"#));
        assert!(html.contains(r#"<meta name="location-ttl" content="30">"#));
        assert!(html.contains(r#"<html lang="en">"#), "{path}: a language");
    }
    // The join link the API hands out opens the join page.
    let link = session["join_link"].as_str().unwrap();
    let path = link.split_once("://").map(|(_, rest)| &rest[rest.find('/').unwrap()..]).unwrap();
    let join = app.get(path).await;
    assert_page(&join, CSP_DEFAULT, "join_link");
    assert!(join.text().contains("/js/join.js"));
    // Revalidation.
    let etag = join.header("etag");
    let again = app.get_with(path, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("content-security-policy"), CSP_DEFAULT);
    // HEAD is answered like GET, without a body.
    let mut head = app.client.head(format!("{}/", app.address)).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(head.body().await.unwrap().is_empty());
}

#[actix_rt::test]
async fn assets_load_with_their_content_types_and_cache_headers() {
    let app = spawn(&[]).await;
    let mut pending: Vec<String> = Vec::new();
    for page in ["/", "/join/00000000-0000-4000-8000-000000000000", "/dev/dashboard"] {
        pending.extend(asset_urls(&app.get(page).await.text()));
    }
    assert!(pending.iter().any(|u| u.ends_with("/app.css")) && pending.iter().any(|u| u.ends_with("/js/home.js")));
    let mut seen = BTreeSet::new();
    while let Some(url) = pending.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let resp = app.get(&url).await;
        assert_eq!(resp.status, 200, "{url}");
        let expected = match url.rsplit('.').next() {
            Some("css") => "text/css; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert_eq!(resp.header("content-type"), expected, "{url}");
        assert_eq!(resp.header("cache-control"), "public, max-age=31536000, immutable", "{url}");
        assert_eq!(resp.header("x-content-type-options"), "nosniff", "{url}");
        let etag = resp.header("etag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{url}: ETag {etag}");
        assert_eq!(app.get_with(&url, &[("if-none-match", &etag)]).await.status, 304, "{url}");
        if url.ends_with(".js") {
            let dir = &url[..=url.rfind('/').unwrap()];
            pending.extend(imports(&resp.text()).into_iter().map(|m| format!("{dir}{m}")));
        }
    }
    // Every module the pages need, found by following the imports.
    let modules = ["api.js", "channel.js", "map.js", "qr.js", "ui.js", "join.js", "home.js", "dashboard.js"];
    let join_parts = ["state.js", "people.js", "position.js", "e2e.js", "creator.js", "notices.js"];
    for module in modules.iter().chain(&join_parts) {
        assert!(seen.iter().any(|u| u.ends_with(&format!("/js/{module}"))), "{module} is loaded: {seen:?}");
    }
    // Another version (a page from another build) is served, but revalidated; unknown files are 404.
    let other = app.get("/assets/000000000000/app.css").await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("cache-control"), "no-cache");
    assert_eq!(app.get("/assets/000000000000/nope.js").await.status, 404);
    assert_eq!(app.get("/assets/000000000000/../Cargo.toml").await.status, 404);
}

#[actix_rt::test]
async fn tile_url_sets_the_csp_and_the_page() {
    let none = spawn(&[("TILE_URL", "none")]).await;
    let resp = none.get("/").await;
    let csp = CSP_DEFAULT.replace(" https://tile.openstreetmap.org", "");
    assert_page(&resp, &csp, "TILE_URL=none");
    assert!(resp.text().contains(r#"<meta name="tile-url" content="none">"#));

    let own = spawn(&[("TILE_URL", "https://{s}.tiles.example.org/osm/{z}/{x}/{y}.png?key=a&b=c")]).await;
    let resp = own.get("/").await;
    let csp = CSP_DEFAULT.replace("https://tile.openstreetmap.org", "https://*.tiles.example.org");
    assert_page(&resp, &csp, "own TILE_URL");
    assert!(resp.text().contains(
        r#"<meta name="tile-url" content="https://{s}.tiles.example.org/osm/{z}/{x}/{y}.png?key=a&amp;b=c">"#
    ));
}

#[actix_rt::test]
async fn the_qr_code_encodes_the_join_link() {
    let app = spawn(&[]).await;
    let session = app.new_session().await;
    let sid = session["session_id"].as_str().unwrap();
    let resp = app.get(&format!("/api/sessions/{sid}/qr")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("content-type").starts_with("application/json"));
    let qr = resp.json();
    let size = qr["size"].as_u64().unwrap();
    let version = qr["version"].as_u64().unwrap();
    assert!((1..=40).contains(&version), "version {version}");
    assert_eq!(size, 17 + 4 * version, "the size of QR version {version}");
    let modules = qr["modules"].as_str().unwrap();
    assert_eq!(modules.len() as u64, size * size);
    assert!(modules.bytes().all(|b| b == b'0' || b == b'1'));
    assert_eq!(qr["text"], session["join_link"]);
    assert_eq!(qr["ec_level"], "M");
    // The top-left finder pattern: a dark 7-module ring around a light ring and a dark core.
    let row = |y: u64| &modules[(y * size) as usize..(y * size + 7) as usize];
    assert_eq!(row(0), "1111111");
    assert_eq!(row(1), "1000001");
    assert_eq!(row(3), "1011101");
    assert_eq!(row(6), "1111111");

    let unknown = app.get("/api/sessions/6d1c3f56-5b0e-4c0a-9a7e-3c8f9b2d1e4f/qr").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["errors"]["detail"].is_string());
    assert_eq!(app.get("/api/sessions/not-an-id/qr").await.status, 404);
}

#[actix_rt::test]
async fn the_dashboard_is_open_in_development() {
    // Development: HOST is a loopback address and ADMIN_TOKEN is unset.
    let app = spawn(&[]).await;
    let page = app.get("/dev/dashboard").await;
    let csp = CSP_DEFAULT;
    assert_page(&page, csp, "dashboard");
    assert!(page.text().contains("/js/dashboard.js"));
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(app.get("/dev/dashboard/stats").await.status, 200);
}

#[actix_rt::test]
async fn the_dashboard_does_not_exist_in_production_without_a_token() {
    // A container: HOST is not loopback, and no ADMIN_TOKEN.
    let app = spawn(&[("HOST", "0.0.0.0")]).await;
    for path in ["/dev/dashboard", "/dev/dashboard/stats", "/dev/dashboard?token=anything"] {
        let resp = app.get(path).await;
        assert_eq!(resp.status, 404, "{path}");
        assert_eq!(resp.json(), json!({"errors": {"detail": "Not Found"}}), "{path}");
    }
    let resp = app.get_with("/dev/dashboard/stats", &[("authorization", "Bearer anything-at-all-1234")]).await;
    assert_eq!(resp.status, 404);
}

#[actix_rt::test]
async fn the_dashboard_wants_the_admin_token_when_one_is_set() {
    for host in ["0.0.0.0", "127.0.0.1"] {
        let app = spawn(&[("HOST", host), ("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
        for path in ["/dev/dashboard", "/dev/dashboard/stats"] {
            let refused = [
                app.get(path).await,
                app.get_with(path, &[("authorization", "Bearer wrong-token-0123456789abcdef")]).await,
                app.get_with(path, &[("authorization", &format!("Basic {ADMIN_TOKEN}"))]).await,
                app.get(&format!("{path}?token=wrong-token-0123456789abcdef")).await,
                app.get(&format!("{path}?token={}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])).await,
            ];
            for resp in refused {
                assert!(resp.status == 401 || resp.status == 404, "{host} {path}: {}", resp.status);
                assert!(resp.json()["errors"]["detail"].is_string());
            }
            let bearer = app.get_with(path, &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))]).await;
            assert_eq!(bearer.status, 200, "{host} {path} with the bearer token");
            let query = app.get(&format!("{path}?token={ADMIN_TOKEN}")).await;
            assert_eq!(query.status, 200, "{host} {path} with ?token=");
        }
    }
}

#[actix_rt::test]
async fn dashboard_stats_have_their_shape_and_count() {
    // A single node: no Redis to check, no cluster bus.
    let app = spawn_with(&[], helpers::without_redis).await;
    let first = app.get("/dev/dashboard/stats").await;
    assert_eq!(first.status, 200);
    assert!(first.header("content-type").starts_with("application/json"));
    assert_eq!(first.header("cache-control"), "no-store");
    let s = first.json();
    let keys: BTreeSet<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "version",
        "time",
        "uptime_seconds",
        "sockets",
        "sessions_live",
        "counters",
        "http_latency",
        "memory_rss_bytes",
        "checks",
        "registry_responding",
        "pubsub_connected",
        "draining",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected, "{s}");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap()).is_ok());
    assert!(s["sockets"].is_i64() && s["sessions_live"].is_i64());
    for key in [
        "location_updates_in",
        "location_deliveries_out",
        "http_requests",
        "frames_dropped",
        "rate_limited",
        "unparsable_frames",
        "store_errors",
        "session_restarts",
        "pubsub_published",
        "pubsub_received",
    ] {
        assert!(s["counters"][key].is_u64(), "counters.{key} in {s}");
    }
    let latency = &s["http_latency"];
    assert!(latency["count"].is_u64() && latency["sum_seconds"].is_f64());
    if cfg!(target_os = "linux") {
        assert!(s["memory_rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "RSS {}", s["memory_rss_bytes"]);
        assert!(s["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0));
    }
    assert_eq!(s["checks"]["database"]["status"], "ok");
    assert!(s["checks"]["database"]["latency_ms"].is_f64());
    assert_eq!(s["checks"]["redis"], json!({"status": "disabled", "latency_ms": null}));
    assert_eq!(s["registry_responding"], true);
    assert_eq!(s["pubsub_connected"], Value::Null, "a single node has no cluster bus");
    assert_eq!(s["draining"], false);

    // Other requests are counted and timed; the dashboard's own are not.
    let before = s["counters"]["http_requests"].as_u64().unwrap();
    app.new_session().await;
    app.get("/health").await;
    app.get("/dev/dashboard/stats").await;
    let after = app.get("/dev/dashboard/stats").await.json();
    assert_eq!(after["counters"]["http_requests"].as_u64().unwrap(), before + 2, "{after}");
    let buckets = after["http_latency"]["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty());
    let mut last = (0.0, 0);
    for b in buckets {
        let (le, count) = (b[0].as_f64().unwrap(), b[1].as_u64().unwrap());
        assert!(le > last.0 && count >= last.1, "buckets ascend: {buckets:?}");
        last = (le, count);
    }
    assert!(last.1 <= after["http_latency"]["count"].as_u64().unwrap());
}

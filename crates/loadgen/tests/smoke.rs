//! Smoke runs of the real `loadgen` binary against a server started in this process: every
//! mode runs for a few seconds, exits 0, and writes a JSON report with the expected keys (and,
//! on loopback, no loss). No performance thresholds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use location_sharing::config::Settings;
use location_sharing::startup::Application;
use serde_json::Value;
use tempfile::TempDir;

/// A server on its own actix system thread, on a free port, with its own SQLite file.
struct Server {
    url: String,
    _tmp: TempDir,
}

fn start_server() -> Server {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let db = format!("sqlite://{}", tmp.path().join("loadgen.sqlite3").display());
    let vars = HashMap::from([
        ("PORT".to_owned(), "0".to_owned()),
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("JWT_SECRET".to_owned(), "loadgen-tests-secret-0123456789abcdef".to_owned()),
        ("DATABASE_URL".to_owned(), db),
        ("DB_POOL_SIZE".to_owned(), "5".to_owned()),
    ]);
    let settings = Settings::from_map(&vars).expect("valid settings");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let app = Application::build(settings).await.expect("the application builds");
            tx.send(app.port()).expect("the test waits for the port");
            let _ = app.run_until_stopped().await;
        });
    });
    let port = rx.recv_timeout(Duration::from_secs(60)).expect("the server starts");
    Server { url: format!("http://127.0.0.1:{port}"), _tmp: tmp }
}

/// Runs loadgen with `args` plus the server, a JSON file and this process as the server pid.
fn loadgen(server: &Server, args: &[&str]) -> (Value, Output) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let pid = std::process::id().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args(["--url", &server.url, "--json", json.to_str().expect("utf-8 path"), "--server-pid", &pid])
        .args(["--threads", "2", "--source-addrs", "2", "--quiet"])
        .output()
        .expect("loadgen runs");
    assert!(
        out.status.success(),
        "loadgen {args:?} exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the JSON report is written");
    let report: Value = serde_json::from_str(&text).expect("the JSON report parses");
    (report, out)
}

fn has(report: &Value, pointer: &str) -> bool {
    report.pointer(pointer).is_some_and(|v| !v.is_null())
}

#[track_caller]
fn assert_keys(report: &Value, pointers: &[&str]) {
    for p in pointers {
        assert!(has(report, p), "missing {p} in {report:#}");
    }
}

fn check_fanout(report: &Value, sockets: u64) {
    assert_eq!(report["mode"], "fanout");
    assert_keys(
        report,
        &[
            "/connections/held",
            "/updates/sent",
            "/deliveries/expected",
            "/deliveries/received",
            "/deliveries/lost",
            "/latency_us/p50",
            "/latency_us/p90",
            "/latency_us/p99",
            "/latency_us/p999",
            "/latency_us/max",
            "/server/cpu_seconds",
            "/server/cpu_us_per_delivery",
            "/server/rss_bytes",
            "/server/rss_per_socket_bytes",
        ],
    );
    assert_eq!(report["connections"]["held"], sockets, "{report:#}");
    let expected = report["deliveries"]["expected"].as_u64().unwrap();
    assert!(expected > 0, "{report:#}");
    assert_eq!(report["deliveries"]["received"].as_u64(), Some(expected), "no loss on loopback: {report:#}");
    assert_eq!(report["deliveries"]["lost"], 0);
    assert_eq!(report["latency_us"]["count"].as_u64(), Some(expected));
    assert_eq!(report["updates"]["replies_error"], 0, "{report:#}");
}

#[test]
fn fanout_smoke() {
    let server = start_server();
    let (report, out) = loadgen(
        &server,
        &[
            "fanout",
            "--sessions",
            "2",
            "--participants",
            "3",
            "--rate",
            "2",
            "--duration",
            "2",
            "--warmup",
            "1",
            "--drain",
            "1",
        ],
    );
    check_fanout(&report, 6);
    // 2 sessions x 3 senders x 2 Hz x 2 s, each to the 2 others.
    assert_eq!(report["updates"]["sent"], 24, "{report:#}");
    assert_eq!(report["deliveries"]["expected"], 48, "{report:#}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("latency_us.p99") && table.contains("deliveries.lost"), "{table}");
}

#[test]
fn fanout_split_over_processes_merges_reports() {
    let server = start_server();
    let (report, _) = loadgen(
        &server,
        &[
            "fanout",
            "--sessions",
            "3",
            "--participants",
            "2",
            "--rate",
            "2",
            "--duration",
            "2",
            "--warmup",
            "1",
            "--drain",
            "1",
            "--processes",
            "2",
        ],
    );
    assert_eq!(report["loadgen"]["processes"], 2);
    check_fanout(&report, 6);
    assert_eq!(report["deliveries"]["expected"], 24, "{report:#}");
}

#[test]
fn idle_smoke() {
    let server = start_server();
    let (report, _) = loadgen(&server, &["idle", "--sockets", "20", "--per-session", "8", "--duration", "1"]);
    assert_eq!(report["mode"], "idle");
    assert_keys(
        &report,
        &["/connections/held", "/server/rss_bytes_before", "/server/rss_bytes", "/server/rss_per_socket_bytes"],
    );
    assert_eq!(report["connections"]["held"], 20, "{report:#}");
    assert_eq!(report["connections"]["failed"], 0);
}

#[test]
fn churn_smoke() {
    let server = start_server();
    let (report, _) = loadgen(&server, &["churn", "--rate", "10", "--duration", "2", "--reuse", "3", "--settle", "0"]);
    assert_eq!(report["mode"], "churn");
    assert_keys(
        &report,
        &[
            "/cycles/attempted",
            "/cycles/ok",
            "/latency_us/p99",
            "/health/before/sessions_live",
            "/health/after/sockets",
            "/health/settled/sockets",
            "/server/cpu_us_per_cycle",
            "/server/rss_bytes_settled",
        ],
    );
    assert_eq!(report["cycles"]["attempted"], 20, "{report:#}");
    assert_eq!(report["cycles"]["ok"], 20, "{report:#}");
    assert_eq!(report["cycles"]["failed"], 0);
}

#[test]
fn rest_smoke() {
    let server = start_server();
    let (report, _) = loadgen(&server, &["rest", "--concurrency", "2", "--duration", "1"]);
    assert_eq!(report["mode"], "rest");
    assert_keys(
        &report,
        &[
            "/requests/create/ok",
            "/requests/create/latency_us/p99",
            "/requests/join/latency_us/p50",
            "/requests/per_second",
        ],
    );
    assert!(report["requests"]["create"]["ok"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(report["requests"]["create"]["failed"], 0);
    assert_eq!(report["requests"]["join"]["failed"], 0);
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(["fanout", "--rate", "fast"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--rate"), "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_loadgen")).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--server-pid"));
}

//! Smoke runs of the real `loadgen` binary against a server started in this process: every
//! mode runs for a few seconds, exits 0, and writes a JSON report with the expected keys (and,
//! on loopback, no loss). No performance thresholds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

/// A server on its own actix system thread (the test's own thread blocks on loadgen): the
/// project's one test server, `location_sharing::testing`.
struct Server {
    url: String,
}

fn start_server() -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            // Every smoke run comes from 127.0.0.1, faster than any person would: the abuse
            // limits are off, said here rather than exempted in the server.
            let server = location_sharing::testing::spawn_app_with(|vars| {
                for limit in [
                    "CREATE_SESSIONS_PER_MINUTE",
                    "JOINS_PER_MINUTE",
                    "SOCKET_CONNECTS_PER_MINUTE",
                    "MAX_SOCKETS_PER_ADDRESS",
                    "MAX_SOCKETS_PER_PARTICIPANT",
                ] {
                    vars.insert(limit.into(), "0".into());
                }
            })
            .await;
            tx.send(server.address.clone()).expect("the test waits for the address");
            // Never returns: the server (and its database file) lives as long as the test process.
            std::future::pending::<()>().await;
        });
    });
    Server { url: rx.recv_timeout(Duration::from_secs(60)).expect("the server starts") }
}

/// Runs loadgen with `args` plus the server, a JSON file and this process as the server pid.
fn loadgen(server: &Server, args: &[&str]) -> (Value, Output) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.args(["--url", &server.url]);
    run_loadgen(cmd, args)
}

/// Runs `cmd` with `args` plus a JSON file, this process as the server pid, and small settings.
fn run_loadgen(mut cmd: Command, args: &[&str]) -> (Value, Output) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let pid = std::process::id().to_string();
    let out = cmd
        .args(args)
        .args(["--json", json.to_str().expect("utf-8 path"), "--server-pid", &pid])
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
fn the_url_can_come_from_loadgen_url() {
    let server = start_server();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.env("LOADGEN_URL", &server.url);
    let (report, _) = run_loadgen(cmd, &["rest", "--concurrency", "1", "--duration", "1"]);
    assert_eq!(report["config"]["urls"][0], server.url.as_str(), "{report:#}");
    assert!(report["requests"]["create"]["ok"].as_u64().unwrap() > 0, "{report:#}");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let bin = env!("CARGO_BIN_EXE_loadgen");
    let out = Command::new(bin).args(["fanout", "--rate", "fast"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--rate"), "{err}");
    // The variable goes through the same checks as the flag.
    let out = Command::new(bin).arg("rest").env("LOADGEN_URL", "https://127.0.0.1:1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim().lines().count() == 1 && err.contains("--url"), "{err}");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--server-pid"));
    let help = Command::new(bin).args(["help", "fanout"]).output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 50]"));
}

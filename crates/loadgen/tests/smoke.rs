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
    // Every smoke run comes from 127.0.0.1, faster than any person would: the abuse limits are
    // off, said here rather than exempted in the server.
    start_server_with(&[
        ("CREATE_SESSIONS_PER_MINUTE", "0"),
        ("JOINS_PER_MINUTE", "0"),
        ("SOCKET_CONNECTS_PER_MINUTE", "0"),
        ("MAX_SOCKETS_PER_ADDRESS", "0"),
        ("MAX_SOCKETS_PER_PARTICIPANT", "0"),
    ])
}

/// A server with these settings on top of the test server's.
fn start_server_with(settings: &[(&str, &str)]) -> Server {
    let settings: Vec<(String, String)> = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = location_sharing::testing::spawn_app_with(|vars| vars.extend(settings)).await;
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
fn soak_smoke() {
    // The limits on, small enough for the abusers to meet them within seconds; the legitimate
    // load of 5 s over two source addresses stays far under them.
    let server = start_server_with(&[
        ("CREATE_SESSIONS_PER_MINUTE", "20"),
        ("JOINS_PER_MINUTE", "100"),
        ("SOCKET_CONNECTS_PER_MINUTE", "60"),
        ("MAX_SOCKETS_PER_ADDRESS", "100"),
        ("MAX_SOCKETS_PER_PARTICIPANT", "2"),
    ]);
    let started = std::time::Instant::now();
    let (report, out) = loadgen(
        &server,
        &[
            "soak",
            "--duration",
            "5",
            "--sample-every",
            "1",
            "--warmup",
            "1",
            "--sessions",
            "2",
            "--participants",
            "3",
            "--rate",
            "2",
            "--churn-rate",
            "2",
            "--rest-clients",
            "1",
            "--rest-rate",
            "1",
            "--abuse-every",
            "4",
            "--abuse-sockets",
            "6",
            "--abuse-half-open",
            "4",
        ],
    );
    assert_eq!(report["mode"], "soak");
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6, "one at the start and one a second: {report:#}");
    for s in samples {
        assert!(s["rss_bytes"].as_u64().unwrap() > 0 && s["open_files"].as_u64().unwrap() > 0, "{s}");
    }
    assert!(samples[1..].iter().all(|s| s["deliveries"].as_u64().unwrap() > 0), "{report:#}");
    assert_keys(&report, &["/flatness/verdict", "/flatness/rss_mib/slope_per_10min", "/server/rss_bytes_end"]);
    assert_eq!(report["checks"]["failed"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["legit"]["fanout"]["deliveries"]["lost"], 0, "{report:#}");
    assert_eq!(report["legit"]["refused_by_a_limit"], 0, "{report:#}");
    assert!(report["legit"]["churn"]["ok"].as_u64().unwrap() >= 8, "{report:#}");
    assert!(report["legit"]["rest"]["ok"].as_u64().unwrap() >= 4, "{report:#}");
    // What the abusers saw: each of them refused.
    let abuse = &report["abuse"];
    // One round, 2 s in: the next would start after the end (and find the buckets still empty).
    assert_eq!(abuse["rounds"], 1, "{report:#}");
    assert!(abuse["create_flood"]["refused_429"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(abuse["create_flood"]["without_retry_after"], 0);
    assert!(abuse["handshake_flood"]["refused_429"].as_u64().unwrap() > 0, "{report:#}");
    // 6 sockets on one token, 2 allowed: the 4 oldest closed.
    assert_eq!(abuse["socket_cap"]["closed_1008"], 4, "{report:#}");
    assert_eq!(abuse["socket_cap"]["rounds_not_oldest_first"], 0, "{report:#}");
    assert_eq!(abuse["oversize"]["closed_1009"], 1, "{report:#}");
    assert_eq!(abuse["garbage"]["socket_survived"], 1, "{report:#}");
    assert_eq!(abuse["half_open"]["closed"], 4, "{report:#}");
    assert_eq!(abuse["half_open"]["still_open"], 0);
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines.lines().filter(|l| l.starts_with("soak t=")).count(), 6, "{lines}");
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
}

/// A server for the advice runs: the abuse limits off, as for the others, and short advised
/// intervals (200 ms while somebody else looks, 1 s while nobody does) so a few seconds show both.
fn start_advice_server() -> Server {
    start_server_with(&[
        ("CREATE_SESSIONS_PER_MINUTE", "0"),
        ("JOINS_PER_MINUTE", "0"),
        ("SOCKET_CONNECTS_PER_MINUTE", "0"),
        ("MAX_SOCKETS_PER_ADDRESS", "0"),
        ("MAX_SOCKETS_PER_PARTICIPANT", "0"),
        ("FAST_UPDATE_INTERVAL_MS", "200"),
        ("IDLE_UPDATE_INTERVAL_MS", "1000"),
    ])
}

/// One session of 6 at 5 Hz (the fast interval), one of them looking at the map, 4 s measured
/// after 3 s for the advice to settle (it follows a change within 2 s).
const ADVICE_RUN: [&str; 17] = [
    "advice",
    "--sessions",
    "1",
    "--participants",
    "6",
    "--viewers",
    "1",
    "--rate",
    "5",
    "--duration",
    "4",
    "--warmup",
    "3",
    "--drain",
    "1",
    "--sample-every",
    "1",
];

#[track_caller]
fn check_advice(report: &Value) {
    assert_eq!(report["mode"], "advice");
    assert_keys(
        report,
        &[
            "/updates/per_second",
            "/updates/ratio_to_full_rate",
            "/deliveries/per_second",
            "/latency_us/p99",
            "/advice/pushes",
            "/evening/updates_per_session",
            "/evening/updates_per_session_at_full_rate",
            "/server/cpu_seconds",
        ],
    );
    assert_eq!(report["connections"]["held"], 6, "{report:#}");
    assert_eq!(
        (report["advice"]["viewing_true"].as_u64(), report["advice"]["viewing_false"].as_u64()),
        (Some(1), Some(5))
    );
    // Every viewing event and update was answered ok, and every update reached the 5 others.
    assert_eq!(report["updates"]["replies_error"], 0, "{report:#}");
    let sent = report["updates"]["sent"].as_u64().unwrap();
    assert_eq!(report["deliveries"]["expected"].as_u64(), Some(sent * 5), "{report:#}");
    assert_eq!(report["deliveries"]["lost"], 0, "no loss on loopback: {report:#}");
    // The advice each client ends with: the viewer is watched by nobody else (idle, 1 s); the five
    // others are watched by the viewer (fast, 200 ms).
    assert!(report["advice"]["pushes"].as_u64().unwrap() >= 6, "one right after each join: {report:#}");
    assert_eq!(report["advice"]["interval_ms_min"], 200, "{report:#}");
    assert_eq!(report["advice"]["interval_ms_max"], 1000, "{report:#}");
    assert_eq!(report["advice"]["clients_fast_at_end"], 5, "{report:#}");
    assert_eq!(report["advice"]["clients_idle_at_end"], 1, "{report:#}");
    assert_eq!(report["advice"]["clients_unadvised_at_end"], 0, "{report:#}");
    let intervals = report["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 4, "one a second: {report:#}");
    for i in intervals {
        assert_eq!((i["fast"].as_u64(), i["idle"].as_u64()), (Some(5), Some(1)), "{i}");
    }
}

#[test]
fn advice_clients_follow_the_advice() {
    let server = start_advice_server();
    let (report, out) = loadgen(&server, &ADVICE_RUN);
    check_advice(&report);
    assert_eq!(report["advice"]["followed"], true);
    // 5 clients at 5 Hz and the viewer at 1 Hz for 4 s: 104 updates, not 120 (a client's first
    // update of the window may fall either side of its edge).
    let sent = report["updates"]["sent"].as_u64().unwrap();
    assert!((100..=108).contains(&sent), "{report:#}");
    let ratio = report["updates"]["ratio_to_full_rate"].as_f64().unwrap();
    assert!((0.8..0.92).contains(&ratio), "{report:#}");
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines.lines().filter(|l| l.starts_with("advice t=")).count(), 4, "{lines}");
    assert!(lines.contains("fast=5 idle=1 unadvised=0"), "{lines}");
}

#[test]
fn advice_baseline_ignores_the_advice() {
    let server = start_advice_server();
    let args: Vec<&str> = ADVICE_RUN.iter().copied().chain(["--ignore-advice"]).collect();
    let (report, _) = loadgen(&server, &args);
    check_advice(&report);
    assert_eq!(report["advice"]["followed"], false);
    // Told the same, all 6 send at 5 Hz for 4 s (the schedule is counted from due times).
    let sent = report["updates"]["sent"].as_u64().unwrap();
    assert!((118..=120).contains(&sent), "{report:#}");
    assert_eq!(report["evening"]["updates_per_session_at_full_rate"], 6.0 * 5.0 * 4.0 * 3600.0, "{report:#}");
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

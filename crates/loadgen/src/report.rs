//! The report: one JSON document per run (what `--json` writes), and the same as a table.

use serde_json::{json, Map, Value};

use crate::args::{Args, Mode};
use crate::hist::Summary;
use crate::http::Health;
use crate::stats::WorkerReport;
use crate::sys::Sample;

/// What the coordinator saw of the run and the server.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Processes used.
    pub processes: usize,
    /// The file limit of each.
    pub nofile: u64,
    /// From start to every worker ready.
    pub setup_seconds: f64,
    /// The measured window (shorter when interrupted).
    pub measured_seconds: f64,
    /// Its start and end, wall-clock µs since the Unix epoch (for tools that read other counters,
    /// Redis's say, over the same window).
    pub window_wall_us: Option<(i64, i64)>,
    /// The server before anything was set up.
    pub before: Option<Sample>,
    /// After setup.
    pub ready: Option<Sample>,
    /// At the start of the measured window.
    pub window_start: Option<Sample>,
    /// At its end.
    pub window_end: Option<Sample>,
    /// loadgen's own processes at the start of the window.
    pub loadgen_start: Option<Sample>,
    /// And at its end.
    pub loadgen_end: Option<Sample>,
    /// Churn: after the settle time.
    pub settled: Option<Sample>,
    /// Churn: `/health/detailed` before.
    pub health_before: Option<Health>,
    /// Right after.
    pub health_after: Option<Health>,
    /// After the settle time.
    pub health_settled: Option<Health>,
    /// Ctrl-C.
    pub interrupted: bool,
    /// Workers that sent no report.
    pub missing_workers: usize,
    /// Soak: the samples of the server and of the legitimate traffic.
    pub soak: Vec<crate::soak::verdict::Sample>,
}

pub(crate) fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

pub(crate) fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 && a.is_finite() {
        json!(round(a / b, 3))
    } else {
        Value::Null
    }
}

pub(crate) fn summary(s: Summary) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

pub(crate) fn cpu(tl: &Timeline) -> Option<f64> {
    Some(tl.window_end?.cpu_seconds - tl.window_start?.cpu_seconds)
}

fn health(h: Option<Health>) -> Value {
    h.map_or(Value::Null, |h| json!({"sessions_live": h.sessions_live, "sockets": h.sockets}))
}

/// The report of a run.
pub fn build(a: &Args, m: &WorkerReport, tl: &Timeline) -> Value {
    let secs = tl.measured_seconds;
    let mut r = Map::new();
    r.insert("mode".into(), json!(a.mode.name()));
    r.insert("interrupted".into(), json!(tl.interrupted));
    let urls: Vec<String> = a.urls.iter().map(|t| format!("http://{}", t.host)).collect();
    let mut config = json!({
        "urls": urls, "duration_s": a.duration, "threads": a.threads, "processes": tl.processes,
        "source_addrs": a.source_addrs, "server_pids": a.server_pids,
    });
    let extra = match a.mode {
        Mode::Fanout => json!({"sessions": a.sessions, "participants": a.participants, "rate_hz": a.rate,
                               "warmup_s": a.warmup, "drain_s": a.drain, "heartbeat_s": a.heartbeat,
                               "affine": a.affine}),
        Mode::Idle => json!({"sockets": a.sockets, "per_session": a.per_session, "heartbeat_s": a.heartbeat}),
        Mode::Churn => json!({"rate_per_s": a.rate, "reuse": a.reuse, "settle_s": a.settle}),
        Mode::Rest => json!({"concurrency": a.concurrency}),
        Mode::Advice => json!({"sessions": a.sessions, "participants": a.participants, "viewers": a.advice.viewers,
                               "rate_hz": a.rate, "ignore_advice": a.advice.ignore_advice,
                               "warmup_s": a.warmup, "drain_s": a.drain, "heartbeat_s": a.heartbeat,
                               "sample_every_s": a.advice.sample_every, "evening_hours": a.advice.evening_hours,
                               "glance_s": a.advice.glance.map(|(on, off)| [on, off])}),
        Mode::Soak => {
            let s = &a.soak;
            json!({"sessions": a.sessions, "participants": a.participants, "rate_hz": a.rate,
                   "heartbeat_s": a.heartbeat, "churn_rate_per_s": s.churn_rate, "reuse": a.reuse,
                   "rest_clients": s.rest_clients, "rest_rate_hz": s.rest_rate, "sample_every_s": s.sample_every,
                   "warmup_s": s.warmup, "abuse_addr": s.abuse_addr.to_string(), "abuse_every_s": s.abuse_every,
                   "abuse_sockets": s.abuse_sockets, "abuse_handshakes": s.abuse_handshakes,
                   "abuse_creates": s.abuse_creates, "abuse_half_open": s.abuse_half_open,
                   "abuse_frame_bytes": s.abuse_frame_bytes, "max_loss": s.max_loss})
        }
    };
    if let (Some(c), Value::Object(e)) = (config.as_object_mut(), extra) {
        c.extend(e);
    }
    r.insert("config".into(), config);
    r.insert("setup_seconds".into(), json!(round(tl.setup_seconds, 3)));
    r.insert("measured_seconds".into(), json!(round(secs, 3)));
    if let Some((start, end)) = tl.window_wall_us {
        r.insert("window_unix_us".into(), json!({"start": start, "end": end}));
    }
    let server_cpu = cpu(tl);
    let end_rss = tl.window_end.map(|s| s.rss_bytes);
    let held = m.get("held");

    match a.mode {
        Mode::Fanout | Mode::Idle | Mode::Advice => {
            let attempted = m.get("connections_attempted");
            r.insert(
                "connections".into(),
                json!({"attempted": attempted, "held": held,
                       "failed": attempted.saturating_sub(m.get("connections_ok")),
                       "closed_early": m.get("closed_early")}),
            );
        }
        Mode::Churn | Mode::Rest | Mode::Soak => {}
    }
    match a.mode {
        Mode::Fanout => {
            let (sent, expected, received) =
                (m.get("updates_sent"), m.get("deliveries_expected"), m.get("deliveries_received"));
            let lost = expected.saturating_sub(received);
            r.insert(
                "updates".into(),
                json!({"sent": sent, "per_second": ratio(sent as f64, secs),
                       "replies_ok": m.get("replies_ok"), "replies_error": m.get("replies_error")}),
            );
            r.insert(
                "deliveries".into(),
                json!({"expected": expected, "received": received, "lost": lost,
                       "loss_ratio": if expected > 0 { json!(lost as f64 / expected as f64) } else { json!(0.0) },
                       "per_second": ratio(received as f64, secs)}),
            );
            r.insert("latency_us".into(), summary(m.hist("latency").summary()));
            r.insert(
                "server".into(),
                match server_cpu {
                    Some(c) => json!({"cpu_seconds": round(c, 3),
                                      "cpu_percent": ratio(c * 100.0, secs),
                                      "cpu_us_per_delivery": ratio(c * 1e6, received as f64),
                                      "rss_bytes": end_rss,
                                      "rss_per_socket_bytes": end_rss.map_or(Value::Null, |b| ratio(b as f64, held as f64))}),
                    None => Value::Null,
                },
            );
        }
        Mode::Idle => {
            r.insert("heartbeat_replies".into(), json!(m.get("replies_ok")));
            let before = tl.before.map(|s| s.rss_bytes);
            r.insert(
                "server".into(),
                match (server_cpu, before, end_rss) {
                    (Some(c), Some(b), Some(e)) => json!({
                        "cpu_seconds": round(c, 3), "cpu_percent": ratio(c * 100.0, secs),
                        "rss_bytes_before": b, "rss_bytes_connected": tl.ready.map(|s| s.rss_bytes),
                        "rss_bytes": e, "rss_per_socket_bytes": ratio(e as f64 - b as f64, held as f64)}),
                    _ => Value::Null,
                },
            );
        }
        Mode::Churn => {
            let (attempted, ok, failed) = (m.get("cycles_attempted"), m.get("cycles_ok"), m.get("cycles_failed"));
            r.insert(
                "cycles".into(),
                json!({"attempted": attempted, "ok": ok, "failed": failed, "per_second": ratio(ok as f64, secs)}),
            );
            r.insert("latency_us".into(), summary(m.hist("latency").summary()));
            let steps: Map<String, Value> = ["session", "join", "connect", "phx_join", "leave", "close"]
                .iter()
                .map(|s| ((*s).to_owned(), json!(m.hist(&format!("step_{s}")).summary().p50)))
                .collect();
            r.insert("step_p50_us".into(), Value::Object(steps));
            r.insert(
                "health".into(),
                json!({"before": health(tl.health_before), "after": health(tl.health_after),
                       "settled": health(tl.health_settled)}),
            );
            r.insert(
                "server".into(),
                match server_cpu {
                    Some(c) => json!({"cpu_seconds": round(c, 3), "cpu_us_per_cycle": ratio(c * 1e6, ok as f64),
                                      "rss_bytes_before": tl.before.map(|s| s.rss_bytes),
                                      "rss_bytes_after": end_rss,
                                      "rss_bytes_settled": tl.settled.map(|s| s.rss_bytes)}),
                    None => Value::Null,
                },
            );
        }
        Mode::Soak => crate::soak::verdict::insert(a, m, tl, &mut r),
        Mode::Advice => crate::advice::report::insert(a, m, tl, &mut r),
        Mode::Rest => {
            let (c_ok, j_ok) = (m.get("create_ok"), m.get("join_ok"));
            r.insert(
                "requests".into(),
                json!({
                    "create": {"ok": c_ok, "failed": m.get("create_failed"), "latency_us": summary(m.hist("create").summary())},
                    "join": {"ok": j_ok, "failed": m.get("join_failed"), "latency_us": summary(m.hist("join").summary())},
                    "per_second": ratio((c_ok + j_ok) as f64, secs),
                    "pairs_per_second": ratio(j_ok as f64, secs),
                }),
            );
            r.insert(
                "server".into(),
                match server_cpu {
                    Some(c) => json!({"cpu_seconds": round(c, 3), "cpu_percent": ratio(c * 100.0, secs),
                                      "cpu_us_per_request": ratio(c * 1e6, (c_ok + j_ok) as f64),
                                      "rss_bytes": end_rss}),
                    None => Value::Null,
                },
            );
        }
    }
    // loadgen's own CPU in the window: near 100 % per core it may use means it, not the server,
    // may be what limits the run.
    let own_cpu = match (tl.loadgen_start, tl.loadgen_end) {
        (Some(s), Some(e)) => ratio((e.cpu_seconds - s.cpu_seconds) * 100.0, secs),
        _ => Value::Null,
    };
    r.insert(
        "loadgen".into(),
        json!({"version": env!("CARGO_PKG_VERSION"), "processes": tl.processes, "threads_per_process": a.threads,
               "nofile_limit": tl.nofile, "cpu_seconds": m.get("loadgen_cpu_ms") as f64 / 1000.0,
               "cpu_percent_in_window": own_cpu, "missing_workers": tl.missing_workers}),
    );
    r.insert("errors".into(), json!(m.errors));
    r.insert("error_samples".into(), json!(m.samples));
    Value::Object(r)
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let text: Vec<String> = items.iter().map(scalar).collect();
            out.push((prefix.to_owned(), text.join(", ")));
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_owned(), scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) if f.abs() < 0.001 && f != 0.0 => format!("{f:.3e}"),
            (None, Some(f)) => format!("{}", round(f, 3)),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The report as a two-column table.
pub fn table(report: &Value) -> String {
    let mut rows = Vec::new();
    if let Value::Object(map) = report {
        for (k, v) in map {
            // Each soak sample was printed as a line of its own as it was taken, and each advice
            // interval before the table.
            if k == "error_samples" || k == "samples" || k == "intervals" {
                continue;
            }
            flatten(k, v, &mut rows);
        }
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    if let Some(samples) = report.get("error_samples").and_then(Value::as_array) {
        for s in samples.iter().take(5) {
            out.push_str(&format!("error sample: {}\n", scalar(s)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::Hist;

    #[test]
    fn fanout_report_has_the_figures() {
        let a = crate::args::parse_line("fanout --sessions 2 --participants 3").unwrap_or_else(|e| panic!("{e}"));
        let mut m = WorkerReport::default();
        for (k, v) in [
            ("connections_attempted", 6),
            ("connections_ok", 6),
            ("held", 6),
            ("updates_sent", 10),
            ("deliveries_expected", 20),
            ("deliveries_received", 19),
        ] {
            m.counters.insert(k.to_owned(), v);
        }
        let mut h = Hist::new();
        h.record(1500);
        m.hists.insert("latency".to_owned(), h);
        let tl = Timeline {
            processes: 1,
            measured_seconds: 2.0,
            window_start: Some(Sample { cpu_seconds: 1.0, rss_bytes: 1000 }),
            window_end: Some(Sample { cpu_seconds: 1.5, rss_bytes: 6000 }),
            window_wall_us: Some((1_000_000, 3_000_000)),
            ..Timeline::default()
        };
        let r = build(&a, &m, &tl);
        assert_eq!(r["window_unix_us"]["start"], 1_000_000);
        assert_eq!(r["window_unix_us"]["end"], 3_000_000);
        assert_eq!(r["config"]["affine"], false);
        assert_eq!(r["deliveries"]["lost"], 1);
        assert_eq!(r["deliveries"]["loss_ratio"], 0.05);
        assert_eq!(r["latency_us"]["p99"], 1500);
        assert_eq!(r["server"]["cpu_us_per_delivery"], 26315.789);
        assert_eq!(r["server"]["rss_per_socket_bytes"], 1000.0);
        assert_eq!(r["connections"]["held"], 6);
        let t = table(&r);
        assert!(t.contains("deliveries.lost") && t.contains("latency_us.p99"), "{t}");
    }
}

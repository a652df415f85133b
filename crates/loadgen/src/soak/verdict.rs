//! The coordinator's side of a soak: every `--sample-every` a reading of the server (RSS, open
//! files, CPU, sockets) beside the window's legitimate traffic, one line each on stdout; at the
//! end the flatness verdict, the report's soak sections, and the hard checks.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::args::Args;
use crate::hist::Hist;
use crate::http::Health;
use crate::report::Timeline;
use crate::stats::WorkerReport;
use crate::sys;
use crate::timefmt::wall_now_us;

const MIB: f64 = 1_048_576.0;

/// One reading, and the legitimate traffic of the window that ended with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t_s: f64,
    /// The server's resident memory (all `--server-pid`s), bytes.
    pub rss_bytes: Option<u64>,
    /// Its open files (`/proc/PID/fd`).
    pub open_files: Option<u64>,
    /// Its CPU over the window, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// Sockets connected (`/health/detailed`).
    pub sockets: Option<u64>,
    /// Session actors live.
    pub sessions_live: Option<u64>,
    /// Fan-out deliveries of the updates due in the window.
    pub deliveries: u64,
    /// Per second.
    pub deliveries_per_s: f64,
    /// Expected and not received (by the time of the line).
    pub lost: u64,
    /// Their latency: median, µs.
    pub p50_us: Option<u64>,
    /// 99th percentile, µs.
    pub p99_us: Option<u64>,
    /// Largest, µs.
    pub max_us: Option<u64>,
    /// Churn cycles that ended well in the window.
    pub churn_ok: u64,
    /// Those that failed.
    pub churn_failed: u64,
    /// REST create + join + GET that ended well.
    pub rest_ok: u64,
    /// Those that failed.
    pub rest_failed: u64,
}

fn read_server(pids: &[u32]) -> (Option<sys::Sample>, Option<u64>) {
    let files = if pids.is_empty() { None } else { pids.iter().map(|&p| sys::open_files(p).ok()).sum::<Option<u64>>() };
    (sys::sample(pids), files)
}

fn percent_of(h: &Hist, q: f64) -> Option<u64> {
    (h.len() > 0).then(|| h.quantile(q))
}

/// Samples the server and the legitimate traffic every `--sample-every` from `t0_wall` until
/// the end (or Ctrl-C), printing a line for each; the first is taken at the start.
pub fn watch(a: &Args, t0_wall: i64, health: &dyn Fn() -> Option<Health>) -> Vec<Sample> {
    let s = &a.soak;
    let every = (s.sample_every * 1e6) as i64;
    let end = t0_wall + (a.duration * 1e6) as i64;
    let wait =
        (super::flush_lag(s.sample_every) + Duration::from_secs(1)).min(Duration::from_secs_f64(s.sample_every * 0.8));
    let mut samples = Vec::new();
    let (mut last_cpu, files) = read_server(&a.server_pids);
    let h = health();
    let first = Sample {
        rss_bytes: last_cpu.map(|c| c.rss_bytes),
        open_files: files,
        sockets: h.map(|h| h.sockets),
        sessions_live: h.map(|h| h.sessions_live),
        ..Sample::default()
    };
    print_line(&first);
    samples.push(first);
    let mut last_at = t0_wall;
    for k in 0u64.. {
        let at = (t0_wall + (k as i64 + 1) * every).min(end);
        crate::coord::sleep_until_wall(at);
        if sys::stopped() {
            break;
        }
        let (cpu, files) = read_server(&a.server_pids);
        let h = health();
        let deadline = at + wait.as_micros() as i64;
        while super::threads_reported(k) < a.threads && wall_now_us() < deadline && !sys::stopped() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let w = super::take_window(k);
        let secs = (at - last_at) as f64 / 1e6;
        let server_cpu_percent = match (last_cpu, cpu) {
            (Some(a), Some(b)) if secs > 0.0 => {
                Some(((b.cpu_seconds - a.cpu_seconds) * 100.0 / secs * 10.0).round() / 10.0)
            }
            _ => None,
        };
        let sample = Sample {
            t_s: ((at - t0_wall) as f64 / 1e3).round() / 1e3,
            rss_bytes: cpu.map(|c| c.rss_bytes),
            open_files: files,
            server_cpu_percent,
            sockets: h.map(|h| h.sockets),
            sessions_live: h.map(|h| h.sessions_live),
            deliveries: w.received,
            deliveries_per_s: if secs > 0.0 { (w.received as f64 / secs).round() } else { 0.0 },
            lost: w.expected.saturating_sub(w.received),
            p50_us: percent_of(&w.latency, 0.5),
            p99_us: percent_of(&w.latency, 0.99),
            max_us: (w.latency.len() > 0).then(|| w.latency.summary().max),
            churn_ok: w.churn_ok,
            churn_failed: w.churn_failed,
            rest_ok: w.rest_ok,
            rest_failed: w.rest_failed,
        };
        print_line(&sample);
        samples.push(sample);
        (last_cpu, last_at) = (cpu, at);
        if at >= end {
            break;
        }
    }
    samples
}

fn print_line(s: &Sample) {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{:.2}", v as f64 / 1000.0));
    let rss = s.rss_bytes.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / MIB));
    let cpu = s.server_cpu_percent.map_or("-".to_owned(), |c| format!("{c:.1}"));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "soak t={:>6.0}s  rss {rss:>6} MiB  files {:>5}  sockets {:>5}  sessions {:>5}  cpu {cpu:>5} %  \
         deliveries {:>7} ({:.0}/s) lost {}  p50 {} ms  p99 {} ms  churn {}/{}  rest {}/{}",
        s.t_s,
        opt(s.open_files),
        opt(s.sockets),
        opt(s.sessions_live),
        s.deliveries,
        s.deliveries_per_s,
        s.lost,
        ms(s.p50_us),
        ms(s.p99_us),
        s.churn_ok,
        s.churn_failed,
        s.rest_ok,
        s.rest_failed,
    );
    let _ = out.flush();
}

/// A series after warm-up: where it started and ended, its range, and the slope of its
/// least-squares line per 10 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// The first value.
    pub first: f64,
    /// The last.
    pub last: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The mean.
    pub mean: f64,
    /// Slope of the least-squares line, units per 600 s.
    pub slope_per_10min: f64,
}

/// The trend of `(seconds, value)` points; `None` under two points or all at one time.
pub fn trend(points: &[(f64, f64)]) -> Option<Trend> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    Some(Trend {
        first: round(points[0].1),
        last: round(points[points.len() - 1].1),
        min: round(points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min)),
        max: round(points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max)),
        mean: round(my),
        slope_per_10min: round(sxy / sxx * 600.0),
    })
}

/// Whether RSS (MiB) and open files stayed flat after `warmup` seconds: a slope within
/// 2 % of the mean per 10 minutes (at least 1 MiB, 5 files). Reported, never asserted.
pub fn flatness(samples: &[Sample], warmup: f64) -> Value {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= warmup).collect();
    let series = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        after.iter().filter_map(|s| f(s).map(|v| (s.t_s, v))).collect()
    };
    let rss = trend(&series(&|s| s.rss_bytes.map(|b| b as f64 / MIB)));
    let files = trend(&series(&|s| s.open_files.map(|f| f as f64)));
    let flat = |t: Option<Trend>, floor: f64| t.map(|t| t.slope_per_10min.abs() <= floor.max(0.02 * t.mean.abs()));
    let (rss_flat, files_flat) = (flat(rss, 1.0), flat(files, 5.0));
    let verdict = match (rss, files, rss_flat, files_flat) {
        (Some(r), Some(f), Some(rf), Some(ff)) => format!(
            "{}: RSS {:.1}–{:.1} MiB ({:+.2} MiB per 10 min), open files {:.0}–{:.0} ({:+.1} per 10 min), {} samples from {:.0} s",
            match (rf, ff) {
                (true, true) => "flat",
                (false, true) => "RSS not flat",
                (true, false) => "open files not flat",
                (false, false) => "neither flat",
            },
            r.min,
            r.max,
            r.slope_per_10min,
            f.min,
            f.max,
            f.slope_per_10min,
            after.len(),
            warmup
        ),
        _ => format!(
            "not judged: fewer than 2 readings of the server from {warmup:.0} s on (--server-pid given? \
             --warmup shorter than --duration?)"
        ),
    };
    json!({"warmup_s": warmup, "samples": after.len(), "rss_mib": rss, "open_files": files,
           "rss_flat": rss_flat, "open_files_flat": files_flat, "verdict": verdict})
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn summary(h: Hist) -> Value {
    serde_json::to_value(h.summary()).unwrap_or(Value::Null)
}

/// Adds the soak's sections to the report: samples, flatness, legitimate traffic, abusers,
/// server, checks.
pub fn insert(a: &Args, m: &WorkerReport, tl: &Timeline, r: &mut Map<String, Value>) {
    let s = &a.soak;
    let g = |k: &str| m.get(k);
    r.insert("samples".into(), json!(tl.soak));
    r.insert("flatness".into(), flatness(&tl.soak, s.warmup));
    let (expected, received) = (g("fanout.deliveries_expected"), g("fanout.deliveries_received"));
    let attempted = g("fanout.connections_attempted");
    let (churn_ok, churn_failed) = (g("churn.cycles_ok"), g("churn.cycles_failed"));
    let (rest_ok, rest_failed) = (g("rest.cycles_ok"), g("rest.cycles_failed"));
    let legit_429: u64 =
        m.errors.iter().filter(|(k, _)| !k.starts_with("abuse.") && k.contains("_429")).map(|(_, v)| *v).sum();
    r.insert(
        "legit".into(),
        json!({
            "fanout": {
                "connections": {"attempted": attempted, "held": g("fanout.held"),
                                "failed": attempted.saturating_sub(g("fanout.connections_ok")),
                                "closed_early": g("fanout.closed_early")},
                "updates_sent": g("fanout.updates_sent"),
                "deliveries": {"expected": expected, "received": received,
                               "lost": expected.saturating_sub(received),
                               "loss_ratio": ratio(expected.saturating_sub(received), expected)},
                "latency_us": summary(m.hist("fanout.latency")),
            },
            "churn": {"attempted": g("churn.cycles_attempted"), "ok": churn_ok, "failed": churn_failed,
                      "latency_us": summary(m.hist("churn.latency"))},
            "rest": {"ok": rest_ok, "failed": rest_failed,
                     "create_p99_us": m.hist("rest.create").summary().p99,
                     "join_p99_us": m.hist("rest.join").summary().p99,
                     "get_p99_us": m.hist("rest.get").summary().p99},
            "refused_by_a_limit": legit_429,
        }),
    );
    let ab = |k: &str| m.get(&format!("abuse.{k}"));
    let flood = |p: &str, ok: &str, unrefused: &str| {
        json!({"requests": ab(p), "refused_429": ab(&format!("{p}_429")),
               "without_retry_after": ab(&format!("{p}_429_without_retry_after")),
               ok: ab(&format!("{p}_{}", if p == "creates" { "201" } else { "2xx" })),
               "other_status": ab(&format!("{p}_other_status")), "no_answer": ab(&format!("{p}_no_answer")),
               "rounds_unrefused": ab(unrefused)})
    };
    let closed_after = m.hist("abuse.half_open_closed_after").summary();
    r.insert(
        "abuse".into(),
        json!({
            "address": s.abuse_addr.to_string(), "rounds": ab("rounds"), "setup_failed": ab("setup_failed"),
            "create_flood": flood("creates", "created", "create_rounds_unrefused"),
            "handshake_flood": flood("handshakes", "upgraded", "handshake_rounds_unrefused"),
            "socket_cap": {"opened": ab("sockets_opened"), "closed_1008": ab("sockets_1008"),
                           "closed_otherwise": ab("sockets_other_close"), "refused_429": ab("sockets_refused_429"),
                           "rounds_unrefused": ab("socket_rounds_unrefused"),
                           "rounds_not_oldest_first": ab("sockets_1008_not_oldest")},
            "garbage": {"frames": ab("garbage_frames"), "socket_survived": ab("garbage_survived"),
                        "socket_closed": ab("garbage_closed")},
            "oversize": {"sent": ab("oversize_sent"), "closed_1009": ab("oversize_1009"),
                         "closed_otherwise": ab("oversize_closed_otherwise"), "not_closed": ab("oversize_not_closed")},
            "half_open": {"partial_head": ab("half_open_partial_head"), "silent": ab("half_open_silent"),
                          "closed": ab("half_open_closed"), "answered_408": ab("half_open_408"),
                          "still_open": ab("half_open_still_open"),
                          "closed_after_ms": {"min": closed_after.min / 1000, "p50": closed_after.p50 / 1000,
                                              "max": closed_after.max / 1000}},
        }),
    );
    let cpu = match (tl.window_start, tl.window_end) {
        (Some(a), Some(b)) if tl.measured_seconds > 0.0 => {
            let c = b.cpu_seconds - a.cpu_seconds;
            json!({"cpu_seconds": (c * 1000.0).round() / 1000.0, "cpu_percent": (c * 1000.0 / tl.measured_seconds).round() / 10.0})
        }
        _ => Value::Null,
    };
    let first = tl.soak.first();
    let last = tl.soak.last();
    r.insert(
        "server".into(),
        json!({"cpu": cpu, "rss_bytes_start": first.and_then(|s| s.rss_bytes), "rss_bytes_end": last.and_then(|s| s.rss_bytes),
               "open_files_start": first.and_then(|s| s.open_files), "open_files_end": last.and_then(|s| s.open_files)}),
    );
    let (passed, failed) = checks(a, m, legit_429);
    r.insert("checks".into(), json!({"passed": passed, "failed": failed}));
}

/// The hard checks: (passed, failed), each a sentence.
fn checks(a: &Args, m: &WorkerReport, legit_429: u64) -> (Vec<String>, Vec<String>) {
    let s = &a.soak;
    let g = |k: &str| m.get(k);
    let ab = |k: &str| m.get(&format!("abuse.{k}"));
    let (expected, received) = (g("fanout.deliveries_expected"), g("fanout.deliveries_received"));
    let loss = ratio(expected.saturating_sub(received), expected);
    let churn = (g("churn.cycles_failed"), g("churn.cycles_attempted"));
    let rest = (g("rest.cycles_failed"), g("rest.cycles_ok") + g("rest.cycles_failed"));
    let fanout_failed = g("fanout.connections_attempted").saturating_sub(g("fanout.connections_ok"));
    let list = [
        (ab("setup_failed") == 0, "the abusers' session and participants were set up".to_owned()),
        (ab("rounds") > 0, format!("{} rounds of abuse ran", ab("rounds"))),
        (
            ab("creates_429") > 0 && ab("create_rounds_unrefused") == 0 && ab("creates_429_without_retry_after") == 0,
            format!(
                "the session-creation flood was refused with 429 + Retry-After every round ({} of {} requests refused, {} rounds not refused, {} 429s without Retry-After)",
                ab("creates_429"), ab("creates"), ab("create_rounds_unrefused"), ab("creates_429_without_retry_after")
            ),
        ),
        (
            ab("handshakes_429") > 0 && ab("handshake_rounds_unrefused") == 0 && ab("handshakes_429_without_retry_after") == 0,
            format!(
                "the handshake flood was refused with 429 + Retry-After every round ({} of {} refused, {} rounds not refused, {} without Retry-After)",
                ab("handshakes_429"), ab("handshakes"), ab("handshake_rounds_unrefused"), ab("handshakes_429_without_retry_after")
            ),
        ),
        (
            ab("sockets_1008") > 0 && ab("socket_rounds_unrefused") == 0,
            format!(
                "sockets past the per-participant cap closed the oldest with 1008 every round ({} of {} opened, {} rounds not refused)",
                ab("sockets_1008"), ab("sockets_opened"), ab("socket_rounds_unrefused")
            ),
        ),
        (
            ab("oversize_sent") > 0 && ab("oversize_not_closed") == 0,
            format!(
                "every oversize frame closed its socket ({} sent: {} with 1009, {} otherwise, {} not closed)",
                ab("oversize_sent"), ab("oversize_1009"), ab("oversize_closed_otherwise"), ab("oversize_not_closed")
            ),
        ),
        (
            ab("half_open_still_open") == 0 && (s.abuse_half_open == 0 || ab("half_open_closed") > 0),
            format!(
                "half-open connections were closed by the server ({} closed, {} answered 408, {} still open after 12 s)",
                ab("half_open_closed"), ab("half_open_408"), ab("half_open_still_open")
            ),
        ),
        (
            expected > 0 && loss <= s.max_loss,
            format!("fan-out lost {} of {expected} deliveries ({:.4} %, at most {} % allowed)", expected.saturating_sub(received), loss * 100.0, s.max_loss * 100.0),
        ),
        (fanout_failed == 0, format!("{fanout_failed} fan-out sockets failed to connect")),
        (
            ratio(churn.0, churn.1) <= s.max_loss,
            format!("{} of {} churn cycles failed (at most {} % allowed)", churn.0, churn.1, s.max_loss * 100.0),
        ),
        (
            ratio(rest.0, rest.1) <= s.max_loss,
            format!("{} of {} REST create + join + GET failed (at most {} % allowed)", rest.0, rest.1, s.max_loss * 100.0),
        ),
        (legit_429 == 0, format!("{legit_429} legitimate requests were refused by a limit")),
    ];
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for (ok, what) in list {
        if ok { &mut passed } else { &mut failed }.push(what);
    }
    (passed, failed)
}

/// The failed checks of a soak report.
pub fn failures(report: &Value) -> Vec<String> {
    report
        .pointer("/checks/failed")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, rss_mib: f64, files: u64) -> Sample {
        Sample { t_s: t, rss_bytes: Some((rss_mib * MIB) as u64), open_files: Some(files), ..Sample::default() }
    }

    #[test]
    fn least_squares_slope() {
        let t = trend(&[(0.0, 10.0), (300.0, 11.0), (600.0, 12.0)]).unwrap_or_else(|| panic!("a trend"));
        assert_eq!((t.first, t.last, t.min, t.max, t.mean, t.slope_per_10min), (10.0, 12.0, 10.0, 12.0, 11.0, 2.0));
        let t = trend(&[(0.0, 5.0), (30.0, 7.0), (60.0, 5.0), (90.0, 7.0)]).unwrap_or_else(|| panic!("a trend"));
        assert!((t.slope_per_10min - 8.0).abs() < 1e-9, "{t:?}");
        assert_eq!(trend(&[(1.0, 1.0)]), None);
        assert_eq!(trend(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn flat_after_warm_up_or_not() {
        // Growth during warm-up does not count; a steady level after it is flat.
        let mut s: Vec<Sample> = (0..=4).map(|i| at(i as f64 * 30.0, 10.0 + i as f64 * 3.0, 100 + i * 20)).collect();
        s.extend((5..=20).map(|i| at(i as f64 * 30.0, 22.0 + (i % 2) as f64 * 0.2, 180 + i % 3)));
        let f = flatness(&s, 120.0);
        assert_eq!((f["rss_flat"].as_bool(), f["open_files_flat"].as_bool()), (Some(true), Some(true)), "{f:#}");
        assert_eq!(f["samples"], 17);
        assert!(f["verdict"].as_str().is_some_and(|v| v.starts_with("flat: RSS 22.0–22.2 MiB")), "{f:#}");
        // 1 MiB a minute is 10 per 10 minutes: a leak.
        let leak: Vec<Sample> = (0..=20).map(|i| at(i as f64 * 30.0, 20.0 + i as f64 * 0.5, 180)).collect();
        let f = flatness(&leak, 120.0);
        assert_eq!((f["rss_flat"].as_bool(), f["open_files_flat"].as_bool()), (Some(false), Some(true)), "{f:#}");
        assert!((f["rss_mib"]["slope_per_10min"].as_f64().unwrap_or(0.0) - 10.0).abs() < 0.01, "{f:#}");
        assert!(f["verdict"].as_str().is_some_and(|v| v.starts_with("RSS not flat")), "{f:#}");
        // No readings of the server: not judged.
        let blind = vec![Sample { t_s: 200.0, ..Sample::default() }; 3];
        assert!(flatness(&blind, 120.0)["verdict"].as_str().is_some_and(|v| v.starts_with("not judged")));
    }

    #[test]
    fn checks_fail_when_an_abuser_is_not_refused() {
        let a = crate::args::parse_line("soak").unwrap_or_else(|e| panic!("{e}"));
        let mut m = WorkerReport::default();
        for (k, v) in [
            ("abuse.rounds", 2),
            ("abuse.creates", 100),
            ("abuse.creates_429", 40),
            ("abuse.handshakes", 700),
            ("abuse.handshakes_429", 40),
            ("abuse.sockets_opened", 40),
            ("abuse.sockets_1008", 30),
            ("abuse.oversize_sent", 2),
            ("abuse.oversize_1009", 2),
            ("abuse.half_open_closed", 20),
            ("fanout.connections_attempted", 10),
            ("fanout.connections_ok", 10),
            ("fanout.deliveries_expected", 1000),
            ("fanout.deliveries_received", 1000),
            ("churn.cycles_attempted", 10),
            ("churn.cycles_ok", 10),
            ("rest.cycles_ok", 5),
        ] {
            m.counters.insert(k.to_owned(), v);
        }
        let (passed, failed) = checks(&a, &m, 0);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(passed.len(), 12);
        m.counters.insert("abuse.handshake_rounds_unrefused".to_owned(), 1);
        m.counters.insert("fanout.deliveries_received".to_owned(), 990);
        let (_, failed) = checks(&a, &m, 3);
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(failed[0].starts_with("the handshake flood"), "{failed:?}");
        assert!(failed[1].starts_with("fan-out lost 10 of 1000"), "{failed:?}");
        assert!(failed[2].starts_with("3 legitimate requests"), "{failed:?}");
        let report = json!({"checks": {"failed": failed}});
        assert_eq!(failures(&report).len(), 3);
    }
}

//! The advice run's part of the report: updates and deliveries per second, their ratio to the
//! full rate, the advice seen, one line per interval, and one session's evening.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{interval_key, Interval};
use crate::args::Args;
use crate::report::{cpu, ratio, round, summary, Timeline};
use crate::stats::WorkerReport;

/// The intervals' figures, from the merged counters, in order.
fn intervals(m: &WorkerReport) -> Vec<(u64, Interval)> {
    let mut ks: Vec<u64> =
        m.counters.keys().filter_map(|k| k.strip_prefix("interval.")?.split('.').next()?.parse().ok()).collect();
    ks.dedup();
    ks.into_iter()
        .map(|k| {
            let g = |name: &str| m.get(&interval_key(k, name));
            let i = Interval {
                sent: g("sent"),
                expected: g("expected"),
                received: g("received"),
                pushes: g("pushes"),
                fast: g("fast"),
                idle: g("idle"),
                unadvised: g("unadvised"),
            };
            (k, i)
        })
        .collect()
}

/// Pushes by value, from the counters `PREFIX{value}`.
fn values(m: &WorkerReport, prefix: &str) -> BTreeMap<u64, u64> {
    m.counters.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.parse().ok()?, *v))).collect()
}

/// Adds the advice run's sections to the report.
pub fn insert(a: &Args, m: &WorkerReport, tl: &Timeline, r: &mut Map<String, Value>) {
    let secs = tl.measured_seconds;
    let (sent, expected, received) =
        (m.get("updates_sent"), m.get("deliveries_expected"), m.get("deliveries_received"));
    let lost = expected.saturating_sub(received);
    let clients = (a.sessions * a.participants) as f64;
    let full = clients * a.rate;
    let per_s = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    r.insert(
        "updates".into(),
        json!({"sent": sent, "per_second": ratio(sent as f64, secs),
               "full_rate_per_second": round(full, 3),
               "ratio_to_full_rate": ratio(per_s, full),
               "per_client_per_minute": ratio(per_s * 60.0, clients),
               "replies_ok": m.get("replies_ok"), "replies_error": m.get("replies_error")}),
    );
    r.insert(
        "deliveries".into(),
        json!({"expected": expected, "received": received, "lost": lost,
               "loss_ratio": if expected > 0 { json!(lost as f64 / expected as f64) } else { json!(0.0) },
               "per_second": ratio(received as f64, secs)}),
    );
    r.insert("latency_us".into(), summary(m.hist("latency").summary()));
    let iv = values(m, "advice.interval_ms.");
    let w = values(m, "advice.watchers.");
    let last = intervals(m).last().map(|(_, i)| *i).unwrap_or_default();
    r.insert(
        "advice".into(),
        json!({"followed": !a.advice.ignore_advice, "viewers_per_session": a.advice.viewers,
               "viewing_true": m.get("viewing_true"), "viewing_false": m.get("viewing_false"),
               "glances": m.get("glances"),
               "pushes": m.get("advice_pushes"), "changes": m.get("advice_changes"),
               "interval_ms_min": iv.keys().next(), "interval_ms_max": iv.keys().next_back(),
               "watchers_min": w.keys().next(), "watchers_max": w.keys().next_back(),
               "pushes_by_interval_ms": iv, "pushes_by_watchers": w,
               "clients_fast_at_end": last.fast, "clients_idle_at_end": last.idle,
               "clients_unadvised_at_end": last.unadvised}),
    );
    let every = a.advice.sample_every;
    let lines: Vec<Value> = intervals(m)
        .into_iter()
        .map(|(k, i)| {
            let from = k as f64 * every;
            let len = (secs - from).clamp(0.0, every);
            json!({"t_s": round(from, 3), "seconds": round(len, 3), "updates": i.sent,
                   "updates_per_second": ratio(i.sent as f64, len), "deliveries": i.received,
                   "deliveries_per_second": ratio(i.received as f64, len), "lost": i.expected.saturating_sub(i.received),
                   "advice_pushes": i.pushes, "fast": i.fast, "idle": i.idle, "unadvised": i.unadvised})
        })
        .collect();
    r.insert("intervals".into(), Value::Array(lines));
    let evening_s = a.advice.evening_hours * 3600.0;
    let per_session = |v: f64| round(v / a.sessions as f64 * evening_s, 0);
    r.insert(
        "evening".into(),
        json!({"hours": a.advice.evening_hours, "participants": a.participants,
               "updates_per_session": per_session(per_s),
               "updates_per_session_at_full_rate": per_session(full),
               "deliveries_per_session": per_session(if secs > 0.0 { received as f64 / secs } else { 0.0 })}),
    );
    let held = m.get("held");
    let end_rss = tl.window_end.map(|s| s.rss_bytes);
    r.insert(
        "server".into(),
        match cpu(tl) {
            Some(c) => json!({"cpu_seconds": round(c, 3), "cpu_percent": ratio(c * 100.0, secs),
                              "cpu_us_per_delivery": ratio(c * 1e6, received as f64),
                              "rss_bytes": end_rss,
                              "rss_per_socket_bytes": end_rss.map_or(Value::Null, |b| ratio(b as f64, held as f64))}),
            None => Value::Null,
        },
    );
}

/// One line per interval, printed before the table: `advice t=10s updates/s=… fast=… idle=…`.
pub fn lines(report: &Value) -> String {
    let mut out = String::new();
    let num = |v: &Value| v.as_f64().map_or("-".to_owned(), |f| format!("{f:.1}"));
    for i in report.get("intervals").and_then(Value::as_array).into_iter().flatten() {
        out.push_str(&format!(
            "advice t={}s updates={} updates/s={} deliveries/s={} lost={} pushes={} fast={} idle={} unadvised={}\n",
            i["t_s"],
            i["updates"],
            num(&i["updates_per_second"]),
            num(&i["deliveries_per_second"]),
            i["lost"],
            i["advice_pushes"],
            i["fast"],
            i["idle"],
            i["unadvised"]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_the_evening_come_from_the_counters() {
        let a = crate::args::parse_line("advice --sessions 2 --participants 5 --viewers 1 --sample-every 10")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut m = WorkerReport::default();
        for (k, v) in [
            ("updates_sent", 40),
            ("deliveries_expected", 160),
            ("deliveries_received", 160),
            ("interval.00000.sent", 30),
            ("interval.00000.fast", 6),
            ("interval.00000.idle", 4),
            ("interval.00001.sent", 10),
            ("interval.00001.received", 40),
            ("interval.00001.idle", 10),
            ("advice.interval_ms.15000", 3),
            ("advice.interval_ms.1000", 9),
            ("advice.watchers.0", 3),
        ] {
            m.counters.insert(k.to_owned(), v);
        }
        let tl = Timeline { measured_seconds: 20.0, ..Timeline::default() };
        let mut r = Map::new();
        insert(&a, &m, &tl, &mut r);
        let r = Value::Object(r);
        assert_eq!(r["updates"]["per_second"], 2.0);
        assert_eq!(r["updates"]["full_rate_per_second"], 10.0);
        assert_eq!(r["updates"]["ratio_to_full_rate"], 0.2);
        assert_eq!(r["intervals"].as_array().map(Vec::len), Some(2));
        assert_eq!(r["intervals"][0]["updates_per_second"], 3.0);
        assert_eq!(r["intervals"][1]["deliveries_per_second"], 4.0);
        assert_eq!(
            (r["advice"]["clients_idle_at_end"].as_u64(), r["advice"]["clients_fast_at_end"].as_u64()),
            (Some(10), Some(0))
        );
        // 2 updates/s over 2 sessions for 4 h: 14,400 per session; at the full rate 5 x 14,400.
        assert_eq!(r["evening"]["updates_per_session"], 14_400.0);
        assert_eq!(r["evening"]["updates_per_session_at_full_rate"], 72_000.0);
        assert_eq!(
            (r["advice"]["interval_ms_min"].as_u64(), r["advice"]["interval_ms_max"].as_u64()),
            (Some(1000), Some(15000))
        );
        assert_eq!(r["advice"]["pushes_by_interval_ms"]["15000"], 3);
        assert_eq!(r["advice"]["watchers_max"], 0);
        let text = lines(&r);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.starts_with("advice t=0.0s updates=30 updates/s=3.0"), "{text}");
    }
}

//! `/dev/dashboard`: the operator's live view (what Phoenix LiveDashboard showed), a page that
//! polls `/dev/dashboard/stats` every second and works out rates from successive readings.
//!
//! Who may open it:
//! - development (`ADMIN_TOKEN` unset and `HOST` a loopback address, i.e. a laptop): anyone who
//!   can reach the port, which is only this machine;
//! - `ADMIN_TOKEN` set: only requests presenting it, as `Authorization: Bearer …` or `?token=…`
//!   (401 otherwise);
//! - `ADMIN_TOKEN` unset and any other `HOST` (a container): nobody, 404 as for unknown routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{SecondsFormat, Utc};
use prometheus::core::Collector;
use serde::Serialize;

use super::error::ApiError;
use super::pages::{page, DASHBOARD_HTML};
use super::probes::{self, Checks};
use super::AppState;
use crate::config::Settings;

/// How long the dependency checks and the registry may take before they count as down.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// Who may open the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Development: no token asked.
    Open,
    /// `ADMIN_TOKEN` is set: it must be presented.
    Token,
    /// Production without `ADMIN_TOKEN`: the dashboard does not exist.
    Off,
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without brackets).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The dashboard's access rule for these settings.
pub fn access(settings: &Settings) -> Access {
    match (&settings.admin_token, is_loopback(&settings.host)) {
        (Some(_), _) => Access::Token,
        (None, true) => Access::Open,
        (None, false) => Access::Off,
    }
}

/// The token a request presents: its bearer token, else its `token` query parameter.
fn presented_token(req: &HttpRequest) -> Option<String> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    bearer.or_else(|| {
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().remove("token"))
    })
}

fn authorize(req: &HttpRequest, settings: &Settings) -> Result<(), ApiError> {
    match access(settings) {
        Access::Open => Ok(()),
        Access::Off => Err(ApiError::NotFound("Not Found")),
        Access::Token => {
            let ok = match (&settings.admin_token, presented_token(req)) {
                (Some(expected), Some(presented)) => expected.matches(&presented),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(ApiError::Unauthorized("the dashboard needs the admin token"))
            }
        }
    }
}

/// `GET /dev/dashboard`: the page.
pub async fn show(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.settings)?;
    let mut res = page(&req, DASHBOARD_HTML, &state.settings);
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Cumulative HTTP latency histogram over every route but the dashboard's own.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// Requests observed.
    pub count: u64,
    /// Sum of their durations.
    pub sum_seconds: f64,
    /// `[upper bound in seconds, cumulative count]`, ascending.
    pub buckets: Vec<(f64, u64)>,
}

/// Monotonic counters; the page turns successive readings into rates.
#[derive(Debug, Serialize)]
pub struct Counters {
    /// `location_update`s accepted.
    pub location_updates_in: u64,
    /// `location_update` frames handed to sockets.
    pub location_deliveries_out: u64,
    /// HTTP requests (the dashboard's own left out).
    pub http_requests: u64,
    /// Frames dropped from slow sockets.
    pub frames_dropped: u64,
    /// Updates refused by the rate limit.
    pub rate_limited: u64,
    /// Client frames that could not be parsed.
    pub unparsable_frames: u64,
    /// Ephemeral store errors.
    pub store_errors: u64,
    /// Session actors restarted after a panic.
    pub session_restarts: u64,
    /// Messages published to the cluster bus.
    pub pubsub_published: u64,
    /// Messages received from other replicas.
    pub pubsub_received: u64,
}

/// `GET /dev/dashboard/stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Server version.
    pub version: &'static str,
    /// When this reading was taken (RFC 3339, milliseconds).
    pub time: String,
    /// Seconds since the process started (Linux), else `null`.
    pub uptime_seconds: Option<f64>,
    /// WebSockets open in this process.
    pub sockets: i64,
    /// Session actors alive in this process.
    pub sessions_live: i64,
    /// Counters since start.
    pub counters: Counters,
    /// HTTP latency histogram since start.
    pub http_latency: Latency,
    /// Resident memory of the process (`VmRSS`), in bytes; `null` where unknown.
    pub memory_rss_bytes: Option<u64>,
    /// Database and Redis.
    pub checks: Checks,
    /// Whether the session registry answered within 2 s.
    pub registry_responding: bool,
    /// `true` when the cluster bus is configured and subscribed, `false` when down, `null` on a
    /// single node.
    pub pubsub_connected: Option<bool>,
    /// True while the server drains for shutdown.
    pub draining: bool,
}

fn counter(c: &prometheus::IntCounter) -> u64 {
    c.get()
}

/// The HTTP histograms of every route but the dashboard's, added up.
fn http_latency(state: &AppState) -> (Latency, u64) {
    let mut latency = Latency::default();
    for family in state.metrics.http_duration.collect() {
        for metric in family.get_metric() {
            let own = metric.get_label().iter().any(|l| l.name() == "route" && l.value().starts_with("/dev/"));
            if own {
                continue;
            }
            let h = metric.get_histogram();
            latency.count += h.get_sample_count();
            latency.sum_seconds += h.get_sample_sum();
            for (i, bucket) in h.get_bucket().iter().enumerate() {
                match latency.buckets.get_mut(i) {
                    Some(slot) => slot.1 += bucket.cumulative_count(),
                    None => latency.buckets.push((bucket.upper_bound(), bucket.cumulative_count())),
                }
            }
        }
    }
    let requests = latency.count;
    (latency, requests)
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Seconds since the process started: system uptime minus the process's start time.
fn uptime_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; starttime is 22.
    let after = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let system_uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((system_uptime - start_ticks / 100.0).max(0.0))
}

/// `GET /dev/dashboard/stats`: one reading of the server's own metrics and health.
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.settings)?;
    let registry = async { probes::registry_stats(&state, CHECK_DEADLINE).await.is_some() };
    let (checks, registry_responding) = tokio::join!(probes::checks(&state), registry);
    let m = &state.metrics;
    let (http_latency, http_requests) = http_latency(&state);
    let body = Stats {
        version: env!("CARGO_PKG_VERSION"),
        time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        uptime_seconds: uptime_seconds(),
        sockets: m.sockets.get(),
        sessions_live: m.sessions_live.get(),
        counters: Counters {
            location_updates_in: counter(&m.updates_in),
            location_deliveries_out: counter(&m.deliveries_out),
            http_requests,
            frames_dropped: counter(&m.frames_dropped),
            rate_limited: counter(&m.rate_limited),
            unparsable_frames: counter(&m.unparsable_frames),
            store_errors: counter(&m.store_errors),
            session_restarts: counter(&m.session_restarts),
            pubsub_published: counter(&m.pubsub_published),
            pubsub_received: counter(&m.pubsub_received),
        },
        http_latency,
        memory_rss_bytes: rss_bytes(),
        checks,
        registry_responding,
        pubsub_connected: state.redis.as_ref().map(|_| m.pubsub_connected.get() > 0),
        draining: state.drain.is_draining(),
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "10.0.0.5", "example.com", "192.168.1.2", ""] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn access_rules() {
        let with = |pairs: &[(&str, &str)]| {
            let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            Settings::from_map(&map).map(|s| access(&s)).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(with(&[]), Access::Open);
        assert_eq!(with(&[("HOST", "0.0.0.0")]), Access::Off);
        assert_eq!(with(&[("HOST", "0.0.0.0"), ("ADMIN_TOKEN", "0123456789abcdef")]), Access::Token);
        assert_eq!(with(&[("ADMIN_TOKEN", "0123456789abcdef")]), Access::Token);
    }

    #[test]
    fn proc_readings() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().is_some_and(|b| b > 0));
            assert!(uptime_seconds().is_some_and(|s| s >= 0.0));
        }
    }
}

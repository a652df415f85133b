//! Prometheus metrics. Counters are atomics, so the hot path pays one relaxed add per event.
//! No label ever carries a session id, user id or coordinate: routes are templates.
//!
//! Everything else imports this module and it imports nothing of ours; `/metrics` itself is
//! served by `http::metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric of the process, registered once.
pub struct Metrics {
    registry: Registry,
    /// WebSockets open now.
    pub sockets: IntGauge,
    /// Session actors alive now.
    pub sessions_live: IntGauge,
    /// `location_update`s accepted from clients of this process.
    pub updates_in: IntCounter,
    /// `location_update` frames handed to sockets of this process.
    pub deliveries_out: IntCounter,
    /// Frames dropped from slow sockets' queues.
    pub frames_dropped: IntCounter,
    /// Updates refused by the rate limit.
    pub rate_limited: IntCounter,
    /// Client frames that could not be parsed.
    pub unparsable_frames: IntCounter,
    /// Ephemeral store errors.
    pub store_errors: IntCounter,
    /// Session actors restarted after a panic.
    pub session_restarts: IntCounter,
    /// Cluster bus (Redis pub/sub) connections made after the first.
    pub pubsub_reconnects: IntCounter,
    /// 1 while the cluster bus is subscribed, 0 while it is down; absent on a single node.
    pub pubsub_connected: IntGauge,
    /// Messages published to the cluster bus.
    pub pubsub_published: IntCounter,
    /// Cluster messages dropped because the bus was down or its queue full.
    pub pubsub_dropped: IntCounter,
    /// Messages received from other replicas.
    pub pubsub_received: IntCounter,
    /// Messages from other replicas not delivered, by reason: `unknown_event` (a newer
    /// replica's kind) or `unreadable`.
    pub pubsub_refused: IntCounterVec,
    /// Cluster bus subscriptions made again, by cause (`reconnected`, `slot_moved`, `failover`,
    /// `rebuilt`, `disconnected`, `unconfirmed`).
    pub pubsub_resubscriptions: IntCounterVec,
    /// Positions not published because no other replica listened to their session.
    pub pubsub_skipped: IntCounter,
    /// Failed Redis calls, by what went wrong (`moved`, `crossslot`, `timeout`, …).
    pub redis_errors: IntCounterVec,
    /// Requests and sockets refused by an abuse limit (SPEC §11), by limit; never by address.
    pub limit_refusals: IntCounterVec,
    /// Client addresses the abuse limits hold state for now (bounded: idle ones are forgotten).
    pub limiter_addresses: IntGauge,
    /// Arrivals at a session's destination this replica announced (it won the claim).
    pub arrivals: IntCounter,
    /// Departures from a session's destination this replica announced.
    pub departures: IntCounter,
    /// Sockets by the rate they are advised now (SPEC §8): `fast` or `idle`.
    pub sockets_by_advice: IntGaugeVec,
    /// HTTP requests by route template, method and status.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route template.
    pub http_duration: HistogramVec,
    /// Time spent waiting for a database connection from the pool.
    pub db_pool_wait: Histogram,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(g.clone()));
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(c.clone()));
    c
}

/// Metric definitions are constants; an invalid one is a programming error caught by the tests.
fn unreachable_metric<T>(name: &str, e: prometheus::Error) -> T {
    panic!("invalid metric {name}: {e}")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (and the process collector on Linux).
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("location_sharing".into()), None)
            .unwrap_or_else(|e| unreachable_metric("registry", e));
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route template, method and status"),
            &["route", "method", "status"],
        )
        .unwrap_or_else(|e| unreachable_metric("http_requests_total", e));
        let _ = registry.register(Box::new(http_requests.clone()));
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route template")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route"],
        )
        .unwrap_or_else(|e| unreachable_metric("http_request_duration_seconds", e));
        let _ = registry.register(Box::new(http_duration.clone()));
        let pubsub_refused = counter_vec(
            &registry,
            "pubsub_refused_total",
            "Messages from other replicas not delivered, by reason",
            "reason",
        );
        // Shown as 0 from the start, so an alert can watch them.
        for reason in ["unknown_event", "unreadable"] {
            pubsub_refused.with_label_values(&[reason]);
        }
        let db_pool_wait = Histogram::with_opts(
            HistogramOpts::new("db_pool_wait_seconds", "Time waiting for a database connection from the pool")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0]),
        )
        .unwrap_or_else(|e| unreachable_metric("db_pool_wait_seconds", e));
        let _ = registry.register(Box::new(db_pool_wait.clone()));

        let sockets_by_advice = IntGaugeVec::new(
            Opts::new("sockets_by_advice", "Sockets in a channel by the update rate they are advised"),
            &["mode"],
        )
        .unwrap_or_else(|e| unreachable_metric("sockets_by_advice", e));
        let _ = registry.register(Box::new(sockets_by_advice.clone()));
        for mode in ["fast", "idle"] {
            sockets_by_advice.with_label_values(&[mode]);
        }

        let r = &registry;
        Self {
            arrivals: counter(r, "arrivals_total", "Arrivals at a session's destination announced here"),
            departures: counter(r, "departures_total", "Departures from a session's destination announced here"),
            sockets_by_advice,
            sockets: gauge(r, "sockets", "WebSockets open now"),
            sessions_live: gauge(r, "sessions_live", "Session actors alive now"),
            updates_in: counter(r, "location_updates_in_total", "location_update messages accepted from clients"),
            deliveries_out: counter(r, "location_deliveries_out_total", "location_update frames handed to sockets"),
            frames_dropped: counter(r, "frames_dropped_total", "Frames dropped from slow sockets' queues"),
            rate_limited: counter(
                r,
                "rate_limited_updates_total",
                "location_update messages refused by the rate limit",
            ),
            unparsable_frames: counter(r, "unparsable_frames_total", "Client frames that could not be parsed"),
            store_errors: counter(r, "store_errors_total", "Ephemeral store errors"),
            session_restarts: counter(r, "session_restarts_total", "Session actors restarted after a panic"),
            pubsub_reconnects: counter(r, "pubsub_reconnects_total", "Cluster bus reconnections"),
            pubsub_connected: gauge(r, "pubsub_connected", "1 while the cluster bus is subscribed"),
            pubsub_published: counter(r, "pubsub_published_total", "Messages published to the cluster bus"),
            pubsub_dropped: counter(r, "pubsub_dropped_total", "Cluster messages dropped (bus down or queue full)"),
            pubsub_received: counter(r, "pubsub_received_total", "Messages received from other replicas"),
            pubsub_refused,
            pubsub_resubscriptions: counter_vec(
                r,
                "pubsub_resubscriptions_total",
                "Cluster bus subscriptions made again, by cause",
                "reason",
            ),
            pubsub_skipped: counter(
                r,
                "pubsub_skipped_total",
                "Positions not published because no other replica listened to their session",
            ),
            redis_errors: counter_vec(r, "redis_errors_total", "Failed Redis calls, by what went wrong", "error"),
            limit_refusals: counter_vec(
                r,
                "limit_refusals_total",
                "Requests and sockets refused by an abuse limit",
                "limit",
            ),
            limiter_addresses: gauge(r, "limiter_addresses", "Client addresses the abuse limits hold state for"),
            http_requests,
            http_duration,
            db_pool_wait,
            registry,
        }
    }

    /// Records one HTTP request.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.http_requests.with_label_values(&[route, method, status.as_str()]).inc();
        self.http_duration.with_label_values(&[route]).observe(seconds);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.updates_in.inc();
        m.observe_http("/api/sessions/{id}", "GET", 200, 0.001);
        let text = String::from_utf8(m.render()).unwrap_or_default();
        assert!(text.contains("# TYPE location_sharing_location_updates_in_total counter"));
        assert!(text.contains(
            "location_sharing_http_requests_total{method=\"GET\",route=\"/api/sessions/{id}\",status=\"200\"} 1"
        ));
        assert!(text.contains("location_sharing_sockets 0"));
    }
}

//! Graceful drain on SIGTERM: readiness fails at once, new sockets are refused, connected sockets
//! are closed with 1012 ("reconnect") spread over a few seconds so clients do not stampede the
//! other replicas, in-flight requests finish, and the process exits within the grace period.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest spread of socket closes.
const MAX_SPREAD: Duration = Duration::from_secs(5);

/// The drain state shared by the HTTP handlers and every socket.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    started: OnceLock<Instant>,
    spread: Duration,
}

impl Drain {
    /// A drain whose socket closes are spread over at most a third of `grace` (and 5 s).
    pub fn new(grace: Duration) -> Self {
        Self { draining: AtomicBool::new(false), started: OnceLock::new(), spread: MAX_SPREAD.min(grace / 3) }
    }

    /// Starts draining; later calls change nothing.
    pub fn begin(&self) {
        let _ = self.started.set(Instant::now());
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once draining began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Over how long socket closes are spread.
    pub fn spread(&self) -> Duration {
        self.spread
    }

    /// When the socket with this id should close, once draining: a fixed slot within the spread,
    /// so closes are evenly spaced rather than all at once.
    pub fn close_at(&self, socket: u64) -> Option<Instant> {
        let started = *self.started.get()?;
        // A multiplicative hash spreads consecutive ids over the whole window.
        let slot = socket.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
        let offset = self.spread.mul_f64(slot as f64 / 1024.0);
        Some(started + offset)
    }
}

/// Waits for SIGTERM or SIGINT, then drains and stops the server within `grace`.
pub async fn on_signal(
    drain: std::sync::Arc<Drain>,
    server: actix_web::dev::ServerHandle,
    sockets: prometheus::IntGauge,
) {
    wait_for_signal().await;
    log::info!("shutdown signal: draining (ready=503, refusing sockets, closing sockets over {:?})", drain.spread());
    drain.begin();
    // Sockets close by themselves at their slot; wait for them, a little past the spread at most.
    let deadline = Instant::now() + drain.spread() + Duration::from_secs(2);
    while sockets.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log::info!("sockets drained ({} left); finishing in-flight requests", sockets.get());
    server.stop(true).await;
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            log::warn!("cannot listen for signals; use Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_until_begun() {
        let d = Drain::new(Duration::from_secs(25));
        assert!(!d.is_draining());
        assert_eq!(d.close_at(1), None);
        d.begin();
        assert!(d.is_draining());
        assert!(d.close_at(1).is_some());
    }

    #[test]
    fn closes_are_spread_within_the_window() {
        let d = Drain::new(Duration::from_secs(25));
        d.begin();
        let start = d.close_at(0).unwrap_or_else(Instant::now);
        let offsets: Vec<Duration> = (1..=1000).filter_map(|id| d.close_at(id)).map(|t| t - start).collect();
        assert!(offsets.iter().all(|o| *o <= d.spread()));
        let early = offsets.iter().filter(|o| **o < d.spread() / 2).count();
        assert!((300..=700).contains(&early), "{early} of 1000 in the first half");
    }

    #[test]
    fn spread_fits_the_grace() {
        assert_eq!(Drain::new(Duration::from_secs(3)).spread(), Duration::from_secs(1));
        assert_eq!(Drain::new(Duration::from_secs(60)).spread(), MAX_SPREAD);
    }

    #[test]
    fn begin_is_idempotent() {
        let d = Drain::new(Duration::from_secs(25));
        d.begin();
        let first = d.close_at(7);
        std::thread::sleep(Duration::from_millis(5));
        d.begin();
        assert_eq!(d.close_at(7), first);
    }
}

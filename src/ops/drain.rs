//! Graceful drain on SIGTERM: readiness fails at once, new sockets are refused, connected sockets
//! are closed with 1012 ("reconnect") spread over a few seconds so clients do not stampede the
//! other replicas, every request whose headers arrived finishes (within the grace period), and
//! the process exits as soon as nothing is left.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The longest spread of socket closes.
const MAX_SPREAD: Duration = Duration::from_secs(5);

/// Kept free at the end of the grace period for the process to stop before a supervisor
/// (kubelet) kills it.
const EXIT_MARGIN: Duration = Duration::from_millis(500);

/// Kept free at the end of the grace period by the watchdog that ends a stop taking too long.
const WATCHDOG_MARGIN: Duration = Duration::from_millis(150);

/// Once no request is in flight, how long connections get to finish writing their last answer
/// before idle keep-alive connections are dropped.
const LAST_WRITES: Duration = Duration::from_millis(200);

/// The drain state shared by the HTTP handlers and every socket.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    started: OnceLock<Instant>,
    spread: Duration,
    grace: Duration,
    in_flight: AtomicUsize,
}

/// One request between its headers and its answer; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl InFlight {
    /// True once draining began.
    pub fn draining(&self) -> bool {
        self.0.is_draining()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drain {
    /// A drain within `grace` whose socket closes are spread over at most a third of it (and 5 s).
    pub fn new(grace: Duration) -> Self {
        Self {
            draining: AtomicBool::new(false),
            started: OnceLock::new(),
            spread: MAX_SPREAD.min(grace / 3),
            grace,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Counts a request whose headers arrived, until the guard is dropped with its answer.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Requests between their headers and their answer now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
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

/// Waits for SIGTERM or SIGINT, then drains and stops the server within the grace period.
pub async fn on_signal(drain: Arc<Drain>, server: actix_web::dev::ServerHandle, sockets: prometheus::IntGauge) {
    wait_for_signal().await;
    log::info!("shutdown signal: draining (ready=503, refusing sockets, closing sockets over {:?})", drain.spread());
    drain.begin();
    let started = Instant::now();
    exit_by(started + drain.grace.saturating_sub(WATCHDOG_MARGIN));
    let end = started + drain.grace.saturating_sub(EXIT_MARGIN);
    // Sockets close by themselves at their slot; wait for them, a little past the spread at most.
    let sockets_done = (started + drain.spread() + Duration::from_secs(2)).min(end);
    wait_until(|| sockets.get() <= 0, sockets_done).await;
    log::info!("sockets drained ({} left); finishing {} in-flight request(s)", sockets.get(), drain.in_flight());
    // The listener stays open meanwhile: a request that comes now is answered too.
    wait_until(|| drain.in_flight() == 0, end).await;
    let left = drain.in_flight();
    if left > 0 {
        log::warn!("grace period over: {left} request(s) still in flight are cut");
    }
    // Every answer is out of the handlers; the connections get a moment to write the last ones,
    // then everything left (idle keep-alive connections, a request cut by the grace) is dropped.
    // actix's graceful stop would instead wait for idle connections to time out.
    tokio::time::sleep(LAST_WRITES.min(end.saturating_duration_since(Instant::now()))).await;
    server.stop(false).await;
}

/// Ends the process at `deadline` if stopping has not by then. Stopping the actor system after
/// the server (the last flushes, the arbiters' threads) normally takes milliseconds, but on a
/// loaded machine it can take a second, past what the supervisor allows; this keeps the promise
/// of the grace period. A thread of its own, so that a busy runtime cannot delay it.
fn exit_by(deadline: Instant) {
    let watchdog = std::thread::Builder::new().name("shutdown-watchdog".into()).spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        log::warn!("stopping is taking past the grace period: exiting now");
        std::process::exit(0);
    });
    if let Err(e) = watchdog {
        log::warn!("no shutdown watchdog ({e}): the exit relies on the drain alone");
    }
}

async fn wait_until(done: impl Fn() -> bool, deadline: Instant) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    fn requests_are_in_flight_until_their_guard_drops() {
        let d = Arc::new(Drain::new(Duration::from_secs(25)));
        let a = d.request_started();
        let b = d.request_started();
        assert_eq!(d.in_flight(), 2);
        drop(a);
        assert_eq!(d.in_flight(), 1);
        drop(b);
        assert_eq!(d.in_flight(), 0);
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

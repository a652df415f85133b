//! `soak`: the other modes at once, for minutes, plus abusers — is the server's memory flat?
//!
//! Each thread runs its share of a fan-out (`fanout.rs`), of churn cycles (`churn.rs`) and of
//! paced REST clients (`rest.rs`), each part with its own [`Env`] and counters; thread 0 also
//! runs the abusers ([`abuse`]) from their own source address. Fan-out deliveries are counted by
//! the window their update was due in; a little after each window ends, every thread adds its
//! part of it to [`LIVE`], where the coordinator ([`verdict::watch`]) picks it up beside its
//! reading of the server. A soak is one process, so that memory is shared.

mod abuse;
mod raw;
pub mod verdict;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::args::Mode;
use crate::hist::Hist;
use crate::http::Client;
use crate::stats::{Stats, Windows, WorkerReport};
use crate::sys;
use crate::worker::{ready_then_start, sleep_until_ns, wait_go, Env, Go};

/// One window of legitimate traffic, from every thread that reported it.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Threads that added their part.
    pub threads: usize,
    /// Fan-out deliveries expected of the updates due in the window.
    pub expected: u64,
    /// Of those, received.
    pub received: u64,
    /// Their latency, µs.
    pub latency: Hist,
    /// Churn cycles that ended well in the window.
    pub churn_ok: u64,
    /// Churn cycles that failed in it.
    pub churn_failed: u64,
    /// REST create + join + GET that ended well in it.
    pub rest_ok: u64,
    /// Those that failed.
    pub rest_failed: u64,
}

impl Live {
    fn add(&mut self, other: &Live) {
        self.threads += other.threads;
        self.expected += other.expected;
        self.received += other.received;
        self.latency.merge(&other.latency);
        self.churn_ok += other.churn_ok;
        self.churn_failed += other.churn_failed;
        self.rest_ok += other.rest_ok;
        self.rest_failed += other.rest_failed;
    }
}

/// The windows reported and not yet taken, by index.
static LIVE: Mutex<BTreeMap<u64, Live>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Live>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How many threads reported window `k` so far.
pub fn threads_reported(k: u64) -> usize {
    live().get(&k).map_or(0, |w| w.threads)
}

/// Takes window `k` (empty when nobody reported it).
pub fn take_window(k: u64) -> Live {
    live().remove(&k).unwrap_or_default()
}

/// How long after a window ends its deliveries are still counted in it: what arrives later still
/// counts in the totals, only not in that window's line.
pub fn flush_lag(sample_every: f64) -> Duration {
    Duration::from_secs_f64((sample_every * 0.25).min(2.0))
}

/// The REST clients' first connection: half-way through the source addresses, away from the
/// fan-out's and churn's first ones, so no address carries more than its share of creations.
fn rest_salt(source_addrs: u8) -> usize {
    usize::from(source_addrs / 2).max(1)
}

/// A part of the run on this thread: its own counters, the run's other settings.
fn part(env: &Env, mode: Mode) -> Rc<Env> {
    let mut args = env.args.clone();
    args.mode = mode;
    if mode == Mode::Churn {
        args.rate = args.soak.churn_rate;
    }
    Rc::new(Env { args, gid: env.gid, groups: env.groups, stats: Stats::default(), clock: env.clock })
}

/// Starts one part with its own ready and go channels.
fn start<F, Fut>(
    f: F,
    env: &Rc<Env>,
    ready: &mpsc::Sender<()>,
    gos: &mut Vec<oneshot::Sender<Option<i64>>>,
) -> JoinHandle<()>
where
    F: FnOnce(Rc<Env>, mpsc::Sender<()>, Go) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let (go_tx, go_rx) = oneshot::channel();
    gos.push(go_tx);
    tokio::task::spawn_local(f(env.clone(), ready.clone(), go_rx))
}

/// A thread's part of a soak run.
pub async fn run(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let fanout = part(&env, Mode::Fanout);
    let churn = part(&env, Mode::Churn);
    let rest = part(&env, Mode::Rest);
    let abuse = (env.gid == 0).then(|| part(&env, Mode::Soak));
    let (part_ready, readies) = mpsc::channel();
    let mut gos = Vec::new();
    let mut tasks = vec![
        start(crate::fanout::run, &fanout, &part_ready, &mut gos),
        start(crate::churn::run, &churn, &part_ready, &mut gos),
        start(rest_clients, &rest, &part_ready, &mut gos),
    ];
    if let Some(abuse) = &abuse {
        tasks.push(start(abuse::run, abuse, &part_ready, &mut gos));
    }
    drop(part_ready);
    // The parts' ready channel is a blocking one: polled, so this thread's loop goes on.
    let mut n = 0;
    while n < tasks.len() && !sys::stopped() {
        match readies.try_recv() {
            Ok(()) => n += 1,
            Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(mpsc::TryRecvError::Disconnected) => break,
        }
    }
    let _ = ready.send(());
    let t0 = wait_go(go).await;
    let every_us = (env.args.soak.sample_every * 1e6) as i64;
    if let Some(t0) = t0 {
        *fanout.stats.windows.borrow_mut() = Some(Windows::new(t0, every_us));
    }
    for g in gos {
        let _ = g.send(t0);
    }
    if let Some(t0) = t0 {
        report_windows(&env, t0, &fanout, &churn, &rest).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut nested = env.stats.nested.borrow_mut();
    for (name, p) in
        [("fanout", &fanout), ("churn", &churn), ("rest", &rest)].into_iter().chain(abuse.iter().map(|a| ("abuse", a)))
    {
        nested.merge(&prefixed(name, p.stats.report()));
    }
}

/// Adds this thread's part of each window to [`LIVE`], [`flush_lag`] after the window ends.
async fn report_windows(env: &Env, t0_wall: i64, fanout: &Env, churn: &Env, rest: &Env) {
    let a = &env.args;
    let clock = env.clock;
    let t0 = clock.ns_of_wall_us(t0_wall);
    let (every, end) = ((a.soak.sample_every * 1e9) as u64, t0 + (a.duration * 1e9) as u64);
    let lag = flush_lag(a.soak.sample_every).as_nanos() as u64;
    let mut last = [0u64; 4];
    for k in 0u64.. {
        let window_end = (t0 + (k + 1) * every).min(end);
        // Churn and REST count what ended by the window's end; deliveries wait the lag.
        sleep_until_ns(&clock, window_end).await;
        let now = [
            churn.stats.get("cycles_ok"),
            churn.stats.get("cycles_failed"),
            rest.stats.get("cycles_ok"),
            rest.stats.get("cycles_failed"),
        ];
        sleep_until_ns(&clock, window_end + lag).await;
        if sys::stopped() {
            return;
        }
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n.saturating_sub(l)).collect();
        last = now;
        let mut mine = Live {
            threads: 1,
            churn_ok: d[0],
            churn_failed: d[1],
            rest_ok: d[2],
            rest_failed: d[3],
            ..Live::default()
        };
        let taken = fanout.stats.windows.borrow_mut().as_mut().map(|w| w.take_through(k)).unwrap_or_default();
        // An earlier window's delivery that came after its line was printed counts in the whole
        // run's figures only.
        if let Some((_, w)) = taken.into_iter().find(|(j, _)| *j == k) {
            mine.add(&Live { expected: w.expected, received: w.received, latency: w.latency, ..Live::default() });
        }
        live().entry(k).or_default().add(&mine);
        if window_end >= end {
            return;
        }
    }
}

/// The soak's REST clients: each does create + join + GET `--rest-rate` times a second, phases
/// staggered, from its own source address.
async fn rest_clients(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let Some(t0) = ready_then_start(&env, ready, go).await else { return };
    let s = &env.args.soak;
    let end = t0 + (env.args.duration * 1e9) as u64;
    let period = 1e9 / s.rest_rate;
    let mut tasks = Vec::new();
    for w in (env.gid..s.rest_clients).step_by(env.groups) {
        let env = env.clone();
        let phase = w as f64 / s.rest_clients as f64;
        tasks.push(tokio::task::spawn_local(async move {
            let a = &env.args;
            let client = Client::new(a.urls[0].clone(), a.source_addrs, rest_salt(a.source_addrs) + w);
            for i in 0u64.. {
                let due = t0 + ((phase + i as f64) * period) as u64;
                if due >= end || sys::stopped() {
                    break;
                }
                sleep_until_ns(&env.clock, due).await;
                let ok = crate::rest::create_and_join(&env, &client, true).await;
                env.stats.add(if ok { "cycles_ok" } else { "cycles_failed" }, 1);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A part's report with its name before every key: `fanout.deliveries_received`, …
fn prefixed(name: &str, r: WorkerReport) -> WorkerReport {
    let key = |k: String| format!("{name}.{k}");
    WorkerReport {
        counters: r.counters.into_iter().map(|(k, v)| (key(k), v)).collect(),
        hists: r.hists.into_iter().map(|(k, v)| (key(k), v)).collect(),
        errors: r.errors.into_iter().map(|(k, v)| (key(k), v)).collect(),
        samples: r.samples.into_iter().map(|s| format!("{name}: {s}")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_reports_are_named() {
        let s = Stats::default();
        s.add("cycles_ok", 2);
        s.record("join", 10);
        s.fail("join_429: HTTP 429");
        let r = prefixed("churn", s.report());
        assert_eq!(r.get("churn.cycles_ok"), 2);
        assert_eq!(r.hist("churn.join").len(), 1);
        assert_eq!(r.errors.get("churn.join_429"), Some(&1));
        assert_eq!(r.samples, ["churn: join_429: HTTP 429"]);
    }

    #[test]
    fn windows_add_up_across_threads() {
        let mut a = Live { threads: 1, expected: 10, received: 9, churn_ok: 3, ..Live::default() };
        a.latency.record(5);
        let mut b = Live { threads: 1, expected: 4, received: 4, rest_failed: 1, ..Live::default() };
        b.latency.record(7);
        a.add(&b);
        assert_eq!((a.threads, a.expected, a.received, a.churn_ok, a.rest_failed), (2, 14, 13, 3, 1));
        assert_eq!(a.latency.summary().max, 7);
        assert_eq!((rest_salt(32), rest_salt(2), rest_salt(0)), (16, 1, 1));
        assert_eq!(flush_lag(30.0), Duration::from_secs(2));
        assert_eq!(flush_lag(1.0), Duration::from_millis(250));
    }
}

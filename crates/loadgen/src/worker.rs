//! One process's share of a run: `--threads` threads, each a current-thread tokio runtime with a
//! `LocalSet` (so per-thread state is plain `Rc`/`Cell`), the same protocol for all modes:
//! set up → ready → wait for the start time → run → report.

use std::io::{BufRead, Write};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use crate::args::{Args, Mode};
use crate::stats::{Stats, WorkerReport};
use crate::sys;
use crate::timefmt::Clock;

/// What a thread's scenario gets.
pub struct Env {
    /// The run.
    pub args: Args,
    /// This thread's index among all threads of all processes.
    pub gid: usize,
    /// All threads of all processes.
    pub groups: usize,
    /// This thread's counters.
    pub stats: Stats,
    /// The process clock.
    pub clock: Clock,
}

/// Resolves when Ctrl-C was pressed (polled every 50 ms: one timer per thread at most).
pub async fn stop_signal() {
    while !sys::stopped() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleeps until a clock reading, or until a stop.
pub async fn sleep_until_ns(clock: &Clock, ns: u64) {
    let at = tokio::time::Instant::from_std(clock.instant(ns));
    tokio::select! {
        () = tokio::time::sleep_until(at) => {}
        () = stop_signal() => {}
    }
}

/// Sleeps until a clock reading with a [`sys::PreciseTimer`] (tokio's timer when there is none),
/// or until a stop.
pub async fn sleep_precisely_until_ns(clock: &Clock, timer: Option<&sys::PreciseTimer>, ns: u64) {
    let Some(timer) = timer else { return sleep_until_ns(clock, ns).await };
    tokio::select! {
        r = timer.sleep_until(clock.instant(ns)) => {
            if r.is_err() {
                sleep_until_ns(clock, ns).await;
            }
        }
        () = stop_signal() => {}
    }
}

/// The start signal: the run's t0 as wall-clock µs, or `None` to stop before starting.
pub type Go = tokio::sync::oneshot::Receiver<Option<i64>>;

/// Says this thread is ready, then waits for the start: the run's t0 on the process clock, or
/// `None` when stopped first.
pub async fn ready_then_start(env: &Env, ready: mpsc::Sender<()>, go: Go) -> Option<u64> {
    let _ = ready.send(());
    wait_go(go).await.map(|t0_wall| env.clock.ns_of_wall_us(t0_wall))
}

/// Waits for the start; `None` when stopped first.
pub async fn wait_go(go: Go) -> Option<i64> {
    tokio::select! {
        r = go => r.ok().flatten(),
        () = stop_signal() => None,
    }
}

async fn thread_main(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    match env.args.mode {
        Mode::Fanout | Mode::Idle => crate::fanout::run(env, ready, go).await,
        Mode::Churn => crate::churn::run(env, ready, go).await,
        Mode::Rest => crate::rest::run(env, ready, go).await,
        Mode::Soak => crate::soak::run(env, ready, go).await,
        Mode::Advice => crate::advice::run(env, ready, go).await,
    }
}

/// How a worker talks to whoever coordinates the run.
pub trait Control {
    /// Setup is done.
    fn ready(&self);
    /// Blocks until the start time (wall µs) is known; `None` means stop.
    fn wait_go(&self) -> Option<i64>;
}

/// Runs process `slice.0` of `slice.1`: its threads, from setup to report.
pub fn run_process(args: &Args, slice: (usize, usize), control: &dyn Control) -> WorkerReport {
    let (index, processes) = slice;
    let threads = args.threads;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<WorkerReport>();
    let mut gos = Vec::new();
    let mut handles = Vec::new();
    for t in 0..threads {
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<Option<i64>>();
        gos.push(go_tx);
        let (args, ready, report) = (args.clone(), ready_tx.clone(), report_tx.clone());
        let spawned = std::thread::Builder::new().name(format!("loadgen-{t}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start a runtime: {e}");
                    let _ = ready.send(());
                    return;
                }
            };
            let env = Rc::new(Env {
                args,
                gid: index * threads + t,
                groups: processes * threads,
                stats: Stats::default(),
                clock: Clock::get(),
            });
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, thread_main(env.clone(), ready, go_rx));
            let _ = report.send(env.stats.report());
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("error: cannot start a thread: {e}");
                let _ = ready_tx.send(());
            }
        }
    }
    drop(ready_tx);
    drop(report_tx);
    // Every thread says ready once (or its channel closes when it dies).
    let mut readies = 0;
    while readies < threads {
        match ready_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => readies += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    control.ready();
    let t0 = control.wait_go();
    for go in gos {
        let _ = go.send(t0);
    }
    let mut merged = WorkerReport::default();
    for r in report_rx.iter() {
        merged.merge(&r);
    }
    for h in handles {
        let _ = h.join();
    }
    *merged.counters.entry("loadgen_cpu_ms".to_owned()).or_default() += (sys::own_cpu_seconds() * 1000.0) as u64;
    merged
}

/// A worker in this process: the coordinator's callback and channel.
pub struct InProcess {
    /// Called once setup is done.
    pub on_ready: Box<dyn Fn() + Send>,
    /// The start time comes from here.
    pub go: mpsc::Receiver<Option<i64>>,
}

impl Control for InProcess {
    fn ready(&self) {
        (self.on_ready)();
    }

    fn wait_go(&self) -> Option<i64> {
        loop {
            match self.go.recv_timeout(Duration::from_millis(50)) {
                Ok(t0) => return t0,
                Err(mpsc::RecvTimeoutError::Timeout) if sys::stopped() => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

/// A worker process: `READY` on stdout, `GO <t0>` (or `STOP`) on stdin, then `REPORT <json>`.
pub struct Stdio;

impl Control for Stdio {
    fn ready(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "READY");
        let _ = out.flush();
    }

    fn wait_go(&self) -> Option<i64> {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(n) if n > 0 => line.trim().strip_prefix("GO ").and_then(|t| t.trim().parse().ok()),
            _ => None,
        }
    }
}

/// The line a worker process ends with.
pub fn report_line(report: &WorkerReport) -> String {
    format!("REPORT {}", serde_json::to_string(report).unwrap_or_else(|_| "{}".to_owned()))
}

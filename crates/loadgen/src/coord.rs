//! The parent: checks the server, decides how many processes the file limit needs, starts the
//! workers (threads here, or child processes re-running this binary with `--worker i/n`), gives
//! them one start time, samples the server around the measured window, merges what they report.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::args::{Args, Mode};
use crate::http::{self, Client, Health};
use crate::report::{self, Timeline};
use crate::stats::WorkerReport;
use crate::sys;
use crate::timefmt::wall_now_us;
use crate::worker::{self, InProcess};

/// File descriptors a process keeps for itself (runtime, stdio, REST pool slack).
const FD_RESERVE: u64 = 128;

/// Sockets one run needs open at once, all processes together.
pub fn fds_needed(a: &Args) -> u64 {
    let setup = (a.threads * a.setup_concurrency) as u64;
    match a.mode {
        Mode::Fanout | Mode::Advice => (a.sessions * a.participants) as u64 + setup,
        Mode::Idle => a.sockets as u64 + setup,
        Mode::Churn => ((a.rate * 5.0) as u64).clamp(64, 8192) * 2,
        Mode::Rest => a.concurrency as u64 * 2,
        Mode::Soak => {
            let s = &a.soak;
            let churn = ((s.churn_rate * 5.0) as u64).clamp(64, 8192) * 2;
            let abuse = (s.abuse_sockets + s.abuse_half_open * 2 + 32) as u64;
            (a.sessions * a.participants) as u64 + setup + churn + s.rest_clients as u64 * 2 + abuse
        }
    }
}

/// How many processes: as asked, else enough for each to stay under its file limit.
pub fn processes_for(a: &Args, nofile: u64) -> usize {
    if a.mode == Mode::Soak {
        // Its samples are gathered in this process's memory (soak::LIVE).
        return 1;
    }
    a.processes.unwrap_or_else(|| {
        let per = nofile.saturating_sub(FD_RESERVE).max(64);
        fds_needed(a).div_ceil(per).clamp(1, 64) as usize
    })
}

enum Event {
    Ready,
    Report(Box<WorkerReport>),
    Gone(usize, String),
}

struct Workers {
    events: mpsc::Receiver<Event>,
    go_local: Option<mpsc::Sender<Option<i64>>>,
    children: Vec<(Child, Option<ChildStdin>)>,
    n: usize,
}

impl Workers {
    fn start(args: &Args, n: usize) -> Result<Self, String> {
        let (tx, events) = mpsc::channel();
        if n == 1 {
            let (go_tx, go_rx) = mpsc::channel();
            let args = args.clone();
            let ready_tx = tx.clone();
            std::thread::Builder::new()
                .name("loadgen-worker".to_owned())
                .spawn(move || {
                    let control = InProcess {
                        on_ready: Box::new(move || {
                            let _ = ready_tx.send(Event::Ready);
                        }),
                        go: go_rx,
                    };
                    let r = worker::run_process(&args, (0, 1), &control);
                    let _ = tx.send(Event::Report(Box::new(r)));
                })
                .map_err(|e| format!("cannot start the worker thread: {e}"))?;
            return Ok(Self { events, go_local: Some(go_tx), children: Vec::new(), n });
        }
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut children = Vec::new();
        for i in 0..n {
            let mut child = Command::new(&exe)
                .args(args.worker_argv(i, n))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start worker process {i}: {e}"))?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let Some(stdout) = stdout else { return };
                let mut reported = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line == "READY" {
                        let _ = tx.send(Event::Ready);
                    } else if let Some(json) = line.strip_prefix("REPORT ") {
                        match serde_json::from_str::<WorkerReport>(json) {
                            Ok(r) => {
                                reported = true;
                                let _ = tx.send(Event::Report(Box::new(r)));
                            }
                            Err(e) => {
                                let _ = tx.send(Event::Gone(i, format!("unreadable report: {e}")));
                            }
                        }
                    }
                }
                if !reported {
                    let _ = tx.send(Event::Gone(i, "exited without a report".to_owned()));
                }
            });
            children.push((child, stdin));
        }
        Ok(Self { events, go_local: None, children, n })
    }

    fn go(&mut self, t0: Option<i64>) {
        if let Some(tx) = &self.go_local {
            let _ = tx.send(t0);
        }
        let line = match t0 {
            Some(t) => format!("GO {t}\n"),
            None => "STOP\n".to_owned(),
        };
        for (_, stdin) in &mut self.children {
            if let Some(s) = stdin {
                let _ = s.write_all(line.as_bytes());
                let _ = s.flush();
            }
        }
    }

    /// This process and the worker processes: loadgen's own CPU.
    fn pids(&self) -> Vec<u32> {
        std::iter::once(std::process::id()).chain(self.children.iter().map(|(c, _)| c.id())).collect()
    }

    /// Passes Ctrl-C on to the worker processes (threads see it directly).
    #[cfg(unix)]
    fn forward_stop(&mut self) {
        for (child, _) in &self.children {
            // SAFETY: kill with a pid we spawned and a valid signal.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        }
    }

    /// Without Unix signals: a console's Ctrl-C already reaches every process attached to it,
    /// the workers included.
    #[cfg(not(unix))]
    fn forward_stop(&mut self) {}

    /// Waits for every worker to be ready (or gone); false on timeout.
    fn wait_ready(&mut self, timeout: Duration, log: &dyn Fn(&str)) -> bool {
        let deadline = Instant::now() + timeout;
        let mut ready = 0;
        let mut forwarded = false;
        while ready < self.n && Instant::now() < deadline {
            if sys::stopped() && !forwarded {
                self.forward_stop();
                forwarded = true;
            }
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Ready) => ready += 1,
                Ok(Event::Gone(i, why)) => {
                    log(&format!("worker {i}: {why}"));
                    ready += 1;
                }
                Ok(Event::Report(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
        ready == self.n
    }

    /// Collects the reports (bounded); the number missing is returned too.
    fn collect(&mut self, timeout: Duration, log: &dyn Fn(&str)) -> (WorkerReport, usize) {
        let deadline = Instant::now() + timeout;
        let mut merged = WorkerReport::default();
        let mut got = 0;
        let mut gone = 0;
        let mut forwarded = false;
        while got + gone < self.n && Instant::now() < deadline {
            if sys::stopped() && !forwarded {
                self.forward_stop();
                forwarded = true;
            }
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Report(r)) => {
                    merged.merge(&r);
                    got += 1;
                }
                Ok(Event::Gone(i, why)) => {
                    log(&format!("worker {i}: {why}"));
                    gone += 1;
                }
                Ok(Event::Ready) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        for (child, stdin) in &mut self.children {
            drop(stdin.take());
            let _ = child.wait();
        }
        (merged, self.n - got)
    }
}

/// Sleeps until a wall-clock time (µs), waking early on Ctrl-C.
pub fn sleep_until_wall(t: i64) {
    while !sys::stopped() {
        let left = t - wall_now_us();
        if left <= 0 {
            return;
        }
        std::thread::sleep(Duration::from_micros(left.min(50_000) as u64));
    }
}

/// Runs the whole thing; the exit code.
pub fn run(args: Args, nofile: u64) -> u8 {
    let quiet = args.quiet;
    let log = move |m: &str| {
        if !quiet {
            eprintln!("loadgen: {m}");
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return 1;
        }
    };
    let client = Client::new(args.urls[0].clone(), 0, 0);
    let health = |rt: &tokio::runtime::Runtime| -> Option<Health> {
        let mut out = Health::default();
        for t in &args.urls {
            let c = Client::new(t.clone(), 0, 0);
            let h = rt.block_on(http::health(&c)).ok()?;
            out.sessions_live += h.sessions_live;
            out.sockets += h.sockets;
        }
        Some(out)
    };
    for t in &args.urls {
        let c = Client::new(t.clone(), 0, 0);
        match rt.block_on(c.request("GET", "/health", None, None)) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                eprintln!("error: the server at http://{} answers /health with HTTP {}", t.host, r.status);
                return 1;
            }
            Err(e) => {
                eprintln!("error: cannot reach the server at http://{}: {e}", t.host);
                return 1;
            }
        }
    }
    drop(client);
    let n = processes_for(&args, nofile);
    log(&format!(
        "{} against {} with {n} process(es) x {} thread(s), file limit {nofile}, about {} sockets",
        args.mode.name(),
        args.urls.iter().map(|t| format!("http://{}", t.host)).collect::<Vec<_>>().join(","),
        args.threads,
        fds_needed(&args)
    ));
    let pids = &args.server_pids;
    let mut tl = Timeline { processes: n, nofile, ..Timeline::default() };
    tl.before = sys::sample(pids);
    if args.mode == Mode::Churn {
        tl.health_before = health(&rt);
    }

    let setup_started = Instant::now();
    let mut workers = match Workers::start(&args, n) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let setup_timeout = Duration::from_secs(300) + Duration::from_millis(fds_needed(&args) * 20);
    if !workers.wait_ready(setup_timeout, &log) {
        log("setup did not finish in time; starting with what is connected");
    }
    tl.setup_seconds = setup_started.elapsed().as_secs_f64();
    log(&format!("setup done in {:.1} s", tl.setup_seconds));
    if sys::stopped() {
        workers.go(None);
    } else {
        tl.ready = sys::sample(pids);
        let own = workers.pids();
        let t0 = wall_now_us() + 300_000;
        workers.go(Some(t0));
        let secs = |s: f64| (s * 1e6) as i64;
        match args.mode {
            Mode::Fanout | Mode::Advice => {
                let start = t0 + secs(args.warmup);
                let end = start + secs(args.duration);
                log(&format!("running: {:.0} s warm-up, {:.0} s measured", args.warmup, args.duration));
                sleep_until_wall(start);
                tl.window_start = sys::sample(pids);
                tl.loadgen_start = sys::sample(&own);
                sleep_until_wall(end);
                tl.window_end = sys::sample(pids);
                tl.loadgen_end = sys::sample(&own);
                tl.window_wall_us = Some((start, wall_now_us().min(end)));
                tl.measured_seconds = ((wall_now_us().min(end) - start).max(0)) as f64 / 1e6;
            }
            Mode::Idle | Mode::Rest => {
                let end = t0 + secs(args.duration);
                log(&format!("running: {:.0} s", args.duration));
                sleep_until_wall(t0);
                tl.window_start = sys::sample(pids);
                tl.loadgen_start = sys::sample(&own);
                sleep_until_wall(end);
                tl.window_end = sys::sample(pids);
                tl.loadgen_end = sys::sample(&own);
                tl.window_wall_us = Some((t0, wall_now_us().min(end)));
                tl.measured_seconds = ((wall_now_us().min(end) - t0).max(0)) as f64 / 1e6;
            }
            Mode::Soak => {
                let end = t0 + secs(args.duration);
                log(&format!("running: {:.0} s, a sample every {:.0} s", args.duration, args.soak.sample_every));
                sleep_until_wall(t0);
                tl.window_start = sys::sample(pids);
                tl.loadgen_start = sys::sample(&own);
                tl.soak = crate::soak::verdict::watch(&args, t0, &|| health(&rt));
                tl.window_end = sys::sample(pids);
                tl.loadgen_end = sys::sample(&own);
                tl.window_wall_us = Some((t0, wall_now_us().min(end)));
                tl.measured_seconds = ((wall_now_us().min(end) - t0).max(0)) as f64 / 1e6;
            }
            Mode::Churn => {
                log(&format!("running: {:.0} s", args.duration));
                sleep_until_wall(t0);
                tl.window_start = sys::sample(pids);
                tl.loadgen_start = sys::sample(&own);
                // Cycles start until t0 + duration (the last ones are still in flight then).
                sleep_until_wall(t0 + secs(args.duration));
                tl.loadgen_end = sys::sample(&own);
            }
        }
    }
    let grace = Duration::from_secs_f64(args.duration + args.drain + 60.0);
    let (merged, missing) = workers.collect(grace, &log);
    if args.mode == Mode::Churn {
        tl.window_end = sys::sample(pids);
        tl.health_after = health(&rt);
        tl.measured_seconds = args.duration;
        if args.settle > 0.0 && !sys::stopped() {
            log(&format!("settling for {:.0} s", args.settle));
            sleep_until_wall(wall_now_us() + secs_i(args.settle));
        }
        tl.settled = sys::sample(pids);
        tl.health_settled = health(&rt);
    }
    tl.interrupted = sys::stopped() || merged.get("interrupted") > 0;
    tl.missing_workers = missing;

    let report = report::build(&args, &merged, &tl);
    if args.mode == Mode::Advice {
        print!("{}", crate::advice::report::lines(&report));
    }
    print!("{}", report::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    if missing == n {
        eprintln!("error: no worker reported");
        return 1;
    }
    if args.mode == Mode::Soak {
        if let Some(v) = report.pointer("/flatness/verdict").and_then(|v| v.as_str()) {
            eprintln!("loadgen: soak: {v}");
        }
        let failed = crate::soak::verdict::failures(&report);
        // Loudly, --quiet or not: a limit that does not hold is what a soak is for.
        for f in &failed {
            eprintln!("error: soak check failed: {f}");
        }
        if !failed.is_empty() && !tl.interrupted {
            return 1;
        }
    }
    if tl.interrupted {
        130
    } else {
        0
    }
}

fn secs_i(s: f64) -> i64 {
    (s * 1e6) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Args {
        crate::args::parse_line(line).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn splits_when_the_file_limit_is_too_small() {
        let a = args("idle --sockets 19000 --threads 2");
        assert_eq!(processes_for(&a, 20_000), 1);
        assert_eq!(processes_for(&a, 1024), 22);
        assert_eq!(processes_for(&args("idle --sockets 50000 --threads 2"), 20_000), 3);
        assert_eq!(processes_for(&args("fanout --processes 2"), 1_000_000), 2);
        assert_eq!(processes_for(&args("rest --concurrency 4"), 1024), 1);
    }
}

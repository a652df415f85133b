//! The command line: `loadgen MODE [OPTIONS]`, declared with clap's derive. The options every
//! mode takes are global (they may come before or after the mode, and `loadgen --help` lists
//! them); each mode's own options and defaults are in `loadgen MODE --help`. A mistake is one
//! line on stderr naming the flag, exit code 2.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Args as ClapArgs, Parser, Subcommand};

mod advice;
mod soak;

pub use advice::AdviceArgs;
pub use soak::SoakArgs;

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sessions of participants sending locations at a fixed rate; delivery latency and loss.
    Fanout,
    /// Sockets that only heartbeat; server memory per socket.
    Idle,
    /// Join → connect → phx_join → leave → close cycles at a fixed rate; leaks.
    Churn,
    /// REST create + join throughput and latency.
    Rest,
    /// Fan-out, churn, REST and abusers at once for minutes; the server's RSS and open files.
    Soak,
    /// Sessions whose clients follow `rate_advice` while a few look at the map; updates/s.
    Advice,
}

impl Mode {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Idle => "idle",
            Self::Churn => "churn",
            Self::Rest => "rest",
            Self::Soak => "soak",
            Self::Advice => "advice",
        }
    }
}

/// A server to talk to: `http://IPV4:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddrV4,
    /// The `Host` header (as given on the command line).
    pub host: String,
}

impl Target {
    /// Whether source addresses 127.0.0.x can be bound to reach it.
    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.addr)
    }
}

/// Everything a run needs, whatever the mode (the fields of other modes keep their defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// The mode.
    pub mode: Mode,
    /// Servers: REST goes to the first; WebSockets are spread over all (replicas; see `affine`).
    pub urls: Vec<Target>,
    /// Worker threads per process, each with its own event loop.
    pub threads: usize,
    /// Server processes whose CPU time and RSS are read from /proc.
    pub server_pids: Vec<u32>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// How many source addresses (127.0.0.2 …) the client sockets are spread over; 0: none bound.
    pub source_addrs: u8,
    /// Measured time, seconds.
    pub duration: f64,
    /// Fanout: unmeasured time before, seconds.
    pub warmup: f64,
    /// Fanout: sessions.
    pub sessions: usize,
    /// Fanout: participants per session.
    pub participants: usize,
    /// Fanout: every participant of a session connects to the same replica (session index modulo
    /// the replicas), instead of participants alternating between them.
    pub affine: bool,
    /// Fanout: updates per second per participant; churn: cycles per second.
    pub rate: f64,
    /// Idle: sockets.
    pub sockets: usize,
    /// Idle: participants per session.
    pub per_session: usize,
    /// Rest: concurrent clients.
    pub concurrency: usize,
    /// Churn: wait before the last server reading, seconds.
    pub settle: f64,
    /// Churn: cycles per session before a new one is created.
    pub reuse: usize,
    /// Fanout: wait for deliveries in flight after the end, seconds.
    pub drain: f64,
    /// Heartbeat period, seconds.
    pub heartbeat: f64,
    /// REST calls and connects in flight during setup, per thread.
    pub setup_concurrency: usize,
    /// Force this many processes (default: as many as the file limit needs).
    pub processes: Option<usize>,
    /// Hidden: this process is worker `i` of `n`.
    pub worker: Option<(usize, usize)>,
    /// No progress lines on stderr.
    pub quiet: bool,
    /// Soak: the rest of its options.
    pub soak: SoakArgs,
    /// Advice: the rest of its options.
    pub advice: AdviceArgs,
}

const AFTER_HELP: &str = "\
Latency counts from when a message was due, not when it was sent; the due time travels in the
location's timestamp field, which the server echoes. The report goes to stdout as a table.
Each mode's options and defaults: loadgen help MODE. Bad arguments exit with code 2; Ctrl-C
prints the partial report.";

/// Source addresses by default: Linux routes all of 127.0.0.0/8 to loopback; macOS and the BSDs
/// only have 127.0.0.1 unless aliases are added, so there a bind to 127.0.0.2 would fail.
#[cfg(target_os = "linux")]
const DEFAULT_SOURCE_ADDRS: &str = "8";
#[cfg(not(target_os = "linux"))]
const DEFAULT_SOURCE_ADDRS: &str = "0";

/// The command line as clap sees it; [`parse_from`] turns it into [`Args`].
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the location-sharing server (Phoenix Channels V2 over WebSocket)",
    after_help = AFTER_HELP,
    arg_required_else_help = true,
    max_term_width = 100,
    next_help_heading = "Common options"
)]
struct Cli {
    #[command(subcommand)]
    mode: ModeCli,

    /// Server(s), http://IP:PORT; REST goes to the first, WebSockets are spread over all
    /// (replicas sharing Redis; fanout --affine keeps each session on one)
    #[arg(
        long = "url",
        value_name = "URL[,URL…]",
        env = "LOADGEN_URL",
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:4000",
        value_parser = parse_target
    )]
    urls: Vec<Target>,

    /// Worker threads per process, one event loop each [default: the CPUs, at most 64]
    #[arg(long, value_name = "T", global = true, value_parser = count(1, 256))]
    threads: Option<usize>,

    /// Read the server's CPU time and RSS from /proc (Linux; elsewhere the figures are null)
    #[arg(
        long = "server-pid",
        value_name = "PID[,PID…]",
        global = true,
        value_delimiter = ',',
        value_parser = parse_pid,
    )]
    server_pids: Vec<u32>,

    /// Also write the report as JSON
    #[arg(long, value_name = "FILE", global = true)]
    json: Option<PathBuf>,

    /// Spread client sockets over 127.0.0.2 … 127.0.0.(N+1) (0: no bind)
    #[arg(
        long = "source-addrs",
        value_name = "N",
        global = true,
        default_value = DEFAULT_SOURCE_ADDRS,
        value_parser = count(0, 250),
    )]
    source_addrs: usize,

    /// Split into N processes [default: as many as the file limit needs]
    #[arg(long, value_name = "N", global = true, value_parser = count(1, 64))]
    processes: Option<usize>,

    /// This process is worker I of N, started by a parent loadgen that split the run
    #[arg(
        long,
        value_name = "I/N",
        global = true,
        hide = true,
        conflicts_with = "processes",
        value_parser = parse_worker,
    )]
    worker: Option<(usize, usize)>,

    /// No progress lines on stderr
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum ModeCli {
    /// Sessions of participants sending locations: delivery latency and loss
    #[command(after_help = "S sessions x P participants, each sending locations at R Hz (phases evenly \
                            staggered); delivery latency (from when an update was due) and loss, \
                            measured after the warm-up.")]
    Fanout(FanoutCli),
    /// Sockets that only heartbeat: server memory per socket
    #[command(after_help = "N sockets that only heartbeat (in sessions of --per-session); server RSS per \
                            socket.")]
    Idle(IdleCli),
    /// Join, connect, leave cycles at a fixed rate: cycle latency and leaks
    #[command(after_help = "R cycles/s of create-or-reuse session -> join -> connect -> phx_join -> leave \
                            -> close; server RSS, sessions_live and sockets before, right after, and \
                            after --settle.")]
    Churn(ChurnCli),
    /// REST create + join: throughput and latency
    #[command(after_help = "C concurrent clients doing POST /api/sessions + POST /api/sessions/{id}/join, \
                            as fast as they are answered.")]
    Rest(RestCli),
    /// Fan-out, churn, REST and abusive clients at once: is the server's memory flat?
    #[command(after_help = soak::ABOUT)]
    Soak(soak::SoakCli),
    /// Clients that follow rate_advice while a few look at the map: updates/s with and without
    #[command(after_help = advice::ABOUT)]
    Advice(advice::AdviceCli),
}

#[derive(Debug, ClapArgs)]
struct FanoutCli {
    /// Sessions
    #[arg(long, value_name = "S", default_value = "20", value_parser = count(1, 1_000_000))]
    sessions: usize,
    /// Participants per session, one socket each
    #[arg(long, value_name = "P", default_value = "50", value_parser = count(1, 10_000))]
    participants: usize,
    /// Updates per second per participant
    #[arg(
        long,
        value_name = "HZ",
        default_value = "1",
        allow_negative_numbers = true,
        value_parser = parse_rate,
    )]
    rate: f64,
    /// Measured time, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "60",
        allow_negative_numbers = true,
        value_parser = seconds(false, 86_400.0),
    )]
    duration: f64,
    /// Unmeasured time before the measured window, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "5",
        allow_negative_numbers = true,
        value_parser = seconds(true, 3600.0),
    )]
    warmup: f64,
    /// Wait for deliveries in flight after the end, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "2",
        allow_negative_numbers = true,
        value_parser = seconds(true, 600.0),
    )]
    drain: f64,
    /// Session-affine sockets over several --url replicas: every participant of session i
    /// connects to replica i mod N (as an ingress hashing on the session id would), instead of
    /// the participants of every session alternating between the replicas
    #[arg(long)]
    affine: bool,
    #[command(flatten)]
    heartbeat: HeartbeatCli,
    #[command(flatten)]
    setup: SetupCli,
}

#[derive(Debug, ClapArgs)]
struct IdleCli {
    /// Sockets
    #[arg(long, value_name = "N", default_value = "1000", value_parser = count(1, 10_000_000))]
    sockets: usize,
    /// Participants per session
    #[arg(
        long = "per-session",
        value_name = "P",
        default_value = "50",
        value_parser = count(1, 10_000),
    )]
    per_session: usize,
    /// Measured time, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "60",
        allow_negative_numbers = true,
        value_parser = seconds(false, 86_400.0),
    )]
    duration: f64,
    #[command(flatten)]
    heartbeat: HeartbeatCli,
    #[command(flatten)]
    setup: SetupCli,
}

#[derive(Debug, ClapArgs)]
struct ChurnCli {
    /// Cycles started per second
    #[arg(
        long,
        value_name = "CYCLES_PER_S",
        default_value = "100",
        allow_negative_numbers = true,
        value_parser = parse_rate,
    )]
    rate: f64,
    /// Cycles per session before a new one is created
    #[arg(long, value_name = "K", default_value = "10", value_parser = count(1, 10_000))]
    reuse: usize,
    /// Wait before the last server reading, seconds (session actors stop 30 s after their last socket)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "45",
        allow_negative_numbers = true,
        value_parser = seconds(true, 3600.0),
    )]
    settle: f64,
    /// Time during which cycles start, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "30",
        allow_negative_numbers = true,
        value_parser = seconds(false, 86_400.0),
    )]
    duration: f64,
    #[command(flatten)]
    heartbeat: HeartbeatCli,
}

#[derive(Debug, ClapArgs)]
struct RestCli {
    /// Concurrent clients, each on its own keep-alive connection
    #[arg(long, value_name = "C", default_value = "16", value_parser = count(1, 100_000))]
    concurrency: usize,
    /// Measured time, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "10",
        allow_negative_numbers = true,
        value_parser = seconds(false, 86_400.0),
    )]
    duration: f64,
}

#[derive(Debug, ClapArgs)]
struct HeartbeatCli {
    /// Phoenix heartbeat period, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "30",
        allow_negative_numbers = true,
        value_parser = seconds(false, 3600.0),
    )]
    heartbeat: f64,
}

#[derive(Debug, ClapArgs)]
struct SetupCli {
    /// REST calls and connects in flight per thread during setup
    #[arg(
        long = "setup-concurrency",
        value_name = "N",
        default_value = "32",
        value_parser = count(1, 10_000),
    )]
    setup_concurrency: usize,
}

/// A whole number in `min..=max`, with the range in the message.
fn count(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |raw| match raw.trim().parse::<usize>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// Seconds: finite, positive (or zero when allowed), at most `max`.
fn seconds(allow_zero: bool, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |raw| {
        let bound = if allow_zero { "0" } else { "more than 0" };
        let v = raw.trim().parse::<f64>().unwrap_or(f64::NAN);
        let low_ok = if allow_zero { v >= 0.0 } else { v > 0.0 };
        if v.is_finite() && low_ok && v <= max {
            Ok(v)
        } else {
            Err(format!("expected a number of seconds, {bound} and at most {max}"))
        }
    }
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 100_000.0 => Ok(v),
        _ => Err("expected a rate in Hz, more than 0 and at most 100000".to_owned()),
    }
}

fn parse_pid(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err("expected a process id (or a comma list)".to_owned()),
    }
}

fn parse_target(raw: &str) -> Result<Target, String> {
    let bad = || "expected http://IP:PORT (IPv4 or localhost)".to_owned();
    let rest = raw.trim().strip_prefix("http://").ok_or_else(bad)?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') || hostport.is_empty() {
        return Err(bad());
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (hostport, 80),
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse::<Ipv4Addr>().map_err(|_| bad())?
    };
    if port == 0 {
        return Err(bad());
    }
    Ok(Target { addr: SocketAddrV4::new(ip, port), host: hostport.to_owned() })
}

fn parse_worker(raw: &str) -> Result<(usize, usize), String> {
    let bad = || "expected I/N with I < N".to_owned();
    let (i, n) = raw.split_once('/').ok_or_else(bad)?;
    let (i, n) = (i.parse::<usize>().map_err(|_| bad())?, n.parse::<usize>().map_err(|_| bad())?);
    if n == 0 || i >= n || n > 256 {
        return Err(bad());
    }
    Ok((i, n))
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 64)
}

/// Parses a whole command line, program name first. `Err` is also how clap hands back `--help`
/// and `--version` (see [`clap::Error::use_stderr`]).
pub fn parse_from<I, T>(argv: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(argv)?;
    // Modes name their own defaults; what a mode does not take keeps the value of another
    // mode's default, which nothing of that mode reads.
    let mut a = Args {
        mode: Mode::Fanout,
        urls: cli.urls,
        threads: cli.threads.unwrap_or_else(default_threads),
        server_pids: cli.server_pids,
        json: cli.json,
        source_addrs: u8::try_from(cli.source_addrs).unwrap_or(u8::MAX),
        duration: 60.0,
        warmup: 5.0,
        sessions: 20,
        participants: 50,
        affine: false,
        rate: 1.0,
        sockets: 1000,
        per_session: 50,
        concurrency: 16,
        settle: 45.0,
        reuse: 10,
        drain: 2.0,
        heartbeat: 30.0,
        setup_concurrency: 32,
        processes: cli.processes,
        worker: cli.worker,
        quiet: cli.quiet,
        soak: SoakArgs::default(),
        advice: AdviceArgs::default(),
    };
    match cli.mode {
        ModeCli::Fanout(m) => {
            a.mode = Mode::Fanout;
            (a.sessions, a.participants, a.rate, a.duration) = (m.sessions, m.participants, m.rate, m.duration);
            (a.warmup, a.drain, a.affine) = (m.warmup, m.drain, m.affine);
            a.heartbeat = m.heartbeat.heartbeat;
            a.setup_concurrency = m.setup.setup_concurrency;
        }
        ModeCli::Idle(m) => {
            a.mode = Mode::Idle;
            (a.sockets, a.per_session, a.duration) = (m.sockets, m.per_session, m.duration);
            a.heartbeat = m.heartbeat.heartbeat;
            a.setup_concurrency = m.setup.setup_concurrency;
        }
        ModeCli::Churn(m) => {
            a.mode = Mode::Churn;
            (a.rate, a.reuse, a.settle, a.duration) = (m.rate, m.reuse, m.settle, m.duration);
            a.heartbeat = m.heartbeat.heartbeat;
        }
        ModeCli::Rest(m) => {
            a.mode = Mode::Rest;
            (a.concurrency, a.duration) = (m.concurrency, m.duration);
        }
        ModeCli::Soak(m) => {
            a.mode = Mode::Soak;
            soak::apply(m, &mut a)?;
        }
        ModeCli::Advice(m) => {
            a.mode = Mode::Advice;
            advice::apply(m, &mut a)?;
        }
    }
    Ok(a)
}

/// A parse error as one line: clap's first line (which names the flag and the value), plus its
/// tip when it has one (a near-miss flag name).
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut out = lines.next().unwrap_or("error: bad arguments").to_owned();
    if let Some(tip) = lines.find(|l| l.starts_with("tip:")) {
        out.push_str(" (");
        out.push_str(tip);
        out.push(')');
    }
    out.push_str(" (see --help)");
    out
}

/// Whether clap's "error" is help that should go to stdout with exit code 0, or (for a bare
/// `loadgen`) to stderr with exit code 2 in full.
pub fn is_help(e: &clap::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

impl Args {
    /// The arguments a worker process gets: the same run, minus what only the parent does.
    pub fn worker_argv(&self, i: usize, n: usize) -> Vec<String> {
        let mut v = vec![self.mode.name().to_owned()];
        let mut push = |flag: &str, value: String| {
            v.push(flag.to_owned());
            v.push(value);
        };
        let urls: Vec<String> = self.urls.iter().map(|t| format!("http://{}", t.host)).collect();
        push("--url", urls.join(","));
        push("--threads", self.threads.to_string());
        push("--duration", self.duration.to_string());
        push("--source-addrs", self.source_addrs.to_string());
        push("--worker", format!("{i}/{n}"));
        match self.mode {
            Mode::Fanout => {
                push("--heartbeat", self.heartbeat.to_string());
                push("--setup-concurrency", self.setup_concurrency.to_string());
                push("--sessions", self.sessions.to_string());
                push("--participants", self.participants.to_string());
                push("--rate", self.rate.to_string());
                push("--warmup", self.warmup.to_string());
                push("--drain", self.drain.to_string());
                if self.affine {
                    v.push("--affine".to_owned());
                }
            }
            Mode::Idle => {
                push("--heartbeat", self.heartbeat.to_string());
                push("--setup-concurrency", self.setup_concurrency.to_string());
                push("--sockets", self.sockets.to_string());
                push("--per-session", self.per_session.to_string());
            }
            Mode::Churn => {
                push("--heartbeat", self.heartbeat.to_string());
                push("--rate", self.rate.to_string());
                push("--reuse", self.reuse.to_string());
            }
            Mode::Advice => {
                push("--heartbeat", self.heartbeat.to_string());
                push("--setup-concurrency", self.setup_concurrency.to_string());
                push("--sessions", self.sessions.to_string());
                push("--participants", self.participants.to_string());
                push("--rate", self.rate.to_string());
                push("--warmup", self.warmup.to_string());
                push("--drain", self.drain.to_string());
                push("--viewers", self.advice.viewers.to_string());
                push("--sample-every", self.advice.sample_every.to_string());
                push("--evening-hours", self.advice.evening_hours.to_string());
                if let Some((on, off)) = self.advice.glance {
                    push("--glance", format!("{on},{off}"));
                }
                if self.advice.ignore_advice {
                    v.push("--ignore-advice".to_owned());
                }
            }
            Mode::Rest => push("--concurrency", self.concurrency.to_string()),
            // Never split: a soak's samples are gathered in the memory of its one process.
            Mode::Soak => {}
        }
        v.push("--quiet".to_owned());
        v
    }
}

/// Parses `loadgen LINE` (split on whitespace), for tests.
#[cfg(test)]
pub fn parse_line(line: &str) -> Result<Args, clap::Error> {
    parse_from(std::iter::once("loadgen").chain(line.split_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Args, String> {
        parse_line(line).map_err(|e| if is_help(&e) { "help".to_owned() } else { one_line(&e) })
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_good_arguments() {
        let a = run("fanout").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.sessions, a.participants, a.rate, a.duration, a.warmup), (20, 50, 1.0, 60.0, 5.0));
        assert_eq!((a.drain, a.heartbeat, a.setup_concurrency), (2.0, 30.0, 32));
        assert!(!a.affine, "sockets alternate between replicas unless --affine");
        assert_eq!(a.source_addrs.to_string(), DEFAULT_SOURCE_ADDRS);
        assert_eq!(a.urls[0].addr, "127.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(a.urls[0].host, "127.0.0.1:4000");
        assert!(a.threads >= 1 && a.server_pids.is_empty() && a.json.is_none() && !a.quiet);
        assert_eq!((a.processes, a.worker), (None, None));

        let a = run("fanout --sessions 100 --participants=3 --rate 2.5 --duration 2 --warmup 0 --threads 2 \
                     --server-pid 42,43 --json out.json --url http://127.0.0.1:5000/,http://localhost:5001 \
                     --source-addrs 0")
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.sessions, a.participants, a.rate, a.duration, a.warmup, a.threads), (100, 3, 2.5, 2.0, 0.0, 2));
        assert_eq!(a.server_pids, vec![42, 43]);
        assert_eq!(a.json, Some(PathBuf::from("out.json")));
        assert_eq!(a.urls.len(), 2);
        assert_eq!(a.urls[1].addr.port(), 5001);
        assert_eq!(a.urls[0].host, "127.0.0.1:5000");
        assert_eq!(a.source_addrs, 0);

        // The common options may also come before the mode.
        let a = run("--threads 3 --quiet rest").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.mode, a.threads, a.quiet), (Mode::Rest, 3, true));

        let a = run("churn").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.rate, a.duration, a.reuse, a.settle, a.heartbeat), (100.0, 30.0, 10, 45.0, 30.0));
        let a = run("idle --sockets 19000 --quiet").unwrap_or_else(|e| panic!("{e}"));
        assert!(a.quiet);
        assert_eq!((a.sockets, a.per_session, a.duration), (19000, 50, 60.0));
        let a = run("rest --concurrency 4").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.concurrency, a.duration), (4, 10.0));
        assert_eq!(run("rest").map(|a| a.concurrency), Ok(16));
        assert_eq!(run("fanout --worker 1/3").map(|a| a.worker), Ok(Some((1, 3))));
        assert_eq!(run("fanout --processes 4").map(|a| a.processes), Ok(Some(4)));
    }

    #[test]
    fn affine_is_a_fanout_flag() {
        let a =
            run("fanout --affine --url http://127.0.0.1:4001,http://127.0.0.1:4002").unwrap_or_else(|e| panic!("{e}"));
        assert!(a.affine);
        assert_eq!(a.urls.len(), 2);
        // With one replica it changes nothing, but is accepted.
        assert_eq!(run("fanout --sessions 3 --affine").map(|a| (a.affine, a.sessions)), Ok((true, 3)));
        for (line, needle) in [
            ("fanout --affine=yes", "unexpected value 'yes' for '--affine'"),
            ("fanout --affine --affine", "'--affine' cannot be used multiple times"),
            ("idle --affine", "unexpected argument '--affine'"),
            ("churn --affine", "unexpected argument '--affine'"),
            ("rest --affine", "unexpected argument '--affine'"),
        ] {
            let e = run(line).err().unwrap_or_default();
            assert!(e.contains(needle), "{line:?}: {e:?} should contain {needle:?}");
        }
        // Worker processes get it too.
        let argv = std::iter::once("loadgen".to_owned()).chain(a.worker_argv(0, 2));
        assert!(parse_from(argv).is_ok_and(|w| w.affine));
        let plain = run("fanout").unwrap_or_else(|e| panic!("{e}"));
        assert!(!plain.worker_argv(0, 2).iter().any(|f| f == "--affine"));
    }

    #[test]
    fn help_for_the_program_and_each_mode() {
        let help = |line: &str| match parse_line(line) {
            Err(e) if e.kind() == ErrorKind::DisplayHelp => e.render().to_string(),
            other => panic!("{line:?}: {other:?}"),
        };
        let top = help("--help");
        for needle in ["fanout", "idle", "churn", "rest", "--server-pid", "--source-addrs", "LOADGEN_URL"] {
            assert!(top.contains(needle), "{needle} in {top}");
        }
        assert!(!top.contains("--worker"), "the worker flag is hidden: {top}");
        let fanout = help("fanout -h");
        for needle in
            ["--participants", "[default: 50]", "--warmup", "--heartbeat", "--setup-concurrency", "--url", "--affine"]
        {
            assert!(fanout.contains(needle), "{needle} in {fanout}");
        }
        assert!(help("help churn").contains("--settle"));
        assert!(help("rest --help").contains("[default: 16]"));
        assert!(top.contains("soak"), "{top}");
        // A bare `loadgen` shows the help too (on stderr, exit code 2).
        let bare = parse_line("").err().map(|e| e.kind());
        assert_eq!(bare, Some(ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand));
        assert!(parse_line("--version").is_err_and(|e| e.kind() == ErrorKind::DisplayVersion));
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        for (line, needle) in [
            ("stampede", "unrecognized subcommand 'stampede'"),
            ("fanout --rate abc", "--rate <HZ>': expected a rate"),
            ("fanout --rate 0", "--rate <HZ>': expected a rate"),
            ("fanout --rate -1", "--rate <HZ>': expected a rate"),
            ("fanout --rate NaN", "--rate <HZ>': expected a rate"),
            ("fanout --sessions 0", "--sessions <S>': expected a whole number"),
            ("fanout --sessions", "'--sessions <S>' but none was supplied"),
            ("fanout --duration 0", "--duration <SECONDS>': expected a number of seconds, more than 0"),
            ("fanout --warmup -1", "--warmup <SECONDS>': expected a number of seconds, 0 and at most 3600"),
            ("fanout --bogus 1", "unexpected argument '--bogus'"),
            ("fanout --sesions 1", "tip: a similar argument exists: '--sessions'"),
            ("fanout extra", "unexpected argument 'extra'"),
            ("fanout --sockets 5", "unexpected argument '--sockets'"),
            ("idle --rate 5", "unexpected argument '--rate'"),
            ("rest --participants 5", "unexpected argument '--participants'"),
            ("rest --heartbeat 5", "unexpected argument '--heartbeat'"),
            ("churn --setup-concurrency 5", "unexpected argument '--setup-concurrency'"),
            ("fanout --url https://127.0.0.1:4000", "--url <URL[,URL…]>': expected http://IP:PORT"),
            ("fanout --url http://example.com:80", "expected http://IP:PORT"),
            ("fanout --url http://127.0.0.1:0", "expected http://IP:PORT"),
            ("fanout --url http://127.0.0.1:4000/x", "expected http://IP:PORT"),
            ("fanout --server-pid x", "--server-pid <PID[,PID…]>': expected a process id"),
            ("fanout --server-pid 0", "expected a process id"),
            ("fanout --threads 0", "--threads <T>': expected a whole number from 1 to 256"),
            ("fanout --worker 3/3", "--worker <I/N>': expected I/N"),
            ("fanout --worker 0/2 --processes 2", "cannot be used with"),
            ("fanout --rate 1 --rate 2", "'--rate <HZ>' cannot be used multiple times"),
            ("fanout --quiet=yes", "unexpected value 'yes' for '--quiet'"),
            ("fanout --source-addrs 300", "--source-addrs <N>': expected a whole number from 0 to 250"),
            ("fanout --json=", "'--json <FILE>' but none was supplied"),
        ] {
            let e = run(line).err().unwrap_or_default();
            assert!(e.contains(needle), "{line:?}: {e:?} should contain {needle:?}");
            assert!(e.starts_with("error: ") && !e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn worker_argv_round_trips() {
        let a = run("fanout --sessions 7 --participants 3 --rate 2 --duration 3 --warmup 1 --threads 2 \
                     --url http://127.0.0.1:5000 --server-pid 9 --json x.json")
        .unwrap_or_else(|e| panic!("{e}"));
        let argv = std::iter::once("loadgen".to_owned()).chain(a.worker_argv(1, 2));
        let w = parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.worker, Some((1, 2)));
        assert_eq!((w.sessions, w.participants, w.rate, w.duration, w.warmup), (7, 3, 2.0, 3.0, 1.0));
        assert_eq!(w.urls, a.urls);
        assert!(w.server_pids.is_empty() && w.json.is_none() && w.quiet);
        for line in ["idle --sockets 30", "churn --rate 7.5 --reuse 2", "rest --concurrency 3"] {
            let a = run(line).unwrap_or_else(|e| panic!("{e}"));
            let argv = std::iter::once("loadgen".to_owned()).chain(a.worker_argv(0, 2));
            let w = parse_from(argv).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(Args { worker: None, quiet: false, ..w }, a, "{line}");
        }
    }
}

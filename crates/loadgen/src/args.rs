//! The command line: `loadgen MODE [--flag VALUE]…`, parsed by hand so every mistake gets one
//! line naming the flag (exit code 2).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

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
}

impl Mode {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Idle => "idle",
            Self::Churn => "churn",
            Self::Rest => "rest",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "fanout" => Some(Self::Fanout),
            "idle" => Some(Self::Idle),
            "churn" => Some(Self::Churn),
            "rest" => Some(Self::Rest),
            _ => None,
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

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// The mode.
    pub mode: Mode,
    /// Servers: REST goes to the first; WebSockets are spread over all (replicas).
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
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print the help.
    Help,
    /// Run.
    Run(Box<Args>),
}

/// A bad command line: one line naming the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The help text.
pub fn usage() -> String {
    format!(
        "loadgen {version}: load generator for the location-sharing server (Phoenix Channels V2 over WebSocket)

Usage: loadgen MODE [OPTIONS]

Modes:
  fanout   S sessions x P participants, each sending locations at R Hz (phases evenly staggered);
           delivery latency (from when an update was due) and loss, measured after the warm-up
  idle     N sockets that only heartbeat (sessions of --per-session); server RSS per socket
  churn    R cycles/s of create-or-reuse session -> join -> connect -> phx_join -> leave -> close;
           server RSS, sessions_live and sockets before, right after, and after --settle
  rest     C concurrent clients doing POST /api/sessions + POST join; throughput and latency

Common options:
  --url URL[,URL…]       server(s), http://IP:PORT (default http://127.0.0.1:4000); REST goes to the
                         first, WebSockets are spread over all (replicas sharing Redis)
  --threads T            worker threads per process, one event loop each (default: CPUs)
  --server-pid PID[,PID…] read the server's CPU time and RSS from /proc
  --json FILE            also write the report as JSON
  --duration SECONDS     measured time (fanout 60, idle 60, churn 30, rest 10)
  --source-addrs N       spread client sockets over 127.0.0.2 … 127.0.0.(N+1) (default 8; 0: no bind)
  --heartbeat SECONDS    Phoenix heartbeat period (default 30)
  --setup-concurrency N  REST calls/connects in flight per thread during setup (default 32)
  --processes N          split into N processes (default: as many as the file limit needs)
  --quiet                no progress lines on stderr
  -h, --help             this text

fanout:  --sessions S (default 20)  --participants P (default 50)  --rate HZ (default 1)
         --warmup SECONDS (default 5)  --drain SECONDS (default 2)
idle:    --sockets N (default 1000)  --per-session P (default 50)
churn:   --rate CYCLES_PER_S (default 100)  --reuse K cycles per session (default 10)
         --settle SECONDS (default 45)
rest:    --concurrency C (default 16)

Latency counts from when a message was due, not when it was sent; the due time travels in the
location's timestamp field, which the server echoes. The report goes to stdout as a table.
Bad arguments exit with code 2; Ctrl-C prints the partial report.
",
        version = env!("CARGO_PKG_VERSION")
    )
}

const FLAG_MODES: &[(&str, &[Mode])] = &[
    ("--url", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--threads", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--server-pid", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--json", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--duration", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--source-addrs", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--heartbeat", &[Mode::Fanout, Mode::Idle, Mode::Churn]),
    ("--setup-concurrency", &[Mode::Fanout, Mode::Idle]),
    ("--processes", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--worker", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--quiet", &[Mode::Fanout, Mode::Idle, Mode::Churn, Mode::Rest]),
    ("--sessions", &[Mode::Fanout]),
    ("--participants", &[Mode::Fanout]),
    ("--rate", &[Mode::Fanout, Mode::Churn]),
    ("--warmup", &[Mode::Fanout]),
    ("--drain", &[Mode::Fanout]),
    ("--sockets", &[Mode::Idle]),
    ("--per-session", &[Mode::Idle]),
    ("--reuse", &[Mode::Churn]),
    ("--settle", &[Mode::Churn]),
    ("--concurrency", &[Mode::Rest]),
];

fn err(msg: impl Into<String>) -> ArgError {
    ArgError(msg.into())
}

fn number<T: std::str::FromStr>(flag: &str, raw: &str, what: &str) -> Result<T, ArgError> {
    raw.trim().parse::<T>().map_err(|_| err(format!("{flag}: expected {what}, got {raw:?}")))
}

fn count(flag: &str, raw: &str, min: usize, max: usize) -> Result<usize, ArgError> {
    let v: usize = number(flag, raw, &format!("a whole number from {min} to {max}"))?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(err(format!("{flag}: expected a whole number from {min} to {max}, got {raw:?}")))
    }
}

fn seconds(flag: &str, raw: &str, allow_zero: bool, max: f64) -> Result<f64, ArgError> {
    let bound = if allow_zero { "0" } else { "more than 0" };
    let what = format!("a number of seconds, {bound} and at most {max}");
    let v: f64 = number(flag, raw, &what)?;
    let low_ok = if allow_zero { v >= 0.0 } else { v > 0.0 };
    if v.is_finite() && low_ok && v <= max {
        Ok(v)
    } else {
        Err(err(format!("{flag}: expected {what}, got {raw:?}")))
    }
}

fn parse_target(raw: &str) -> Result<Target, ArgError> {
    let bad = || err(format!("--url: expected http://IP:PORT (IPv4 or localhost), got {raw:?}"));
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

fn parse_worker(raw: &str) -> Result<(usize, usize), ArgError> {
    let bad = || err(format!("--worker: expected I/N with I < N, got {raw:?}"));
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

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, ArgError> {
    if args.iter().any(|a| a == "-h" || a == "--help" || a == "help") {
        return Ok(Command::Help);
    }
    let Some(first) = args.first() else {
        return Err(err("missing MODE: one of fanout, idle, churn, rest (see --help)"));
    };
    let mode = Mode::parse(first)
        .ok_or_else(|| err(format!("unknown mode {first:?}: expected fanout, idle, churn or rest (see --help)")))?;
    let mut a = Args {
        mode,
        urls: vec![Target { addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000), host: "127.0.0.1:4000".to_owned() }],
        threads: default_threads(),
        server_pids: Vec::new(),
        json: None,
        source_addrs: 8,
        duration: match mode {
            Mode::Fanout | Mode::Idle => 60.0,
            Mode::Churn => 30.0,
            Mode::Rest => 10.0,
        },
        warmup: 5.0,
        sessions: 20,
        participants: 50,
        rate: if mode == Mode::Churn { 100.0 } else { 1.0 },
        sockets: 1000,
        per_session: 50,
        concurrency: 16,
        settle: 45.0,
        reuse: 10,
        drain: 2.0,
        heartbeat: 30.0,
        setup_concurrency: 32,
        processes: None,
        worker: None,
        quiet: false,
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let raw = args[i].as_str();
        let (flag, inline) = match raw.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (raw, None),
        };
        let Some((flag, modes)) = FLAG_MODES.iter().find(|(f, _)| *f == flag) else {
            return Err(if flag.starts_with('-') {
                err(format!("unknown option {flag} (see --help)"))
            } else {
                err(format!("unexpected argument {raw:?} (see --help)"))
            });
        };
        if !modes.contains(&mode) {
            return Err(err(format!("{flag} does not apply to {} (see --help)", mode.name())));
        }
        if seen.contains(flag) {
            return Err(err(format!("{flag} given twice")));
        }
        seen.push(flag);
        if *flag == "--quiet" {
            if inline.is_some() {
                return Err(err("--quiet takes no value"));
            }
            a.quiet = true;
            i += 1;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) if !v.starts_with("--") => v.as_str(),
                    _ => return Err(err(format!("{flag} needs a value"))),
                }
            }
        };
        i += 1;
        match *flag {
            "--url" => a.urls = value.split(',').map(parse_target).collect::<Result<_, _>>()?,
            "--threads" => a.threads = count(flag, value, 1, 256)?,
            "--server-pid" => {
                a.server_pids = value
                    .split(',')
                    .map(|p| match p.trim().parse::<u32>() {
                        Ok(pid) if pid > 0 => Ok(pid),
                        _ => Err(err(format!("{flag}: expected a process id (or a comma list), got {value:?}"))),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--json" => {
                if value.is_empty() {
                    return Err(err("--json: expected a file name"));
                }
                a.json = Some(PathBuf::from(value))
            }
            "--duration" => a.duration = seconds(flag, value, false, 86_400.0)?,
            "--source-addrs" => a.source_addrs = count(flag, value, 0, 250)? as u8,
            "--heartbeat" => a.heartbeat = seconds(flag, value, false, 3600.0)?,
            "--setup-concurrency" => a.setup_concurrency = count(flag, value, 1, 10_000)?,
            "--processes" => a.processes = Some(count(flag, value, 1, 64)?),
            "--worker" => a.worker = Some(parse_worker(value)?),
            "--sessions" => a.sessions = count(flag, value, 1, 1_000_000)?,
            "--participants" => a.participants = count(flag, value, 1, 10_000)?,
            "--rate" => {
                let what = "a rate in Hz, more than 0 and at most 100000";
                let v: f64 = number(flag, value, what)?;
                if !(v.is_finite() && v > 0.0 && v <= 100_000.0) {
                    return Err(err(format!("{flag}: expected {what}, got {value:?}")));
                }
                a.rate = v;
            }
            "--warmup" => a.warmup = seconds(flag, value, true, 3600.0)?,
            "--drain" => a.drain = seconds(flag, value, true, 600.0)?,
            "--sockets" => a.sockets = count(flag, value, 1, 10_000_000)?,
            "--per-session" => a.per_session = count(flag, value, 1, 10_000)?,
            "--reuse" => a.reuse = count(flag, value, 1, 10_000)?,
            "--settle" => a.settle = seconds(flag, value, true, 3600.0)?,
            "--concurrency" => a.concurrency = count(flag, value, 1, 100_000)?,
            other => return Err(err(format!("unknown option {other} (see --help)"))),
        }
    }
    if a.worker.is_some() && a.processes.is_some() {
        return Err(err("--worker and --processes cannot be combined"));
    }
    Ok(Command::Run(Box::new(a)))
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
            Mode::Rest => push("--concurrency", self.concurrency.to_string()),
        }
        v.push("--quiet".to_owned());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Args, String> {
        let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match parse(&argv) {
            Ok(Command::Run(a)) => Ok(*a),
            Ok(Command::Help) => Err("help".to_owned()),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn defaults_and_good_arguments() {
        let a = run("fanout").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.sessions, a.participants, a.rate, a.duration, a.warmup), (20, 50, 1.0, 60.0, 5.0));
        assert_eq!(a.urls[0].addr, "127.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")));

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

        let a = run("churn").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.rate, a.duration, a.reuse), (100.0, 30.0, 10));
        let a = run("idle --sockets 19000 --quiet").unwrap_or_else(|e| panic!("{e}"));
        assert!(a.quiet);
        assert_eq!(a.sockets, 19000);
        let a = run("rest --concurrency 4").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.concurrency, a.duration), (4, 10.0));
        assert_eq!(run("fanout --worker 1/3").map(|a| a.worker), Ok(Some((1, 3))));
    }

    #[test]
    fn help_anywhere() {
        assert_eq!(parse(&["--help".to_owned()]), Ok(Command::Help));
        assert_eq!(parse(&["fanout".to_owned(), "-h".to_owned()]), Ok(Command::Help));
        assert!(usage().contains("--source-addrs") && usage().contains("--per-session"));
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        for (line, needle) in [
            ("", "missing MODE"),
            ("stampede", "unknown mode \"stampede\""),
            ("fanout --rate abc", "--rate: expected"),
            ("fanout --rate 0", "--rate: expected"),
            ("fanout --rate -1", "--rate: expected"),
            ("fanout --rate NaN", "--rate: expected"),
            ("fanout --sessions 0", "--sessions: expected a whole number"),
            ("fanout --sessions", "--sessions needs a value"),
            ("fanout --duration 0", "--duration: expected"),
            ("fanout --bogus 1", "unknown option --bogus"),
            ("fanout extra", "unexpected argument \"extra\""),
            ("fanout --sockets 5", "--sockets does not apply to fanout"),
            ("idle --rate 5", "--rate does not apply to idle"),
            ("rest --participants 5", "--participants does not apply to rest"),
            ("fanout --url https://127.0.0.1:4000", "--url: expected http://IP:PORT"),
            ("fanout --url http://example.com:80", "--url: expected http://IP:PORT"),
            ("fanout --url http://127.0.0.1:0", "--url: expected http://IP:PORT"),
            ("fanout --server-pid x", "--server-pid: expected a process id"),
            ("fanout --threads 0", "--threads: expected a whole number from 1 to 256"),
            ("fanout --worker 3/3", "--worker: expected I/N"),
            ("fanout --rate 1 --rate 2", "--rate given twice"),
            ("fanout --quiet=yes", "--quiet takes no value"),
            ("fanout --source-addrs 300", "--source-addrs: expected a whole number from 0 to 250"),
        ] {
            let e = run(line).err().unwrap_or_default();
            assert!(e.contains(needle), "{line:?}: {e:?} should contain {needle:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn worker_argv_round_trips() {
        let a = run("fanout --sessions 7 --participants 3 --rate 2 --duration 3 --warmup 1 --threads 2 \
                     --url http://127.0.0.1:5000 --server-pid 9 --json x.json")
        .unwrap_or_else(|e| panic!("{e}"));
        let w = match parse(&a.worker_argv(1, 2)) {
            Ok(Command::Run(w)) => *w,
            other => panic!("{other:?}"),
        };
        assert_eq!(w.worker, Some((1, 2)));
        assert_eq!((w.sessions, w.participants, w.rate, w.duration, w.warmup), (7, 3, 2.0, 3.0, 1.0));
        assert_eq!(w.urls, a.urls);
        assert!(w.server_pids.is_empty() && w.json.is_none() && w.quiet);
        for mode in ["idle", "churn", "rest"] {
            let a = run(mode).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(parse(&a.worker_argv(0, 2)), Ok(Command::Run(_))), "{mode}");
        }
    }
}

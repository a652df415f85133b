//! `loadgen soak`'s options: the legitimate load (fan-out, churn, REST), the abusers, and the
//! sampling. Kept apart from the other modes' so `args.rs` stays readable.

use std::net::Ipv4Addr;

use clap::error::ErrorKind;
use clap::Args as ClapArgs;

use super::{count, parse_rate, seconds, Args, HeartbeatCli, SetupCli};

/// What only a soak run reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakArgs {
    /// Seconds between two samples of the server.
    pub sample_every: f64,
    /// Samples before this (seconds) are left out of the flatness verdict.
    pub warmup: f64,
    /// Churn cycles per second.
    pub churn_rate: f64,
    /// REST clients (0: none).
    pub rest_clients: usize,
    /// Create + join + GET per second, per REST client.
    pub rest_rate: f64,
    /// The one source address of every abuser.
    pub abuse_addr: Ipv4Addr,
    /// Seconds between two rounds of abuse.
    pub abuse_every: f64,
    /// Sockets opened with one participant's token per round.
    pub abuse_sockets: usize,
    /// Handshakes per round at most (the flood stops once refused enough).
    pub abuse_handshakes: usize,
    /// Session creations per round at most (likewise).
    pub abuse_creates: usize,
    /// Half-open connections per round (half send a partial head, half nothing).
    pub abuse_half_open: usize,
    /// Size of the oversize frame, bytes.
    pub abuse_frame_bytes: usize,
    /// Largest share of legitimate deliveries (and of churn cycles and REST calls) that may fail.
    pub max_loss: f64,
}

impl Default for SoakArgs {
    fn default() -> Self {
        Self {
            sample_every: 30.0,
            warmup: 120.0,
            churn_rate: 2.0,
            rest_clients: 2,
            rest_rate: 0.5,
            abuse_addr: Ipv4Addr::new(127, 0, 0, 250),
            abuse_every: 30.0,
            abuse_sockets: 20,
            abuse_handshakes: 2000,
            abuse_creates: 1000,
            abuse_half_open: 10,
            abuse_frame_bytes: 65_536,
            max_loss: 0.001,
        }
    }
}

/// The help text after the options.
pub const ABOUT: &str = "\
Everything at once for --duration: fan-out (S sessions x P participants at R Hz), churn cycles,
REST clients (create + join + GET), and rounds of abusers from --abuse-addr: a session-creation
flood (expects 429 + Retry-After), --abuse-sockets sockets on one participant's token (expects
its oldest closed with 1008), a handshake flood (expects 429), garbage then an oversize frame
(expects 1009), and half-open connections (expects them closed within seconds). Every
--sample-every it prints the server's RSS and open files (--server-pid), its sockets, and the
window's deliveries, latency and loss; at the end, whether RSS and open files stayed flat after
--warmup (reported, not asserted). Exit code 1 when an abuser was not refused or legitimate
traffic lost more than --max-loss. Run the server with its abuse limits on, and keep the
legitimate load under them per address (--source-addrs spreads it over 127.0.0.2...).";

// A plain comment, not a doc one: clap would take a doc comment for the mode's help text.
// The options as clap sees them; `apply` turns them into `Args`.
#[derive(Debug, ClapArgs)]
pub(super) struct SoakCli {
    /// Time during which everything runs, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "600",
        allow_negative_numbers = true,
        value_parser = seconds(false, 86_400.0),
    )]
    duration: f64,
    /// Seconds between two samples of the server and of the legitimate traffic
    #[arg(
        long = "sample-every",
        value_name = "SECONDS",
        default_value = "30",
        allow_negative_numbers = true,
        value_parser = seconds(false, 3600.0),
    )]
    sample_every: f64,
    /// Samples before this are left out of the flatness verdict, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "120",
        allow_negative_numbers = true,
        value_parser = seconds(true, 86_400.0),
    )]
    warmup: f64,
    /// Fan-out sessions
    #[arg(long, value_name = "S", default_value = "10", value_parser = count(1, 100_000))]
    sessions: usize,
    /// Fan-out participants per session, one socket each
    #[arg(long, value_name = "P", default_value = "20", value_parser = count(1, 10_000))]
    participants: usize,
    /// Fan-out updates per second per participant
    #[arg(long, value_name = "HZ", default_value = "1", allow_negative_numbers = true, value_parser = parse_rate)]
    rate: f64,
    /// Churn cycles per second (their joins share a keep-alive connection: one source address)
    #[arg(
        long = "churn-rate",
        value_name = "CYCLES_PER_S",
        default_value = "2",
        allow_negative_numbers = true,
        value_parser = parse_rate,
    )]
    churn_rate: f64,
    /// Churn cycles per session before a new one is created
    #[arg(long, value_name = "K", default_value = "10", value_parser = count(1, 10_000))]
    reuse: usize,
    /// REST clients, each on its own source address (0: none)
    #[arg(long = "rest-clients", value_name = "C", default_value = "2", value_parser = count(0, 1000))]
    rest_clients: usize,
    /// Create + join + GET per second, per REST client
    #[arg(
        long = "rest-rate",
        value_name = "HZ",
        default_value = "0.5",
        allow_negative_numbers = true,
        value_parser = parse_rate,
    )]
    rest_rate: f64,
    /// The one source address of every abuser (not one of the legitimate ones)
    #[arg(long = "abuse-addr", value_name = "IP", default_value = "127.0.0.250", value_parser = parse_loopback)]
    abuse_addr: Ipv4Addr,
    /// Seconds between two rounds of abuse (the first starts half of it after the start)
    #[arg(
        long = "abuse-every",
        value_name = "SECONDS",
        default_value = "30",
        allow_negative_numbers = true,
        value_parser = seconds(false, 3600.0),
    )]
    abuse_every: f64,
    /// Sockets opened per round with one participant's token (above MAX_SOCKETS_PER_PARTICIPANT)
    #[arg(long = "abuse-sockets", value_name = "N", default_value = "20", value_parser = count(2, 1000))]
    abuse_sockets: usize,
    /// Handshakes per round at most (above SOCKET_CONNECTS_PER_MINUTE); stops once refused 20 times
    #[arg(long = "abuse-handshakes", value_name = "N", default_value = "2000", value_parser = count(1, 100_000))]
    abuse_handshakes: usize,
    /// Session creations per round at most (above CREATE_SESSIONS_PER_MINUTE); stops once refused 20 times
    #[arg(long = "abuse-creates", value_name = "N", default_value = "1000", value_parser = count(1, 100_000))]
    abuse_creates: usize,
    /// Half-open connections per round: half send part of a request head, half nothing
    #[arg(long = "abuse-half-open", value_name = "N", default_value = "10", value_parser = count(0, 1000))]
    abuse_half_open: usize,
    /// Size of the oversize frame, bytes (above MAX_FRAME_BYTES)
    #[arg(
        long = "abuse-frame-bytes",
        value_name = "BYTES",
        default_value = "65536",
        value_parser = count(1024, 1 << 20),
    )]
    abuse_frame_bytes: usize,
    /// Largest share of legitimate deliveries, churn cycles or REST calls that may fail
    #[arg(long = "max-loss", value_name = "RATIO", default_value = "0.001", value_parser = parse_ratio)]
    max_loss: f64,
    #[command(flatten)]
    heartbeat: HeartbeatCli,
    #[command(flatten)]
    setup: SetupCli,
}

fn parse_loopback(raw: &str) -> Result<Ipv4Addr, String> {
    match raw.trim().parse::<Ipv4Addr>() {
        Ok(ip) if ip.is_loopback() => Ok(ip),
        _ => Err("expected a loopback IPv4 address, 127.0.0.x".to_owned()),
    }
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a ratio from 0 to 1".to_owned()),
    }
}

/// A mistake that only shows with two flags together, named like clap's own.
pub(super) fn invalid(flag: &str, value: impl std::fmt::Display, why: &str) -> clap::Error {
    clap::Error::raw(ErrorKind::ValueValidation, format!("invalid value '{value}' for '{flag}': {why}\n"))
}

/// Fills `a` from the soak options; checks what clap cannot see flag by flag.
pub(super) fn apply(m: SoakCli, a: &mut Args) -> Result<(), clap::Error> {
    (a.sessions, a.participants, a.rate, a.duration) = (m.sessions, m.participants, m.rate, m.duration);
    // The fan-out counts from the start: the soak's warm-up is the verdict's, not a pause.
    (a.warmup, a.reuse) = (0.0, m.reuse);
    a.heartbeat = m.heartbeat.heartbeat;
    a.setup_concurrency = m.setup.setup_concurrency;
    a.soak = SoakArgs {
        sample_every: m.sample_every,
        warmup: m.warmup,
        churn_rate: m.churn_rate,
        rest_clients: m.rest_clients,
        rest_rate: m.rest_rate,
        abuse_addr: m.abuse_addr,
        abuse_every: m.abuse_every,
        abuse_sockets: m.abuse_sockets,
        abuse_handshakes: m.abuse_handshakes,
        abuse_creates: m.abuse_creates,
        abuse_half_open: m.abuse_half_open,
        abuse_frame_bytes: m.abuse_frame_bytes,
        max_loss: m.max_loss,
    };
    // The abusers' buckets must not be the legitimate clients' (127.0.0.1 when none is bound).
    let last = 1 + u16::from(a.source_addrs);
    let host = u16::from(m.abuse_addr.octets()[3]);
    let legit = m.abuse_addr.octets()[..3] == [127, 0, 0]
        && if a.source_addrs == 0 { host == 1 } else { (2..=last).contains(&host) };
    if legit {
        let why = format!("one of the legitimate source addresses (--source-addrs {})", a.source_addrs);
        return Err(invalid("--abuse-addr <IP>", m.abuse_addr, &why));
    }
    if a.processes.is_some_and(|n| n > 1) || a.worker.is_some() {
        let n = a.processes.unwrap_or(1);
        return Err(invalid("--processes <N>", n, "a soak runs in one process (its samples are gathered in memory)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{is_help, one_line, parse_line, Mode};

    fn run(line: &str) -> Result<Args, String> {
        parse_line(line).map_err(|e| if is_help(&e) { "help".to_owned() } else { one_line(&e) })
    }

    #[test]
    fn defaults_and_good_arguments() {
        let a = run("soak").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.mode, Mode::Soak);
        assert_eq!((a.sessions, a.participants, a.rate, a.duration, a.warmup, a.reuse), (10, 20, 1.0, 600.0, 0.0, 10));
        assert_eq!(a.soak, SoakArgs::default());
        assert_eq!((a.soak.sample_every, a.soak.warmup), (30.0, 120.0));
        assert_eq!(a.soak.abuse_addr, Ipv4Addr::new(127, 0, 0, 250));
        let a = run("soak --duration 5 --sample-every 1 --warmup 1 --churn-rate 3 --rest-clients 0 \
                     --abuse-addr 127.0.0.99 --abuse-sockets 6 --max-loss 0 --source-addrs 2")
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.duration, a.soak.sample_every, a.soak.warmup, a.soak.churn_rate), (5.0, 1.0, 1.0, 3.0));
        assert_eq!((a.soak.rest_clients, a.soak.abuse_sockets, a.soak.max_loss), (0, 6, 0.0));
        assert_eq!(a.soak.abuse_addr.octets(), [127, 0, 0, 99]);
        // A short run is not an error: it has one sample at its end, and no verdict past --warmup.
        assert!(run("soak --duration 10").is_ok_and(|a| a.soak.sample_every == 30.0));
        // The top of the legitimate range is next to the abusers' default: fine until it reaches it.
        assert!(run("soak --source-addrs 248").is_ok());
    }

    #[test]
    fn help_names_the_options_and_defaults() {
        let help = match parse_line("soak --help") {
            Err(e) if e.kind() == ErrorKind::DisplayHelp => e.render().to_string(),
            other => panic!("{other:?}"),
        };
        for needle in
            ["--sample-every", "[default: 600]", "--abuse-addr", "[default: 127.0.0.250]", "1008", "--max-loss"]
        {
            assert!(help.contains(needle), "{needle} in {help}");
        }
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        for (line, needle) in [
            ("soak --abuse-addr 10.0.0.1", "--abuse-addr <IP>': expected a loopback IPv4"),
            ("soak --abuse-addr 127.0.0.5", "'127.0.0.5' for '--abuse-addr <IP>': one of the legitimate source"),
            ("soak --abuse-addr 127.0.0.1 --source-addrs 0", "'--abuse-addr <IP>': one of the legitimate"),
            ("soak --source-addrs 249", "'127.0.0.250' for '--abuse-addr <IP>'"),
            ("soak --processes 2", "'--processes <N>': a soak runs in one process"),
            ("soak --max-loss 2", "--max-loss <RATIO>': expected a ratio"),
            ("soak --abuse-sockets 1", "--abuse-sockets <N>': expected a whole number from 2"),
            ("soak --rest-rate 0", "--rest-rate <HZ>': expected a rate"),
            ("soak --concurrency 3", "unexpected argument '--concurrency'"),
        ] {
            let e = run(line).err().unwrap_or_default();
            assert!(e.contains(needle), "{line:?}: {e:?} should contain {needle:?}");
            assert!(e.starts_with("error: ") && !e.contains('\n'), "one line: {e:?}");
        }
    }
}

//! `loadgen advice`'s options: sessions where a few participants look at the map and every
//! client follows the server's `rate_advice` (SPEC §8), or ignores it (the baseline).

use clap::Args as ClapArgs;

use super::soak::invalid;
use super::{count, parse_rate, seconds, Args, HeartbeatCli, SetupCli};

/// What only an advice run reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AdviceArgs {
    /// Participants per session that say `viewing` `{"visible": true}`; the others say false.
    pub viewers: usize,
    /// The baseline: send at `--rate` whatever the server advises.
    pub ignore_advice: bool,
    /// Seconds per line of the per-interval counts.
    pub sample_every: f64,
    /// The "evening" the totals are extrapolated to, hours.
    pub evening_hours: f64,
    /// Viewers glance: look for `.0` seconds every `.0 + .1`, their looks evenly staggered
    /// (`None`: they look all the time).
    pub glance: Option<(f64, f64)>,
}

impl Default for AdviceArgs {
    fn default() -> Self {
        Self { viewers: 3, ignore_advice: false, sample_every: 10.0, evening_hours: 4.0, glance: None }
    }
}

/// The help text after the options.
pub const ABOUT: &str = "\
S sessions x P participants, one socket each. Right after joining, V participants of each
session send `viewing` {\"visible\": true} and the others {\"visible\": false}. Every client then
follows `rate_advice` {interval_ms, watchers}: it sends at most once per advised interval (at
--rate until its first advice; sooner at once when the advice speeds up). With --ignore-advice
it sends at --rate whatever it is told: the baseline. With --glance ON,OFF the viewers look only
ON s out of every ON+OFF s (they say visible false at the start, then true and false in turn),
their looks evenly staggered over the period. Reported: updates/s sent, deliveries/s
received, their ratio to the full rate (S x P x --rate), per --sample-every interval the updates
and deliveries and how many clients were advised fast (interval <= 1/--rate) or idle, and the
updates of one session extrapolated to --evening-hours.";

// A plain comment, not a doc one: clap would take a doc comment for the mode's help text.
// The options as clap sees them; `apply` turns them into `Args`.
#[derive(Debug, ClapArgs)]
pub(super) struct AdviceCli {
    /// Sessions
    #[arg(long, value_name = "S", default_value = "1", value_parser = count(1, 100_000))]
    sessions: usize,
    /// Participants per session, one socket each
    #[arg(long, value_name = "P", default_value = "50", value_parser = count(1, 10_000))]
    participants: usize,
    /// Participants per session looking at the map (`viewing` true); the others say false
    #[arg(long, value_name = "V", default_value = "3", value_parser = count(0, 10_000))]
    viewers: usize,
    /// Updates per second before the first advice, and always with --ignore-advice
    #[arg(long, value_name = "HZ", default_value = "1", allow_negative_numbers = true, value_parser = parse_rate)]
    rate: f64,
    /// The baseline: send at --rate, whatever the server advises
    #[arg(long = "ignore-advice")]
    ignore_advice: bool,
    /// Measured time, seconds
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "90",
        allow_negative_numbers = true,
        value_parser = seconds(false, 86_400.0),
    )]
    duration: f64,
    /// Unmeasured time before the measured window (the advice settles), seconds
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
    /// Seconds per interval of the per-interval counts
    #[arg(
        long = "sample-every",
        value_name = "SECONDS",
        default_value = "10",
        allow_negative_numbers = true,
        value_parser = seconds(false, 3600.0),
    )]
    sample_every: f64,
    /// The evening one session's updates are extrapolated to, hours
    #[arg(
        long = "evening-hours",
        value_name = "HOURS",
        default_value = "4",
        allow_negative_numbers = true,
        value_parser = parse_hours,
    )]
    evening_hours: f64,
    /// Viewers look for ON seconds out of every ON+OFF (staggered), instead of all the time
    #[arg(long, value_name = "ON,OFF", value_parser = parse_glance)]
    glance: Option<(f64, f64)>,
    #[command(flatten)]
    heartbeat: HeartbeatCli,
    #[command(flatten)]
    setup: SetupCli,
}

fn parse_glance(raw: &str) -> Result<(f64, f64), String> {
    let bad = || "expected ON,OFF: seconds looking, then seconds not, each more than 0".to_owned();
    let (on, off) = raw.split_once(',').ok_or_else(bad)?;
    let (on, off) = (on.trim().parse::<f64>().map_err(|_| bad())?, off.trim().parse::<f64>().map_err(|_| bad())?);
    if on.is_finite() && off.is_finite() && on > 0.0 && off > 0.0 && on + off <= 86_400.0 {
        Ok((on, off))
    } else {
        Err(bad())
    }
}

fn parse_hours(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 24.0 => Ok(v),
        _ => Err("expected a number of hours, more than 0 and at most 24".to_owned()),
    }
}

/// Fills `a` from the advice options; checks what clap cannot see flag by flag.
pub(super) fn apply(m: AdviceCli, a: &mut Args) -> Result<(), clap::Error> {
    if m.viewers > m.participants {
        let why = format!("more viewers than participants (--participants {})", m.participants);
        return Err(invalid("--viewers <V>", m.viewers, &why));
    }
    (a.sessions, a.participants, a.rate, a.duration) = (m.sessions, m.participants, m.rate, m.duration);
    (a.warmup, a.drain) = (m.warmup, m.drain);
    a.heartbeat = m.heartbeat.heartbeat;
    a.setup_concurrency = m.setup.setup_concurrency;
    a.advice = AdviceArgs {
        viewers: m.viewers,
        ignore_advice: m.ignore_advice,
        sample_every: m.sample_every,
        evening_hours: m.evening_hours,
        glance: m.glance,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{is_help, one_line, parse_from, parse_line, Mode};
    use clap::error::ErrorKind;

    fn run(line: &str) -> Result<Args, String> {
        parse_line(line).map_err(|e| if is_help(&e) { "help".to_owned() } else { one_line(&e) })
    }

    #[test]
    fn defaults_and_good_arguments() {
        let a = run("advice").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.mode, Mode::Advice);
        assert_eq!((a.sessions, a.participants, a.rate, a.duration, a.warmup, a.drain), (1, 50, 1.0, 90.0, 5.0, 2.0));
        assert_eq!(a.advice, AdviceArgs::default());
        assert_eq!((a.advice.viewers, a.advice.ignore_advice), (3, false));
        let a = run("advice --sessions 4 --participants 10 --viewers 0 --ignore-advice --rate 5 --sample-every 1 \
                     --evening-hours 2.5 --duration 3")
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.sessions, a.participants, a.rate, a.duration), (4, 10, 5.0, 3.0));
        let want = AdviceArgs { viewers: 0, ignore_advice: true, sample_every: 1.0, evening_hours: 2.5, glance: None };
        assert_eq!(a.advice, want);
        assert_eq!(run("advice --glance 30,270").map(|a| a.advice.glance), Ok(Some((30.0, 270.0))));
        assert!(run("advice --participants 3 --viewers 3").is_ok());
    }

    #[test]
    fn help_names_the_options_and_defaults() {
        let help = match parse_line("advice --help") {
            Err(e) if e.kind() == ErrorKind::DisplayHelp => e.render().to_string(),
            other => panic!("{other:?}"),
        };
        for needle in ["--viewers", "[default: 3]", "--ignore-advice", "--evening-hours", "rate_advice"] {
            assert!(help.contains(needle), "{needle} in {help}");
        }
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        for (line, needle) in [
            ("advice --participants 2 --viewers 3", "'3' for '--viewers <V>': more viewers than participants"),
            ("advice --viewers x", "--viewers <V>': expected a whole number"),
            ("advice --sample-every 0", "--sample-every <SECONDS>': expected a number of seconds"),
            ("advice --evening-hours 25", "--evening-hours <HOURS>': expected a number of hours"),
            ("advice --ignore-advice=yes", "unexpected value 'yes' for '--ignore-advice'"),
            ("advice --sockets 3", "unexpected argument '--sockets'"),
            ("advice --glance 30", "--glance <ON,OFF>': expected ON,OFF"),
            ("advice --glance 0,10", "--glance <ON,OFF>': expected ON,OFF"),
        ] {
            let e = run(line).err().unwrap_or_default();
            assert!(e.contains(needle), "{line:?}: {e:?} should contain {needle:?}");
            assert!(e.starts_with("error: ") && !e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn worker_argv_round_trips() {
        for line in [
            "advice --viewers 1 --ignore-advice --sample-every 2 --evening-hours 3",
            "advice --sessions 3 --glance 1.5,4",
        ] {
            let a = run(line).unwrap_or_else(|e| panic!("{e}"));
            let argv = std::iter::once("loadgen".to_owned()).chain(a.worker_argv(0, 2));
            let w = parse_from(argv).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(Args { worker: None, quiet: false, ..w }, a, "{line}");
        }
    }
}

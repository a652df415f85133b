//! When a client that honours `rate_advice` sends its next update: at most once per advised
//! interval, at `--rate` before any advice, and at once when an advice speeds it up past an
//! update it now owes. Plain arithmetic on clock readings (ns), so it is tested without sockets.

/// How a client was last advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No `rate_advice` yet.
    Unadvised,
    /// An interval at or below the full-rate period (somebody else looks).
    Fast,
    /// A longer one (nobody else looks).
    Idle,
}

/// One client's send schedule.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Follow the advice (false: the baseline, always at the full rate).
    follow: bool,
    /// The full-rate period, `1 / --rate`.
    full_ns: u64,
    /// The period followed now.
    interval_ns: u64,
    /// This client's share of a period before its first update (staggers the clients).
    phase: f64,
    /// When sending starts; `None` before the run.
    start_ns: Option<u64>,
    /// When the last update was due.
    last_ns: Option<u64>,
    /// The last advice's interval, ms.
    advised_ms: Option<u64>,
}

impl Pacer {
    /// A client at `rate` Hz until advised (`follow`), or for good; `phase` in `[0, 1)`.
    pub fn new(rate: f64, phase: f64, follow: bool) -> Self {
        let full_ns = (1e9 / rate) as u64;
        Self { follow, full_ns, interval_ns: full_ns, phase, start_ns: None, last_ns: None, advised_ms: None }
    }

    /// Sending starts at `t0_ns` (the first update is due a phase of the period later).
    pub fn start(&mut self, t0_ns: u64) {
        self.start_ns.get_or_insert(t0_ns);
    }

    /// Takes an advice. A shorter interval that makes an update overdue makes it due now (the
    /// next [`Pacer::next_ns`] is in the past).
    pub fn advise(&mut self, interval_ms: u64) {
        self.advised_ms = Some(interval_ms);
        if self.follow {
            self.interval_ns = interval_ms.saturating_mul(1_000_000).max(1);
        }
    }

    /// The advice as fast, idle, or none yet.
    pub fn class(&self) -> Class {
        match self.advised_ms {
            None => Class::Unadvised,
            Some(ms) if ms.saturating_mul(1_000_000) <= self.full_ns => Class::Fast,
            Some(_) => Class::Idle,
        }
    }

    /// The last advised interval, ms.
    pub fn advised_ms(&self) -> Option<u64> {
        self.advised_ms
    }

    /// When the next update is due; `None` before the start.
    pub fn next_ns(&self) -> Option<u64> {
        let start = self.start_ns?;
        Some(match self.last_ns {
            None => start + (self.phase * self.interval_ns as f64) as u64,
            Some(last) => last.saturating_add(self.interval_ns),
        })
    }

    /// The update due at `due_ns` was sent at `now_ns`. Counted from its due time, so the
    /// schedule does not drift; from now when it was more than a period late (a speed-up after a
    /// long interval), so the client does not send a burst to catch up.
    pub fn sent(&mut self, due_ns: u64, now_ns: u64) {
        let late = now_ns.saturating_sub(due_ns);
        self.last_ns = Some(if late > self.interval_ns { now_ns } else { due_ns });
    }
}

/// A glancing viewer's looks: it looks for `on_ns` from each `t0_ns + offset_ns + n * period_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glance {
    /// When sending starts.
    pub t0_ns: u64,
    /// This viewer's first look, after `t0_ns`.
    pub offset_ns: u64,
    /// How long a look lasts.
    pub on_ns: u64,
    /// From one look's start to the next.
    pub period_ns: u64,
}

impl Glance {
    /// Whether the viewer looks at `t_ns`, and when that changes next.
    pub fn at(&self, t_ns: u64) -> (bool, u64) {
        let first = self.t0_ns + self.offset_ns;
        if t_ns < first {
            return (false, first);
        }
        let period = self.period_ns.max(1);
        let start = first + (t_ns - first) / period * period;
        if t_ns - start < self.on_ns {
            (true, start + self.on_ns)
        } else {
            (false, start + period)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Sends everything due before `until`, taking each `(at, interval_ms)` advice at its time;
    /// the send times.
    fn drive(p: &mut Pacer, until: u64, advice: &[(u64, u64)]) -> Vec<u64> {
        let (mut sent, mut now, mut i) = (Vec::new(), 0, 0);
        while let Some(due) = p.next_ns() {
            if let Some(&(at, ms)) = advice.get(i).filter(|a| a.0 <= due.max(now)) {
                now = now.max(at);
                p.advise(ms);
                i += 1;
                continue;
            }
            let t = due.max(now);
            if t >= until {
                break;
            }
            now = t;
            p.sent(due, now);
            sent.push(now);
        }
        sent
    }

    #[test]
    fn the_baseline_ignores_advice() {
        let mut p = Pacer::new(1.0, 0.5, false);
        assert_eq!(p.next_ns(), None);
        p.start(10 * S);
        assert_eq!(p.next_ns(), Some(10 * S + S / 2));
        let sent = drive(&mut p, 20 * S, &[(0, 15_000)]);
        assert_eq!(sent.len(), 10, "{sent:?}");
        assert_eq!(p.class(), Class::Idle, "it still knows what it was told");
        assert_eq!(p.advised_ms(), Some(15_000));
    }

    #[test]
    fn at_most_once_per_advised_interval() {
        let mut p = Pacer::new(1.0, 0.0, true);
        assert_eq!(p.class(), Class::Unadvised);
        p.advise(15_000);
        p.start(0);
        // 0, 15, 30, 45 s.
        assert_eq!(drive(&mut p, 60 * S, &[]), vec![0, 15 * S, 30 * S, 45 * S]);
        assert_eq!(p.class(), Class::Idle);
        p.advise(1000);
        assert_eq!(p.class(), Class::Fast);
    }

    #[test]
    fn full_rate_until_the_first_advice() {
        let mut p = Pacer::new(1.0, 0.0, true);
        p.start(0);
        let sent = drive(&mut p, 40 * S, &[(2 * S + 1, 15_000)]);
        assert_eq!(sent, vec![0, S, 2 * S, 17 * S, 32 * S]);
        // The phase spreads the first update over the interval followed at the start.
        let mut p = Pacer::new(1.0, 0.5, true);
        p.advise(10_000);
        p.start(0);
        assert_eq!(p.next_ns(), Some(5 * S));
    }

    #[test]
    fn a_speed_up_sends_what_is_owed_at_once_without_a_burst() {
        let mut p = Pacer::new(1.0, 0.0, true);
        p.advise(15_000);
        p.start(0);
        // Sent at 0; at 10 s somebody looks: the update owed since 1 s goes at once, then 1 Hz.
        let sent = drive(&mut p, 14 * S, &[(10 * S, 1000)]);
        assert_eq!(sent, vec![0, 10 * S, 11 * S, 12 * S, 13 * S]);
        // Overdue by less than a period: counted from its due time (no drift).
        let mut p = Pacer::new(1.0, 0.0, true);
        p.start(0);
        p.sent(0, 0);
        p.advise(500);
        assert_eq!(p.next_ns(), Some(S / 2));
        p.sent(S / 2, S / 2 + 300);
        assert_eq!(p.next_ns(), Some(S));
    }

    #[test]
    fn a_slow_down_waits_the_longer_interval_from_the_last_update() {
        let mut p = Pacer::new(1.0, 0.0, true);
        p.advise(1000);
        p.start(0);
        let sent = drive(&mut p, 40 * S, &[(3 * S + 1, 15_000)]);
        assert_eq!(sent, vec![0, S, 2 * S, 3 * S, 18 * S, 33 * S]);
    }

    #[test]
    fn glances_come_and_go() {
        let g = Glance { t0_ns: 10 * S, offset_ns: 5 * S, on_ns: 2 * S, period_ns: 20 * S };
        assert_eq!(g.at(0), (false, 15 * S));
        assert_eq!(g.at(15 * S), (true, 17 * S));
        assert_eq!(g.at(16 * S), (true, 17 * S));
        assert_eq!(g.at(17 * S), (false, 35 * S));
        assert_eq!(g.at(36 * S), (true, 37 * S));
    }

    #[test]
    fn start_is_once() {
        let mut p = Pacer::new(2.0, 0.0, true);
        assert_eq!(p.next_ns(), None);
        p.start(5);
        p.start(9);
        assert_eq!(p.next_ns(), Some(5));
        p.sent(5, 5);
        assert_eq!(p.next_ns(), Some(5 + S / 2));
    }
}

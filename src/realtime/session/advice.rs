//! Battery-aware update rates (SPEC §8): every socket is told how often its participant should
//! send — fast while another participant looks at the map on any replica, idle otherwise —
//! right after `presence_state`, and again whenever that changes, at most once a second.
//!
//! The advice is recomputed every tick from Presence rather than at each change, so that no path
//! that changes who looks (a socket, a replica's announcement, a replica presumed dead) can
//! forget to re-advise.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use prometheus::IntGaugeVec;
use serde::Serialize;

use super::super::messages::SocketId;
use super::super::outbox::Outgoing;
use super::super::protocol::encode_push;
use super::sockets::{Socket, Sockets};
use crate::config::Limits;
use crate::domain::ParticipantId;

/// A socket is re-advised at most this often.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// The `rate_advice` push: how often to send, and how many others look now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// `FAST_UPDATE_INTERVAL_MS` or `IDLE_UPDATE_INTERVAL_MS`.
    pub interval_ms: u64,
    /// Other participants with a visible socket, on any replica.
    pub watchers: usize,
}

impl Advice {
    /// The advice for `user`, given who looks at the map now.
    pub fn for_user(limits: &Limits, viewers: &HashSet<ParticipantId>, user: ParticipantId) -> Self {
        let watchers = viewers.len() - usize::from(viewers.contains(&user));
        let interval = if watchers >= 1 { limits.fast_update_interval } else { limits.idle_update_interval };
        Self { interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), watchers }
    }

    fn mode(self, limits: &Limits) -> &'static str {
        if u128::from(self.interval_ms) < limits.idle_update_interval.as_millis() {
            "fast"
        } else {
            "idle"
        }
    }
}

/// What one socket was last advised, and when.
struct Given {
    advice: Advice,
    at: Instant,
    mode: &'static str,
}

/// What each socket of the channel was last advised; keeps `sockets_by_advice` in step.
pub struct Advisor {
    given: HashMap<SocketId, Given>,
    gauge: IntGaugeVec,
}

impl Advisor {
    /// Nothing advised yet.
    pub fn new(gauge: IntGaugeVec) -> Self {
        Self { given: HashMap::new(), gauge }
    }

    /// Advises `socket` now (it just got `presence_state`).
    pub fn advise_now(&mut self, socket: &Socket, advice: Advice, topic: &str, limits: &Limits) {
        self.give(socket, advice, topic, limits, Instant::now());
    }

    /// Re-advises every socket whose advice changed and that was not advised in the last second;
    /// forgets sockets that left the channel.
    pub fn tend(&mut self, sockets: &Sockets, viewers: &HashSet<ParticipantId>, topic: &str, limits: &Limits) {
        let now = Instant::now();
        let gone: Vec<SocketId> = self.given.keys().filter(|id| sockets.get(**id).is_none()).copied().collect();
        for id in gone {
            self.forget(id);
        }
        for socket in sockets.iter() {
            let advice = Advice::for_user(limits, viewers, socket.handle.participant);
            let due = match self.given.get(&socket.handle.id) {
                Some(g) => g.advice != advice && now.duration_since(g.at) >= MIN_GAP,
                // Not advised yet: its join is still being answered; `advise_now` will do it.
                None => false,
            };
            if due {
                self.give(socket, advice, topic, limits, now);
            }
        }
    }

    fn give(&mut self, socket: &Socket, advice: Advice, topic: &str, limits: &Limits, now: Instant) {
        let text = encode_push(socket.handle.vsn, &serde_json::Value::Null, topic, "rate_advice", &advice);
        socket.send(Outgoing::Frame { text, droppable: false });
        let mode = advice.mode(limits);
        let old = self.given.insert(socket.handle.id, Given { advice, at: now, mode });
        match old {
            Some(old) if old.mode == mode => {}
            Some(old) => {
                self.gauge.with_label_values(&[old.mode]).dec();
                self.gauge.with_label_values(&[mode]).inc();
            }
            None => self.gauge.with_label_values(&[mode]).inc(),
        }
    }

    fn forget(&mut self, id: SocketId) {
        if let Some(g) = self.given.remove(&id) {
            self.gauge.with_label_values(&[g.mode]).dec();
        }
    }
}

impl Drop for Advisor {
    /// A stopped (or crashed) session's sockets are advised by nobody any more.
    fn drop(&mut self) {
        for (_, g) in self.given.drain() {
            self.gauge.with_label_values(&[g.mode]).dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fixture::{drain, socket as handle, Got};
    use super::super::super::protocol::Vsn;
    use super::*;

    fn limits() -> Limits {
        Limits {
            fast_update_interval: Duration::from_millis(1000),
            idle_update_interval: Duration::from_millis(15_000),
            ..Limits::default()
        }
    }

    fn gauge() -> IntGaugeVec {
        IntGaugeVec::new(prometheus::Opts::new("g", "g"), &["mode"]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn advice_counts_the_others_only() {
        let (ana, bo, cy) = (ParticipantId::new(), ParticipantId::new(), ParticipantId::new());
        let l = limits();
        let none = HashSet::new();
        assert_eq!(Advice::for_user(&l, &none, ana), Advice { interval_ms: 15_000, watchers: 0 });
        let only_ana = HashSet::from([ana]);
        assert_eq!(Advice::for_user(&l, &only_ana, ana), Advice { interval_ms: 15_000, watchers: 0 }, "not herself");
        assert_eq!(Advice::for_user(&l, &only_ana, bo), Advice { interval_ms: 1000, watchers: 1 });
        let two = HashSet::from([ana, cy]);
        assert_eq!(Advice::for_user(&l, &two, bo).watchers, 2);
        assert_eq!(Advice::for_user(&l, &two, ana).watchers, 1);
    }

    #[test]
    fn changes_are_pushed_at_most_once_a_second_and_gauged() {
        let (ana, bo) = (ParticipantId::new(), ParticipantId::new());
        let l = limits();
        let g = gauge();
        let mut sockets = Sockets::default();
        let h = handle(1, ana, Vsn::V2);
        sockets.insert(h.clone(), serde_json::Value::Null);
        let mut advisor = Advisor::new(g.clone());
        let socket = sockets.get(1).unwrap_or_else(|| panic!("socket"));
        advisor.advise_now(socket, Advice::for_user(&l, &HashSet::new(), ana), "location:x", &l);
        assert_eq!((g.with_label_values(&["idle"]).get(), g.with_label_values(&["fast"]).get()), (1, 0));
        // Bo starts looking at once: too soon after the first advice, so it waits.
        advisor.tend(&sockets, &HashSet::from([bo]), "location:x", &l);
        let pushes = |h| drain(h).into_iter().filter(|g| matches!(g, Got::Frame(_))).count();
        assert_eq!(pushes(&h), 1, "only the first advice so far");
        if let Some(given) = advisor.given.get_mut(&1) {
            given.at -= MIN_GAP;
        }
        advisor.tend(&sockets, &HashSet::from([bo]), "location:x", &l);
        let frames: Vec<Got> = drain(&h);
        assert!(
            matches!(frames.as_slice(), [Got::Frame(v)] if v[3] == "rate_advice" && v[4] == serde_json::json!({"interval_ms": 1000, "watchers": 1})),
            "{frames:?}"
        );
        assert_eq!((g.with_label_values(&["idle"]).get(), g.with_label_values(&["fast"]).get()), (0, 1));
        advisor.tend(&sockets, &HashSet::from([bo]), "location:x", &l);
        assert!(drain(&h).is_empty(), "no change, no push");
        sockets.remove(1);
        advisor.tend(&sockets, &HashSet::new(), "location:x", &l);
        assert_eq!(g.with_label_values(&["fast"]).get(), 0, "a socket gone is not counted");
        drop(advisor);
    }
}

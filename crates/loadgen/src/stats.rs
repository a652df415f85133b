//! What one thread counts (cheap `Cell`s, no locks), and what a worker hands back: counters and
//! histograms that add up across threads and processes.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::Hist;

/// A worker's (or the merged) figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Counters, summed when merged.
    pub counters: BTreeMap<String, u64>,
    /// Histograms (µs), merged.
    pub hists: BTreeMap<String, Hist>,
    /// Failures by reason, summed.
    pub errors: BTreeMap<String, u64>,
    /// The first few failure details, for the log.
    pub samples: Vec<String>,
}

impl WorkerReport {
    /// Adds another report.
    pub fn merge(&mut self, other: &WorkerReport) {
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        for (k, h) in &other.hists {
            self.hists.entry(k.clone()).or_default().merge(h);
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for s in &other.samples {
            if self.samples.len() < 10 {
                self.samples.push(s.clone());
            }
        }
    }

    /// A counter (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// A histogram (empty when absent).
    pub fn hist(&self, key: &str) -> Hist {
        self.hists.get(key).cloned().unwrap_or_default()
    }
}

/// A thread's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Named counters.
    counters: RefCell<BTreeMap<&'static str, u64>>,
    /// Updates sent whose due time is in the measured window.
    pub sent: Cell<u64>,
    /// Deliveries expected for them.
    pub expected: Cell<u64>,
    /// Deliveries received whose due time is in the window.
    pub received: Cell<u64>,
    /// Replies `ok`.
    pub replies_ok: Cell<u64>,
    /// Replies `error`.
    pub replies_error: Cell<u64>,
    /// Sockets open now.
    pub open: Cell<u64>,
    /// Delivery (or cycle) latency, µs.
    pub latency: RefCell<Hist>,
    /// Soak: deliveries by the window their update was due in (`None`: not counted by window).
    pub windows: RefCell<Option<Windows>>,
    /// Reports of the parts of a run that counted on their own (soak), merged into this one's.
    pub nested: RefCell<WorkerReport>,
    hists: RefCell<BTreeMap<&'static str, Hist>>,
    errors: RefCell<BTreeMap<String, u64>>,
    samples: RefCell<Vec<String>>,
}

impl Stats {
    /// Adds to a named counter.
    pub fn add(&self, key: &'static str, n: u64) {
        *self.counters.borrow_mut().entry(key).or_default() += n;
    }

    /// A named counter (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.counters.borrow().get(key).copied().unwrap_or(0)
    }

    /// Counts `n` deliveries expected of an update due at `due_wall` (µs), when counting by window.
    pub fn window_expected(&self, due_wall: i64, n: u64) {
        if let Some(w) = self.windows.borrow_mut().as_mut() {
            if let Some(win) = w.at(due_wall) {
                win.expected += n;
            }
        }
    }

    /// Counts a delivery of an update due at `due_wall` (µs) and its latency, when counting by window.
    pub fn window_received(&self, due_wall: i64, latency_us: i64) {
        if let Some(w) = self.windows.borrow_mut().as_mut() {
            if let Some(win) = w.at(due_wall) {
                win.received += 1;
                win.latency.record(latency_us);
            }
        }
    }

    /// Records a value in a named histogram.
    pub fn record(&self, key: &'static str, us: i64) {
        self.hists.borrow_mut().entry(key).or_default().record(us);
    }

    /// Counts a failure: `detail` starts with its reason, up to the first ':'.
    pub fn fail(&self, detail: &str) {
        let reason = detail.split(':').next().unwrap_or(detail).trim();
        *self.errors.borrow_mut().entry(reason.to_owned()).or_default() += 1;
        let mut samples = self.samples.borrow_mut();
        if samples.len() < 10 {
            samples.push(detail.chars().take(300).collect());
        }
    }

    /// Everything counted, as a report.
    pub fn report(&self) -> WorkerReport {
        let mut r = WorkerReport {
            counters: self.counters.borrow().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            hists: self.hists.borrow().iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            errors: self.errors.borrow().clone(),
            samples: self.samples.borrow().clone(),
        };
        for (k, v) in [
            ("updates_sent", self.sent.get()),
            ("deliveries_expected", self.expected.get()),
            ("deliveries_received", self.received.get()),
            ("replies_ok", self.replies_ok.get()),
            ("replies_error", self.replies_error.get()),
        ] {
            *r.counters.entry(k.to_owned()).or_default() += v;
        }
        if self.latency.borrow().len() > 0 {
            r.hists.insert("latency".to_owned(), self.latency.borrow().clone());
        }
        r.merge(&self.nested.borrow());
        r
    }
}

/// One window's deliveries: those of the updates due in it, wherever they arrived.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Their latency, µs.
    pub latency: Hist,
}

/// Deliveries by window of due time: window `k` is `[start + k * every, start + (k + 1) * every)`
/// in wall µs, the unit of the due times the updates carry.
#[derive(Debug, Clone)]
pub struct Windows {
    start_wall: i64,
    every_us: i64,
    open: BTreeMap<u64, Window>,
}

impl Windows {
    /// Windows of `every_us` from `start_wall`.
    pub fn new(start_wall: i64, every_us: i64) -> Self {
        Self { start_wall, every_us: every_us.max(1), open: BTreeMap::new() }
    }

    /// The window of a due time; `None` before the start.
    fn at(&mut self, due_wall: i64) -> Option<&mut Window> {
        let k = u64::try_from((due_wall - self.start_wall).div_euclid(self.every_us)).ok()?;
        Some(self.open.entry(k).or_default())
    }

    /// Takes the windows up to `k` (inclusive); what arrives for them later starts them anew.
    pub fn take_through(&mut self, k: u64) -> Vec<(u64, Window)> {
        let later = self.open.split_off(&(k + 1));
        std::mem::replace(&mut self.open, later).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_merge() {
        let a = Stats::default();
        a.add("held", 3);
        a.sent.set(10);
        a.latency.borrow_mut().record(100);
        a.fail("join_409: HTTP 409 full");
        let b = Stats::default();
        b.add("held", 2);
        b.received.set(7);
        b.latency.borrow_mut().record(300);
        b.fail("join_409: again");
        b.fail("connect_io: refused");
        let mut m = a.report();
        m.merge(&b.report());
        assert_eq!((m.get("held"), m.get("updates_sent"), m.get("deliveries_received")), (5, 10, 7));
        assert_eq!(m.errors.get("join_409"), Some(&2));
        assert_eq!(m.errors.get("connect_io"), Some(&1));
        assert_eq!(m.hist("latency").summary().count, 2);
        assert_eq!(m.samples.len(), 3);
        // Through JSON, as a worker process sends it.
        let text = serde_json::to_string(&m).unwrap_or_default();
        let back: WorkerReport = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back.hist("latency").summary(), m.hist("latency").summary());
        assert_eq!(back.counters, m.counters);
    }

    #[test]
    fn deliveries_count_by_the_window_they_were_due_in() {
        let s = Stats::default();
        s.window_expected(1_000, 3);
        assert!(s.windows.borrow().is_none());
        *s.windows.borrow_mut() = Some(Windows::new(1_000, 100));
        s.window_expected(999, 5); // before the start: not counted
        s.window_expected(1_000, 3);
        s.window_received(1_050, 20);
        s.window_received(1_099, 40);
        s.window_expected(1_100, 2);
        s.window_received(1_250, 7);
        let mut w = s.windows.borrow_mut().take().unwrap_or_else(|| Windows::new(0, 1));
        let first = w.take_through(1);
        assert_eq!(first.iter().map(|(k, w)| (*k, w.expected, w.received)).collect::<Vec<_>>(), [(0, 3, 2), (1, 2, 0)]);
        assert_eq!(first[0].1.latency.summary().max, 40);
        let rest = w.take_through(5);
        assert_eq!(rest.iter().map(|(k, w)| (*k, w.received)).collect::<Vec<_>>(), [(2, 1)]);
        assert!(w.take_through(9).is_empty());
    }

    #[test]
    fn nested_reports_are_merged_in() {
        let s = Stats::default();
        s.add("held", 1);
        let inner = Stats::default();
        inner.add("held", 2);
        inner.fail("x: y");
        s.nested.borrow_mut().merge(&inner.report());
        let r = s.report();
        assert_eq!((r.get("held"), r.errors.get("x")), (3, Some(&1)));
    }
}

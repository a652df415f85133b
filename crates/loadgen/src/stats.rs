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
    hists: RefCell<BTreeMap<&'static str, Hist>>,
    errors: RefCell<BTreeMap<String, u64>>,
    samples: RefCell<Vec<String>>,
}

impl Stats {
    /// Adds to a named counter.
    pub fn add(&self, key: &'static str, n: u64) {
        *self.counters.borrow_mut().entry(key).or_default() += n;
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
        r
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
}

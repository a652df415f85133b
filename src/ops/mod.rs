//! Operations: counters, the cleanup sweep.

pub mod cleanup;
pub mod drain;
pub mod metrics;

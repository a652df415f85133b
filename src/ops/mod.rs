//! Operations: the cleanup sweep, draining, returning freed memory.

pub mod cleanup;
pub mod drain;
pub mod memory;

//! Ephemeral state with TTLs: Redis when `REDIS_URL` is set, memory otherwise.

pub mod redis;

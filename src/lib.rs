//! location-sharing: real-time, anonymous, temporary location sharing over Phoenix Channels.

pub mod abuse;
pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod realtime;
pub mod redis_link;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod views;

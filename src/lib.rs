//! location-sharing: real-time, anonymous, temporary location sharing over Phoenix Channels.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod ops;
pub mod realtime;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod views;

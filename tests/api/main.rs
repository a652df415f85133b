//! HTTP and WebSocket integration tests, and the web client's pages: every test spawns the real
//! server (SQLite by default, the PostgreSQL of `TEST_DATABASE_URL` when set; the in-memory store
//! by default, the Redis of `TEST_REDIS_URL` when set) and talks to it over the network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arrivals;
mod auth;
mod cap;
mod contract;
mod destination;
mod e2e_sessions;
mod e2e_vectors;
mod edges;
mod health;
mod helpers;
mod limits;
mod locking;
mod log_secrets;
mod participants;
mod process;
mod rate_advice;
mod redis_tls;
mod sessions;
mod shutdown;
mod slow_clients;
mod web;
mod ws_client;
mod ws_events;
mod ws_lifecycle;
mod ws_limits;
mod ws_protocol;
mod ws_supervision;
mod ws_transport;

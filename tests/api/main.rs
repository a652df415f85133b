//! HTTP integration tests: every test spawns the real server (SQLite by default, the PostgreSQL of
//! `TEST_DATABASE_URL` when set) and talks to it over the network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod cap;
mod edges;
mod health;
mod helpers;
mod participants;
mod sessions;

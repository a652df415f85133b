//! The one test server every integration test binary starts (the `test-support` feature, which
//! the tests enable; never shipped): the real app on a free port, with its own database — a fresh
//! SQLite file, or the shared PostgreSQL of `TEST_DATABASE_URL` — and the Redis of
//! `TEST_REDIS_URL` when that is set (else the in-memory store).
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Once;

use actix::Addr;
use tempfile::TempDir;

use crate::config::{LogFormat, Settings};
use crate::realtime::SessionRegistry;
use crate::startup::Application;

/// The secret every test server signs with, so tests can forge tokens.
pub const JWT_SECRET: &str = "integration-tests-secret-0123456789abcdef";

/// The shared PostgreSQL database, when the suite runs against one.
pub fn test_database_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|url| !url.trim().is_empty())
}

/// A Redis to run against, when one is given.
pub fn test_redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL").ok().filter(|url| !url.trim().is_empty())
}

/// Logs go to the terminal only when `TEST_LOG` is set: tests are quiet unless asked.
fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            crate::telemetry::init(LogFormat::Text);
        }
    });
}

/// A server running in the caller's actix system.
pub struct TestServer {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// The settings it was built with.
    pub settings: Settings,
    /// The supervisor of its session actors, to reach them directly.
    pub registry: Addr<SessionRegistry>,
    /// Keeps the SQLite file alive as long as the server.
    _tmp: TempDir,
}

/// For a server that must be a single node with the in-memory store whatever `TEST_REDIS_URL` says.
pub fn without_redis(vars: &mut HashMap<String, String>) {
    vars.remove("REDIS_URL");
}

/// The variables of a test server before the test's own changes.
fn base_vars(tmp: &TempDir) -> HashMap<String, String> {
    let database_url = test_database_url()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("location_sharing.sqlite3").display()));
    let mut vars = HashMap::from([
        ("PORT".to_owned(), "0".to_owned()),
        ("HOST".to_owned(), "127.0.0.1".to_owned()),
        ("JWT_SECRET".to_owned(), JWT_SECRET.to_owned()),
        ("DATABASE_URL".to_owned(), database_url),
        ("DB_POOL_SIZE".to_owned(), "5".to_owned()),
    ]);
    if let Some(redis) = test_redis_url() {
        vars.insert("REDIS_URL".to_owned(), redis);
    }
    vars
}

/// Builds and starts a server whose settings `configure` adjusts first; panics if it cannot
/// (a test cannot go on without it). Call it inside an actix system.
///
/// On the shared PostgreSQL, every server's cleanup sweep acts on the whole database, the first
/// one 5 s after start: a test that shortens `SESSION_INACTIVITY_SECONDS` or
/// `ENDED_RETENTION_SECONDS` must be done well before that, or it would end or purge the
/// sessions of the tests running beside it.
pub async fn spawn_app_with(configure: impl FnOnce(&mut HashMap<String, String>)) -> TestServer {
    init_logging();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut vars = base_vars(&tmp);
    configure(&mut vars);
    let settings = Settings::from_map(&vars).expect("valid test settings");
    let app = Application::build(settings.clone()).await.expect("the application builds");
    let port = app.port();
    let registry = app.registry();
    actix_web::rt::spawn(app.run_until_stopped());
    TestServer { address: format!("http://127.0.0.1:{port}"), settings, registry, _tmp: tmp }
}

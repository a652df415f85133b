//! Diesel persistence: one connection type over PostgreSQL and SQLite, a blocking pool
//! driven from async code, embedded migrations, and the queries per table.

pub mod participants;
pub mod schema;
pub mod sessions;

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Key of the PostgreSQL advisory lock that keeps replicas from migrating at once.
const MIGRATION_LOCK_KEY: i64 = 0x4C53_4D49_4752; // "LSMIGR"

/// How long a request waits for the database (pool checkout and query) before answering 503,
/// so that a dead database is reported within 2 s.
pub const DEADLINE: Duration = Duration::from_millis(1500);

/// A connection to whichever backend `DATABASE_URL` names.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL, for deployments.
    Postgres(PgConnection),
    /// SQLite, the embedded default; last, as the derive asks.
    Sqlite(SqliteConnection),
}

/// Failures of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time, or the server is unreachable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The call took longer than [`DEADLINE`].
    #[error("database call timed out")]
    Timeout,
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Migrations could not be applied.
    #[error("migrations failed: {0}")]
    Migration(String),
}

/// Opens connections of the right kind and prepares SQLite ones.
#[derive(Debug)]
struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(&with_connect_timeout(url))
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the writer; busy_timeout makes writers queue
                // instead of failing, which is what keeps concurrent joins atomic and orderly.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        match conn {
            DbConnection::Postgres(c) => r2d2::R2D2Connection::is_broken(c),
            DbConnection::Sqlite(c) => r2d2::R2D2Connection::is_broken(c),
        }
    }
}

/// libpq waits forever for an unreachable host unless told otherwise.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout=2")
}

/// The database handle shared by handlers and workers: a pool used off the async executor.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<Manager>,
    postgres: bool,
    pool_wait: Option<prometheus::Histogram>,
}

impl Db {
    /// Builds the pool (no connection is opened yet); creates the SQLite file's folder.
    pub fn connect(url: &DatabaseUrl, size: u32) -> Result<Self, DbError> {
        if let DatabaseUrl::Sqlite(path) = url {
            if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(DEADLINE)
            .error_handler(Box::new(r2d2::LoggingErrorHandler))
            .build_unchecked(Manager { url: url.clone() });
        Ok(Self { pool, postgres: url.is_postgres(), pool_wait: None })
    }

    /// Records pool checkout waits in `histogram`.
    pub fn with_pool_wait_metric(mut self, histogram: prometheus::Histogram) -> Self {
        self.pool_wait = Some(histogram);
        self
    }

    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Applies pending migrations, holding a PostgreSQL advisory lock so replicas take turns.
    pub fn migrate(&self) -> Result<usize, DbError> {
        let mut conn = self.checkout()?;
        match &mut *conn {
            DbConnection::Postgres(pg) => {
                pg.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
                let applied = pg
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(|e| DbError::Migration(e.to_string()));
                let unlocked = pg.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
                let applied = applied?;
                unlocked?;
                Ok(applied)
            }
            DbConnection::Sqlite(lite) => lite
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.len())
                .map_err(|e| DbError::Migration(e.to_string())),
        }
    }

    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, DbError> {
        let started = Instant::now();
        let conn = self.pool.get().map_err(|e| DbError::Unavailable(e.to_string()));
        if let Some(h) = &self.pool_wait {
            h.observe(started.elapsed().as_secs_f64());
        }
        conn
    }

    /// Runs `f` with a pooled connection on the blocking thread pool, giving up after [`DEADLINE`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        let call = actix_web::rt::task::spawn_blocking(move || {
            let mut conn = db.checkout()?;
            f(&mut conn)
        });
        match tokio::time::timeout(DEADLINE, call).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(DbError::Unavailable(format!("database task failed: {join}"))),
            Err(_) => Err(DbError::Timeout),
        }
    }

    /// Round-trips `SELECT 1`; the latency on success.
    pub async fn ping(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from)).await?;
        Ok(started.elapsed())
    }
}

/// Stored times are naive UTC; the API speaks `DateTime<Utc>`.
pub(crate) fn utc(naive: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    naive.and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_added_once() {
        assert_eq!(with_connect_timeout("postgres://h/db"), "postgres://h/db?connect_timeout=2");
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable"),
            "postgres://h/db?sslmode=disable&connect_timeout=2"
        );
        assert_eq!(with_connect_timeout("postgres://h/db?connect_timeout=9"), "postgres://h/db?connect_timeout=9");
    }
}

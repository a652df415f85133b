//! Diesel persistence: one connection type over PostgreSQL and SQLite, a blocking pool
//! driven from async code, embedded migrations, and the queries per table.

pub mod participants;
pub mod schema;
pub mod sessions;

use std::path::Path;
use std::sync::Arc;
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

/// Failures of the persistence layer; each keeps its cause as its `source`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time, or the server is unreachable (503).
    #[error("database unavailable")]
    Unavailable(#[source] r2d2::PoolError),
    /// The call took longer than [`DEADLINE`] (503).
    #[error("database call timed out")]
    Timeout,
    /// The blocking task running the call failed (503).
    #[error("database task failed")]
    Task(#[source] actix_web::rt::task::JoinError),
    /// The SQLite file's folder could not be created (at start).
    #[error("cannot create {path}")]
    CreateDir {
        /// The folder that could not be created.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A query failed (500).
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    /// Migrations could not be applied (at start).
    #[error("migrations failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
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
    /// One permit per pooled connection: calls wait for a connection as async tasks, not as
    /// blocking threads parked inside the pool.
    permits: Arc<tokio::sync::Semaphore>,
    postgres: bool,
    pool_wait: Option<prometheus::Histogram>,
}

impl Db {
    /// Builds the pool (no connection is opened yet); creates the SQLite file's folder.
    ///
    /// SQLite gets one connection whatever `size` says: it has one writer anyway, and every
    /// write through one connection empties the page cache of all the others, which then read
    /// the file again (one connection: ~40 % more requests per second at 32 concurrent
    /// create+join clients than ten). PostgreSQL gets `size`.
    pub fn connect(url: &DatabaseUrl, size: u32) -> Result<Self, DbError> {
        let size = match url {
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| DbError::CreateDir { path: dir.to_path_buf(), source })?;
                }
                1
            }
            DatabaseUrl::Postgres(_) => size.max(1),
        };
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(DEADLINE)
            // A PostgreSQL connection can die with its server and is only found out by using
            // it; a SQLite one is a file handle and cannot, so it skips the `SELECT 1`.
            .test_on_check_out(url.is_postgres())
            .error_handler(Box::new(r2d2::LoggingErrorHandler))
            .build_unchecked(Manager { url: url.clone() });
        let permits = Arc::new(tokio::sync::Semaphore::new(size as usize));
        Ok(Self { pool, permits, postgres: url.is_postgres(), pool_wait: None })
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
        let mut conn = self.checkout(Instant::now())?;
        match &mut *conn {
            DbConnection::Postgres(pg) => {
                pg.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
                let applied =
                    pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()).map_err(DbError::Migration);
                let unlocked = pg.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
                let applied = applied?;
                unlocked?;
                Ok(applied)
            }
            DbConnection::Sqlite(lite) => {
                lite.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()).map_err(DbError::Migration)
            }
        }
    }

    /// A pooled connection; `started` is when the caller began waiting for one.
    fn checkout(&self, started: Instant) -> Result<r2d2::PooledConnection<Manager>, DbError> {
        let conn = self.pool.get().map_err(DbError::Unavailable);
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
        let call = async move {
            let started = Instant::now();
            // The semaphore is never closed, so acquiring only waits.
            let permit = db.permits.clone().acquire_owned().await.map_err(|_| DbError::Timeout)?;
            // The permit goes with the call, so a call abandoned at the deadline still holds
            // its connection's slot until it has really finished.
            let task = actix_web::rt::task::spawn_blocking(move || {
                let _permit = permit;
                let mut conn = db.checkout(started)?;
                f(&mut conn)
            });
            task.await.map_err(DbError::Task)?
        };
        tokio::time::timeout(DEADLINE, call).await.unwrap_or(Err(DbError::Timeout))
    }

    /// Round-trips `SELECT 1`; the latency on success.
    pub async fn ping(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from)).await?;
        Ok(started.elapsed())
    }
}

/// A step of a database call that either ran within it or was left for a call of its own, so a
/// handler can read and write in one trip when its checks allow, and in two when they do not.
pub enum Step<T, F> {
    /// It ran; its result.
    Done(T),
    /// It did not run.
    Later(F),
}

impl<T, F> Step<T, F>
where
    F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    /// Runs `f` on `conn` now if `now` holds, else keeps it for [`Step::finish`].
    pub fn run_if(now: bool, conn: &mut DbConnection, f: F) -> Result<Self, DbError> {
        Ok(if now { Self::Done(f(conn)?) } else { Self::Later(f) })
    }

    /// The step's result, running it in a call of its own if it was left for later.
    pub async fn finish(self, db: &Db) -> Result<T, DbError> {
        match self {
            Self::Done(result) => Ok(result),
            Self::Later(f) => db.run(f).await,
        }
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

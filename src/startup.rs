//! The supervision tree, top to bottom: settings, database and migrations, Redis, the session
//! registry, and the HTTP server last.

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix::Actor;
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};

use crate::auth::Tokens;
use crate::config::Settings;
use crate::db::{Db, DbError};
use crate::http::error::ApiError;
use crate::http::{self, middleware, AppState};
use crate::realtime::SessionRegistry;
use crate::store::redis::{RedisError, RedisPool};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Redis is misconfigured.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Opens the database (migrating it), Redis, starts the registry and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.jwt_secret_generated {
            log::warn!("JWT_SECRET is not set: using a random secret; tokens stop working when the process exits");
        }
        log::info!("database: {}", settings.database_url);
        let db = Db::connect(&settings.database_url, settings.db_pool_size)?;
        let migrator = db.clone();
        let applied = web::block(move || migrator.migrate()).await.map_err(|e| DbError::Migration(e.to_string()))??;
        if applied > 0 {
            log::info!("applied {applied} migration(s)");
        }

        let redis = settings.redis_url.as_deref().map(RedisPool::new).transpose()?;
        let registry = SessionRegistry::default().start();

        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            TcpListener::bind(&address).map_err(|source| StartupError::Bind { address: address.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Bind { address, source })?.port();

        let grace = settings.limits.shutdown_grace;
        let state = web::Data::new(AppState {
            tokens: Tokens::new(&settings.jwt_secret),
            settings: Arc::new(settings),
            db,
            redis,
            registry,
            draining: Arc::new(AtomicBool::new(false)),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(ErrorHandlers::new().default_handler(middleware::phoenix_error_body))
                .wrap(from_fn(middleware::cors))
                .wrap(from_fn(middleware::request_id))
                .configure(http::routes)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::NotFound("Not Found"))
                }))
        })
        .shutdown_timeout(grace.as_secs())
        .listen(listener)
        .map_err(|source| StartupError::Bind { address: format!("port {port}"), source })?
        .run();
        log::info!("listening on port {port}");
        Ok(Self { port, server })
    }

    /// The port actually bound (useful when 0 was asked for).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

//! The supervision tree, top to bottom: settings, database and migrations, Redis, the session
//! registry, and the HTTP server last.

use std::net::TcpListener;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol};
use actix_service::{fn_service, map_config, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers, NormalizePath, TrailingSlash};
use actix_web::{web, App};
use tokio::net::TcpStream;

use crate::abuse::AbuseLimits;
use crate::auth::Tokens;
use crate::config::Settings;
use crate::db::{Db, DbError};
use crate::http::error::ApiError;
use crate::http::{self, middleware, AppState};
use crate::metrics::Metrics;
use crate::net::HeadDeadline;
use crate::ops::cleanup::CleanupWorker;
use crate::ops::drain::{self, Drain};
use crate::ops::memory::MemoryTrimmer;
use crate::realtime::cluster::ClusterBus;
use crate::realtime::session::SessionDeps;
use crate::realtime::transport::Takeover;
use crate::realtime::SessionRegistry;
use crate::redis_link::{RedisError, RedisLink};
use crate::sessions::Sessions;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::Store;

/// How long the start waits to learn whether `REDIS_URL` is one Redis or a cluster; a Redis
/// that is down is asked again on first use.
const REDIS_DETECT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("cannot start the database")]
    Database(#[from] DbError),
    /// Redis is misconfigured.
    #[error("cannot start Redis")]
    Redis(#[from] RedisError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    registry: Addr<SessionRegistry>,
    drain: Arc<Drain>,
}

impl Application {
    /// Opens the database (migrating it), Redis, starts the registry and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // rustls for `rediss://`, with ring: pure Rust to build, no OpenSSL or cmake. Installing
        // fails only when a provider is already installed (a second server in one test process).
        // Deprecated for lacking post-quantum key exchange, which only aws-lc-rs offers, and
        // that needs cmake.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        if settings.jwt_secret_generated {
            log::warn!("JWT_SECRET is not set: using a random secret; tokens stop working when the process exits");
        }
        log::info!("database: {}", settings.database_url);
        let metrics = Arc::new(Metrics::new());
        let db = Db::connect(&settings.database_url, settings.db_pool_size)?
            .with_pool_wait_metric(metrics.db_pool_wait.clone());
        let migrator = db.clone();
        let applied = web::block(move || migrator.migrate()).await.map_err(|e| DbError::Migration(Box::new(e)))??;
        if applied > 0 {
            log::info!("applied {applied} migration(s)");
        }

        let limits = settings.limits.clone();
        let redis = match &settings.redis_url {
            Some(url) => {
                log::info!("Redis: {url}");
                let link = RedisLink::new(url, settings.redis_ca.as_ref(), Some(metrics.redis_errors.clone()))?;
                link.detect(REDIS_DETECT_WAIT).await?;
                Some(link)
            }
            None => None,
        };
        let store: Store = match &redis {
            Some(link) => {
                let keep = limits.session_inactivity + limits.location_ttl;
                Arc::new(RedisStore::new(link.clone(), limits.location_ttl, keep))
            }
            None => Arc::new(MemoryStore::new(limits.location_ttl)),
        };

        let bus = match &redis {
            Some(link) => ClusterBus::start(link.clone(), metrics.clone()),
            None => ClusterBus::disabled(),
        };
        let deps = Arc::new(SessionDeps {
            bus: bus.clone(),
            db: db.clone(),
            store: store.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
        });
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let registry = SessionRegistry::new(deps, threads).start();
        bus.attach(registry.clone().recipient());
        let tokens = Tokens::new(settings.jwt_secret.expose());
        let sessions = Arc::new(Sessions::new(db.clone(), store, limits, tokens, registry.clone().recipient()));
        CleanupWorker::new(sessions.clone()).start();
        MemoryTrimmer::new(metrics.clone()).start();

        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            TcpListener::bind(&address).map_err(|source| StartupError::Bind { address: address.clone(), source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Bind { address, source })?.port();

        let grace = settings.limits.shutdown_grace;
        let max_connections = settings.max_connections;
        let drain = Arc::new(Drain::new(grace));
        let sockets = metrics.sockets.clone();
        let abuse = Arc::new(AbuseLimits::new(&settings.limits, metrics.clone()));
        abuse.start_forgetting();
        let state = web::Data::new(AppState {
            sessions,
            metrics,
            settings: Arc::new(settings),
            db,
            redis,
            registry: registry.clone(),
            drain: drain.clone(),
            abuse,
        });
        let make_app = move || {
            App::new()
                .app_data(state.clone())
                .wrap(ErrorHandlers::new().default_handler(middleware::phoenix_error_body))
                .wrap(from_fn(middleware::head_as_get))
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                .wrap(from_fn(middleware::cors))
                .wrap(from_fn(middleware::request_id))
                .configure(http::routes)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::NotFound("Not Found"))
                }))
        };
        // actix-web's HttpServer, assembled by hand to add the upgrade service: upgrade requests
        // go through the same app, and an accepted WebSocket then owns its connection.
        let mut server = actix_server::Server::build().workers(threads);
        if let Some(max) = max_connections {
            // actix-server counts per worker thread.
            server = server.max_concurrent_connections(max.div_ceil(threads).max(1));
        }
        let server = server
            // Our own signal handling drains (`drain::on_signal`): it waits for sockets and for
            // requests in flight itself, then stops the server at once.
            .disable_signals()
            .listen("location-sharing", listener, move || {
                let config = |_| AppConfig::default();
                let http = HttpService::build()
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .upgrade(Takeover::new(map_config(make_app(), config)))
                    .finish(map_config(make_app(), config));
                // `HttpService::tcp()`, with every connection's reads watched for slow heads.
                fn_service(|io: TcpStream| {
                    let peer = io.peer_addr().ok();
                    // Frames are small and latency matters: no Nagle delay on replies and pushes.
                    let _ = io.set_nodelay(true);
                    std::future::ready(Ok::<_, DispatchError>((HeadDeadline::new(io), Protocol::Http1, peer)))
                })
                .and_then(http)
            })
            .map_err(|source| StartupError::Bind { address: format!("port {port}"), source })?
            .run();
        log::info!("listening on port {port}");
        actix_web::rt::spawn(drain::on_signal(drain.clone(), server.handle(), sockets));
        Ok(Self { port, server, registry, drain })
    }

    /// The port actually bound (useful when 0 was asked for).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The session registry (tests use it to reach session actors).
    pub fn registry(&self) -> Addr<SessionRegistry> {
        self.registry.clone()
    }

    /// Starts draining as SIGTERM would (tests use it).
    pub fn begin_drain(&self) {
        self.drain.begin();
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

//! What the registry's and the session actor's unit tests share: a registry over a fresh SQLite
//! file and the memory store, sessions and participants stored directly, and sockets that are
//! only an outbox the test reads (no WebSocket).
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::cluster::ClusterBus;
use super::messages::{JoinRefusal, JoinSession, SocketHandle, SocketId};
use super::outbox::{Outbox, Outgoing};
use super::protocol::{ReplyTo, Vsn};
use super::session::{SessionActor, SessionDeps};
use super::SessionRegistry;
use crate::config::{DatabaseUrl, Limits};
use crate::db::{self, Db};
use crate::domain::{
    AvatarColor, DisplayName, LocationView, Participant, ParticipantId, PositionView, Session, SessionId,
};
use crate::metrics::Metrics;
use crate::store::memory::MemoryStore;
use crate::store::Store;

/// A registry and what it stands on.
pub struct Fixture {
    pub db: Db,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// What the registry's session actors were given.
    pub deps: Arc<SessionDeps>,
    pub registry: Addr<SessionRegistry>,
    _dir: TempDir,
}

impl Fixture {
    /// A registry on one arbiter with default limits.
    pub async fn new() -> Self {
        Self::with_limits(Limits::default()).await
    }

    /// A registry on one arbiter with these limits.
    pub async fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = DatabaseUrl::Sqlite(dir.path().join("t.sqlite3").display().to_string());
        let db = Db::connect(&url, 1).expect("a database");
        db.migrate().expect("migrations");
        let limits = Arc::new(limits);
        let store: Store = Arc::new(MemoryStore::new(limits.location_ttl));
        let metrics = Arc::new(Metrics::new());
        let deps = Arc::new(SessionDeps {
            db: db.clone(),
            store: store.clone(),
            limits,
            metrics: metrics.clone(),
            bus: ClusterBus::disabled(),
        });
        let registry = SessionRegistry::new(deps.clone(), 1).start();
        Self { db, store, metrics, deps, registry, _dir: dir }
    }

    /// A live session, stored.
    pub async fn session(&self) -> SessionId {
        let now = Utc::now();
        let session = Session {
            id: SessionId::new(),
            name: None,
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            last_activity_at: now,
            ended: None,
            participant_count: 0,
            locked: false,
            e2e: false,
            destination: None,
        };
        let id = session.id;
        self.db.run(move |c| db::sessions::insert(c, &session)).await.expect("insert session");
        id
    }

    /// A participant of `session`, stored (as a REST join would).
    pub async fn participant(&self, session: SessionId, name: &str) -> Participant {
        let now = Utc::now();
        let p = Participant {
            id: ParticipantId::new(),
            session_id: session,
            display_name: DisplayName::from_trusted(name.into()),
            avatar_color: AvatarColor::from_trusted("#1E90FF".into()),
            joined_at: now,
            last_seen_at: now,
            removed_at: None,
        };
        let stored = p.clone();
        self.db
            .run(move |c| db::participants::join(c, &stored, now, 50, chrono::Duration::hours(1)))
            .await
            .expect("join");
        p
    }

    /// Puts a socket of `user` in `session`'s channel, as its `phx_join` with ref `join_ref` does.
    pub async fn join(
        &self,
        session: SessionId,
        socket: &SocketHandle,
        join_ref: &str,
    ) -> Result<Addr<SessionActor>, JoinRefusal> {
        let reply = ReplyTo {
            join_ref: json!(join_ref),
            msg_ref: json!(join_ref),
            topic: format!("location:{session}"),
            event: "phx_join".into(),
        };
        let join = JoinSession { session, socket: socket.clone(), reply, arbiter: Arbiter::current() };
        self.registry.send(join).await.expect("the registry answers").map(|joined| joined.session)
    }
}

/// A position of `user` as broadcast and stored.
pub fn location_view(user: ParticipantId, lat: f64) -> PositionView {
    PositionView::Clear(LocationView {
        user_id: user.to_string(),
        lat,
        lng: 2.0,
        accuracy: None,
        heading: None,
        speed: None,
        timestamp: "2026-12-01T10:00:00Z".into(),
        distance_m: None,
        eta_s: None,
    })
}

/// A socket that is only its outbox.
pub fn socket(id: SocketId, participant: ParticipantId, vsn: Vsn) -> SocketHandle {
    let dropped = prometheus::IntCounter::new("dropped", "dropped").expect("a counter");
    SocketHandle { id, participant, vsn, outbox: Arc::new(Outbox::new(1000, dropped)) }
}

/// What a socket was sent: frames as JSON, the rest as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    /// A text frame.
    Frame(Value),
    /// The channel of that join is gone.
    ChannelGone(Value),
    /// The socket is to close with this code.
    Close(u16),
}

impl Got {
    /// The event of a V2 frame (`[join_ref, ref, topic, event, payload]`).
    pub fn event(&self) -> Option<&str> {
        match self {
            Self::Frame(v) => v[3].as_str(),
            _ => None,
        }
    }

    /// The payload of a V2 frame.
    pub fn payload(&self) -> &Value {
        match self {
            Self::Frame(v) => &v[4],
            _ => &Value::Null,
        }
    }
}

/// Everything queued for `socket` so far.
pub fn drain(socket: &SocketHandle) -> Vec<Got> {
    std::iter::from_fn(|| socket.outbox.pop())
        .map(|item| match item {
            Outgoing::Frame { text, .. } => Got::Frame(serde_json::from_str(&text).unwrap_or(Value::Null)),
            Outgoing::ChannelGone(join_ref) => Got::ChannelGone(join_ref),
            Outgoing::Close(code, _) => Got::Close(code),
        })
        .collect()
}

/// Waits (up to 2 s) until `socket` was sent at least `n` items, and returns them all.
pub async fn receive(socket: &SocketHandle, n: usize) -> Vec<Got> {
    let mut got = Vec::new();
    for _ in 0..200 {
        got.extend(drain(socket));
        if got.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got
}

//! The cluster bus: broadcasts between replicas over Redis pub/sub.
//!
//! It carries typed [`ClusterEvent`]s (`events.rs`) for a session id and hands what arrives to a
//! `Recipient<RemoteEvent>` (the registry), so it knows nothing of the actors. Each replica
//! subscribes only to the channels of the sessions it holds actors for (reference-counted, so an
//! actor restart never unsubscribes its successor), publishes every broadcast once through one ordered publisher, and drops its own
//! messages on the way back in (every payload starts with its origin's replica id). After a Redis
//! restart the subscriber reconnects and resubscribes by itself; `pubsub_connected` and
//! `pubsub_reconnects_total` show its health. On a single node (no `REDIS_URL`) the bus is off and
//! every call is a no-op.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

mod events;

use actix::Recipient;
use bytes::Bytes;
use deadpool_redis::redis;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::messages::RemoteEvent;
use crate::config::RedisUrl;
use crate::domain::SessionId;
use crate::metrics::Metrics;
use crate::store::redis::{RedisError, DEADLINE};
use crate::telemetry::Chain;
pub use events::ClusterEvent;
use events::Refused;

/// Messages waiting to be published before new ones are dropped.
const PUBLISH_QUEUE: usize = 65_536;
/// Messages sent in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// How long a session actor waits for its subscription to be confirmed.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(1);

/// The bus handle, cheap to clone.
#[derive(Clone, Default)]
pub struct ClusterBus {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    replica: String,
    publish: mpsc::Sender<(String, Bytes)>,
    control: mpsc::UnboundedSender<Control>,
    metrics: Arc<Metrics>,
}

enum Control {
    Subscribe(String, oneshot::Sender<bool>),
    Unsubscribe(String),
    Attach(Recipient<RemoteEvent>),
}

fn channel_of(session: SessionId) -> String {
    format!("ls:bus:{{{session}}}")
}

fn session_of(channel: &str) -> Option<SessionId> {
    channel.strip_prefix("ls:bus:{")?.strip_suffix('}')?.parse().ok()
}

impl ClusterBus {
    /// The bus of a single node: every call does nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts the publisher and subscriber tasks on the current runtime.
    pub fn start(url: &RedisUrl, metrics: Arc<Metrics>) -> Result<Self, RedisError> {
        let client = redis::Client::open(url.expose()).map_err(RedisError::Url)?;
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (control, control_rx) = mpsc::unbounded_channel();
        actix_web::rt::spawn(publisher(client.clone(), publish_rx, metrics.clone()));
        actix_web::rt::spawn(subscriber(client, replica.clone(), control_rx, metrics.clone()));
        Ok(Self { inner: Some(Arc::new(Inner { replica, publish, control, metrics })) })
    }

    /// True when replicas share this bus.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Hands incoming messages to `deliver` (the registry) from now on.
    pub fn attach(&self, deliver: Recipient<RemoteEvent>) {
        if let Some(inner) = &self.inner {
            let _ = inner.control.send(Control::Attach(deliver));
        }
    }

    /// Publishes an event of `session` to the other replicas; never waits (drops when the queue is full).
    pub fn publish(&self, session: SessionId, event: &ClusterEvent) {
        let Some(inner) = &self.inner else {
            return;
        };
        let json = match serde_json::to_vec(event) {
            Ok(json) => json,
            Err(e) => return log::error!("cannot encode cluster event: {}", Chain(&e)),
        };
        let mut payload = Vec::with_capacity(inner.replica.len() + 1 + json.len());
        payload.extend_from_slice(inner.replica.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(&json);
        if inner.publish.try_send((channel_of(session), Bytes::from(payload))).is_err() {
            inner.metrics.pubsub_dropped.inc();
        }
    }

    /// Subscribes to a session's channel; resolves once Redis confirmed it (or at once when the
    /// bus is off or down: delivery is then local only until it recovers).
    pub async fn subscribe(&self, session: SessionId) {
        let Some(inner) = &self.inner else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if inner.control.send(Control::Subscribe(channel_of(session), tx)).is_ok() {
            let _ = tokio::time::timeout(SUBSCRIBE_DEADLINE, rx).await;
        }
    }

    /// Drops one subscription to a session's channel.
    pub fn unsubscribe(&self, session: SessionId) {
        if let Some(inner) = &self.inner {
            let _ = inner.control.send(Control::Unsubscribe(channel_of(session)));
        }
    }
}

/// Splits a received payload into its origin replica and the event's bytes.
fn split_origin(payload: &[u8]) -> Option<(&str, &[u8])> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    Some((std::str::from_utf8(&payload[..split]).ok()?, &payload[split + 1..]))
}

/// Publishes queued messages in order, a pipeline at a time, on a connection of its own.
///
/// The connection is opened here, so the task that drives it runs on this thread too: publishing
/// through a connection driven from another thread cost two more thread hops per message.
async fn publisher(client: redis::Client, mut queue: mpsc::Receiver<(String, Bytes)>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut conn = None;
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload.as_ref()).ignore();
        }
        let failure = match tokio::time::timeout(DEADLINE, publish(&client, &mut conn, &pipe)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(RedisError::Command(e)),
            Err(_) => Some(RedisError::Timeout),
        };
        match failure {
            None => metrics.pubsub_published.inc_by(batch.len() as u64),
            Some(e) => {
                log::warn!("cluster publish failed: {}", Chain(&e));
                conn = None;
                drop_backlog(&mut queue, &batch, &metrics);
            }
        }
        batch.clear();
    }
}

/// Sends one pipeline, connecting first if need be.
async fn publish(
    client: &redis::Client,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(client.get_multiplexed_async_connection().await?);
    }
    match conn.as_mut() {
        Some(c) => pipe.query_async(c).await,
        None => Ok(()),
    }
}

/// While Redis is down, queued broadcasts are stale by the time it returns: drop them, briefly.
fn drop_backlog(queue: &mut mpsc::Receiver<(String, Bytes)>, batch: &[(String, Bytes)], metrics: &Metrics) {
    let mut dropped = batch.len() as u64;
    while queue.try_recv().is_ok() {
        dropped += 1;
    }
    metrics.pubsub_dropped.inc_by(dropped);
}

/// Reconnection delays: doubling from 100 ms to at most 2 s, back to the start once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next attempt; each failure doubles the one after.
    fn failed(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    fn connected(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Keeps one pub/sub connection, its subscriptions, and delivers what arrives.
async fn subscriber(
    client: redis::Client,
    replica: String,
    mut control: mpsc::UnboundedReceiver<Control>,
    metrics: Arc<Metrics>,
) {
    let mut wanted: HashMap<String, usize> = HashMap::new();
    let mut deliver: Option<Recipient<RemoteEvent>> = None;
    let mut unknown_logged: HashSet<String> = HashSet::new();
    let mut backoff = Backoff::new();
    let mut connected_before = false;
    loop {
        let connection = match tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => {
                log::warn!("cluster bus: cannot connect to Redis: {}", Chain(&e));
                None
            }
            Err(_) => {
                log::warn!("cluster bus: connecting to Redis timed out");
                None
            }
        };
        let Some(connection) = connection else {
            metrics.pubsub_connected.set(0);
            // Keep bookkeeping while down, so the next connection subscribes to the right set.
            let sleep = tokio::time::sleep(backoff.failed());
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    msg = control.recv() => match msg {
                        None => return,
                        Some(msg) => apply_offline(msg, &mut wanted, &mut deliver),
                    },
                }
            }
            continue;
        };
        let (mut sink, mut stream) = connection.split();
        let channels: Vec<&String> = wanted.keys().collect();
        let resubscribed = if channels.is_empty() { Ok(()) } else { sink.subscribe(channels).await };
        if let Err(e) = resubscribed {
            log::warn!("cluster bus: resubscribing failed: {}", Chain(&e));
            tokio::time::sleep(backoff.failed()).await;
            continue;
        }
        if connected_before {
            metrics.pubsub_reconnects.inc();
            log::info!("cluster bus: reconnected, {} channel(s) resubscribed", wanted.len());
        }
        connected_before = true;
        backoff.connected();
        metrics.pubsub_connected.set(1);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let Some(session) = session_of(msg.get_channel_name()) else { continue };
                    let (origin, body) = match split_origin(msg.get_payload_bytes()) {
                        // Our own messages come back from Redis: skipped before any parsing.
                        Some((origin, _)) if origin == replica => continue,
                        Some(split) => split,
                        None => {
                            metrics.pubsub_refused.with_label_values(&["unreadable"]).inc();
                            log::warn!("cluster bus: a message without its origin on {}", msg.get_channel_name());
                            continue;
                        }
                    };
                    match ClusterEvent::decode(body) {
                        Ok(event) => {
                            metrics.pubsub_received.inc();
                            if let Some(deliver) = &deliver {
                                deliver.do_send(RemoteEvent { session, origin: origin.into(), event });
                            }
                        }
                        Err(Refused::Unknown(kind)) => {
                            metrics.pubsub_refused.with_label_values(&["unknown_event"]).inc();
                            if unknown_logged.insert(kind.clone()) {
                                log::warn!("cluster bus: ignoring {kind:?} events from replica {origin} (a newer version?)");
                            }
                        }
                        Err(Refused::Unreadable(e)) => {
                            metrics.pubsub_refused.with_label_values(&["unreadable"]).inc();
                            // Not serde's message: it quotes the value at fault, which may be a coordinate.
                            log::warn!(
                                "cluster bus: unreadable message from replica {origin}: {:?} error at line {}, column {}",
                                e.classify(),
                                e.line(),
                                e.column()
                            );
                        }
                    }
                }
                ctl = control.recv() => match ctl {
                    None => return,
                    Some(Control::Attach(r)) => deliver = Some(r),
                    Some(Control::Subscribe(channel, done)) => {
                        let count = wanted.entry(channel.clone()).or_insert(0);
                        *count += 1;
                        let ok = *count > 1 || sink.subscribe(&channel).await.is_ok();
                        let _ = done.send(ok);
                    }
                    Some(Control::Unsubscribe(channel)) => {
                        if release(&mut wanted, &channel) {
                            let _ = sink.unsubscribe(&channel).await;
                        }
                    }
                },
            }
        }
        log::warn!("cluster bus: connection to Redis lost; reconnecting");
        metrics.pubsub_connected.set(0);
    }
}

fn apply_offline(msg: Control, wanted: &mut HashMap<String, usize>, deliver: &mut Option<Recipient<RemoteEvent>>) {
    match msg {
        Control::Attach(r) => *deliver = Some(r),
        Control::Subscribe(channel, done) => {
            *wanted.entry(channel).or_insert(0) += 1;
            let _ = done.send(false);
        }
        Control::Unsubscribe(channel) => {
            release(wanted, &channel);
        }
    }
}

/// Drops one reference; true when it was the last.
fn release(wanted: &mut HashMap<String, usize>, channel: &str) -> bool {
    match wanted.get_mut(channel) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => {
            wanted.remove(channel);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EndReason;

    #[test]
    fn channel_names_round_trip() {
        let s = SessionId::new();
        assert_eq!(session_of(&channel_of(s)), Some(s));
        assert_eq!(session_of("ls:bus:{nope}"), None);
    }

    #[test]
    fn payloads_carry_their_origin() {
        let event = ClusterEvent::Ended { reason: EndReason::Expired };
        let mut payload = b"replica-1\n".to_vec();
        payload.extend(serde_json::to_vec(&event).unwrap_or_default());
        let (origin, body) = split_origin(&payload).unwrap_or_default();
        assert_eq!((origin, serde_json::from_slice(body).ok()), ("replica-1", Some(event)));
        assert_eq!(split_origin(b"no newline"), None);
    }

    #[test]
    fn subscriptions_are_counted() {
        let mut wanted = HashMap::new();
        let mut registry = None;
        let (tx, _rx) = oneshot::channel();
        apply_offline(Control::Subscribe("a".into(), tx), &mut wanted, &mut registry);
        let (tx, _rx) = oneshot::channel();
        apply_offline(Control::Subscribe("a".into(), tx), &mut wanted, &mut registry);
        assert!(!release(&mut wanted, "a"));
        assert!(release(&mut wanted, "a"));
        assert!(wanted.is_empty());
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..7).map(|_| b.failed().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        b.connected();
        assert_eq!(b.failed().as_millis(), 100);
    }

    #[test]
    fn disabled_bus_is_inert() {
        let bus = ClusterBus::disabled();
        assert!(!bus.is_enabled());
        bus.publish(SessionId::new(), &ClusterEvent::Ended { reason: EndReason::Inactive });
        bus.unsubscribe(SessionId::new());
    }
}

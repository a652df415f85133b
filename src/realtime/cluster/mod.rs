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
//!
//! On one Redis it uses `PUBLISH`/`SUBSCRIBE` (`standalone.rs`); on a Redis Cluster, sharded
//! pub/sub (`SPUBLISH`/`SSUBSCRIBE`, `sharded.rs`), so a message reaches only the shard owning its
//! session. The channel `ls:bus:{session}` has the session id as its hash tag: the same slot as
//! the session's keys. Positions are not published while nobody but this replica listens
//! (`publisher.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

mod events;
mod publisher;
mod sharded;
mod standalone;

use actix::Recipient;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::messages::RemoteEvent;
use crate::domain::SessionId;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::telemetry::Chain;
pub use events::ClusterEvent;
use events::Refused;
use publisher::Outgoing;

/// Messages waiting to be published before new ones are dropped.
const PUBLISH_QUEUE: usize = 65_536;
/// How long a session actor waits for its subscription to be confirmed.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(1);

/// The bus handle, cheap to clone.
#[derive(Clone, Default)]
pub struct ClusterBus {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: Queue,
    control: mpsc::UnboundedSender<Control>,
}

/// The way into the publisher: encodes an event with this replica's id in front and queues it.
#[derive(Clone)]
struct Queue {
    replica: String,
    publish: mpsc::Sender<Outgoing>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Queues `event` for `channel`; never waits (drops when the queue is full).
    fn push(&self, channel: String, event: &ClusterEvent) {
        let json = match serde_json::to_vec(event) {
            Ok(json) => json,
            Err(e) => return log::error!("cannot encode cluster event: {}", Chain(&e)),
        };
        let mut payload = Vec::with_capacity(self.replica.len() + 1 + json.len());
        payload.extend_from_slice(self.replica.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(&json);
        let position = matches!(event, ClusterEvent::Location { .. } | ClusterEvent::SealedLocation { .. });
        if self.publish.try_send(Outgoing { channel, payload: Bytes::from(payload), position }).is_err() {
            self.metrics.pubsub_dropped.inc();
        }
    }

    /// Tells the other replicas this one listens to `channels` now (after (re)subscribing).
    fn listening<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        for channel in channels {
            self.push(channel.clone(), &ClusterEvent::Listening);
        }
    }
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
    pub fn start(link: RedisLink, metrics: Arc<Metrics>) -> Self {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (heard, heard_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        actix_web::rt::spawn(publisher::run(link.clone(), publish_rx, heard_rx, metrics.clone()));
        let queue = Queue { replica: replica.clone(), publish, metrics: metrics.clone() };
        let inbox = Inbox::new(replica, heard, metrics.clone());
        actix_web::rt::spawn(subscriber(link, inbox, queue.clone(), control_rx, metrics));
        Self { inner: Some(Arc::new(Inner { queue, control })) }
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
        if let Some(inner) = &self.inner {
            inner.queue.push(channel_of(session), event);
        }
    }

    /// Subscribes to a session's channel; resolves once Redis confirmed it (or at once when the
    /// bus is off or down: delivery is then local only until it recovers), then tells the
    /// replicas already there.
    pub async fn subscribe(&self, session: SessionId) {
        let Some(inner) = &self.inner else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        let channel = channel_of(session);
        if inner.control.send(Control::Subscribe(channel.clone(), tx)).is_ok() {
            let _ = tokio::time::timeout(SUBSCRIBE_DEADLINE, rx).await;
        }
        inner.queue.listening([&channel]);
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

/// Decodes what arrives from other replicas and hands it to the registry.
struct Inbox {
    replica: String,
    deliver: Option<Recipient<RemoteEvent>>,
    /// The publisher's ear for `Listening`.
    heard: mpsc::UnboundedSender<String>,
    unknown_logged: HashSet<String>,
    metrics: Arc<Metrics>,
}

impl Inbox {
    fn new(replica: String, heard: mpsc::UnboundedSender<String>, metrics: Arc<Metrics>) -> Self {
        Self { replica, deliver: None, heard, unknown_logged: HashSet::new(), metrics }
    }

    /// One message of `channel`.
    fn receive(&mut self, channel: &str, payload: &[u8]) {
        let Some(session) = session_of(channel) else { return };
        let (origin, body) = match split_origin(payload) {
            // Our own messages come back from Redis: skipped before any parsing.
            Some((origin, _)) if origin == self.replica => return,
            Some(split) => split,
            None => {
                self.metrics.pubsub_refused.with_label_values(&["unreadable"]).inc();
                log::warn!("cluster bus: a message without its origin on {channel}");
                return;
            }
        };
        match ClusterEvent::decode(body) {
            Ok(ClusterEvent::Listening) => {
                self.metrics.pubsub_received.inc();
                let _ = self.heard.send(channel.to_owned());
            }
            Ok(event) => {
                self.metrics.pubsub_received.inc();
                if let Some(deliver) = &self.deliver {
                    deliver.do_send(RemoteEvent { session, origin: origin.into(), event });
                }
            }
            Err(Refused::Unknown(kind)) => {
                self.metrics.pubsub_refused.with_label_values(&["unknown_event"]).inc();
                if self.unknown_logged.insert(kind.clone()) {
                    log::warn!("cluster bus: ignoring {kind:?} events from replica {origin} (a newer version?)");
                }
            }
            Err(Refused::Unreadable(e)) => {
                self.metrics.pubsub_refused.with_label_values(&["unreadable"]).inc();
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
}

/// The channels this replica wants, reference-counted by the session actors asking.
#[derive(Default)]
struct Wanted(HashMap<String, usize>);

impl Wanted {
    /// Adds one reference; true when it is the first (the channel must be subscribed).
    fn add(&mut self, channel: &str) -> bool {
        let count = self.0.entry(channel.to_owned()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Drops one reference; true when it was the last (the channel must be unsubscribed).
    fn release(&mut self, channel: &str) -> bool {
        match self.0.get_mut(channel) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.0.remove(channel);
                true
            }
            None => false,
        }
    }

    fn contains(&self, channel: &str) -> bool {
        self.0.contains_key(channel)
    }

    fn channels(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Applies a control message while no connection is up: bookkeeping only, so the next
/// connection subscribes to the right set.
fn apply_offline(msg: Control, wanted: &mut Wanted, inbox: &mut Inbox) {
    match msg {
        Control::Attach(r) => inbox.deliver = Some(r),
        Control::Subscribe(channel, done) => {
            wanted.add(&channel);
            let _ = done.send(false);
        }
        Control::Unsubscribe(channel) => {
            wanted.release(&channel);
        }
    }
}

/// Waits `delay` while keeping the bookkeeping; false when the bus was dropped.
async fn wait_offline(
    delay: Duration,
    control: &mut mpsc::UnboundedReceiver<Control>,
    wanted: &mut Wanted,
    inbox: &mut Inbox,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            msg = control.recv() => match msg {
                None => return false,
                Some(msg) => apply_offline(msg, wanted, inbox),
            },
        }
    }
}

/// Finds out what Redis is, then keeps the subscriptions of that kind.
async fn subscriber(
    link: RedisLink,
    mut inbox: Inbox,
    queue: Queue,
    mut control: mpsc::UnboundedReceiver<Control>,
    metrics: Arc<Metrics>,
) {
    let mut wanted = Wanted::default();
    let mut backoff = Backoff::new();
    let cluster = loop {
        match link.is_cluster().await {
            Ok(cluster) => break cluster,
            Err(e) => {
                metrics.pubsub_connected.set(0);
                log::warn!("cluster bus: cannot reach Redis: {}", Chain(&e));
                if !wait_offline(backoff.failed(), &mut control, &mut wanted, &mut inbox).await {
                    return;
                }
            }
        }
    };
    if cluster {
        sharded::run(link, inbox, queue, wanted, control, metrics).await;
    } else {
        match link.single_client() {
            Ok(client) => standalone::run(client, inbox, queue, wanted, control, metrics).await,
            Err(e) => log::error!("cluster bus: cannot use REDIS_URL: {}", Chain(&e)),
        }
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
        let mut wanted = Wanted::default();
        let mut inbox = Inbox::new("r".into(), mpsc::unbounded_channel().0, Arc::new(Metrics::new()));
        let (tx, _rx) = oneshot::channel();
        apply_offline(Control::Subscribe("a".into(), tx), &mut wanted, &mut inbox);
        assert!(!wanted.add("a"));
        assert!(!wanted.release("a"));
        assert!(wanted.release("a"));
        assert!(wanted.len() == 0 && !wanted.release("a"));
    }

    #[test]
    fn a_replica_announcing_itself_reaches_the_publisher_not_a_session() {
        let (heard, mut heard_rx) = mpsc::unbounded_channel();
        let mut inbox = Inbox::new("me".into(), heard, Arc::new(Metrics::new()));
        let channel = channel_of(SessionId::new());
        let body = serde_json::to_vec(&ClusterEvent::Listening).unwrap_or_default();
        inbox.receive(&channel, &[b"me\n".as_slice(), &body].concat());
        assert!(heard_rx.try_recv().is_err(), "our own announcement is ignored");
        inbox.receive(&channel, &[b"other\n".as_slice(), &body].concat());
        assert_eq!(heard_rx.try_recv().ok(), Some(channel));
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

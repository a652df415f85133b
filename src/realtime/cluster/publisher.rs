//! Publishing: one ordered queue, sent a pipeline at a time on a connection of the publisher's
//! own, with `PUBLISH` on one Redis and `SPUBLISH` on a cluster.
//!
//! Positions are the bulk of the traffic, and with session-affine routing most sessions live on
//! one replica: nobody else would read them. Each publish reports how many subscribers received
//! it; while that is only this replica's own subscription, a session's positions are held back
//! instead of sent, except one per second that asks again. A replica that subscribes to a
//! session says so on the channel (`Listening`), and what was held back for it goes out at once,
//! before anything newer: nothing is lost to a replica that starts holding the session, however
//! the join and the first position race. Held positions that nobody turned up for are dropped
//! (`pubsub_skipped_total`). Everything else (joins, leaves, presence, the end) is always sent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_redis::redis::{self, aio::MultiplexedConnection, cluster_async::ClusterConnection};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::redis_link::{RedisError, RedisLink, DEADLINE};
use crate::telemetry::Chain;

/// Messages sent in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// How long a session's positions stay unsent after a publish that nobody else received.
const ALONE_PROBE: Duration = Duration::from_secs(1);
/// Sessions remembered as alone before old entries are forgotten.
const ALONE_KEEP: usize = 16_384;
/// Positions held back per session (a second of a full session's, at 1 Hz).
const HELD_PER_SESSION: usize = 64;

/// One message for the bus.
pub(super) struct Outgoing {
    /// The session's channel.
    pub channel: String,
    /// Origin replica, newline, event JSON.
    pub payload: Bytes,
    /// True for a position, which may be held back while nobody else listens.
    pub position: bool,
}

/// The publisher's own connection, of the kind Redis turned out to be.
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Publishes queued messages in order; `heard` names the channels another replica announced it
/// listens to ([`super::ClusterEvent::Listening`]), whose held-back positions go out at once.
///
/// The connection is opened here, so the task that drives it runs on this thread too: publishing
/// through a connection driven from another thread cost two more thread hops per message.
pub(super) async fn run(
    link: RedisLink,
    mut queue: mpsc::Receiver<Outgoing>,
    mut heard: mpsc::UnboundedReceiver<String>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut conn = None;
    let mut alone = Alone::default();
    loop {
        let mut send = Vec::new();
        tokio::select! {
            // Announcements first: what they release is older than anything queued.
            biased;
            Some(channel) = heard.recv() => {
                send.extend(alone.heard(&channel));
                while let Ok(channel) = heard.try_recv() {
                    send.extend(alone.heard(&channel));
                }
            }
            received = queue.recv_many(&mut batch, PUBLISH_BATCH) => {
                if received == 0 {
                    return;
                }
            }
        }
        let now = Instant::now();
        // A count of one is our own subscription only while the subscriber holds them all.
        let subscribed = metrics.pubsub_connected.get() == 1;
        for message in batch.drain(..) {
            if subscribed && alone.holds_back(&message, now) {
                alone.hold(message, &metrics);
            } else {
                send.push(message);
            }
        }
        if send.is_empty() {
            continue;
        }
        let sent = tokio::time::timeout(DEADLINE, publish(&link, &mut conn, &send))
            .await
            .unwrap_or_else(|_| Sent::none(send.len(), RedisError::Timeout));
        let published = sent.receivers.iter().flatten().count();
        metrics.pubsub_published.inc_by(published as u64);
        for (message, receivers) in send.iter().zip(&sent.receivers) {
            if let Some(receivers) = receivers {
                alone.learn(&message.channel, *receivers, now, &metrics);
            }
        }
        if let Some(e) = sent.failure {
            link.count(&e);
            log::warn!("cluster publish failed: {}", Chain(&e));
            if published == 0 {
                conn = None;
                drop_backlog(&mut queue, send.len(), &metrics);
            } else {
                // One shard failed, the others took theirs: only its messages are lost.
                metrics.pubsub_dropped.inc_by((send.len() - published) as u64);
            }
        }
    }
}

/// What one publish did: each message's receiver count (`None`: not sent), and the first failure.
struct Sent {
    receivers: Vec<Option<i64>>,
    failure: Option<RedisError>,
}

impl Sent {
    /// Nothing of `count` messages sent.
    fn none(count: usize, failure: RedisError) -> Self {
        Self { receivers: vec![None; count], failure: Some(failure) }
    }
}

/// Positions held back for one session that nobody else listened to.
struct Held {
    /// When the last publish found nobody else.
    since: Instant,
    /// The positions held since, oldest first.
    messages: VecDeque<Outgoing>,
}

/// The sessions whose last publish reached no other replica.
#[derive(Default)]
struct Alone(HashMap<String, Held>);

impl Alone {
    /// True when `message` is a position of a session nobody else listened to a moment ago.
    fn holds_back(&self, message: &Outgoing, now: Instant) -> bool {
        message.position && self.0.get(&message.channel).is_some_and(|held| now - held.since < ALONE_PROBE)
    }

    /// Keeps a held-back position, in case another replica announces itself soon.
    fn hold(&mut self, message: Outgoing, metrics: &Metrics) {
        if let Some(held) = self.0.get_mut(&message.channel) {
            if held.messages.len() == HELD_PER_SESSION {
                held.messages.pop_front();
                metrics.pubsub_skipped.inc();
            }
            held.messages.push_back(message);
        }
    }

    /// Another replica listens to `channel` now: what was held back for it, to send first.
    fn heard(&mut self, channel: &str) -> VecDeque<Outgoing> {
        self.0.remove(channel).map(|held| held.messages).unwrap_or_default()
    }

    /// What a publish to `channel` found: one receiver is this replica's own subscription.
    /// Whatever was held back until then is older than that publish: nobody will get it.
    fn learn(&mut self, channel: &str, receivers: i64, now: Instant, metrics: &Metrics) {
        let dropped = if receivers > 1 {
            self.0.remove(channel)
        } else {
            if self.0.len() >= ALONE_KEEP {
                self.0.retain(|_, held| now - held.since < ALONE_PROBE);
            }
            self.0.insert(channel.to_owned(), Held { since: now, messages: VecDeque::new() })
        };
        if let Some(held) = dropped {
            metrics.pubsub_skipped.inc_by(held.messages.len() as u64);
        }
    }
}

/// Sends the messages, connecting first if need be.
async fn publish(link: &RedisLink, conn: &mut Option<Connection>, messages: &[Outgoing]) -> Sent {
    if conn.is_none() {
        match connect(link).await {
            Ok(connected) => *conn = Some(connected),
            Err(e) => return Sent::none(messages.len(), e),
        }
    }
    match conn {
        Some(Connection::Single(c)) => {
            let mut pipe = redis::pipe();
            for m in messages {
                pipe.cmd("PUBLISH").arg(&m.channel).arg(m.payload.as_ref());
            }
            match pipe.query_async::<Vec<i64>>(c).await {
                Ok(counts) => Sent { receivers: counts.into_iter().map(Some).collect(), failure: None },
                Err(e) => Sent::none(messages.len(), RedisError::Command(e)),
            }
        }
        Some(Connection::Cluster(c)) => publish_sharded(c, messages).await,
        None => Sent { receivers: Vec::new(), failure: None },
    }
}

/// The publisher's own connection, of the kind Redis is.
async fn connect(link: &RedisLink) -> Result<Connection, RedisError> {
    if link.is_cluster().await? {
        return Ok(Connection::Cluster(link.cluster_connection().await?));
    }
    let client = link.single_client()?;
    Ok(Connection::Single(client.get_multiplexed_async_connection().await.map_err(RedisError::Connect)?))
}

/// One `SPUBLISH` pipeline per channel, all at once: a pipeline whose commands hash to several
/// slots would fail whole (`CROSSSLOT`), each channel's order is kept within its pipeline, and
/// a shard that fails loses only its own channels' messages.
async fn publish_sharded(conn: &ClusterConnection, messages: &[Outgoing]) -> Sent {
    let mut by_channel: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        by_channel.entry(&m.channel).or_default().push(i);
    }
    let sends = by_channel.into_values().map(|indices| {
        let mut conn = conn.clone();
        let mut pipe = redis::pipe();
        for i in &indices {
            pipe.cmd("SPUBLISH").arg(&messages[*i].channel).arg(messages[*i].payload.as_ref());
        }
        async move { (indices, pipe.query_async::<Vec<i64>>(&mut conn).await) }
    });
    let mut sent = Sent { receivers: vec![None; messages.len()], failure: None };
    for (indices, result) in futures_util::future::join_all(sends).await {
        match result {
            Ok(counts) => {
                for (i, count) in indices.into_iter().zip(counts) {
                    sent.receivers[i] = Some(count);
                }
            }
            Err(e) => {
                sent.failure.get_or_insert(RedisError::Command(e));
            }
        }
    }
    sent
}

/// While Redis is down, queued broadcasts are stale by the time it returns: drop them, briefly.
fn drop_backlog(queue: &mut mpsc::Receiver<Outgoing>, failed: usize, metrics: &Metrics) {
    let mut dropped = failed as u64;
    while queue.try_recv().is_ok() {
        dropped += 1;
    }
    metrics.pubsub_dropped.inc_by(dropped);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &str, position: bool) -> Outgoing {
        Outgoing { channel: channel.into(), payload: Bytes::from_static(b"r\n{}"), position }
    }

    #[test]
    fn positions_nobody_else_hears_are_held_back_until_someone_listens() {
        let metrics = Metrics::new();
        let mut alone = Alone::default();
        let t0 = Instant::now();
        assert!(!alone.holds_back(&message("a", true), t0), "unknown sessions are published");
        alone.learn("a", 1, t0, &metrics);
        let soon = t0 + Duration::from_millis(500);
        assert!(alone.holds_back(&message("a", true), soon));
        assert!(!alone.holds_back(&message("a", false), soon), "only positions are held back");
        alone.hold(message("a", true), &metrics);
        alone.hold(message("a", true), &metrics);
        assert_eq!(alone.heard("a").len(), 2, "a listener gets what was held, at once");
        assert!(!alone.holds_back(&message("a", true), soon), "and every position after");
        assert_eq!(metrics.pubsub_skipped.get(), 0);
    }

    #[test]
    fn one_position_a_second_asks_again_and_what_nobody_heard_is_dropped() {
        let metrics = Metrics::new();
        let mut alone = Alone::default();
        let t0 = Instant::now();
        alone.learn("a", 0, t0, &metrics);
        alone.hold(message("a", true), &metrics);
        assert!(!alone.holds_back(&message("a", true), t0 + ALONE_PROBE), "the probe goes out");
        alone.learn("a", 2, t0 + ALONE_PROBE, &metrics);
        assert_eq!(metrics.pubsub_skipped.get(), 1, "the held one is older than the probe: dropped");
        assert!(!alone.holds_back(&message("a", true), t0 + ALONE_PROBE));
        for _ in 0..HELD_PER_SESSION + 3 {
            alone.learn("b", 1, t0, &metrics);
            alone.hold(message("b", true), &metrics);
        }
        alone.learn("b", 1, t0, &metrics);
        for _ in 0..HELD_PER_SESSION + 3 {
            alone.hold(message("b", true), &metrics);
        }
        assert_eq!(alone.heard("b").len(), HELD_PER_SESSION, "held positions are bounded");
    }

    #[test]
    fn the_alone_map_forgets_old_sessions() {
        let metrics = Metrics::new();
        let mut alone = Alone::default();
        let t0 = Instant::now();
        for i in 0..ALONE_KEEP {
            alone.learn(&i.to_string(), 0, t0, &metrics);
        }
        alone.learn("new", 0, t0 + ALONE_PROBE, &metrics);
        assert_eq!(alone.0.len(), 1);
    }
}

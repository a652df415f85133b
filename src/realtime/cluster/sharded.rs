//! The bus on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`) on one RESP3 cluster connection,
//! whose pushes carry the messages and every change of a subscription.
//!
//! Each channel is subscribed on its own, so the cluster client routes it to the shard owning
//! its slot. Subscriptions follow the cluster without a restart:
//! - a slot moved to another shard: Redis says so with an unasked-for `SUNSUBSCRIBE`, and the
//!   channel is subscribed again at once; the reply `MOVED` makes the client learn the new owner;
//! - a primary failed: every serving primary gets a `PING` each second, off the receiving loop;
//!   while one does not answer the bus counts as down (`pubsub_connected` 0, `/health/ready` 503),
//!   and once all answer again (a replica took over) every channel is subscribed again;
//! - anything unconfirmed is retried each second; three failed rounds in a row rebuild the
//!   connection from the seeds and the nodes learned from `CLUSTER NODES` (the seeds may be the
//!   very nodes that died).
//!
//! `pubsub_resubscriptions_total{reason}` counts each resubscription by its cause.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{cluster_async::ClusterConnection, PushInfo, PushKind, Value};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{wait_offline, Backoff, Control, Inbox, Queue, Wanted};
use crate::metrics::Metrics;
use crate::redis_link::{ping_primaries, NodeAddress, RedisError, RedisLink, DEADLINE};
use crate::telemetry::Chain;

/// How often the primaries are pinged and unconfirmed channels retried.
const TICK: Duration = Duration::from_secs(1);
/// Failed rounds in a row (pings or resubscriptions) before the connection is rebuilt.
const ROUNDS_BEFORE_REBUILD: u32 = 3;
/// Subscription commands in flight at once when many channels are (re)subscribed.
const SUBSCRIBE_CONCURRENCY: usize = 64;

/// The connection and what the cluster confirmed on it.
struct Shards {
    conn: ClusterConnection,
    confirmed: HashSet<String>,
    queue: Queue,
    metrics: Arc<Metrics>,
}

impl Shards {
    /// Subscribes to `channels`, each routed to its shard; with `reason`, counted as
    /// resubscriptions. True when every one was confirmed.
    async fn subscribe(&mut self, channels: Vec<String>, reason: Option<&str>) -> bool {
        if channels.is_empty() {
            return true;
        }
        if let Some(reason) = reason {
            self.metrics.pubsub_resubscriptions.with_label_values(&[reason]).inc_by(channels.len() as u64);
        }
        let results: Vec<(String, bool)> = futures_util::stream::iter(channels)
            .map(|channel| {
                let mut conn = self.conn.clone();
                async move {
                    let done = tokio::time::timeout(DEADLINE, conn.ssubscribe(&channel)).await;
                    let ok = matches!(done, Ok(Ok(())));
                    (channel, ok)
                }
            })
            .buffer_unordered(SUBSCRIBE_CONCURRENCY)
            .collect()
            .await;
        let mut all = true;
        for (channel, ok) in results {
            all &= ok;
            if ok {
                // Others may have held positions back while this channel was not subscribed.
                self.queue.listening([&channel]);
                self.confirmed.insert(channel);
            }
        }
        all
    }

    /// Subscribes to every wanted channel again, counted as resubscriptions for `reason`.
    async fn resubscribe_all(&mut self, wanted: &Wanted, reason: Option<&str>) -> bool {
        let all: Vec<String> = wanted.channels().cloned().collect();
        self.subscribe(all, reason).await
    }

    async fn unsubscribe(&mut self, channel: &str) {
        self.confirmed.remove(channel);
        let _ = tokio::time::timeout(DEADLINE, self.conn.sunsubscribe(channel)).await;
    }

    /// Handles one push: a message, or a change of a subscription.
    async fn on_push(&mut self, push: PushInfo, wanted: &Wanted, inbox: &mut Inbox) {
        let channel = push.data.first().and_then(bytes_of);
        match (push.kind, channel) {
            (PushKind::SMessage, Some(channel)) => {
                if let (Ok(channel), Some(payload)) =
                    (std::str::from_utf8(channel), push.data.get(1).and_then(bytes_of))
                {
                    inbox.receive(channel, payload);
                }
            }
            (PushKind::SSubscribe, Some(channel)) => {
                self.confirmed.insert(String::from_utf8_lossy(channel).into_owned());
            }
            (PushKind::SUnsubscribe, Some(channel)) => {
                let channel = String::from_utf8_lossy(channel).into_owned();
                self.confirmed.remove(&channel);
                // Not asked for: the slot moved to another shard (or it was reset); follow it.
                if wanted.contains(&channel) {
                    log::info!(
                        "cluster bus: {channel} was unsubscribed by the cluster (slot moved); subscribing again"
                    );
                    self.subscribe(vec![channel], Some("slot_moved")).await;
                }
            }
            (PushKind::Disconnection, _) => {
                // Which node was lost is not said: every channel is checked again.
                self.confirmed.clear();
                self.resubscribe_all(wanted, Some("disconnected")).await;
            }
            _ => {}
        }
    }
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Keeps the sharded subscriptions and delivers what arrives.
pub(super) async fn run(
    link: RedisLink,
    mut inbox: Inbox,
    queue: Queue,
    mut wanted: Wanted,
    mut control: mpsc::UnboundedReceiver<Control>,
    metrics: Arc<Metrics>,
) {
    let mut known: Vec<NodeAddress> = Vec::new();
    let mut backoff = Backoff::new();
    let mut built_before = false;
    loop {
        let (push_tx, mut pushes) = mpsc::unbounded_channel();
        let conn = match link.dedicated_cluster(push_tx, &known).await {
            Ok(conn) => conn,
            Err(e) => {
                metrics.pubsub_connected.set(0);
                link.count(&e);
                log::warn!("cluster bus: cannot connect to the Redis Cluster: {}", Chain(&e));
                if !wait_offline(backoff.failed(), &mut control, &mut wanted, &mut inbox).await {
                    return;
                }
                continue;
            }
        };
        backoff.connected();
        let mut shards = Shards { conn, confirmed: HashSet::new(), queue: queue.clone(), metrics: metrics.clone() };
        let reason = built_before.then_some("rebuilt");
        if built_before {
            metrics.pubsub_reconnects.inc();
        }
        built_before = true;
        let mut healthy = shards.resubscribe_all(&wanted, reason).await;
        metrics.pubsub_connected.set(i64::from(healthy));

        let (ping_tx, mut ping_rx) = mpsc::channel(1);
        let mut pinging = false;
        let mut failed_rounds = 0;
        let mut shard_down = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => shards.on_push(push, &wanted, &mut inbox).await,
                    None => break,
                },
                ctl = control.recv() => match ctl {
                    None => return,
                    Some(Control::Attach(r)) => inbox.deliver = Some(r),
                    Some(Control::Subscribe(channel, done)) => {
                        let ok = if wanted.add(&channel) {
                            shards.subscribe(vec![channel], None).await
                        } else {
                            shards.confirmed.contains(&channel)
                        };
                        let _ = done.send(ok);
                    }
                    Some(Control::Unsubscribe(channel)) => {
                        if wanted.release(&channel) {
                            shards.unsubscribe(&channel).await;
                        }
                    }
                },
                pinged = ping_rx.recv() => {
                    pinging = false;
                    match pinged {
                        Some(Ok(nodes)) => {
                            known = nodes;
                            if shard_down {
                                shard_down = false;
                                log::info!("cluster bus: every shard answers again; resubscribing {} channel(s)", wanted.len());
                                healthy = shards.resubscribe_all(&wanted, Some("failover")).await;
                            }
                        }
                        Some(Err(e)) => {
                            if !shard_down {
                                log::warn!("cluster bus: {}", Chain(&e));
                            }
                            link.count(&e);
                            shard_down = true;
                        }
                        None => {}
                    }
                    failed_rounds = if shard_down || !healthy { failed_rounds + 1 } else { 0 };
                    metrics.pubsub_connected.set(i64::from(healthy && !shard_down));
                    if failed_rounds >= ROUNDS_BEFORE_REBUILD {
                        break;
                    }
                }
                _ = tick.tick() => {
                    if !pinging {
                        pinging = true;
                        let (conn, reply) = (shards.conn.clone(), ping_tx.clone());
                        actix_web::rt::spawn(async move {
                            let pinged = tokio::time::timeout(DEADLINE * 2, ping_primaries(conn)).await;
                            let _ = reply.send(pinged.unwrap_or(Err(RedisError::Timeout))).await;
                        });
                    }
                    let missing: Vec<String> =
                        wanted.channels().filter(|c| !shards.confirmed.contains(*c)).cloned().collect();
                    healthy = shards.subscribe(missing, Some("unconfirmed")).await;
                }
            }
        }
        metrics.pubsub_connected.set(0);
        log::warn!("cluster bus: rebuilding the Redis Cluster connection");
    }
}

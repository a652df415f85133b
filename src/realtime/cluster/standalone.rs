//! The bus on one Redis: one `SUBSCRIBE` connection, remade with its subscriptions after Redis
//! restarts.

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{wait_offline, Backoff, Control, Inbox, Queue, Wanted};
use crate::metrics::Metrics;
use crate::telemetry::Chain;

/// Keeps one pub/sub connection, its subscriptions, and delivers what arrives.
pub(super) async fn run(
    client: redis::Client,
    mut inbox: Inbox,
    queue: Queue,
    mut wanted: Wanted,
    mut control: mpsc::UnboundedReceiver<Control>,
    metrics: Arc<Metrics>,
) {
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
            if !wait_offline(backoff.failed(), &mut control, &mut wanted, &mut inbox).await {
                return;
            }
            continue;
        };
        let (mut sink, mut stream) = connection.split();
        let channels: Vec<&String> = wanted.channels().collect();
        let resubscribed = if channels.is_empty() { Ok(()) } else { sink.subscribe(channels).await };
        if let Err(e) = resubscribed {
            log::warn!("cluster bus: resubscribing failed: {}", Chain(&e));
            tokio::time::sleep(backoff.failed()).await;
            continue;
        }
        if connected_before {
            metrics.pubsub_reconnects.inc();
            metrics.pubsub_resubscriptions.with_label_values(&["reconnected"]).inc_by(wanted.len() as u64);
            log::info!("cluster bus: reconnected, {} channel(s) resubscribed", wanted.len());
        }
        // Others may have held positions back while these channels were not subscribed.
        queue.listening(wanted.channels());
        connected_before = true;
        backoff.connected();
        metrics.pubsub_connected.set(1);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    inbox.receive(msg.get_channel_name(), msg.get_payload_bytes());
                }
                ctl = control.recv() => match ctl {
                    None => return,
                    Some(Control::Attach(r)) => inbox.deliver = Some(r),
                    Some(Control::Subscribe(channel, done)) => {
                        let ok = !wanted.add(&channel) || sink.subscribe(&channel).await.is_ok();
                        let _ = done.send(ok);
                    }
                    Some(Control::Unsubscribe(channel)) => {
                        if wanted.release(&channel) {
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

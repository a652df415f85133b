//! A socket's bounded outgoing queue, shared by the session actor (which fills it) and the
//! socket actor (which drains it into the WebSocket).
//!
//! The socket actor only runs while its connection is written to, so a client that stops reading
//! stalls its actor; this queue is what keeps such a client from growing the server's memory: over
//! capacity the oldest `location_update` frames go first, and nothing else is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytestring::ByteString;
use prometheus::IntCounter;

/// One thing to write to a socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A text frame; `droppable` marks `location_update` pushes, which a newer one supersedes.
    Frame {
        /// The encoded frame, shared with every other recipient.
        text: ByteString,
        /// May be dropped when the queue is full.
        droppable: bool,
    },
    /// The channel of this join is gone (closed or crashed): the socket forgets it.
    ChannelGone(serde_json::Value),
    /// Close the socket with this code and reason, after what is queued before it.
    Close(u16, &'static str),
}

/// What a push asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The queue was idle: wake the socket actor.
    Wake,
    /// A wake-up is already on its way.
    Queued,
    /// The socket is gone; the item was discarded.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Outgoing>,
    wake_pending: bool,
    closed: bool,
}

/// The bounded queue.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    capacity: usize,
    dropped: AtomicU64,
    dropped_total: IntCounter,
}

impl Outbox {
    /// A queue holding at most `capacity` droppable frames' worth of items.
    /// `dropped_total` counts drops process-wide (the metric).
    pub fn new(capacity: usize, dropped_total: IntCounter) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            dropped_total,
        }
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.inc();
    }

    /// Queues an item, making room by dropping the oldest droppable frame when full.
    pub fn push(&self, item: Outgoing) -> Pushed {
        let Ok(mut inner) = self.inner.lock() else {
            return Pushed::Closed;
        };
        if inner.closed {
            return Pushed::Closed;
        }
        if inner.queue.len() >= self.capacity {
            let oldest = inner.queue.iter().position(|o| matches!(o, Outgoing::Frame { droppable: true, .. }));
            match (oldest, &item) {
                (Some(i), _) => {
                    inner.queue.remove(i);
                    self.count_drop();
                }
                // Nothing older may go and this one may: drop it instead.
                (None, Outgoing::Frame { droppable: true, .. }) => {
                    self.count_drop();
                    return Pushed::Queued;
                }
                (None, _) => {}
            }
        }
        inner.queue.push_back(item);
        if inner.wake_pending {
            Pushed::Queued
        } else {
            inner.wake_pending = true;
            Pushed::Wake
        }
    }

    /// Takes everything queued; the next push wakes the socket again.
    pub fn drain(&self) -> VecDeque<Outgoing> {
        match self.inner.lock() {
            Ok(mut inner) => {
                inner.wake_pending = false;
                std::mem::take(&mut inner.queue)
            }
            Err(_) => VecDeque::new(),
        }
    }

    /// Refuses further pushes (the socket stopped).
    pub fn close(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.closed = true;
            inner.queue.clear();
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "dropped").unwrap_or_else(|e| panic!("{e}"))
    }

    fn frame(s: &str, droppable: bool) -> Outgoing {
        Outgoing::Frame { text: ByteString::from(s.to_owned()), droppable }
    }

    #[test]
    fn wakes_once_until_drained() {
        let o = Outbox::new(10, counter());
        assert_eq!(o.push(frame("a", true)), Pushed::Wake);
        assert_eq!(o.push(frame("b", true)), Pushed::Queued);
        assert_eq!(o.drain().len(), 2);
        assert_eq!(o.push(frame("c", true)), Pushed::Wake);
    }

    #[test]
    fn drops_oldest_location_first_and_keeps_control_frames() {
        let o = Outbox::new(3, counter());
        o.push(frame("reply", false));
        o.push(frame("loc1", true));
        o.push(frame("loc2", true));
        o.push(frame("loc3", true));
        o.push(Outgoing::Close(1000, "bye"));
        let items: Vec<_> = o.drain().into_iter().collect();
        assert_eq!(items, vec![frame("reply", false), frame("loc3", true), Outgoing::Close(1000, "bye")]);
        assert_eq!(o.dropped(), 2);
    }

    #[test]
    fn bounded_under_flood() {
        let o = Outbox::new(100, counter());
        for i in 0..10_000 {
            o.push(frame(&i.to_string(), true));
        }
        let items = o.drain();
        assert_eq!(items.len(), 100);
        assert_eq!(items.back(), Some(&frame("9999", true)));
    }

    #[test]
    fn closed_refuses() {
        let o = Outbox::new(2, counter());
        o.close();
        assert_eq!(o.push(frame("x", false)), Pushed::Closed);
    }
}

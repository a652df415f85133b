//! A socket's bounded outgoing queue, shared by the session actor (which fills it) and the
//! socket actor (which drains it into the WebSocket).
//!
//! The socket actor only runs while its connection is written to, so a client that stops reading
//! stalls its actor; this queue is what keeps such a client from growing the server's memory: over
//! capacity the oldest `location_update` frames go first, and nothing else is dropped.
//!
//! The socket actor reads the queue as a stream ([`Outbox::stream`]), and a push wakes its task
//! directly: a fan-out to 49 sockets is 49 pushes and no actor messages (a message per delivery
//! cost two allocations and a mailbox round on the hot path). An emptied queue frees its buffer:
//! kept, those buffers cost an idle socket 1.6 KiB of RSS (19,000 sockets: 11.0 against 9.3 KiB
//! each), far more than the allocation they save.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytestring::ByteString;
use futures_util::task::AtomicWaker;
use prometheus::IntCounter;

/// One thing to write to a socket; `Debug` shows a frame's length, not its text (it may carry a
/// position).
#[derive(Clone, PartialEq)]
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

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame { text, droppable } => {
                f.debug_struct("Frame").field("bytes", &text.len()).field("droppable", droppable).finish()
            }
            Self::ChannelGone(join_ref) => f.debug_tuple("ChannelGone").field(join_ref).finish(),
            Self::Close(code, reason) => f.debug_tuple("Close").field(code).field(reason).finish(),
        }
    }
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued, and the idle reader was woken.
    Woke,
    /// Queued; a wake-up was already on its way.
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
    reader: AtomicWaker,
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
            reader: AtomicWaker::new(),
            dropped: AtomicU64::new(0),
            dropped_total,
        }
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.inc();
    }

    /// Queues an item, making room by dropping the oldest droppable frame when full, and wakes
    /// the reader if it was idle.
    pub fn push(&self, item: Outgoing) -> Pushed {
        let pushed = self.enqueue(item);
        if pushed == Pushed::Woke {
            self.reader.wake();
        }
        pushed
    }

    fn enqueue(&self, item: Outgoing) -> Pushed {
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
            Pushed::Woke
        }
    }

    /// The next item, or `None` when the queue is empty (the next push wakes the reader again).
    pub fn pop(&self) -> Option<Outgoing> {
        let mut inner = self.inner.lock().ok()?;
        let item = inner.queue.pop_front();
        if item.is_none() {
            inner.wake_pending = false;
            if inner.queue.capacity() > 0 {
                inner.queue = VecDeque::new();
            }
        }
        item
    }

    /// The queue as the socket actor reads it: items in order, pending while empty; it never
    /// ends (a closed queue stays empty).
    pub fn stream(self: &Arc<Self>) -> OutboxStream {
        OutboxStream(self.clone())
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

/// The reading end of an [`Outbox`].
pub struct OutboxStream(Arc<Outbox>);

impl futures_util::Stream for OutboxStream {
    type Item = Outgoing;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        // Registered before looking, so a push between the look and the return still wakes us.
        self.0.reader.register(cx.waker());
        match self.0.pop() {
            Some(item) => Poll::Ready(Some(item)),
            None => Poll::Pending,
        }
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

    fn drain(o: &Outbox) -> Vec<Outgoing> {
        std::iter::from_fn(|| o.pop()).collect()
    }

    #[test]
    fn wakes_once_until_drained() {
        let o = Outbox::new(10, counter());
        assert_eq!(o.push(frame("a", true)), Pushed::Woke);
        assert_eq!(o.push(frame("b", true)), Pushed::Queued);
        assert_eq!(drain(&o).len(), 2);
        assert_eq!(o.push(frame("c", true)), Pushed::Woke);
    }

    #[test]
    fn stream_is_woken_by_a_push_and_never_ends() {
        use futures_util::StreamExt;
        let o = Arc::new(Outbox::new(10, counter()));
        let mut stream = o.stream();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Pending);
        assert_eq!(o.push(frame("a", true)), Pushed::Woke);
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Ready(Some(frame("a", true))));
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Pending);
        o.close();
        assert_eq!(o.push(frame("b", true)), Pushed::Closed);
        assert_eq!(stream.poll_next_unpin(&mut cx), Poll::Pending);
    }

    #[test]
    fn an_emptied_queue_holds_no_memory() {
        let o = Outbox::new(1000, counter());
        for i in 0..500 {
            o.push(frame(&i.to_string(), true));
        }
        assert_eq!(drain(&o).len(), 500);
        let capacity = o.inner.lock().map(|i| i.queue.capacity()).unwrap_or(usize::MAX);
        assert_eq!(capacity, 0);
    }

    #[test]
    fn drops_oldest_location_first_and_keeps_control_frames() {
        let o = Outbox::new(3, counter());
        o.push(frame("reply", false));
        o.push(frame("loc1", true));
        o.push(frame("loc2", true));
        o.push(frame("loc3", true));
        o.push(Outgoing::Close(1000, "bye"));
        let items = drain(&o);
        assert_eq!(items, vec![frame("reply", false), frame("loc3", true), Outgoing::Close(1000, "bye")]);
        assert_eq!(o.dropped(), 2);
    }

    #[test]
    fn bounded_under_flood() {
        let o = Outbox::new(100, counter());
        for i in 0..10_000 {
            o.push(frame(&i.to_string(), true));
        }
        let items = drain(&o);
        assert_eq!(items.len(), 100);
        assert_eq!(items.last(), Some(&frame("9999", true)));
    }

    #[test]
    fn closed_refuses() {
        let o = Outbox::new(2, counter());
        o.close();
        assert_eq!(o.push(frame("x", false)), Pushed::Closed);
    }
}

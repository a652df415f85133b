//! Connection-level defence against slow clients: every request head must arrive within
//! [`HEAD_DEADLINE`] of its first byte.
//!
//! actix-http bounds only the first request's head (`client_request_timeout`) and idle
//! keep-alive (`keep_alive`): on a kept-alive connection, the head of the second request may
//! trickle in a byte at a time forever, each byte clearing the keep-alive timer (a slowloris).
//! [`HeadDeadline`] watches the bytes read for the blank line that ends a head and fails the
//! read, so that the dispatcher drops the connection, when a head takes longer. It knows nothing
//! else of HTTP: after the head, the request is the app's (the body has its own timeout), and the
//! first byte after an answer starts the next head. A WebSocket takes the bare stream back
//! ([`HeadDeadline::into_inner`]) once upgraded.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The longest a request head may take from its first byte to its blank line.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// A stream whose reads fail once a request head has taken longer than [`HEAD_DEADLINE`].
pub struct HeadDeadline<T> {
    io: T,
    /// Armed from the first byte of a head until its blank line.
    timer: Option<Pin<Box<Sleep>>>,
    /// The last bytes of the head so far, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
    /// True between the blank line and the answer: the bytes read are a body, not a head.
    in_request: bool,
    deadline: Duration,
}

impl<T> HeadDeadline<T> {
    /// Watches `io` with the standard [`HEAD_DEADLINE`].
    pub fn new(io: T) -> Self {
        Self::with_deadline(io, HEAD_DEADLINE)
    }

    /// Watches `io` with another deadline (tests use a short one).
    pub fn with_deadline(io: T, deadline: Duration) -> Self {
        Self { io, timer: None, tail: [0; 3], in_request: false, deadline }
    }

    /// The bare stream, for a connection that stops speaking HTTP (an upgraded WebSocket).
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Follows the bytes just read: a head starts the timer, its blank line stops it.
    fn observe(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.in_request {
            return;
        }
        if self.timer.is_none() {
            self.timer = Some(Box::pin(tokio::time::sleep_until(Instant::now() + self.deadline)));
            self.tail = [0; 3];
        }
        // The last four bytes seen, oldest first; each new byte shifts in at the end.
        let mut window = [0u8; 4];
        window[1..].copy_from_slice(&self.tail);
        for &b in bytes {
            window.copy_within(1.., 0);
            window[3] = b;
            if &window == b"\r\n\r\n" {
                self.timer = None;
                self.in_request = true;
                return;
            }
        }
        self.tail.copy_from_slice(&window[1..]);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head too slow")))
                }
                _ => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        // An answer going out ends the request: the next byte read starts a new head.
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.in_request = false;
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.in_request = false;
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Short real deadlines: the tests wait a little rather than pause a clock.
    const SHORT: Duration = Duration::from_millis(150);

    fn pair() -> (HeadDeadline<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(1024);
        (HeadDeadline::with_deadline(server, SHORT), client)
    }

    #[actix_rt::test]
    async fn a_head_that_ends_in_time_is_read_and_the_timer_stops() {
        let (mut server, mut client) = pair();
        let mut buf = [0u8; 64];
        let _ = client.write_all(b"GET / HTTP/1.1\r\nHost: x\r").await;
        assert!(server.read(&mut buf).await.is_ok());
        let _ = client.write_all(b"\n\r\n").await;
        assert!(server.read(&mut buf).await.is_ok());
        assert!(server.timer.is_none() && server.in_request);
        // The app takes its time; no head is pending, so nothing fails.
        let waited = tokio::time::timeout(SHORT * 3, server.read(&mut buf)).await;
        assert!(waited.is_err(), "the read waits instead of failing: {waited:?}");
        let _ = server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        assert!(!server.in_request);
    }

    #[actix_rt::test]
    async fn a_trickling_head_fails_the_read_at_the_deadline() {
        let (mut server, mut client) = pair();
        let mut buf = [0u8; 64];
        let _ = client.write_all(b"GET / HTTP/1.1\r\n").await;
        assert!(server.read(&mut buf).await.is_ok());
        let failed = tokio::time::timeout(SHORT * 10, server.read(&mut buf)).await;
        assert_eq!(failed.ok().and_then(|r| r.err()).map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
    }

    #[actix_rt::test]
    async fn each_head_of_a_kept_alive_connection_has_its_own_deadline() {
        let (mut server, mut client) = pair();
        let mut buf = [0u8; 64];
        let _ = client.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(server.read(&mut buf).await.is_ok());
        let _ = server.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        // Idle between requests: no timer (keep-alive is actix's).
        assert!(server.timer.is_none());
        let _ = client.write_all(b"G").await;
        assert!(server.read(&mut buf).await.is_ok());
        let failed = tokio::time::timeout(SHORT * 10, server.read(&mut buf)).await;
        assert_eq!(failed.ok().and_then(|r| r.err()).map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
    }

    #[actix_rt::test]
    async fn the_blank_line_is_found_across_reads() {
        let mut d = HeadDeadline::with_deadline((), SHORT);
        for part in [&b"GET / HTTP/1.1\r"[..], b"\n", b"\r", b"\n"] {
            d.observe(part);
        }
        assert!(d.in_request && d.timer.is_none());
    }
}

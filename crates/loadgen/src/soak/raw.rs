//! What the abusers send over plain TCP, written by hand rather than through hyper: floods of
//! one request per connection (as a script would; the server answers 429 before reading a
//! body, so a kept-alive connection would not survive it anyway), and half-open connections
//! that never finish their request head.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::connect_tcp;
use crate::sys;

/// The head of an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After` in seconds, when present and readable.
    pub retry_after: Option<u64>,
}

/// Reads the status line and `Retry-After` of an answer's head (`None`: not an HTTP answer).
pub fn parse_head(head: &str) -> Option<Answer> {
    let mut lines = head.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    let retry_after = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Some(Answer { status, retry_after })
}

/// One request on a new connection from `source`; the answer's head. The connection is dropped
/// right after, whatever the server meant to send next.
pub async fn exchange(target: SocketAddr, source: IpAddr, request: &[u8], limit: Duration) -> io::Result<Answer> {
    let attempt = async {
        let mut stream = connect_tcp(target, Some(source)).await?;
        stream.write_all(request).await?;
        let mut got = Vec::with_capacity(512);
        let mut buf = [0u8; 2048];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 16_384 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        parse_head(&String::from_utf8_lossy(&got))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP answer"))
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
}

/// What one flood saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flood {
    /// Requests sent.
    pub attempts: u64,
    /// Answered 429.
    pub refused: u64,
    /// Of those, without a readable `Retry-After`.
    pub without_retry_after: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered something else.
    pub other: u64,
    /// No answer (connect failed, reset, timeout).
    pub io: u64,
}

/// Sends `request` on new connections from `source`, `concurrency` at a time, until `max`
/// were sent, `enough` were refused, or `limit` is over.
pub async fn flood(
    target: SocketAddr,
    source: IpAddr,
    request: Rc<Vec<u8>>,
    max: u64,
    enough: u64,
    limit: Duration,
) -> Flood {
    const CONCURRENCY: usize = 8;
    let seen = Rc::new(RefCell::new(Flood::default()));
    let deadline = Instant::now() + limit;
    let mut workers = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (seen, request) = (seen.clone(), request.clone());
        workers.push(tokio::task::spawn_local(async move {
            loop {
                {
                    let mut s = seen.borrow_mut();
                    if s.attempts >= max || s.refused >= enough || Instant::now() >= deadline || sys::stopped() {
                        return;
                    }
                    s.attempts += 1;
                }
                let answer = exchange(target, source, &request, Duration::from_secs(10)).await;
                let mut s = seen.borrow_mut();
                match answer {
                    Ok(a) if a.status == 429 => {
                        s.refused += 1;
                        if a.retry_after.is_none() {
                            s.without_retry_after += 1;
                        }
                    }
                    Ok(a) if (200..300).contains(&a.status) => s.ok += 1,
                    Ok(_) => s.other += 1,
                    Err(_) => s.io += 1,
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let out = *seen.borrow();
    out
}

/// How a half-open connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HalfOpen {
    /// The server closed it after this long, with `408` or silently.
    Closed {
        /// From connect to close.
        after: Duration,
        /// Whether a `408` came first.
        answered_408: bool,
    },
    /// Still open at the limit: the server would keep it forever.
    StillOpen,
    /// The connection was not even made.
    NotConnected(String),
}

/// The start of a request head that never ends.
pub const PARTIAL_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: soak\r\nX-Slow: aaaa";

/// Connects from `source`, sends `PARTIAL_HEAD` (or nothing), then only waits for the server to
/// close, at most `limit`.
pub async fn half_open(target: SocketAddr, source: IpAddr, partial: bool, limit: Duration) -> HalfOpen {
    let started = Instant::now();
    let mut stream = match connect_tcp(target, Some(source)).await {
        Ok(s) => s,
        Err(e) => return HalfOpen::NotConnected(e.to_string()),
    };
    if partial && stream.write_all(PARTIAL_HEAD).await.is_err() {
        return HalfOpen::Closed { after: started.elapsed(), answered_408: false };
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                let answered_408 = got.starts_with(b"HTTP/1.1 408");
                return HalfOpen::Closed { after: started.elapsed(), answered_408 };
            }
            Ok(Ok(n)) if got.len() < 4096 => got.extend_from_slice(&buf[..n]),
            Ok(Ok(_)) => {}
            Err(_) => return HalfOpen::StillOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_answers_head() {
        let head = "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nRetry-After: 7\r\n\r\n{}";
        assert_eq!(parse_head(head), Some(Answer { status: 429, retry_after: Some(7) }));
        let head = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\nretry-after: 3";
        assert_eq!(parse_head(head), Some(Answer { status: 403, retry_after: None }));
        assert_eq!(parse_head("HTTP/1.0 201 Created\r\n\r\n").map(|a| a.status), Some(201));
        assert_eq!(parse_head("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_head(""), None);
    }

    #[test]
    fn floods_count_and_half_open_waits_for_the_close() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        tokio::task::LocalSet::new().block_on(&rt, async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            // Answers its first 3 connections 201, then 429 (every other one without Retry-After);
            // a connection that sends nothing is closed after 100 ms.
            tokio::task::spawn_local(async move {
                for i in 0u32.. {
                    let Ok((mut s, _)) = listener.accept().await else { return };
                    tokio::task::spawn_local(async move {
                        let mut buf = [0u8; 1024];
                        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return,
                        }
                        let answer = match i {
                            0..=2 => "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
                            _ if i % 2 == 0 => "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\n\r\n",
                            _ => "HTTP/1.1 429 Too Many Requests\r\n\r\n",
                        };
                        let _ = s.write_all(answer.as_bytes()).await;
                    });
                }
            });
            let source: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
            let req = Rc::new(b"POST / HTTP/1.1\r\n\r\n".to_vec());
            let f = flood(addr, source, req, 100, 4, Duration::from_secs(10)).await;
            assert!(f.refused >= 4 && f.ok == 3 && f.io == 0, "{f:?}");
            assert!(f.without_retry_after >= 1 && f.without_retry_after < f.refused, "{f:?}");
            assert_eq!(f.attempts, f.refused + f.ok + f.other + f.io);
            match half_open(addr, source, false, Duration::from_secs(5)).await {
                HalfOpen::Closed { after, answered_408: false } => assert!(after < Duration::from_secs(2)),
                other => panic!("{other:?}"),
            }
        });
    }
}

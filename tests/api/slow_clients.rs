//! Slow and half-open clients are closed within seconds, whatever they hold back: nothing sent,
//! a request head (first or kept-alive) trickled in, a WebSocket handshake never finished, or a
//! body never finished.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, TestApp};

/// Within this of the server's deadline (5 s for heads, 10 s for bodies) the connection is gone.
const SLACK: Duration = Duration::from_secs(3);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://")).await.expect("connect")
}

/// Sends `bytes` one every 250 ms until the server closes the connection; returns how long
/// that took and what it answered, or panics past `limit`.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in bytes.iter().cycle() {
        assert!(started.elapsed() < limit, "still open after {:?}", started.elapsed());
        if stream.write_all(&[*b]).await.is_err() {
            return (started.elapsed(), String::from_utf8_lossy(&answer).into_owned());
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    unreachable!("cycle never ends")
}

/// Reads until the server closes; returns how long that took and what it sent.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), String::from_utf8_lossy(&answer).into_owned()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {limit:?}; got {:?}", String::from_utf8_lossy(&answer)),
        }
    }
}

#[actix_rt::test]
async fn a_connection_that_sends_nothing_is_closed_within_seconds() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let (took, answer) = until_closed(&mut stream, Duration::from_secs(5) + SLACK).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took >= Duration::from_secs(4), "closed after {took:?}: too eager for a slow network");
}

#[actix_rt::test]
async fn a_first_request_head_trickled_in_is_closed_within_seconds() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let (_, answer) =
        trickle(&mut stream, b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaa", Duration::from_secs(5) + SLACK).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[actix_rt::test]
async fn a_kept_alive_connections_next_head_trickled_in_is_closed_within_seconds() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("send");
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.expect("an answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "the first request is served");
    // Each byte would reset an idle timer; the head as a whole has its deadline.
    let (took, _) =
        trickle(&mut stream, b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaa", Duration::from_secs(5) + SLACK).await;
    assert!(took >= Duration::from_secs(4), "closed after {took:?}");
}

#[actix_rt::test]
async fn a_websocket_handshake_that_never_completes_is_closed_within_seconds() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let partial =
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    stream.write_all(partial.as_bytes()).await.expect("send");
    let (_, answer) = until_closed(&mut stream, Duration::from_secs(5) + SLACK).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "no upgrade: {answer:?}");
}

#[actix_rt::test]
async fn a_body_that_never_completes_is_answered_408_and_closed() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let head = "POST /api/sessions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"na";
    stream.write_all(head.as_bytes()).await.expect("send");
    let (took, answer) = until_closed(&mut stream, Duration::from_secs(10) + SLACK).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request body took too long"), "{answer:?}");
    assert!(took >= Duration::from_secs(9), "answered after {took:?}");
    // The server is none the worse.
    app.get("/health").await.assert_status(200, "health after a slow body");
}

//! The WebSocket transport at the byte level: an accepted socket is served straight off its TCP
//! connection (frames sent with the handshake included), a refused upgrade gets its full HTTP
//! answer before the connection closes, a client that stops reading is dropped after
//! `SOCKET_TIMEOUT_SECONDS`, and a server-side close waits for the client's Close frame.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{spawn_app, spawn_app_with};
use crate::ws_client::{loc, topic, WsClient};

const WAIT: Duration = Duration::from_secs(5);

fn handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client text frame (RFC 6455 §5.2).
fn text_frame(text: &str) -> Vec<u8> {
    client_frame(0x81, text.as_bytes())
}

/// A masked client frame with this first byte (FIN + opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let len = payload.len();
    let mut frame = vec![first];
    match len {
        0..=125 => frame.push(0x80 | len as u8),
        126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads until `buf` holds a whole HTTP head; returns the head and what followed it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end + 4].to_vec()).expect("an ASCII head");
            return (head, buf[end + 4..].to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("a head in time").expect("read");
        assert!(n > 0, "connection closed before a full head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Upgrades `stream` to a V2 socket for `token`, sending `frames` with the handshake; returns what
/// followed the `101` head.
async fn upgrade(stream: &mut TcpStream, token: &str, frames: &[Value]) -> Vec<u8> {
    let mut bytes = handshake(&format!("/socket/websocket?vsn=2.0.0&token={token}")).into_bytes();
    for frame in frames {
        bytes.extend(text_frame(&frame.to_string()));
    }
    stream.write_all(&bytes).await.expect("write");
    let (head, rest) = read_head(stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    rest
}

/// Reads one unmasked server frame, given what was already read: its first byte and payload.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> (u8, Vec<u8>) {
    loop {
        if buf.len() >= 2 {
            let (len, start) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => (usize::MAX, 0),
                127 => panic!("no frame here is that large"),
                n => (n as usize, 2),
            };
            if len != usize::MAX && buf.len() >= start + len {
                let frame = (buf[0], buf[start..start + len].to_vec());
                buf.drain(..start + len);
                return frame;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("a frame in time").expect("read");
        assert!(n > 0, "connection closed before a whole frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one unmasked server text frame, given what was already read.
async fn read_text(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> String {
    let (first, payload) = read_frame(stream, buf).await;
    assert_eq!(first, 0x81, "a final text frame");
    String::from_utf8(payload).expect("UTF-8 text")
}

#[actix_rt::test]
async fn a_join_sent_with_the_handshake_is_answered() {
    let app = spawn_app().await;
    let (session, people) = app.session_with(&["Ana"]).await;
    let topic = format!("location:{}", session.id);
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.expect("connect");
    let mut bytes = handshake(&format!("/socket/websocket?vsn=2.0.0&token={}", people[0].token)).into_bytes();
    bytes.extend(text_frame(&json!(["1", "1", topic, "phx_join", {}]).to_string()));
    bytes.extend(text_frame(&json!([null, "2", "phoenix", "heartbeat", {}]).to_string()));
    stream.write_all(&bytes).await.expect("write");

    let (head, mut rest) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("connection: upgrade\r\n"), "{head}");
    // RFC 6455 §1.3's worked example of the accept key.
    assert!(lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
    assert!(!lower.contains("content-length"), "{head}");

    let mut replies = Vec::new();
    while replies.len() < 2 {
        let frame: Value = serde_json::from_str(&read_text(&mut stream, &mut rest).await).expect("JSON");
        if frame[3] == "phx_reply" {
            replies.push(frame);
        }
    }
    assert_eq!(replies[0][1], "1", "{replies:?}");
    assert_eq!(replies[0][4]["status"], "ok", "{replies:?}");
    assert_eq!(replies[1][1], "2", "{replies:?}");
    assert_eq!(replies[1][4]["status"], "ok", "{replies:?}");
}

/// Reads a refused upgrade's whole answer and checks that the server then closed.
async fn refused(app_address: &str, path: &str) -> (String, Value) {
    let mut stream = TcpStream::connect(app_address.trim_start_matches("http://")).await.expect("connect");
    stream.write_all(handshake(path).as_bytes()).await.expect("write");
    let (head, mut body) = read_head(&mut stream).await;
    let lower = head.to_ascii_lowercase();
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("a content-length in {head}"));
    assert!(lower.contains("connection: close\r\n"), "{head}");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await.expect("closed in time").expect("read");
    body.extend(rest);
    assert_eq!(body.len(), length, "the body, then the end of the connection: {head}");
    (head, serde_json::from_slice(&body).expect("a JSON body"))
}

#[actix_rt::test]
async fn a_refused_upgrade_gets_its_whole_answer_then_the_connection_closes() {
    let app = spawn_app().await;
    let (head, body) = refused(&app.address, "/socket/websocket?vsn=2.0.0&token=nope").await;
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-request-id: "), "middleware ran: {head}");
    assert!(body["errors"]["detail"].is_string(), "{body}");

    let (head, _) = refused(&app.address, "/socket/elsewhere").await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
}

/// A client that keeps writing (heartbeats) but never reads must not hold its socket actor, or the
/// server's memory, forever: once the connection has accepted nothing for `SOCKET_TIMEOUT_SECONDS`
/// the server drops it, and the session sees the participant leave.
#[actix_rt::test]
async fn a_client_that_stops_reading_is_dropped_after_the_socket_timeout() {
    let app = spawn_app_with(|v| {
        v.insert("SOCKET_TIMEOUT_SECONDS".into(), "2".into());
        v.insert("MAX_UPDATES_PER_SECOND".into(), "100000".into());
        v.insert("MAX_SOCKET_QUEUE".into(), "50".into());
    })
    .await;
    let (session, people) = app.session_with(&["Ana", "Bo"]).await;
    let t = topic(&session.id);

    // Ana: a small receive buffer, a join, then heartbeats only; she reads nothing after her reply.
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let addr = app.address.trim_start_matches("http://").parse().expect("an address");
    let mut ana = socket.connect(addr).await.expect("connect");
    let join = json!(["1", "1", t, "phx_join", {}]);
    let mut rest = upgrade(&mut ana, &people[0].token, std::slice::from_ref(&join)).await;
    let reply: Value = serde_json::from_str(&read_text(&mut ana, &mut rest).await).expect("JSON");
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // Bo: reads everything in a task of its own (so his side never stalls) and reports Ana's leave.
    let mut bo = TcpStream::connect(addr).await.expect("connect");
    let mut rest = upgrade(&mut bo, &people[1].token, &[join]).await;
    let (mut bo_in, mut bo_out) = bo.into_split();
    let (left_tx, mut left_rx) = tokio::sync::oneshot::channel();
    let ana_id = people[0].user_id.clone();
    actix_rt::spawn(async move {
        loop {
            let text = read_text(&mut bo_in, &mut rest).await;
            if text.contains("presence_diff") {
                let diff: Value = serde_json::from_str(&text).expect("JSON");
                if diff[4]["leaves"].get(&ana_id).is_some() {
                    let _ = left_tx.send(diff);
                    return;
                }
            }
        }
    });

    // Bo floods locations until Ana's connection is full (the server's send buffer may grow to
    // 4 MiB: ~20,000 frames) and the server gives up on it.
    let started = Instant::now();
    let mut n = 1;
    let diff = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "Ana was never dropped");
        let mut batch = Vec::new();
        for _ in 0..500 {
            n += 1;
            let push =
                json!(["1", n.to_string(), t, "location_update", loc(10.0 + f64::from(n % 1000) / 1000.0, 20.0)]);
            batch.extend(text_frame(&push.to_string()));
        }
        bo_out.write_all(&batch).await.expect("Bo writes");
        // Ana's own writes still go out (the server's receive buffer takes them): she is not silent.
        let beat = text_frame(&json!([null, n.to_string(), "phoenix", "heartbeat", {}]).to_string());
        let _ = tokio::time::timeout(Duration::from_millis(20), ana.write_all(&beat)).await;
        if let Ok(diff) = tokio::time::timeout(Duration::from_millis(50), &mut left_rx).await {
            break diff.expect("Bo's reader reports");
        }
    };
    assert!(diff[4]["leaves"].get(&people[0].user_id).is_some(), "{diff}");
    // The session goes on for Bo.
    let mut bo = WsClient::joined(&app, &people[1].token, &session.id).await;
    bo.location(&t, loc(1.0, 1.0)).await.assert_ok("the session goes on");
}

/// When the server ends a socket, it sends its Close frame and then waits for the client's: the
/// client's answering Close frame must not be met with a reset, so it reads a clean end.
#[actix_rt::test]
async fn a_server_close_waits_for_the_client_close_frame() {
    let app = spawn_app_with(|v| {
        v.insert("SOCKET_TIMEOUT_SECONDS".into(), "1".into());
    })
    .await;
    let (_, people) = app.session_with(&["Ana"]).await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.expect("connect");
    let mut rest = upgrade(&mut stream, &people[0].token, &[]).await;

    // Silent for a second: the server closes with 1000 "timeout".
    let (first, payload) = read_frame(&mut stream, &mut rest).await;
    assert_eq!(first, 0x88, "a Close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1000);
    assert_eq!(&payload[2..], b"timeout");

    // The client answers as RFC 6455 §5.5.1 asks, a little later, then reads the end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&client_frame(0x88, &payload[..2])).await.expect("the client's Close frame is taken");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tail = Vec::new();
    let end = tokio::time::timeout(WAIT, stream.read_to_end(&mut tail)).await.expect("the end in time");
    assert!(end.is_ok(), "a clean end: {end:?}");
    assert!(tail.is_empty(), "nothing after the Close frame: {tail:?}");
    // A server that had already let go would have answered the Close frame with a reset.
    assert!(stream.take_error().expect("SO_ERROR").is_none(), "the Close frame was met with a reset");
}

//! The WebSocket transport at the byte level: an accepted socket is served straight off its TCP
//! connection (frames sent with the handshake included), and a refused upgrade gets its full
//! HTTP answer before the connection closes.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app;

const WAIT: Duration = Duration::from_secs(5);

fn handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client text frame (RFC 6455 §5.2).
fn text_frame(text: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let len = text.len();
    let mut frame = vec![0x81];
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
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
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

/// Reads one unmasked server text frame, given what was already read.
async fn read_text(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    loop {
        if buf.len() >= 2 {
            assert_eq!(buf[0], 0x81, "a final text frame");
            let (len, start) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => (usize::MAX, 0),
                127 => panic!("no frame here is that large"),
                n => (n as usize, 2),
            };
            if len != usize::MAX && buf.len() >= start + len {
                let text = String::from_utf8(buf[start..start + len].to_vec()).expect("UTF-8 text");
                buf.drain(..start + len);
                return text;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("a frame in time").expect("read");
        assert!(n > 0, "connection closed before a whole frame");
        buf.extend_from_slice(&chunk[..n]);
    }
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

//! The drain of SPEC §4 tried as clients would: a request half sent when SIGTERM arrives gets
//! its whole answer, the process exits as soon as nothing is left, and a request that never
//! finishes is cut at `SHUTDOWN_GRACE_SECONDS`, not later.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::process::ServerProcess;

const BODY: &str = r#"{"name": "a body sent in two halves, one second apart"}"#;

fn post_head(stream: &mut TcpStream, body_len: usize) {
    let head = format!(
        "POST /api/sessions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send the head");
}

/// Reads one whole HTTP response (head and `Content-Length` body); `Err` with what was read.
fn read_response(stream: &mut TcpStream) -> Result<(u16, String, String), String> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Ok((status, head.to_owned(), body.to_owned()));
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("connection closed after {:?}", text)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} after {text:?}")),
        }
    }
}

#[test]
fn a_request_half_sent_before_sigterm_gets_its_whole_answer() {
    let mut server = ServerProcess::start(&[]);
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    post_head(&mut stream, BODY.len());
    let (first, second) = BODY.split_at(BODY.len() / 2);
    stream.write_all(first.as_bytes()).expect("send half the body");
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    std::thread::sleep(Duration::from_secs(1));
    stream.write_all(second.as_bytes()).expect("the connection is still open a second after SIGTERM");
    let (status, head, body) = read_response(&mut stream).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(status, 201, "{head}\n{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(created["name"], "a body sent in two halves, one second apart");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "draining closes after the answer: {head}");
    let status = server.wait_exit(Duration::from_secs(3)).unwrap_or_else(|| panic!("still running\n{}", server.log()));
    assert!(status.success(), "{status}");
}

#[test]
fn with_nothing_in_flight_sigterm_exits_at_once_even_with_an_idle_keep_alive_connection() {
    let mut server = ServerProcess::start(&[]);
    let mut idle = TcpStream::connect(server.addr()).expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").expect("send");
    let (status, _, _) = read_response(&mut idle).expect("an answer");
    assert_eq!(status, 200);
    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(3)).unwrap_or_else(|| panic!("still running\n{}", server.log()));
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(3), "exit took {:?}", signalled.elapsed());
}

#[test]
fn a_request_that_never_finishes_is_cut_at_the_grace_period() {
    let mut server = ServerProcess::start(&[("SHUTDOWN_GRACE_SECONDS", "3")]);
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    post_head(&mut stream, BODY.len());
    stream.write_all(&BODY.as_bytes()[..10]).expect("send a little");
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.terminate();
    // Two seconds in, the request still may finish.
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.wait_exit(Duration::ZERO).is_none(), "exited while a request could still finish");
    let status = server.wait_exit(Duration::from_secs(3)).unwrap_or_else(|| panic!("still running\n{}", server.log()));
    assert!(status.success(), "{status}");
    let took = signalled.elapsed();
    assert!(took <= Duration::from_millis(3500), "exit {took:?} after SIGTERM, past the 3 s grace");
    assert!(server.log().contains("still in flight are cut"), "the cut is logged:\n{}", server.log());
}

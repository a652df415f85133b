//! The soak's abusers, all from `--abuse-addr`, in rounds every `--abuse-every` (the first half
//! a period in, so that they are quiet when the server is sampled): half-open connections,
//! sockets past the per-participant cap, garbage then an oversize frame, a handshake flood and a
//! session-creation flood. Each counts what it saw; a round in which one was not refused counts
//! as `…_unrefused`, which the report turns into a failed check.
//!
//! The floods come after the sockets in a round: they empty the address's buckets, which refill
//! within the period (600 handshakes a minute: 10 a second).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::raw::{self, Flood, HalfOpen};
use crate::args::Target;
use crate::http::{self, Client};
use crate::sys;
use crate::worker::{ready_then_start, sleep_until_ns, Env, Go};
use crate::ws::{self, Ws};

/// A flood stops once refused this often: enough to show the limit holds, without spending the
/// two shared cores on it.
const ENOUGH_REFUSALS: u64 = 20;

/// Longest a flood lasts.
const FLOOD_LIMIT: Duration = Duration::from_secs(10);

/// A request head must be complete 5 s after its first byte (the server's `HEAD_DEADLINE`, and
/// actix's first-request timeout): past this the connection counts as kept open.
const HALF_OPEN_LIMIT: Duration = Duration::from_secs(12);

/// Frames that are not Phoenix messages, or not well-formed ones.
const GARBAGE: &[&str] = &[
    "hello",
    "",
    "[]",
    "[1,2,3]",
    r#"{"topic":"phoenix"}"#,
    "[null,null,null,null,null]",
    r#"["1","2","location:nope","location_update",{"lat":"north"}]"#,
    r#"["1","3","phoenix","heartbeat""#,
    "\u{0}\u{1}\u{2}",
    r#"[null,"4","phoenix","heartbeat",{}]]]]"#,
    r#""\ud800""#,
];

/// The participants the abusers use, joined before any flood empties the address's buckets.
struct Tokens {
    cap: String,
    garbage: String,
    oversize: String,
}

/// Thread 0's abusers.
pub async fn run(env: Rc<Env>, ready: mpsc::Sender<()>, go: Go) {
    let a = &env.args;
    let target = a.urls[0].clone();
    let ip = IpAddr::V4(a.soak.abuse_addr);
    let tokens = setup(&env, &Client::bound_to(target.clone(), ip)).await;
    let Some(t0) = ready_then_start(&env, ready, go).await else { return };
    let s = &a.soak;
    let end = t0 + (a.duration * 1e9) as u64;
    let mut half_open = Vec::new();
    for r in 0u64.. {
        let start = t0 + ((r as f64 + 0.5) * s.abuse_every * 1e9) as u64;
        if start >= end || sys::stopped() {
            break;
        }
        sleep_until_ns(&env.clock, start).await;
        if sys::stopped() {
            break;
        }
        env.stats.add("rounds", 1);
        for i in 0..s.abuse_half_open {
            let (env, addr) = (env.clone(), target.socket_addr());
            half_open.push(tokio::task::spawn_local(async move {
                let partial = i % 2 == 0;
                let seen = raw::half_open(addr, ip, partial, HALF_OPEN_LIMIT).await;
                count_half_open(&env, partial, seen);
            }));
        }
        if let Some(t) = &tokens {
            socket_cap(&env, &target, ip, &t.cap).await;
            garbage(&env, &target, ip, &t.garbage).await;
            oversize(&env, &target, ip, &t.oversize).await;
        }
        let host = &target.host;
        let handshake = format!(
            "GET /socket/websocket?token=not-a-token&vsn=2.0.0 HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c29hay1hYnVzZXItMDAwMQ==\r\n\r\n"
        );
        let f = raw::flood(
            target.socket_addr(),
            ip,
            Rc::new(handshake.into_bytes()),
            s.abuse_handshakes as u64,
            ENOUGH_REFUSALS,
            FLOOD_LIMIT,
        )
        .await;
        count_flood(&env, FloodNames::HANDSHAKES, f);
        let body = r#"{"name":"abuse","expires_in_minutes":5}"#;
        let create = format!(
            "POST /api/sessions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let f = raw::flood(
            target.socket_addr(),
            ip,
            Rc::new(create.into_bytes()),
            s.abuse_creates as u64,
            ENOUGH_REFUSALS,
            FLOOD_LIMIT,
        )
        .await;
        count_flood(&env, FloodNames::CREATES, f);
    }
    for t in half_open {
        let _ = t.await;
    }
}

async fn setup(env: &Env, client: &Client) -> Option<Tokens> {
    async fn token(client: &Client, session: &str, name: &str) -> Result<String, String> {
        http::join(client, session, name).await.map(|j| j.token).map_err(|e| e.detail)
    }
    let made = async {
        let session = http::create_session(client).await.map_err(|e| e.detail)?;
        Ok::<_, String>(Tokens {
            cap: token(client, &session, "abuser-cap").await?,
            garbage: token(client, &session, "abuser-garbage").await?,
            oversize: token(client, &session, "abuser-oversize").await?,
        })
    };
    match made.await {
        Ok(t) => Some(t),
        Err(e) => {
            env.stats.add("setup_failed", 1);
            env.stats.fail(&format!("setup: {e}"));
            None
        }
    }
}

/// The counter names of one flood.
struct FloodNames {
    attempts: &'static str,
    refused: &'static str,
    without_retry_after: &'static str,
    ok: &'static str,
    other: &'static str,
    io: &'static str,
    unrefused: &'static str,
}

impl FloodNames {
    const HANDSHAKES: Self = Self {
        attempts: "handshakes",
        refused: "handshakes_429",
        without_retry_after: "handshakes_429_without_retry_after",
        ok: "handshakes_2xx",
        other: "handshakes_other_status",
        io: "handshakes_no_answer",
        unrefused: "handshake_rounds_unrefused",
    };
    const CREATES: Self = Self {
        attempts: "creates",
        refused: "creates_429",
        without_retry_after: "creates_429_without_retry_after",
        ok: "creates_201",
        other: "creates_other_status",
        io: "creates_no_answer",
        unrefused: "create_rounds_unrefused",
    };
}

fn count_flood(env: &Env, n: FloodNames, f: Flood) {
    let s = &env.stats;
    for (key, v) in [
        (n.attempts, f.attempts),
        (n.refused, f.refused),
        (n.without_retry_after, f.without_retry_after),
        (n.ok, f.ok),
        (n.other, f.other),
        (n.io, f.io),
    ] {
        s.add(key, v);
    }
    if f.refused == 0 && !sys::stopped() {
        s.add(n.unrefused, 1);
        s.fail(&format!("{}: {} requests and not one 429 ({f:?})", n.unrefused, f.attempts));
    }
}

fn count_half_open(env: &Env, partial: bool, seen: HalfOpen) {
    let s = &env.stats;
    s.add(if partial { "half_open_partial_head" } else { "half_open_silent" }, 1);
    match seen {
        HalfOpen::Closed { after, answered_408 } => {
            s.add("half_open_closed", 1);
            if answered_408 {
                s.add("half_open_408", 1);
            }
            s.record("half_open_closed_after", after.as_micros() as i64);
        }
        HalfOpen::StillOpen => {
            s.add("half_open_still_open", 1);
            s.fail(&format!("half_open_still_open: not closed within {HALF_OPEN_LIMIT:?}"));
        }
        HalfOpen::NotConnected(e) => s.fail(&format!("half_open_connect: {e}")),
    }
}

/// `--abuse-sockets` sockets on one token, one after another: the server must close the oldest
/// ones with 1008 `too many sockets` as the newer ones come in.
async fn socket_cap(env: &Rc<Env>, target: &Target, ip: IpAddr, token: &str) {
    let s = &env.stats;
    let closes: Rc<RefCell<Vec<(usize, u16, String)>>> = Rc::default();
    let (stop, stopped) = watch::channel(false);
    let mut watchers = Vec::new();
    for _ in 0..env.args.soak.abuse_sockets {
        match ws::connect_or_refused(target, Some(ip), token).await {
            Ok(socket) => {
                let i = watchers.len();
                watchers.push(tokio::task::spawn_local(watch_socket(socket, i, closes.clone(), stopped.clone())));
            }
            Err(e) if e.status == Some(429) => s.add("sockets_refused_429", 1),
            Err(e) => s.fail(&format!("sockets_connect: {}", e.detail)),
        }
        // One at a time, so "oldest" means something.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server closes the oldest as each one past the cap registers: a moment for the last.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let opened = watchers.len();
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(3), w).await;
    }
    let closes = closes.borrow();
    let kicked: Vec<usize> =
        closes.iter().filter(|(_, code, why)| *code == 1008 && why == "too many sockets").map(|c| c.0).collect();
    s.add("sockets_opened", opened as u64);
    s.add("sockets_1008", kicked.len() as u64);
    s.add("sockets_other_close", (closes.len() - kicked.len()) as u64);
    // The first k opened should be the k closed.
    if kicked.iter().any(|&i| i >= kicked.len()) {
        s.add("sockets_1008_not_oldest", 1);
    }
    if kicked.is_empty() && opened > 1 && !sys::stopped() {
        s.add("socket_rounds_unrefused", 1);
        s.fail(&format!("socket_rounds_unrefused: {opened} sockets on one token and none closed with 1008"));
    }
}

/// Reads a socket until the server closes it (noting how) or the round is over (closing it).
async fn watch_socket(
    mut socket: Ws,
    i: usize,
    closes: Rc<RefCell<Vec<(usize, u16, String)>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            m = socket.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    let (code, why) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                    closes.borrow_mut().push((i, code, why));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    closes.borrow_mut().push((i, 1006, String::new()));
                    return;
                }
            },
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_millis(500), socket.close(None)).await;
                return;
            }
        }
    }
}

/// What became of a heartbeat sent after something else.
#[derive(Debug, PartialEq, Eq)]
enum After {
    Answered,
    Closed(u16),
    Silent,
}

/// Sends a heartbeat and waits up to 5 s for its reply, or for the socket to close.
async fn heartbeat(socket: &mut Ws, msg_ref: u64) -> After {
    let mine = format!(r#""h{msg_ref}","phoenix","phx_reply""#);
    if socket.send(Message::text(ws::heartbeat_frame(msg_ref))).await.is_err() {
        return After::Closed(1006);
    }
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) if t.contains(&mine) => return After::Answered,
                Some(Ok(Message::Close(f))) => return After::Closed(f.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return After::Closed(1006),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap_or(After::Silent)
}

/// Frames that mean nothing: the server may answer them with errors, but must go on serving.
async fn garbage(env: &Env, target: &Target, ip: IpAddr, token: &str) {
    let s = &env.stats;
    let mut socket = match ws::connect(target, Some(ip), token).await {
        Ok(socket) => socket,
        Err(e) => return s.fail(&format!("garbage_connect: {e}")),
    };
    let deep = "[".repeat(5000);
    let mut sent = 0;
    for _ in 0..10 {
        for f in GARBAGE.iter().copied().chain([deep.as_str()]) {
            if socket.send(Message::text(f)).await.is_ok() {
                sent += 1;
            }
        }
        if socket.send(Message::binary(vec![0xff, 0x00, 0x13, 0x37])).await.is_ok() {
            sent += 1;
        }
    }
    s.add("garbage_frames", sent);
    match heartbeat(&mut socket, 900_001).await {
        After::Answered => s.add("garbage_survived", 1),
        After::Closed(code) => {
            s.add("garbage_closed", 1);
            s.fail(&format!("garbage_closed: the server closed the socket ({code}) over garbage"));
        }
        After::Silent => s.fail("garbage_unanswered: no heartbeat reply after the garbage"),
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), socket.close(None)).await;
}

/// A frame past MAX_FRAME_BYTES: the server must close the socket (1009), not answer what follows.
async fn oversize(env: &Env, target: &Target, ip: IpAddr, token: &str) {
    let s = &env.stats;
    let mut socket = match ws::connect(target, Some(ip), token).await {
        Ok(socket) => socket,
        Err(e) => return s.fail(&format!("oversize_connect: {e}")),
    };
    let pad = "x".repeat(env.args.soak.abuse_frame_bytes);
    let _ = socket.send(Message::text(format!(r#"[null,"big","phoenix","heartbeat",{{"pad":"{pad}"}}]"#))).await;
    s.add("oversize_sent", 1);
    match heartbeat(&mut socket, 900_002).await {
        After::Closed(1009) => s.add("oversize_1009", 1),
        After::Closed(code) => {
            // Still refused: the close frame can be lost when the server resets a connection
            // whose frame it stopped reading.
            s.add("oversize_closed_otherwise", 1);
            s.fail(&format!("oversize_closed_otherwise: closed with {code}, not 1009"));
        }
        other => {
            s.add("oversize_not_closed", 1);
            s.fail(&format!("oversize_not_closed: {other:?} after a frame of {} bytes", pad.len()));
        }
    }
}

//! A small Phoenix Channels test client over `awc`, in the manner of `Phoenix.ChannelTest`:
//! connect with a token and a `vsn`, join a topic, push and wait for the reply with that ref,
//! assert or refute server pushes with a deadline, and wait for the Close frame. Every message
//! received is recorded in an inbox, so a test can count what arrived.
//!
//! It speaks the three framings of the server: V2 arrays (`vsn=2.0.0`), V1 objects (`vsn=1.0.0`)
//! and the plain `{"type","data"}` envelope (no `vsn`). It never heartbeats by itself unless a
//! test asks it to ([`WsClient::auto_heartbeat`]), and it only reads from the connection while a
//! test waits on it, so a client nobody polls is a slow reader.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{Frame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// How long a client waits for what a test expects, unless told otherwise.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// How long a test waits to be sure something does not arrive, unless told otherwise.
pub const QUIET: Duration = Duration::from_millis(400);

/// The framing a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `vsn=2.0.0`: `[join_ref, ref, topic, event, payload]`.
    V2,
    /// `vsn=1.0.0`: `{join_ref, ref, topic, event, payload}`.
    V1,
    /// No `vsn`: `{"type": event, "data": payload}`.
    Plain,
}

impl Proto {
    /// The framing the server picks for this `vsn` parameter (anything else is refused anyway).
    pub fn from_vsn(vsn: Option<&str>) -> Self {
        match vsn {
            None | Some("") => Self::Plain,
            Some(v) if v.starts_with('1') => Self::V1,
            Some(_) => Self::V2,
        }
    }
}

/// One message from the server, whatever its framing. Plain frames have `null` refs and an
/// empty topic; a plain reply is the event `reply` with `{status, response, to}` as payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    /// Position in the inbox (0 for the first message received).
    pub seq: usize,
    /// `join_ref`.
    pub join_ref: Value,
    /// `ref`.
    pub msg_ref: Value,
    /// `topic`.
    pub topic: String,
    /// `event` (plain: `type`).
    pub event: String,
    /// `payload` (plain: `data`).
    pub payload: Value,
    /// The frame as received.
    pub raw: String,
}

/// A reply to a push: `phx_reply` (or, plain, `{"type":"reply"}`).
#[derive(Debug, Clone)]
pub struct Reply {
    /// `ok` or `error`.
    pub status: String,
    /// The response.
    pub response: Value,
    /// The whole message.
    pub msg: Msg,
}

impl Reply {
    /// Asserts an ok reply and gives its response.
    #[track_caller]
    pub fn assert_ok(&self, context: &str) -> &Value {
        assert_eq!(self.status, "ok", "{context}: expected an ok reply, got {}", self.msg.raw);
        &self.response
    }

    /// Asserts an error reply whose response is exactly `{"reason": reason}`.
    #[track_caller]
    pub fn assert_refusal(&self, reason: &str, context: &str) {
        self.assert_error(reason, context);
        assert_eq!(self.response, json!({ "reason": reason }), "{context}: response of {}", self.msg.raw);
    }

    /// Asserts an error reply with this `reason` and gives its response.
    #[track_caller]
    pub fn assert_error(&self, reason: &str, context: &str) -> &Value {
        assert_eq!(self.status, "error", "{context}: expected an error reply, got {}", self.msg.raw);
        assert_eq!(self.response["reason"], reason, "{context}: reason of {}", self.msg.raw);
        &self.response
    }
}

/// How the connection ended, once it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a Close frame (code, description).
    Close(Option<u16>, Option<String>),
    /// The stream ended without a Close frame.
    Eof,
    /// The WebSocket codec failed.
    Error(String),
}

trait Conn: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin {}

impl<T> Conn for T where
    T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}

/// A connected WebSocket.
pub struct WsClient {
    conn: Box<dyn Conn>,
    /// The headers of the handshake's `101 Switching Protocols`.
    pub handshake_headers: awc::http::header::HeaderMap,
    /// The framing it speaks.
    pub proto: Proto,
    inbox: Vec<Msg>,
    pending: VecDeque<Msg>,
    record: bool,
    received: usize,
    next_ref: u64,
    joins: HashMap<String, String>,
    ended: Option<Ended>,
    heartbeat: Option<(Duration, Instant)>,
    heartbeat_refs: HashSet<String>,
    sent_join_refs: HashMap<String, Value>,
    pongs: usize,
}

/// Options of a handshake.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// `token` query parameter.
    pub token: Option<String>,
    /// `vsn` query parameter.
    pub vsn: Option<String>,
    /// `Origin` header.
    pub origin: Option<String>,
    /// Other request headers.
    pub headers: Vec<(String, String)>,
    /// Query parameters before `token` and `vsn`, as a `websocket_url` may carry (`sid=…`).
    pub query: Vec<(String, String)>,
}

impl WsClient {
    /// Opens `/socket/websocket?token=…&vsn=…`; `Err(status)` when the handshake is refused.
    pub async fn connect(app: &TestApp, token: &str, vsn: Option<&str>) -> Result<Self, u16> {
        let handshake =
            Handshake { token: Some(token.to_owned()), vsn: vsn.map(str::to_owned), ..Handshake::default() };
        Self::connect_with(app, &handshake).await
    }

    /// A V2 (`vsn=2.0.0`) socket that must be accepted.
    pub async fn v2(app: &TestApp, token: &str) -> Self {
        Self::connect(app, token, Some("2.0.0")).await.unwrap_or_else(|s| panic!("V2 handshake refused with {s}"))
    }

    /// A V1 (`vsn=1.0.0`) socket that must be accepted.
    pub async fn v1(app: &TestApp, token: &str) -> Self {
        Self::connect(app, token, Some("1.0.0")).await.unwrap_or_else(|s| panic!("V1 handshake refused with {s}"))
    }

    /// A plain-envelope socket (no `vsn`) that must be accepted.
    pub async fn plain(app: &TestApp, token: &str) -> Self {
        Self::connect(app, token, None).await.unwrap_or_else(|s| panic!("plain handshake refused with {s}"))
    }

    /// A V2 socket joined to `location:{sid}` (asserts the ok reply).
    pub async fn joined(app: &TestApp, token: &str, sid: &str) -> Self {
        let mut client = Self::v2(app, token).await;
        client.join(&format!("location:{sid}")).await.assert_ok("join");
        client
    }

    /// Opens a socket with any parameters and `Origin`.
    pub async fn connect_with(app: &TestApp, handshake: &Handshake) -> Result<Self, u16> {
        Self::connect_to(&app.address, handshake).await
    }

    /// Opens a socket on any server (`http://host:port`), also one the test did not spawn in-process.
    pub async fn connect_to(address: &str, handshake: &Handshake) -> Result<Self, u16> {
        let mut query: Vec<String> = handshake.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(token) = &handshake.token {
            query.push(format!("token={token}"));
        }
        if let Some(vsn) = &handshake.vsn {
            query.push(format!("vsn={vsn}"));
        }
        let url = format!("{}/socket/websocket?{}", address.replacen("http://", "ws://", 1), query.join("&"));
        let mut request = awc::Client::builder().timeout(Duration::from_secs(10)).finish().ws(url.as_str());
        if let Some(origin) = &handshake.origin {
            request = request.origin(origin.as_str());
        }
        for (name, value) in &handshake.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.connect().await {
            Ok((response, framed)) => {
                let mut client = Self::new(Box::new(framed), Proto::from_vsn(handshake.vsn.as_deref()));
                client.handshake_headers = response.headers().clone();
                Ok(client)
            }
            Err(WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
            Err(e) => panic!("{url}: the WebSocket handshake failed: {e}"),
        }
    }

    fn new(conn: Box<dyn Conn>, proto: Proto) -> Self {
        Self {
            conn,
            handshake_headers: awc::http::header::HeaderMap::new(),
            proto,
            inbox: Vec::new(),
            pending: VecDeque::new(),
            record: true,
            received: 0,
            next_ref: 0,
            joins: HashMap::new(),
            ended: None,
            heartbeat: None,
            heartbeat_refs: HashSet::new(),
            sent_join_refs: HashMap::new(),
            pongs: 0,
        }
    }

    // ------------------------------------------------------------ sending

    fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    fn encode(&self, join_ref: &Value, msg_ref: &Value, topic: &str, event: &str, payload: &Value) -> String {
        match self.proto {
            Proto::V2 => json!([join_ref, msg_ref, topic, event, payload]).to_string(),
            Proto::V1 => {
                json!({"join_ref": join_ref, "ref": msg_ref, "topic": topic, "event": event, "payload": payload})
                    .to_string()
            }
            Proto::Plain => json!({"type": event, "data": payload}).to_string(),
        }
    }

    /// Sends a text frame as is.
    pub async fn send_raw(&mut self, text: &str) {
        let sent = self.conn.send(Message::Text(text.to_owned().into())).await;
        sent.unwrap_or_else(|e| panic!("cannot send {text:?}: {e}"));
    }

    /// Sends a WebSocket frame as is (ping control frames, binary, close).
    pub async fn send_frame(&mut self, message: Message) {
        self.conn.send(message).await.unwrap_or_else(|e| panic!("cannot send a frame: {e}"));
    }

    /// Sends `phx_join` on `topic` and waits for its reply; the join ref is its own ref.
    pub async fn join(&mut self, topic: &str) -> Reply {
        let join_ref = self.make_ref();
        self.joins.insert(topic.to_owned(), join_ref.clone());
        let text = self.encode(&json!(join_ref), &json!(join_ref), topic, "phx_join", &json!({}));
        self.sent_join_refs.insert(join_ref.clone(), json!(join_ref));
        self.send_raw(&text).await;
        self.reply(topic, "phx_join", &join_ref).await
    }

    /// The join ref of the last join of `topic`.
    pub fn join_ref(&self, topic: &str) -> Option<String> {
        self.joins.get(topic).cloned()
    }

    /// Sends a push with the current join ref of `topic` (`null` when not joined) and returns
    /// its ref without waiting.
    pub async fn send_push(&mut self, topic: &str, event: &str, payload: Value) -> String {
        let join_ref = self.joins.get(topic).map_or(Value::Null, |r| json!(r));
        self.send_push_with(join_ref, topic, event, payload).await
    }

    /// Sends a push with this join ref and returns its ref without waiting.
    pub async fn send_push_with(&mut self, join_ref: Value, topic: &str, event: &str, payload: Value) -> String {
        let msg_ref = self.make_ref();
        let text = self.encode(&join_ref, &json!(msg_ref), topic, event, &payload);
        self.sent_join_refs.insert(msg_ref.clone(), join_ref);
        self.send_raw(&text).await;
        msg_ref
    }

    /// Sends several pushes on `topic` in one write (one flush), returning their refs in order.
    pub async fn send_pushes(&mut self, topic: &str, event: &str, payloads: Vec<Value>) -> Vec<String> {
        let join_ref = self.joins.get(topic).map_or(Value::Null, |r| json!(r));
        let mut refs = Vec::new();
        for payload in payloads {
            let msg_ref = self.make_ref();
            let text = self.encode(&join_ref, &json!(msg_ref), topic, event, &payload);
            self.sent_join_refs.insert(msg_ref.clone(), join_ref.clone());
            self.conn.feed(Message::Text(text.into())).await.unwrap_or_else(|e| panic!("cannot send: {e}"));
            refs.push(msg_ref);
        }
        self.conn.flush().await.unwrap_or_else(|e| panic!("cannot send: {e}"));
        refs
    }

    /// Pushes and waits for the reply with that ref (plain: the next reply `to` that event).
    pub async fn push(&mut self, topic: &str, event: &str, payload: Value) -> Reply {
        let msg_ref = self.send_push(topic, event, payload).await;
        self.reply(topic, event, &msg_ref).await
    }

    /// `phoenix` / `heartbeat`, and its reply.
    pub async fn heartbeat(&mut self) -> Reply {
        match self.proto {
            Proto::Plain => self.push("", "heartbeat", json!({})).await,
            _ => self.push("phoenix", "heartbeat", json!({})).await,
        }
    }

    /// `phx_leave` on `topic`, and its reply.
    pub async fn leave(&mut self, topic: &str) -> Reply {
        self.push(topic, "phx_leave", json!({})).await
    }

    /// A location update on `topic`, and its reply.
    pub async fn location(&mut self, topic: &str, payload: Value) -> Reply {
        self.push(topic, "location_update", payload).await
    }

    /// Sends a heartbeat every `every` while the client waits on the connection (off by default).
    pub fn auto_heartbeat(&mut self, every: Option<Duration>) {
        self.heartbeat = every.map(|every| (every, Instant::now()));
    }

    /// Stops recording messages in the inbox (they still reach assertions); for floods.
    pub fn stop_recording(&mut self) {
        self.record = false;
    }

    // ------------------------------------------------------------ receiving

    fn decode(&self, text: &str, seq: usize) -> Msg {
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("the server sent a frame that is not JSON: {text}: {e}"));
        let string = |v: &Value, what: &str| -> String {
            v.as_str().unwrap_or_else(|| panic!("{what} of {text} is not a string")).to_owned()
        };
        match self.proto {
            Proto::V2 => {
                let items = value.as_array().filter(|a| a.len() == 5);
                let items = items.unwrap_or_else(|| panic!("a V2 frame must be a 5-element array: {text}"));
                Msg {
                    seq,
                    join_ref: items[0].clone(),
                    msg_ref: items[1].clone(),
                    topic: string(&items[2], "topic"),
                    event: string(&items[3], "event"),
                    payload: items[4].clone(),
                    raw: text.to_owned(),
                }
            }
            Proto::V1 => {
                let map = value.as_object().unwrap_or_else(|| panic!("a V1 frame must be an object: {text}"));
                let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
                keys.sort_unstable();
                assert_eq!(keys, ["event", "join_ref", "payload", "ref", "topic"], "keys of the V1 frame {text}");
                Msg {
                    seq,
                    join_ref: value["join_ref"].clone(),
                    msg_ref: value["ref"].clone(),
                    topic: string(&value["topic"], "topic"),
                    event: string(&value["event"], "event"),
                    payload: value["payload"].clone(),
                    raw: text.to_owned(),
                }
            }
            Proto::Plain => {
                let map = value.as_object().unwrap_or_else(|| panic!("a plain frame must be an object: {text}"));
                let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
                keys.sort_unstable();
                assert_eq!(keys, ["data", "type"], "keys of the plain frame {text}");
                Msg {
                    seq,
                    join_ref: Value::Null,
                    msg_ref: Value::Null,
                    topic: String::new(),
                    event: string(&value["type"], "type"),
                    payload: value["data"].clone(),
                    raw: text.to_owned(),
                }
            }
        }
    }

    /// Reads frames until one message arrives (true), or the deadline passes or the connection
    /// ends (false).
    async fn read_one(&mut self, deadline: Instant) -> bool {
        loop {
            if self.ended.is_some() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let mut wait = deadline - now;
            if let Some((every, last)) = self.heartbeat {
                if now >= last + every {
                    self.heartbeat = Some((every, now));
                    let (topic, event) = match self.proto {
                        Proto::Plain => ("", "heartbeat"),
                        _ => ("phoenix", "heartbeat"),
                    };
                    // A socket the server is closing may refuse it; the Close frame tells the rest.
                    let msg_ref = self.make_ref();
                    let text = self.encode(&Value::Null, &json!(msg_ref), topic, event, &json!({}));
                    self.heartbeat_refs.insert(msg_ref);
                    if self.conn.send(Message::Text(text.into())).await.is_err() {
                        self.heartbeat = None;
                    }
                    continue;
                }
                wait = wait.min(last + every - now);
            }
            match actix_rt::time::timeout(wait, self.conn.next()).await {
                Err(_) => continue,
                Ok(None) => self.ended = Some(Ended::Eof),
                Ok(Some(Err(e))) => self.ended = Some(Ended::Error(e.to_string())),
                Ok(Some(Ok(frame))) => match frame {
                    Frame::Text(bytes) => {
                        let text = String::from_utf8(bytes.to_vec())
                            .unwrap_or_else(|e| panic!("the server sent a text frame that is not UTF-8: {e}"));
                        let msg = self.decode(&text, self.received);
                        self.received += 1;
                        if self.record {
                            self.inbox.push(msg.clone());
                        }
                        let automatic = msg.event == "phx_reply"
                            && msg.msg_ref.as_str().is_some_and(|r| self.heartbeat_refs.contains(r))
                            || self.proto == Proto::Plain
                                && self.heartbeat.is_some()
                                && msg.event == "reply"
                                && msg.payload["to"] == "heartbeat";
                        if !automatic {
                            self.pending.push_back(msg);
                        }
                        return true;
                    }
                    Frame::Close(reason) => {
                        let code = reason.as_ref().map(|r| u16::from(r.code));
                        self.ended = Some(Ended::Close(code, reason.and_then(|r| r.description)));
                    }
                    Frame::Ping(bytes) => {
                        let _ = self.conn.send(Message::Pong(bytes)).await;
                    }
                    Frame::Pong(_) => self.pongs += 1,
                    Frame::Binary(_) | Frame::Continuation(_) => {}
                },
            }
        }
    }

    fn tail(&self) -> String {
        let from = self.inbox.len().saturating_sub(8);
        let mut lines: Vec<String> = self.inbox[from..].iter().map(|m| m.raw.clone()).collect();
        if let Some(ended) = &self.ended {
            lines.push(format!("(connection ended: {ended:?})"));
        }
        lines.join("\n  ")
    }

    /// Takes the first unconsumed message that matches, reading until `deadline`.
    async fn take_where(&mut self, deadline: Instant, matches: impl Fn(&Msg) -> bool) -> Option<Msg> {
        loop {
            if let Some(i) = self.pending.iter().position(&matches) {
                return self.pending.remove(i);
            }
            if !self.read_one(deadline).await {
                return None;
            }
        }
    }

    /// Waits for the reply to the push `msg_ref` on `topic` (plain: the next reply to `event`).
    pub async fn reply(&mut self, topic: &str, event: &str, msg_ref: &str) -> Reply {
        self.reply_within(topic, event, msg_ref, DEADLINE).await
    }

    /// [`Self::reply`] with a deadline.
    pub async fn reply_within(&mut self, topic: &str, event: &str, msg_ref: &str, within: Duration) -> Reply {
        match self.try_reply(topic, event, msg_ref, within).await {
            Some(reply) => reply,
            None => panic!(
                "no reply to {event} (ref {msg_ref}) on {topic:?} within {within:?}; last frames:\n  {}",
                self.tail()
            ),
        }
    }

    /// The reply to a push, or `None` when the connection ends or the deadline passes first.
    pub async fn try_reply(&mut self, topic: &str, event: &str, msg_ref: &str, within: Duration) -> Option<Reply> {
        let deadline = Instant::now() + within;
        let proto = self.proto;
        let msg = self
            .take_where(deadline, |m| match proto {
                Proto::Plain => m.event == "reply" && m.payload["to"] == event,
                _ => m.event == "phx_reply" && m.msg_ref == json!(msg_ref) && m.topic == topic,
            })
            .await?;
        let status = msg.payload["status"].as_str().unwrap_or_else(|| panic!("reply without status: {}", msg.raw));
        let mut keys: Vec<&str> =
            msg.payload.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.sort_unstable();
        match proto {
            Proto::Plain => assert_eq!(keys, ["response", "status", "to"], "plain reply {}", msg.raw),
            _ => {
                assert_eq!(keys, ["response", "status"], "phx_reply payload {}", msg.raw);
                if let Some(join_ref) = self.sent_join_refs.get(msg_ref) {
                    assert_eq!(&msg.join_ref, join_ref, "a reply carries the join_ref of its push: {}", msg.raw);
                }
            }
        }
        Some(Reply { status: status.to_owned(), response: msg.payload["response"].clone(), msg })
    }

    /// Asserts that no reply to `msg_ref` arrives within `within`.
    pub async fn refute_reply(&mut self, msg_ref: &str, within: Duration) {
        let r = json!(msg_ref);
        self.refute_where(within, &format!("a reply to ref {msg_ref}"), |m| m.event == "phx_reply" && m.msg_ref == r)
            .await;
    }

    /// The next message of any kind, in arrival order.
    pub async fn next_msg(&mut self) -> Msg {
        let deadline = Instant::now() + DEADLINE;
        let found = self.take_where(deadline, |_| true).await;
        found.unwrap_or_else(|| panic!("no message within {DEADLINE:?}; last frames:\n  {}", self.tail()))
    }

    /// The next `event` push (unconsumed messages first), within [`DEADLINE`].
    pub async fn next_event(&mut self, event: &str) -> Msg {
        self.assert_push_within(event, DEADLINE, |_| true).await
    }

    /// The next `event` push within `within`.
    pub async fn next_event_within(&mut self, event: &str, within: Duration) -> Msg {
        self.assert_push_within(event, within, |_| true).await
    }

    /// The first `event` push whose payload satisfies `pred`, within [`DEADLINE`].
    pub async fn assert_push(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> Msg {
        self.assert_push_within(event, DEADLINE, pred).await
    }

    /// The first `event` push whose payload satisfies `pred`, within `within`.
    pub async fn assert_push_within(&mut self, event: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Msg {
        let found = self.try_push_within(event, within, pred).await;
        found.unwrap_or_else(|| panic!("no matching {event} within {within:?}; last frames:\n  {}", self.tail()))
    }

    /// The first `event` push whose payload satisfies `pred` within `within`, if one comes.
    pub async fn try_push_within(
        &mut self,
        event: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Msg> {
        let deadline = Instant::now() + within;
        self.take_where(deadline, |m| m.event == event && pred(&m.payload)).await
    }

    /// Asserts that no `event` push arrives (or is waiting) within `within`.
    pub async fn refute_push(&mut self, event: &str, within: Duration) {
        self.refute_where(within, event, |m| m.event == event).await;
    }

    /// Asserts that no `event` push whose payload satisfies `pred` arrives within `within`.
    pub async fn refute_push_where(&mut self, event: &str, within: Duration, pred: impl Fn(&Value) -> bool) {
        self.refute_where(within, event, |m| m.event == event && pred(&m.payload)).await;
    }

    async fn refute_where(&mut self, within: Duration, what: &str, matches: impl Fn(&Msg) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.pending.iter().find(|m| matches(m)) {
                panic!("unexpected {what}: {}", m.raw);
            }
            if !self.read_one(deadline).await {
                return;
            }
        }
    }

    /// Reads whatever arrives for `within` (so the inbox can be counted).
    pub async fn drain_for(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.read_one(deadline).await {}
    }

    /// Waits for the server's Close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        self.close_code_within(DEADLINE).await
    }

    /// [`Self::close_code`] with a deadline.
    pub async fn close_code_within(&mut self, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        while self.ended.is_none() && Instant::now() < deadline {
            self.read_one(deadline).await;
        }
        match &self.ended {
            Some(Ended::Close(Some(code), _)) => *code,
            other => panic!(
                "expected a Close frame with a code within {within:?}, got {other:?}; last frames:\n  {}",
                self.tail()
            ),
        }
    }

    /// How the connection ended, if it did (as far as read).
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// Every message received so far (unless recording was stopped).
    pub fn inbox(&self) -> &[Msg] {
        &self.inbox
    }

    /// How many `event` messages were received so far.
    pub fn count(&self, event: &str) -> usize {
        self.inbox.iter().filter(|m| m.event == event).count()
    }

    /// Pong control frames received.
    pub fn pongs(&self) -> usize {
        self.pongs
    }

    /// Sends a Close frame (code 1000).
    pub async fn close(&mut self) {
        let reason = awc::ws::CloseReason { code: awc::ws::CloseCode::Normal, description: None };
        let _ = self.conn.send(Message::Close(Some(reason))).await;
    }
}

// ---------------------------------------------------------------- fixtures

/// The channel topic of a session.
pub fn topic(sid: &str) -> String {
    format!("location:{sid}")
}

/// `{"lat","lng"}`.
pub fn loc(lat: f64, lng: f64) -> Value {
    json!({ "lat": lat, "lng": lng })
}

/// A `location_update` broadcast (or snapshot location): exactly the seven fields, for `user_id`.
#[track_caller]
pub fn assert_location_view(payload: &Value, user_id: &str, context: &str) {
    crate::helpers::assert_keys(
        payload,
        &["user_id", "lat", "lng", "accuracy", "heading", "speed", "timestamp"],
        &format!("{context}: location"),
    );
    assert_eq!(payload["user_id"], user_id, "{context}: user_id of {payload}");
    crate::helpers::assert_rfc3339_z(&payload["timestamp"], &format!("{context}: timestamp"));
}

/// A Phoenix.Presence entry: `{"metas":[{"phx_ref","display_name","avatar_color","online_at","viewing"}]}`.
#[track_caller]
pub fn assert_presence_entry(entry: &Value, display_name: &str, context: &str) {
    crate::helpers::assert_keys(entry, &["metas"], &format!("{context}: presence entry"));
    let metas = entry["metas"].as_array().unwrap_or_else(|| panic!("{context}: metas of {entry}"));
    assert_eq!(metas.len(), 1, "{context}: one meta per participant in {entry}");
    let meta = &metas[0];
    crate::helpers::assert_keys(
        meta,
        &["phx_ref", "display_name", "avatar_color", "online_at", "viewing"],
        &format!("{context}: presence meta"),
    );
    assert!(meta["phx_ref"].as_str().is_some_and(|r| !r.is_empty()), "{context}: phx_ref of {meta}");
    assert_eq!(meta["display_name"], display_name, "{context}: display_name of {meta}");
    let colour = meta["avatar_color"].as_str().unwrap_or_default();
    assert!(crate::helpers::is_upper_hex_colour(colour), "{context}: avatar_color of {meta}");
    crate::helpers::assert_rfc3339_z(&meta["online_at"], &format!("{context}: online_at"));
}

/// The user ids that are keys of a presence map, sorted.
pub fn presence_keys(map: &Value) -> Vec<String> {
    let mut keys: Vec<String> = map.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    keys.sort_unstable();
    keys
}

/// Sorted ids.
pub fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    ids.sort_unstable();
    ids
}

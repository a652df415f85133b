//! Phoenix V2 over WebSocket: connect from a chosen source address, join a topic, and read
//! frames by scanning for what matters (event name, `timestamp`) instead of parsing JSON.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::args::Target;
use crate::http::connect_tcp;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long a connect + handshake, or a join, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Small buffers: tens of thousands of sockets, small frames.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0).max_message_size(Some(1 << 20))
}

/// Opens `GET /socket/websocket?token=…&vsn=2.0.0` from `source`.
pub async fn connect(target: &Target, source: Option<IpAddr>, token: &str) -> Result<Ws, String> {
    connect_or_refused(target, source, token).await.map_err(|e| e.detail)
}

/// Why a socket did not open: the HTTP status when the server answered the handshake without
/// upgrading, and `reason: detail` as [`connect`] says it.
#[derive(Debug)]
pub struct ConnectError {
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// `reason: detail`.
    pub detail: String,
}

/// Like [`connect`], keeping the status of a refused handshake (the soak's abusers count 429s).
pub async fn connect_or_refused(target: &Target, source: Option<IpAddr>, token: &str) -> Result<Ws, ConnectError> {
    let other = |detail: String| ConnectError { status: None, detail };
    let attempt = async {
        let stream = connect_tcp(target.socket_addr(), source).await.map_err(|e| other(format!("connect_io: {e}")))?;
        let url = format!("ws://{}/socket/websocket?token={token}&vsn=2.0.0", target.host);
        match tokio_tungstenite::client_async_with_config(url, stream, Some(config())).await {
            Ok((ws, _)) => Ok(ws),
            Err(e) => {
                let status = match &e {
                    tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
                    _ => None,
                };
                // The status in the reason, so a report tells a 429 from a 403 at a glance.
                let reason = status.map_or("connect_handshake".to_owned(), |s| format!("connect_handshake_{s}"));
                Err(ConnectError { status, detail: format!("{reason}: {e}") })
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(other("connect_timeout: no handshake in time".to_owned())),
    }
}

/// The join ref every socket uses for its one channel.
pub const JOIN_REF: &str = "1";

/// Joins `topic` and waits for the ok reply; frames before it are skipped.
pub async fn phx_join(ws: &mut Ws, topic: &str) -> Result<(), String> {
    let join = format!(r#"["{JOIN_REF}","{JOIN_REF}","{topic}","phx_join",{{}}]"#);
    let prefix = format!(r#"["{JOIN_REF}","{JOIN_REF}","{topic}","phx_reply","#);
    let attempt = async {
        ws.send(Message::text(join)).await.map_err(|e| format!("phx_join_io: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with(&prefix) => {
                    return if t.contains(r#"{"status":"ok""#) {
                        Ok(())
                    } else {
                        Err(format!("phx_join_refused: {}", &t[..t.len().min(200)]))
                    };
                }
                Some(Ok(Message::Close(_))) | None => return Err("phx_join_closed: socket closed".to_owned()),
                Some(Err(e)) => return Err(format!("phx_join_io: {e}")),
                Some(Ok(_)) => {}
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err("phx_join_timeout: no reply in time".to_owned()),
    }
}

/// The frame of a location update due at `timestamp` (RFC 3339).
pub fn location_frame(topic: &str, msg_ref: u64, lat: f64, lng: f64, timestamp: &str) -> String {
    format!(
        r#"["{JOIN_REF}","{msg_ref}","{topic}","location_update",{{"lat":{lat:.6},"lng":{lng:.6},"accuracy":5.0,"timestamp":"{timestamp}"}}]"#
    )
}

/// The frame of a `viewing` event (SPEC §8): whether this socket's user looks at the map.
pub fn viewing_frame(topic: &str, msg_ref: u64, visible: bool) -> String {
    format!(r#"["{JOIN_REF}","{msg_ref}","{topic}","viewing",{{"visible":{visible}}}]"#)
}

/// A `rate_advice` push's `(interval_ms, watchers)`, when `text` is one (else `None`).
pub fn rate_advice(text: &str) -> Option<(u64, u64)> {
    let head = text.get(..HEAD.min(text.len())).unwrap_or(text);
    if !head.contains(r#"","rate_advice",{"#) {
        return None;
    }
    // Rare frames (one per change of advice): parsed in full.
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let payload = v.get(4)?;
    Some((payload.get("interval_ms")?.as_u64()?, payload.get("watchers")?.as_u64()?))
}

/// A Phoenix heartbeat.
pub fn heartbeat_frame(msg_ref: u64) -> String {
    format!(r#"[null,"h{msg_ref}","phoenix","heartbeat",{{}}]"#)
}

/// What a received frame is, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A `location_update` broadcast and its `timestamp`.
    Location(Option<&'a str>),
    /// A `phx_reply` with status ok.
    ReplyOk,
    /// A `phx_reply` with status error, and its reason when one was found.
    ReplyError(Option<&'a str>),
    /// `phx_close` on the channel.
    Close,
    /// Anything else (presence, joins, leaves…).
    Other,
}

/// How far into a frame the event name can be: refs, a `location:{uuid}` topic, the event.
const HEAD: usize = 160;

/// Classifies a V2 frame by scanning its head.
pub fn classify(text: &str) -> Frame<'_> {
    let head = text.get(..HEAD.min(text.len())).unwrap_or(text);
    if let Some(at) = head.find(r#"","location_update",{"#) {
        return Frame::Location(crate::timefmt::find_timestamp(&text[at..]));
    }
    if let Some(at) = head.find(r#"","phx_reply",{"status":""#) {
        let rest = &text[at + r#"","phx_reply",{"status":""#.len()..];
        return if rest.starts_with("ok\"") { Frame::ReplyOk } else { Frame::ReplyError(reason(rest)) };
    }
    if head.contains(r#"","phx_close","#) {
        return Frame::Close;
    }
    Frame::Other
}

fn reason(text: &str) -> Option<&str> {
    const KEY: &str = "\"reason\":\"";
    let start = text.find(KEY)? + KEY.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// What a socket task makes of one read: a text frame to handle, why the socket is gone, or
/// nothing to act on (pings, pongs, binary frames).
pub enum Read {
    /// A text frame.
    Text(tungstenite::Utf8Bytes),
    /// The socket is gone, and why (a failure reason for the report).
    Gone(String),
    /// Anything else.
    Other,
}

/// Sorts one `ws.next()` result.
pub fn read(m: Option<Result<Message, tungstenite::Error>>) -> Read {
    match m {
        Some(Ok(Message::Text(t))) => Read::Text(t),
        Some(Ok(Message::Close(c))) => Read::Gone(format!("socket_closed: by the server {c:?}")),
        None => Read::Gone("socket_closed: connection ended".to_owned()),
        Some(Err(e)) => Read::Gone(format!("socket_io: {e}")),
        Some(Ok(_)) => Read::Other,
    }
}

/// Ends a socket task: a socket lost before the run was over counts as closed early, with its
/// reason; one that lasted the run is closed politely (not waiting long for the server's answer).
pub async fn end(ws: &mut Ws, failed: Option<String>, stats: &crate::stats::Stats, run_over: bool) {
    stats.open.set(stats.open.get().saturating_sub(1));
    match failed {
        Some(reason) if !run_over => {
            stats.add("closed_early", 1);
            stats.fail(&reason);
        }
        Some(_) => {}
        None => {
            let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_frames() {
        let loc = r#"[null,null,"location:0b7e4f0e-0000-4000-8000-000000000000","location_update",{"user_id":"u","lat":1.0,"lng":2.0,"accuracy":5.0,"heading":null,"speed":null,"timestamp":"2026-01-01T00:00:00.000001Z"}]"#;
        assert_eq!(classify(loc), Frame::Location(Some("2026-01-01T00:00:00.000001Z")));
        assert_eq!(classify(r#"["1","7","location:x","phx_reply",{"status":"ok","response":{}}]"#), Frame::ReplyOk);
        assert_eq!(
            classify(r#"["1","8","location:x","phx_reply",{"status":"error","response":{"reason":"rate_limited"}}]"#),
            Frame::ReplyError(Some("rate_limited"))
        );
        assert_eq!(classify(r#"[null,"h1","phoenix","phx_reply",{"status":"ok","response":{}}]"#), Frame::ReplyOk);
        assert_eq!(classify(r#"["1","1","location:x","phx_close",{}]"#), Frame::Close);
        let presence = r#"[null,null,"location:x","presence_diff",{"joins":{"u":{"metas":[{"display_name":"location_update"}]}},"leaves":{}}]"#;
        assert_eq!(classify(presence), Frame::Other);
        assert_eq!(classify("not json at all"), Frame::Other);
        let advice = r#"["1",null,"location:x","rate_advice",{"interval_ms":15000,"watchers":0}]"#;
        assert_eq!(rate_advice(advice), Some((15000, 0)));
        assert_eq!(classify(advice), Frame::Other);
        assert_eq!(
            rate_advice(r#"[null,null,"location:x","rate_advice",{"watchers":2,"interval_ms":1000}]"#),
            Some((1000, 2))
        );
        assert_eq!(rate_advice(r#"[null,null,"location:x","rate_advice",{"interval_ms":"fast"}]"#), None);
        assert_eq!(rate_advice(presence), None);
        // A multi-byte character at the cut must not panic.
        let long = format!(r#"[null,null,"{}","e",{{}}]"#, "é".repeat(200));
        assert_eq!(classify(&long), Frame::Other);
    }

    #[test]
    fn frames_we_send_are_what_the_server_decodes() {
        use location_sharing::realtime::protocol::{decode, Vsn};
        let text = location_frame("location:s", 42, 37.7749, -122.4194, "2026-01-01T00:00:00.000001Z");
        let f = decode(Vsn::V2, &text, "").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((f.event.as_str(), f.msg_ref.as_str()), ("location_update", Some("42")));
        assert_eq!(f.payload["timestamp"], "2026-01-01T00:00:00.000001Z");
        assert_eq!(f.payload["lat"], 37.7749);
        let map = f.payload.as_object().cloned().unwrap_or_default();
        let now = chrono::Utc::now();
        assert!(location_sharing::domain::Location::parse(&map, now).is_ok());
        let v = decode(Vsn::V2, &viewing_frame("location:s", 5, false), "").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((v.event.as_str(), v.msg_ref.as_str()), ("viewing", Some("5")));
        let map = v.payload.as_object().cloned().unwrap_or_default();
        assert!(location_sharing::domain::Viewing::parse(&map).is_ok_and(|v| !v.visible()));
        let hb = decode(Vsn::V2, &heartbeat_frame(3), "").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((hb.topic.as_str(), hb.event.as_str()), ("phoenix", "heartbeat"));
    }
}

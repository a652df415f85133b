//! The REST calls, over hyper's HTTP/1.1 client connections on sockets bound here (so that
//! they spread over 127.0.0.x source addresses like the WebSockets), kept alive and reused.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};

use crate::args::Target;

/// How long one REST call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The source address of the `j`-th client socket: 127.0.0.2 … 127.0.0.(n+1), or none.
pub fn source_addr(target: &Target, n: u8, j: usize) -> Option<IpAddr> {
    (n > 0 && target.is_loopback()).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (j % usize::from(n)) as u8)))
}

/// A TCP connection from `source` (when given) to `target`.
pub async fn connect_tcp(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The whole body (de-chunked).
    pub body: Bytes,
}

impl Response {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Body = Full<Bytes>;

fn hyper_io(e: hyper::Error) -> io::Error {
    io::Error::other(e)
}

/// One keep-alive connection. The connection half is polled here, together with each exchange,
/// rather than in a task of its own: no task per connection, no wake-up between the two halves,
/// and dropping a `Conn` (a timeout, say) closes its socket at once.
pub struct Conn {
    sender: SendRequest<Body>,
    conn: Connection<TokioIo<TcpStream>, Body>,
    reusable: bool,
}

impl Conn {
    /// Opens a connection.
    pub async fn open(target: &Target, source: Option<IpAddr>) -> io::Result<Self> {
        let stream = connect_tcp(target.socket_addr(), source).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(hyper_io)?;
        Ok(Self { sender, conn, reusable: true })
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> io::Result<Response> {
        let method = Method::from_bytes(method.as_bytes()).map_err(io::Error::other)?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host)
            .header(USER_AGENT, "loadgen")
            .header(ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::copy_from_slice(b.as_bytes())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(io::Error::other)?;
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let close = resp.headers().get(CONNECTION).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, close, body))
        };
        let (status, close, body) = drive(&mut self.conn, &mut self.reusable, exchange).await?;
        if close {
            self.reusable = false;
        }
        Ok(Response { status, body })
    }

    fn reusable(&self) -> bool {
        self.reusable && !self.sender.is_closed()
    }
}

/// Runs `exchange` while polling the connection that carries it. When the connection ends first
/// (the server closed it), the exchange gets one more poll: a response read in full before the
/// close completes it; anything else never will, since nothing reads the socket any more.
async fn drive<T>(
    conn: &mut Connection<TokioIo<TcpStream>, Body>,
    reusable: &mut bool,
    exchange: impl Future<Output = hyper::Result<T>>,
) -> io::Result<T> {
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        out = &mut exchange => out.map_err(hyper_io),
        ended = &mut *conn => {
            *reusable = false;
            ended.map_err(hyper_io)?;
            match exchange.now_or_never() {
                Some(out) => out.map_err(hyper_io),
                None => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed before the response")),
            }
        }
    }
}

/// Keep-alive connections to one server, reused by the tasks of one thread.
pub struct Client {
    target: Target,
    source_addrs: u8,
    /// Every connection from this address instead of the spread (the soak's abusers).
    fixed_source: Option<IpAddr>,
    idle: RefCell<Vec<Conn>>,
    opened: Cell<usize>,
}

impl Client {
    /// A client for `target`, spreading its connections over `source_addrs` addresses.
    pub fn new(target: Target, source_addrs: u8, salt: usize) -> Self {
        Self { target, source_addrs, fixed_source: None, idle: RefCell::new(Vec::new()), opened: Cell::new(salt) }
    }

    /// A client whose every connection comes from `source`.
    pub fn bound_to(target: Target, source: IpAddr) -> Self {
        Self { fixed_source: Some(source), ..Self::new(target, 0, 0) }
    }

    async fn once(
        &self,
        conn: &mut Conn,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> io::Result<Response> {
        match tokio::time::timeout(REQUEST_TIMEOUT, conn.request(&self.target.host, method, path, bearer, body)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out")),
        }
    }

    /// One request; a reused connection the server closed meanwhile is retried once on a new one.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&str>,
    ) -> io::Result<Response> {
        let reused = self.idle.borrow_mut().pop();
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(c) => c,
            None => self.open().await?,
        };
        let result = match self.once(&mut conn, method, path, bearer, body).await {
            Err(e) if was_reused && e.kind() != io::ErrorKind::TimedOut => {
                conn = self.open().await?;
                self.once(&mut conn, method, path, bearer, body).await
            }
            other => other,
        };
        if result.is_ok() && conn.reusable() {
            self.idle.borrow_mut().push(conn);
        }
        result
    }

    async fn open(&self) -> io::Result<Conn> {
        let j = self.opened.get();
        self.opened.set(j + 1);
        let source = self.fixed_source.or_else(|| source_addr(&self.target, self.source_addrs, j));
        match tokio::time::timeout(REQUEST_TIMEOUT, Conn::open(&self.target, source)).await {
            Ok(c) => c,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// Idle connections kept for reuse.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }
}

/// Why a REST step failed: `reason: detail`, the reason (`create_409`, `join_io`, …) being
/// what the report counts.
#[derive(Debug)]
pub struct CallError {
    /// `reason: detail`.
    pub detail: String,
}

fn call_error(step: &str, r: Result<&Response, &io::Error>) -> CallError {
    match r {
        Ok(resp) => {
            // A load test from one address meets the server's per-address limits at once: say how
            // to turn them off rather than leave a wall of 429s to decode.
            let hint = if resp.status == 429 {
                " (the server's abuse limits: start it with CREATE_SESSIONS_PER_MINUTE=0 JOINS_PER_MINUTE=0 \
                 SOCKET_CONNECTS_PER_MINUTE=0 MAX_SOCKETS_PER_ADDRESS=0 MAX_SOCKETS_PER_PARTICIPANT=0)"
            } else {
                ""
            };
            let body = String::from_utf8_lossy(&resp.body);
            CallError { detail: format!("{step}_{}: HTTP {} {body}{hint}", resp.status, resp.status) }
        }
        Err(e) => CallError { detail: format!("{step}_io: {e}") },
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `POST /api/sessions`: the session id.
pub async fn create_session(client: &Client) -> Result<String, CallError> {
    let body = r#"{"name":"loadgen","expires_in_minutes":120}"#;
    match client.request("POST", "/api/sessions", None, Some(body)).await {
        Ok(r) if r.status == 201 => str_field(&r.json(), "session_id").ok_or_else(|| call_error("create", Ok(&r))),
        Ok(r) => Err(call_error("create", Ok(&r))),
        Err(e) => Err(call_error("create", Err(&e))),
    }
}

/// A participant: its id and socket token.
#[derive(Debug, Clone)]
pub struct Joined {
    /// `user_id`.
    pub user_id: String,
    /// `websocket_token`.
    pub token: String,
}

/// `POST /api/sessions/{id}/join`.
pub async fn join(client: &Client, session_id: &str, name: &str) -> Result<Joined, CallError> {
    let path = format!("/api/sessions/{session_id}/join");
    let body = format!(r#"{{"display_name":"{name}"}}"#);
    match client.request("POST", &path, None, Some(&body)).await {
        Ok(r) if r.status == 201 => {
            let v = r.json();
            match (str_field(&v, "user_id"), str_field(&v, "websocket_token")) {
                (Some(user_id), Some(token)) => Ok(Joined { user_id, token }),
                _ => Err(call_error("join", Ok(&r))),
            }
        }
        Ok(r) => Err(call_error("join", Ok(&r))),
        Err(e) => Err(call_error("join", Err(&e))),
    }
}

/// `DELETE /api/sessions/{id}/participants/{user_id}` with the participant's own token.
pub async fn leave(client: &Client, session_id: &str, who: &Joined) -> Result<(), CallError> {
    let path = format!("/api/sessions/{session_id}/participants/{}", who.user_id);
    match client.request("DELETE", &path, Some(&who.token), None).await {
        Ok(r) if r.status == 204 => Ok(()),
        Ok(r) => Err(call_error("leave", Ok(&r))),
        Err(e) => Err(call_error("leave", Err(&e))),
    }
}

/// `GET /api/sessions/{id}`.
pub async fn get_session(client: &Client, session_id: &str) -> Result<(), CallError> {
    match client.request("GET", &format!("/api/sessions/{session_id}"), None, None).await {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(call_error("get", Ok(&r))),
        Err(e) => Err(call_error("get", Err(&e))),
    }
}

/// What `/health/detailed` says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    /// Session actors live.
    pub sessions_live: u64,
    /// Sockets connected.
    pub sockets: u64,
}

/// `GET /health/detailed` (200 or 503 both carry the figures).
pub async fn health(client: &Client) -> Result<Health, CallError> {
    match client.request("GET", "/health/detailed", None, None).await {
        Ok(r) if r.status == 200 || r.status == 503 => {
            let v = r.json();
            match (v.get("sessions_live").and_then(Value::as_u64), v.get("sockets").and_then(Value::as_u64)) {
                (Some(sessions_live), Some(sockets)) => Ok(Health { sessions_live, sockets }),
                _ => Err(call_error("health", Ok(&r))),
            }
        }
        Ok(r) => Err(call_error("health", Ok(&r))),
        Err(e) => Err(call_error("health", Err(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server that answers each request on its `i`-th connection with the next of
    /// `connections[i].0`'s canned responses, then closes that connection after `.1` ms (`None`:
    /// when the client does); it counts the connections.
    async fn serve(connections: Vec<(Vec<&'static str>, Option<u64>)>) -> (Target, Rc<Cell<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = match listener.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            other => panic!("{other:?}"),
        };
        let accepted = Rc::new(Cell::new(0));
        let count = accepted.clone();
        tokio::task::spawn_local(async move {
            for (responses, close_after) in connections {
                let Ok((mut s, _)) = listener.accept().await else { return };
                count.set(count.get() + 1);
                let mut buf = vec![0u8; 4096];
                for r in responses {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let Ok(n) = s.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = s.write_all(r.as_bytes()).await;
                }
                match close_after {
                    Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                    None => while s.read(&mut buf).await.is_ok_and(|n| n > 0) {},
                }
            }
        });
        (Target { addr, host: addr.to_string() }, accepted)
    }

    #[test]
    fn reads_length_chunked_and_empty_bodies_on_one_connection() {
        tokio::task::LocalSet::new().block_on(&rt(), async {
            let (target, accepted) = serve(vec![(
                vec![
                    "HTTP/1.1 201 Created\r\ncontent-length: 16\r\n\r\n{\"session_id\":1}",
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
                    "HTTP/1.1 204 No Content\r\n\r\n",
                ],
                None,
            )])
            .await;
            let client = Client::new(target, 0, 0);
            let r = client.request("POST", "/api/sessions", None, Some("{}")).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, r.json()["session_id"].as_u64()), (201, Some(1)));
            let r = client.request("GET", "/x", None, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, &r.body[..]), (200, &b"hello world"[..]));
            let r = client.request("DELETE", "/y", Some("t"), None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, r.body.len()), (204, 0));
            assert_eq!((client.idle_count(), accepted.get()), (1, 1));
        });
    }

    #[test]
    fn a_closed_connection_is_retried_once_and_connection_close_is_not_pooled() {
        tokio::task::LocalSet::new().block_on(&rt(), async {
            let (target, accepted) = serve(vec![
                // Keep-alive, then the server goes away while the connection sits in the pool.
                (vec!["HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], Some(10)),
                (vec!["HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nagain"], None),
                (vec!["HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"], Some(0)),
            ])
            .await;
            let client = Client::new(target, 0, 0);
            let r = client.request("GET", "/a", None, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, &r.body[..], client.idle_count()), (200, &b"ok"[..], 1));
            tokio::time::sleep(Duration::from_millis(50)).await;
            let r = client.request("GET", "/b", None, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, &r.body[..], client.idle_count()), (200, &b"again"[..], 0));
            let r = client.request("GET", "/c", None, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, accepted.get()), (503, 3));
            // Nobody listens any more: an error, not a hang.
            assert!(client.request("GET", "/d", None, None).await.is_err());
        });
    }

    #[test]
    fn source_addresses_rotate_on_loopback_only() {
        let lo = Target { addr: "127.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")), host: String::new() };
        let ips: Vec<_> = (0..4).map(|j| source_addr(&lo, 3, j)).collect();
        let want: Vec<Option<IpAddr>> =
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"].iter().map(|s| s.parse().ok()).collect();
        assert_eq!(ips, want);
        assert_eq!(source_addr(&lo, 0, 5), None);
        let other = Target { addr: "10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")), host: String::new() };
        assert_eq!(source_addr(&other, 8, 0), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn connections_are_bound_to_the_source_address() {
        rt().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let source: Option<IpAddr> = "127.0.0.3".parse().ok();
            let (client, accepted) = tokio::join!(connect_tcp(addr, source), listener.accept());
            let client = client.unwrap_or_else(|e| panic!("{e}"));
            let (_, peer) = accepted.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(peer.ip()), source);
            assert_eq!(client.local_addr().map(|a| a.ip()).ok(), source);
        });
    }
}

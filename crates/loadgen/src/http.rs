//! A tiny HTTP/1.1 client for the REST calls (keep-alive, Content-Length or chunked bodies),
//! and the calls themselves.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    reusable: bool,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl Conn {
    /// Opens a connection.
    pub async fn open(target: &Target, source: Option<IpAddr>) -> io::Result<Self> {
        let stream = connect_tcp(target.socket_addr(), source).await?;
        Ok(Self { stream, buf: Vec::with_capacity(2048), reusable: true })
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
        let mut req = String::with_capacity(256 + body.map_or(0, str::len) + bearer.map_or(0, str::len));
        req.push_str(method);
        req.push(' ');
        req.push_str(path);
        req.push_str(" HTTP/1.1\r\nHost: ");
        req.push_str(host);
        req.push_str("\r\nUser-Agent: loadgen\r\nAccept: application/json\r\n");
        if let Some(token) = bearer {
            req.push_str("Authorization: Bearer ");
            req.push_str(token);
            req.push_str("\r\n");
        }
        match body {
            Some(b) => {
                req.push_str("Content-Type: application/json\r\nContent-Length: ");
                req.push_str(&b.len().to_string());
                req.push_str("\r\n\r\n");
                req.push_str(b);
            }
            None => req.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.stream.write_all(req.as_bytes()).await?;
        self.read_response(method == "HEAD").await
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self, head: bool) -> io::Result<Response> {
        let (status, header_len, length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"));
                        } else if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
                            self.reusable = false;
                        }
                    }
                    break (status, n, length, chunked);
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > 64 * 1024 {
                        return Err(bad("response head too large"));
                    }
                    self.fill().await?
                }
                Err(_) => return Err(bad("malformed response")),
            }
        };
        self.buf.drain(..header_len);
        let no_body = head || status == 204 || status == 304 || (100..200).contains(&status);
        let body = if no_body {
            Vec::new()
        } else if chunked {
            self.read_chunked().await?
        } else if let Some(len) = length {
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else {
            // Until the connection closes.
            self.reusable = false;
            loop {
                match self.fill().await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            std::mem::take(&mut self.buf)
        };
        Ok(Response { status, body })
    }

    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                self.fill().await?;
            };
            let line = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| bad("chunk size"))?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("chunk size"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        self.buf.drain(..p + 2);
                        if p == 0 {
                            return Ok(body);
                        }
                    } else {
                        self.fill().await?;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

/// Keep-alive connections to one server, reused by the tasks of one thread.
pub struct Client {
    target: Target,
    source_addrs: u8,
    idle: RefCell<Vec<Conn>>,
    opened: std::cell::Cell<usize>,
}

impl Client {
    /// A client for `target`, spreading its connections over `source_addrs` addresses.
    pub fn new(target: Target, source_addrs: u8, salt: usize) -> Self {
        Self { target, source_addrs, idle: RefCell::new(Vec::new()), opened: std::cell::Cell::new(salt) }
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
        if result.is_ok() && conn.reusable && conn.buf.is_empty() {
            self.idle.borrow_mut().push(conn);
        }
        result
    }

    async fn open(&self) -> io::Result<Conn> {
        let j = self.opened.get();
        self.opened.set(j + 1);
        let source = source_addr(&self.target, self.source_addrs, j);
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
        Ok(resp) => CallError {
            detail: format!("{step}_{}: HTTP {} {}", resp.status, resp.status, String::from_utf8_lossy(&resp.body)),
        },
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
    use tokio::net::TcpListener;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A one-connection server that answers each request with the next canned response.
    async fn serve(responses: Vec<&'static str>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = match listener.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            other => panic!("{other:?}"),
        };
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else { return };
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
        });
        Target { addr, host: addr.to_string() }
    }

    #[test]
    fn reads_length_chunked_and_empty_bodies_on_one_connection() {
        rt().block_on(async {
            let target = serve(vec![
                "HTTP/1.1 201 Created\r\ncontent-length: 16\r\n\r\n{\"session_id\":1}",
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
                "HTTP/1.1 204 No Content\r\n\r\n",
            ])
            .await;
            let client = Client::new(target, 0, 0);
            let r = client.request("POST", "/api/sessions", None, Some("{}")).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, r.json()["session_id"].as_u64()), (201, Some(1)));
            let r = client.request("GET", "/x", None, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
            let r = client.request("DELETE", "/y", Some("t"), None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((r.status, r.body.len()), (204, 0));
            assert_eq!(client.idle_count(), 1);
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
}

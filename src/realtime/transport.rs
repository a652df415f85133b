//! Serving accepted WebSockets straight off their TCP connections.
//!
//! actix-http's HTTP/1 dispatcher keeps an 8 KiB read buffer and a write buffer (grown to 16 KiB
//! by the first join reply and presence state) for a connection's whole life: three quarters of
//! what an idle socket cost. Upgrade requests therefore go to [`Takeover`] instead: it asks the
//! app to answer the handshake like any request (routing, middleware, checks, logs), and when the
//! answer is a `101` carrying a [`PendingSocket`], it writes the head itself and serves the socket
//! actor (still an `actix-web-actors` [`WebsocketContext`]) with no buffer held between reads or
//! between writes. Any other answer is written out and the connection closed.

use std::fmt::{self, Write as _};
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_codec::Framed;
use actix_http::error::PayloadError;
use actix_http::ws::Codec;
use actix_http::{h1, Request};
use actix_service::{Service, ServiceFactory};
use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use actix_web_actors::ws::WebsocketContext;
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::socket::SocketActor;
use crate::net::HeadDeadline;

/// Bytes read per `read` call; a frame larger than this arrives in several reads.
const READ_CHUNK: usize = 8 * 1024;
/// The largest response body written to a refused upgrade (ours are small JSON errors).
const MAX_REFUSAL_BODY: usize = 64 * 1024;
/// How long a closed connection waits for its peer's own end (its Close frame, then FIN).
const LINGER: Duration = Duration::from_secs(1);
/// How long the answer to a refused upgrade may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(5);

/// A socket actor the handshake accepted, riding in its `101` response's extensions.
pub struct PendingSocket {
    /// The actor to serve.
    pub actor: SocketActor,
    /// The largest frame (or message) it accepts.
    pub max_frame: usize,
    /// How long a write may wait for a client that reads nothing before the connection is dropped.
    pub write_stall: Duration,
}

/// The upgrade service factory of one worker, around its own instance of the app.
pub struct Takeover<F> {
    app: F,
}

impl<F> Takeover<F> {
    /// Answers handshakes with `app`.
    pub fn new(app: F) -> Self {
        Self { app }
    }
}

impl<F, B> ServiceFactory<(Request, Framed<HeadDeadline<TcpStream>, h1::Codec>)> for Takeover<F>
where
    F: ServiceFactory<Request, Config = (), Response = ServiceResponse<B>, Error = actix_web::Error>,
    F::Service: 'static,
    F::InitError: fmt::Debug + 'static,
    F::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = actix_web::Error;
    type Config = ();
    type Service = TakeoverService<F::Service>;
    type InitError = F::InitError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Service, Self::InitError>>>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let app = self.app.new_service(());
        Box::pin(async move { Ok(TakeoverService { app: Rc::new(app.await?) }) })
    }
}

/// Serves one upgrade request and, when it becomes a WebSocket, the connection to its end.
pub struct TakeoverService<S> {
    app: Rc<S>,
}

impl<S, B> Service<(Request, Framed<HeadDeadline<TcpStream>, h1::Codec>)> for TakeoverService<S>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<(), actix_web::Error>>>>;

    actix_service::forward_ready!(app);

    fn call(&self, (req, framed): (Request, Framed<HeadDeadline<TcpStream>, h1::Codec>)) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move {
            // Boxed: this future lives as long as the socket, and should not keep the room
            // the app's (middleware-deep) future needed during the handshake.
            let res = match Box::pin(app.call(req)).await {
                Ok(res) => res.into_parts().1.map_into_boxed_body(),
                Err(e) => e.error_response(),
            };
            // Frames a client sent right behind its handshake were read with it; the
            // dispatcher's buffers go now.
            let (io, early) = {
                let parts = framed.into_parts();
                (parts.io.into_inner(), Bytes::copy_from_slice(&parts.read_buf))
            };
            // The connection is ours now: an I/O error (a client gone mid-write) only ends it.
            if let Err(e) = serve(io, early, res).await {
                log::debug!("websocket connection ended: {e}");
            }
            Ok(())
        })
    }
}

async fn serve(io: TcpStream, early: Bytes, mut res: HttpResponse<BoxBody>) -> io::Result<()> {
    let pending = res.extensions_mut().remove::<PendingSocket>();
    match pending {
        Some(socket) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let head = encode_head(&res, "connection: upgrade\r\n");
            drop(res);
            write_all(&io, Bytes::from(head), socket.write_stall).await?;
            run(io, early, socket).await
        }
        _ => {
            let (res, body) = res.into_parts();
            let body = body::to_bytes_limited(body, MAX_REFUSAL_BODY)
                .await
                .map_err(|_| io::Error::other("refusal body too large"))?
                // actix's body errors are not `Send`: an io::Error can carry only their text.
                .map_err(|e| io::Error::other(e.to_string()))?;
            let extra = format!("content-length: {}\r\nconnection: close\r\n", body.len());
            write_all(&io, Bytes::from(encode_head(&res, &extra)), REFUSAL_WRITE).await?;
            write_all(&io, body, REFUSAL_WRITE).await?;
            close(io).await
        }
    }
}

/// Pumps the actor's encoded frames into the connection; its input reads the connection.
async fn run(io: TcpStream, early: Bytes, socket: PendingSocket) -> io::Result<()> {
    let io = Rc::new(io);
    let input = Incoming { io: io.clone(), early: (!early.is_empty()).then_some(early) };
    let codec = Codec::new().max_size(socket.max_frame);
    let stall = socket.write_stall;
    {
        let mut frames = pin!(WebsocketContext::with_codec(socket.actor, input, codec));
        // While a write waits for a slow reader, the actor is not polled: its outbox absorbs pushes.
        while let Some(chunk) = frames.next().await {
            match chunk {
                Ok(chunk) => write_all(&io, chunk, stall).await?,
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    } // the actor and its input are gone: the connection is ours alone
    match Rc::try_unwrap(io) {
        Ok(io) => close(io).await,
        Err(_) => Ok(()),
    }
}

/// Writes `bytes` whole; fails when the peer accepts nothing for `stall`.
async fn write_all(io: &TcpStream, mut bytes: Bytes, stall: Duration) -> io::Result<()> {
    while !bytes.is_empty() {
        match io.try_write(&bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tokio::time::timeout(stall, io.writable())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client reads nothing"))??,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends the connection with a FIN, then lingers briefly for the peer's own end, discarding what
/// it still sends (its Close frame): closing with unread input would answer it with a reset.
async fn close(mut io: TcpStream) -> io::Result<()> {
    io.shutdown().await?;
    let drain = async {
        let mut sink = [0u8; 512];
        loop {
            io.readable().await?;
            match io.try_read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    tokio::time::timeout(LINGER, drain).await.unwrap_or(Ok(()))
}

/// The status line and headers of `res`, plus `extra` header lines.
fn encode_head<B>(res: &HttpResponse<B>, extra: &str) -> Vec<u8> {
    let status = res.status();
    let mut head = String::with_capacity(256);
    let _ = write!(head, "HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let mut out = head.into_bytes();
    for (name, value) in res.headers() {
        if matches!(*name, header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// The connection's incoming bytes, each read into a buffer of its own size.
struct Incoming {
    io: Rc<TcpStream>,
    early: Option<Bytes>,
}

impl futures_util::Stream for Incoming {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(early) = this.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        loop {
            // Polled on every wake of the actor: nothing is touched until there is data.
            if let Err(e) = ready!(this.io.poll_read_ready(cx)) {
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            let mut buf = [0u8; READ_CHUNK];
            match this.io.try_read(&mut buf) {
                Ok(0) => return Poll::Ready(None),
                Ok(n) => return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&buf[..n])))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Some(Err(PayloadError::Io(e)))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_status_headers_and_extra_lines() {
        let res = HttpResponse::build(StatusCode::FORBIDDEN)
            .insert_header(("x-request-id", "abc"))
            .insert_header((header::CONTENT_LENGTH, "99"))
            .finish();
        let head = String::from_utf8(encode_head(&res, "connection: close\r\n")).unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
        assert!(head.contains("x-request-id: abc\r\n"), "{head}");
        assert!(!head.contains("99"), "the caller sets the length: {head}");
        assert!(head.ends_with("connection: close\r\n\r\n"), "{head}");
    }
}

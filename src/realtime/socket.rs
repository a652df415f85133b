//! One actor per WebSocket (`actix-web-actors`; the connection under it is served by
//! [`transport`](super::transport)). It decodes and checks frames, answers what it can itself (heartbeats,
//! pings, refusals) and hands channel traffic to its session actor; what the session sends back
//! arrives through the socket's [`Outbox`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::HttpRequest;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError, WebsocketContext};
use chrono::Utc;
use serde_json::{json, Value};

use super::messages::*;
use super::outbox::{Outbox, Outgoing};
use super::protocol::{decode, encode_lifecycle, encode_reply, topic_of, InFrame, ReplyTo, Status, Vsn};
use super::registry::SessionRegistry;
use super::session::SessionActor;
use super::transport::PendingSocket;
use crate::abuse::SocketSlot;
use crate::config::Limits;
use crate::domain::{Position, Sealed, Viewing};
use crate::metrics::Metrics;
use crate::ops::drain::Drain;
use crate::sessions::SocketGrant;
use crate::views::rfc3339;

/// How often a socket checks its silence and token.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a socket tells its session that its participant was seen.
const SEEN_EVERY: Duration = Duration::from_secs(1);

static NEXT_SOCKET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Channel {
    join_ref: Value,
    session: Option<Addr<SessionActor>>,
    /// Whether the joined session is end-to-end encrypted: its positions must come sealed.
    e2e: bool,
}

/// The actor of one WebSocket.
pub struct SocketActor {
    id: SocketId,
    who: SocketGrant,
    vsn: Vsn,
    topic: String,
    registry: Addr<SessionRegistry>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    drain: Arc<Drain>,
    /// The joined (or joining) channel; a socket has at most one: its session's.
    channel: Option<Channel>,
    last_frame: Instant,
    last_seen_report: Option<Instant>,
    fragments: Option<Vec<u8>>,
    /// Its place in its client address's count of open sockets, given back when the actor drops.
    _slot: Option<SocketSlot>,
}

impl SocketActor {
    /// A socket for `who`, speaking `vsn`.
    pub fn new(
        who: SocketGrant,
        vsn: Vsn,
        registry: Addr<SessionRegistry>,
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
        drain: Arc<Drain>,
    ) -> Self {
        Self {
            id: NEXT_SOCKET.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            topic: topic_of(&who.session),
            who,
            vsn,
            registry,
            outbox: Arc::new(Outbox::new(limits.max_socket_queue, metrics.frames_dropped.clone())),
            metrics,
            limits,
            drain,
            channel: None,
            last_frame: Instant::now(),
            last_seen_report: None,
            fragments: None,
            _slot: None,
        }
    }

    /// The socket holds `slot` (its address's count of open sockets) for as long as it lives.
    pub fn holding(mut self, slot: SocketSlot) -> Self {
        self._slot = Some(slot);
        self
    }

    /// Accepts the WebSocket handshake of `req`: a `101` carrying this actor, which the
    /// [`Takeover`](super::transport::Takeover) upgrade service serves once it is written.
    pub fn accept(self, req: &HttpRequest) -> Result<actix_web::HttpResponse, actix_web::Error> {
        let mut res = ws::handshake(req)?.finish();
        let (max_frame, write_stall) = (self.limits.max_frame_bytes, self.limits.socket_timeout);
        res.extensions_mut().insert(PendingSocket { actor: self, max_frame, write_stall });
        Ok(res)
    }

    fn reply(&self, ctx: &mut WebsocketContext<Self>, to: &ReplyTo, status: Status, response: Value) {
        ctx.text(encode_reply(self.vsn, to, status, &response));
    }

    fn error(&self, ctx: &mut WebsocketContext<Self>, to: &ReplyTo, reason: &str) {
        self.reply(ctx, to, Status::Error, json!({ "reason": reason }));
    }

    fn close(&mut self, ctx: &mut WebsocketContext<Self>, code: u16, description: &str) {
        ctx.close(Some(CloseReason { code: CloseCode::from(code), description: Some(description.to_owned()) }));
        ctx.stop();
    }

    fn handle_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        match decode(self.vsn, text, &self.topic) {
            Ok(frame) => self.dispatch(frame, ctx),
            Err(bad) => {
                self.metrics.unparsable_frames.inc();
                if let Some(msg_ref) = bad.msg_ref {
                    let to = ReplyTo {
                        join_ref: bad.join_ref,
                        msg_ref,
                        topic: bad.topic.unwrap_or_else(|| "phoenix".into()),
                        event: String::new(),
                    };
                    self.error(ctx, &to, "invalid_message");
                }
            }
        }
    }

    fn dispatch(&mut self, frame: InFrame, ctx: &mut WebsocketContext<Self>) {
        let to = ReplyTo::from(&frame);
        if self.vsn == Vsn::Plain {
            return match frame.event.as_str() {
                "heartbeat" => self.reply(ctx, &to, Status::Ok, json!({})),
                _ => self.channel_event(frame, &to, ctx),
            };
        }
        match (frame.topic.as_str(), frame.event.as_str()) {
            ("phoenix", "heartbeat") => self.reply(ctx, &to, Status::Ok, json!({})),
            (_, "phx_join") => self.join(frame.topic.clone(), to, ctx),
            (topic, _) if topic != self.topic || self.channel.is_none() => self.error(ctx, &to, "unmatched topic"),
            _ if self.is_stale(&frame.join_ref) => {}
            (_, "phx_leave") => self.leave(&to, ctx),
            _ => self.channel_event(frame, &to, ctx),
        }
    }

    /// A push whose join ref is not the current join's belongs to a replaced channel.
    fn is_stale(&self, join_ref: &Value) -> bool {
        match &self.channel {
            Some(ch) => !join_ref.is_null() && *join_ref != ch.join_ref,
            None => true,
        }
    }

    fn channel_event(&mut self, frame: InFrame, to: &ReplyTo, ctx: &mut WebsocketContext<Self>) {
        match frame.event.as_str() {
            "location_update" => self.location(frame, to, ctx),
            "viewing" => self.viewing(frame, to, ctx),
            "ping" => self.reply(ctx, to, Status::Ok, json!({ "type": "pong", "server_time": rfc3339(&Utc::now()) })),
            _ => self.error(ctx, to, "unknown_event"),
        }
    }

    fn location(&mut self, frame: InFrame, to: &ReplyTo, ctx: &mut WebsocketContext<Self>) {
        let Some((session, e2e)) = self.channel.as_ref().and_then(|c| Some((c.session.clone()?, c.e2e))) else {
            return self.error(ctx, to, "not_joined");
        };
        // In an e2e session every refusal names `sealed` (SPEC §10), the one field it takes.
        let parsed = match frame.payload.as_object() {
            _ if frame.payload_unreadable && e2e => Err(json!({ "sealed": [Sealed::CLEAR_FIELDS_REFUSED] })),
            _ if frame.payload_unreadable => Err(json!({ "payload": ["must hold finite numbers only"] })),
            Some(payload) => Position::parse(payload, e2e, Utc::now()).map_err(|e| json!(e)),
            None if e2e => Err(json!({ "sealed": ["can't be blank"] })),
            None => Err(json!({ "payload": ["must be an object"] })),
        };
        match parsed {
            Ok(position) => session.do_send(LocationReported {
                socket: self.id,
                participant: self.who.participant,
                position,
                reply: to.clone(),
            }),
            Err(errors) => {
                self.reply(ctx, to, Status::Error, json!({ "reason": "invalid_location", "errors": errors }))
            }
        }
    }

    /// `viewing` (SPEC §8): whether this socket's user looks at the map now.
    fn viewing(&mut self, frame: InFrame, to: &ReplyTo, ctx: &mut WebsocketContext<Self>) {
        let Some(session) = self.channel.as_ref().and_then(|c| c.session.clone()) else {
            return self.error(ctx, to, "not_joined");
        };
        let parsed = match frame.payload.as_object() {
            Some(payload) if !frame.payload_unreadable => Viewing::parse(payload).map_err(|e| e.to_string()),
            _ => Err("must be true or false".to_owned()),
        };
        match parsed {
            Ok(viewing) => {
                session.do_send(ViewingChanged {
                    socket: self.id,
                    participant: self.who.participant,
                    visible: viewing.visible(),
                });
                self.reply(ctx, to, Status::Ok, json!({}));
            }
            Err(message) => self.reply(
                ctx,
                to,
                Status::Error,
                json!({ "reason": "invalid_payload", "errors": { "visible": [message] } }),
            ),
        }
    }

    fn join(&mut self, topic: String, to: ReplyTo, ctx: &mut WebsocketContext<Self>) {
        if !topic.starts_with("location:") {
            return self.error(ctx, &to, "unmatched topic");
        }
        if topic != self.topic {
            return self.error(ctx, &to, JoinRefusal::Unauthorized.reason());
        }
        // The last join wins: the old one is closed first.
        if let Some(old) = self.channel.take() {
            ctx.text(encode_lifecycle(self.vsn, &old.join_ref, &self.topic, "phx_close"));
        }
        self.connect(to, ctx);
    }

    fn connect(&mut self, to: ReplyTo, ctx: &mut WebsocketContext<Self>) {
        let join_ref = to.join_ref.clone();
        self.channel = Some(Channel { join_ref: join_ref.clone(), session: None, e2e: false });
        let handle =
            SocketHandle { id: self.id, participant: self.who.participant, vsn: self.vsn, outbox: self.outbox.clone() };
        let request = self.registry.send(JoinSession {
            session: self.who.session,
            socket: handle,
            reply: to.clone(),
            arbiter: Arbiter::current(),
        });
        ctx.wait(request.into_actor(self).map(move |result, act, ctx| {
            let still_current = act.channel.as_ref().is_some_and(|c| c.join_ref == join_ref);
            match result {
                Ok(Ok(joined)) if still_current => {
                    if let Some(ch) = act.channel.as_mut() {
                        ch.session = Some(joined.session);
                        ch.e2e = joined.admitted.e2e;
                    }
                }
                Ok(Ok(joined)) => joined.session.do_send(Disconnect { socket: act.id }),
                Ok(Err(refusal)) => {
                    if still_current {
                        act.channel = None;
                    }
                    act.refused(&to, refusal, ctx);
                }
                Err(_) => {
                    if still_current {
                        act.channel = None;
                    }
                    act.refused(&to, JoinRefusal::Unavailable, ctx);
                }
            }
        }));
    }

    fn refused(&mut self, to: &ReplyTo, refusal: JoinRefusal, ctx: &mut WebsocketContext<Self>) {
        if self.vsn == Vsn::Plain {
            // A plain socket has no channel to retry: it is told why and closed.
            self.error(ctx, to, refusal.reason());
            let code = if refusal == JoinRefusal::Unavailable { 1011 } else { 1008 };
            return self.close(ctx, code, refusal.reason());
        }
        self.error(ctx, to, refusal.reason());
    }

    fn leave(&mut self, to: &ReplyTo, ctx: &mut WebsocketContext<Self>) {
        if let Some(ch) = self.channel.take() {
            if let Some(session) = ch.session {
                session.do_send(Disconnect { socket: self.id });
            }
            self.reply(ctx, to, Status::Ok, json!({}));
            ctx.text(encode_lifecycle(self.vsn, &ch.join_ref, &self.topic, "phx_close"));
        }
    }

    fn seen(&mut self) {
        let now = Instant::now();
        self.last_frame = now;
        if self.last_seen_report.is_some_and(|t| now.duration_since(t) < SEEN_EVERY) {
            return;
        }
        self.last_seen_report = Some(now);
        let seen = Seen { session: self.who.session, participant: self.who.participant, at: Utc::now() };
        match self.channel.as_ref().and_then(|c| c.session.as_ref()) {
            Some(session) => session.do_send(seen),
            None => self.registry.do_send(seen),
        }
    }

    fn check(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.drain.close_at(self.id).is_some_and(|at| Instant::now() >= at) {
            return self.close(ctx, 1012, "server restarting; reconnect");
        }
        if self.last_frame.elapsed() >= self.limits.socket_timeout {
            return self.close(ctx, 1000, "timeout");
        }
        // The session actor closes its sockets when the session expires; this covers the rest.
        if Utc::now() >= self.who.expires_at + chrono::Duration::seconds(2) {
            self.close(ctx, 1008, "token expired");
        }
    }
}

impl Actor for SocketActor {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics.sockets.inc();
        let kick = ctx.address().recipient();
        self.registry.do_send(SocketOpened { socket: self.id, participant: self.who.participant, kick });
        ctx.add_stream(self.outbox.stream());
        ctx.run_interval(CHECK_INTERVAL, |act, ctx| act.check(ctx));
        if self.vsn == Vsn::Plain {
            let to = ReplyTo {
                join_ref: Value::Null,
                msg_ref: Value::Null,
                topic: self.topic.clone(),
                event: "join".into(),
            };
            self.connect(to, ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics.sockets.dec();
        self.registry.do_send(SocketClosed { socket: self.id, participant: self.who.participant });
        self.outbox.close();
        if let Some(session) = self.channel.take().and_then(|c| c.session) {
            session.do_send(Disconnect { socket: self.id });
        }
    }
}

impl Handler<Kick> for SocketActor {
    type Result = ();

    fn handle(&mut self, kick: Kick, ctx: &mut Self::Context) {
        match kick {
            Kick::Left if self.channel.is_none() => self.close(ctx, 1000, "left the session"),
            Kick::Left => {}
            Kick::TooManySockets => self.close(ctx, 1008, "too many sockets"),
        }
    }
}

/// What the session actor queued in the outbox.
impl StreamHandler<Outgoing> for SocketActor {
    fn handle(&mut self, item: Outgoing, ctx: &mut Self::Context) {
        match item {
            Outgoing::Frame { text, .. } => ctx.text(text),
            Outgoing::ChannelGone(join_ref) => {
                if self.channel.as_ref().is_some_and(|c| c.join_ref == join_ref) {
                    self.channel = None;
                }
            }
            Outgoing::Close(code, reason) => {
                self.channel = None;
                self.close(ctx, code, reason);
            }
        }
    }

    /// The outbox stream never ends; the default would stop the actor.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for SocketActor {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(msg) => msg,
            Err(ProtocolError::Overflow) => return self.close(ctx, 1009, "frame too large"),
            Err(e) => {
                log::debug!("websocket protocol error: {e}");
                return self.close(ctx, 1002, "protocol error");
            }
        };
        self.seen();
        match msg {
            ws::Message::Text(text) => self.handle_text(&text, ctx),
            ws::Message::Ping(bytes) => ctx.pong(&bytes),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Binary(_) => self.metrics.unparsable_frames.inc(),
            ws::Message::Continuation(item) => self.continuation(item, ctx),
        }
    }
}

impl SocketActor {
    fn continuation(&mut self, item: Item, ctx: &mut WebsocketContext<Self>) {
        let (bytes, first, last) = match item {
            Item::FirstText(b) => (b, true, false),
            Item::FirstBinary(b) => (b, true, false),
            Item::Continue(b) => (b, false, false),
            Item::Last(b) => (b, false, true),
        };
        let buffer =
            if first { self.fragments.insert(Vec::new()) } else { self.fragments.get_or_insert_with(Vec::new) };
        if buffer.len() + bytes.len() > self.limits.max_frame_bytes {
            self.fragments = None;
            return self.close(ctx, 1009, "message too large");
        }
        buffer.extend_from_slice(&bytes);
        if last {
            let whole = self.fragments.take().unwrap_or_default();
            match String::from_utf8(whole) {
                Ok(text) => self.handle_text(&text, ctx),
                Err(_) => self.metrics.unparsable_frames.inc(),
            }
        }
    }
}

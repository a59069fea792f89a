//! The WebSocket service: `/ws` broadcast (the FastAPI `ConnectionManager` of the second seed)
//! and `/echo`.
//!
//! A connection arrives here from the HTTP service through the dispatcher: `upgrade` judges the
//! request head (`codec::ws::handshake`), queues the `101` and returns the connection's new
//! state; any bytes that followed the head are frames. Frames are decoded by the sans-IO
//! `codec::ws::MessageDecoder` (masks removed in place in the loop's read buffer, UTF-8 checked
//! as it streams) and answered here:
//! - `/ws`: a text message is formatted once, encoded into one frame once, and that frame is
//!   shared (`Rc<[u8]>`) by every recipient's output queue. A recipient whose socket refuses
//!   more than `--ws-max-pending` bytes (judged when a flush comes up short, not while a burst
//!   is being queued for everyone) is cut off with close 1008 instead of slowing anyone.
//! - `/echo`: every message goes back as it came, text as text, binary as binary.
//! - `/loop/ws` (`--inspect`): a watcher of the loop; the dispatcher hands it to
//!   `service::inspect`, which sends it frames. What it sends is read and ignored.
//! - permessage-deflate (RFC 7692, `--ws-deflate`): negotiated in the upgrade with no context
//!   takeover either way, so compressed messages are inflated and compressed whole by the
//!   loop's one pair of contexts (`ws_deflate.rs`); a broadcast is encoded once per variant
//!   (compressed, plain), never per recipient.
//! - Pings get pongs; idle clients are pinged every `--ws-ping` and dropped if the next ping
//!   finds the previous one unanswered; a close is answered with a close, then the TCP
//!   connection is closed after the flush (the loop's lingering close bounds the wait).

use super::config::WebConfig;
use super::ws_deflate::{Decompressor, Encoder, Variants};
use crate::codec::escape::escaped;
use crate::codec::http::{RequestHead, Response};
use crate::codec::ws::close::{close_frame, CloseCode};
use crate::codec::ws::extensions::negotiate_deflate;
use crate::codec::ws::frame::{frame, OpCode};
use crate::codec::ws::handshake;
use crate::codec::ws::message::{Message, MessageDecoder, Role};
use crate::codec::ws::Compression;
use crate::runtime::{Chunk, CloseReason, ConnId, Context};
use log::{debug, info, warn};
use slab::Slab;
use std::time::Duration;

const LOG: &str = "readyloop::ws";

/// Where a `/ws` message goes besides this process' clients (the Redis relay, wired in by the
/// dispatcher).
pub type Relay<'r, S, M> = &'r mut dyn FnMut(&mut Context<'_, S, M>, &str);

/// Which WebSocket endpoint a connection upgraded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws`: text messages are broadcast to every `/ws` client.
    Broadcast,
    /// `/echo`: messages come back unchanged.
    Echo,
    /// `/loop/ws`: the inspector's frames go out; messages in are ignored.
    Inspect,
}

/// Where a WebSocket connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Frames flow.
    Open,
    /// A ping went out and no frame has come back since.
    AwaitingPong,
    /// Our close frame is queued: nothing more is sent or decoded.
    Closing,
}

/// State of one WebSocket connection.
#[derive(Debug)]
pub struct WsConn {
    decoder: MessageDecoder,
    endpoint: Endpoint,
    phase: Phase,
    /// Its key in `WsService::clients` while it receives broadcasts.
    member: Option<usize>,
}

impl WsConn {
    /// The endpoint it upgraded on.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// False once our close frame is queued (nothing more may be sent).
    pub fn is_open(&self) -> bool {
        self.phase != Phase::Closing
    }
}

/// The WebSocket service: settings and the `/ws` audience.
pub struct WsService {
    max_message: usize,
    ping: Option<Duration>,
    max_pending: usize,
    broadcast_format: String,
    allowed_origins: Vec<String>,
    /// Accept permessage-deflate offers (`--ws-deflate`).
    deflate: bool,
    /// Builds what we send, with the loop's one compressor.
    encoder: Encoder,
    /// Inflates what compressed messages we receive, with the loop's one inflater.
    decompressor: Decompressor,
    /// Open `/ws` connections (broadcast recipients) and whether each takes compressed
    /// frames. A slab, so a disconnect is O(1) however many there are (a thousand clients
    /// leaving at once cost a thousand steps, not a million).
    clients: Slab<(ConnId, Compression)>,
    /// Open WebSocket connections on any path.
    open: usize,
    /// `/ws` clients cut off as slow consumers (close 1008) since start.
    slow_consumers: u64,
}

impl WsService {
    /// A service with `web`'s WebSocket settings.
    pub fn new(web: &WebConfig) -> WsService {
        WsService {
            max_message: web.max_message,
            ping: web.ws_ping,
            max_pending: web.ws_max_pending,
            broadcast_format: web.broadcast_format.clone(),
            allowed_origins: web.allowed_origins.clone(),
            deflate: web.ws_deflate,
            encoder: Encoder::new(web.ws_deflate_min),
            decompressor: Decompressor::default(),
            clients: Slab::new(),
            open: 0,
            slow_consumers: 0,
        }
    }

    /// Open WebSocket connections (any endpoint).
    pub fn open(&self) -> usize {
        self.open
    }

    /// `/ws` clients cut off as slow consumers since start.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers
    }

    /// Judges an upgrade request for `/ws` or `/echo`. On success the `101` is queued and the
    /// connection's WebSocket state returned; otherwise the HTTP answer to give.
    pub fn upgrade<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        head: &RequestHead,
    ) -> Result<Box<WsConn>, Response> {
        let id = cx.id();
        let endpoint = match head.path.as_str() {
            "/ws" => Endpoint::Broadcast,
            "/loop/ws" => Endpoint::Inspect,
            _ => Endpoint::Echo,
        };
        let key = handshake::check_upgrade(head)
            .map_err(|e| Response::text(e.status(), e.reason()).headers(e.headers()))?;
        let allowed = &self.allowed_origins;
        if !allowed.is_empty() && !head.origin.as_ref().is_some_and(|o| allowed.contains(o)) {
            match &head.origin {
                Some(o) => {
                    warn!(target: LOG, "conn {id}: WebSocket origin \"{}\" refused", escaped(o))
                }
                None => {
                    warn!(target: LOG, "conn {id}: WebSocket upgrade without an origin refused")
                }
            }
            return Err(Response::text(403, "origin not allowed"));
        }
        let accepted = self
            .deflate
            .then(|| negotiate_deflate(head.ws_extensions.iter().map(String::as_str)))
            .flatten();
        let compression = match accepted {
            Some(_) => Compression::PerMessageDeflate,
            None => Compression::Off,
        };
        let answer = accepted.map(|a| a.header_value());
        let accept = handshake::accept_key(key);
        cx.send(id, handshake::response_with_extensions(&accept, answer));
        if let Some(answer) = answer {
            debug!(target: LOG, "conn {id}: WebSocket extension accepted: {answer}");
        }
        self.open += 1;
        let member = match endpoint {
            Endpoint::Broadcast => {
                let member = self.clients.insert((id, compression));
                info!(target: LOG, "conn {id}: WebSocket connected to /ws ({} connected)", self.clients.len());
                Some(member)
            }
            Endpoint::Echo => {
                debug!(target: LOG, "conn {id}: WebSocket connected to /echo");
                None
            }
            Endpoint::Inspect => {
                info!(target: LOG, "conn {id}: watching the loop (/loop/ws)");
                None
            }
        };
        match self.ping {
            Some(every) => cx.set_timer(id, every),
            None => cx.cancel_timer(id),
        }
        Ok(Box::new(WsConn {
            decoder: MessageDecoder::with_max_message(Role::Server, self.max_message)
                .with_compression(compression),
            endpoint,
            phase: Phase::Open,
            member,
        }))
    }

    /// Decodes and answers the frames in `data`; a `/ws` message also goes to `relay`.
    pub fn on_data<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        ws: &mut WsConn,
        data: &mut [u8],
        relay: Relay<'_, S, M>,
    ) -> usize {
        let id = cx.id();
        if ws.phase == Phase::Closing {
            return data.len();
        }
        // Any frame shows the peer is alive: it is not idle, so no ping is due yet.
        ws.phase = Phase::Open;
        if let Some(every) = self.ping {
            cx.set_timer(id, every);
        }
        let mut used = 0;
        let compression = ws.decoder.compression();
        while ws.phase != Phase::Closing {
            let (n, msg) = match ws.decoder.decode(&mut data[used..]) {
                Err(e) => {
                    debug!(target: LOG, "conn {id}: failing the connection: {e}");
                    close(cx, &mut ws.phase, Some(e.code), e.reason);
                    break;
                }
                Ok((0, None)) => break,
                Ok(step) => step,
            };
            used += n;
            let Some(mut msg) = msg else { continue };
            if let Message::Compressed(kind, compressed) = msg {
                match self
                    .decompressor
                    .message(kind, compressed, self.max_message)
                {
                    Ok(inflated) => msg = inflated,
                    Err(e) => {
                        debug!(target: LOG, "conn {id}: failing the connection: {e}");
                        close(cx, &mut ws.phase, Some(e.code), e.reason);
                        break;
                    }
                }
            }
            match (msg, ws.endpoint) {
                (Message::Text(text), Endpoint::Broadcast) => {
                    let audience = &self.clients;
                    broadcast(
                        cx,
                        audience,
                        &mut self.encoder,
                        &self.broadcast_format,
                        text,
                    );
                    relay(cx, text);
                }
                (Message::Text(text), Endpoint::Echo) => {
                    let reply = self
                        .encoder
                        .frame(compression, OpCode::Text, text.as_bytes());
                    cx.send(id, reply);
                }
                (Message::Binary(_), Endpoint::Broadcast) => {
                    let why = "/ws takes text messages";
                    close(cx, &mut ws.phase, Some(CloseCode::UNSUPPORTED_DATA), why);
                }
                (Message::Binary(bytes), Endpoint::Echo) => {
                    cx.send(id, self.encoder.frame(compression, OpCode::Binary, bytes));
                }
                (Message::Text(_) | Message::Binary(_), Endpoint::Inspect) => {}
                // Inflated just above; the decoder never yields one twice.
                (Message::Compressed(..), _) => {}
                (Message::Ping(payload), _) => {
                    cx.send(id, frame(OpCode::Pong, payload));
                }
                (Message::Pong(_), _) => {}
                // Echo the peer's code (§5.5.1); a close without a code is answered without one.
                (Message::Close(code), _) => {
                    if let Some((c, why)) = code {
                        debug!(target: LOG, "conn {id}: the peer closes with {c} \"{}\"", escaped(why));
                    }
                    // The peer has said its last word: a close at a boundary of its input.
                    send_close_frame(cx, &mut ws.phase, code.map(|(c, _)| c), "");
                    cx.close(id);
                }
            }
        }
        // The loop's compression buffers do not keep a big message's size between reads.
        self.decompressor.trim();
        self.encoder.trim();
        // Fragments held by the decoder count against the server's input budget.
        cx.hold_input(id, ws.decoder.buffered());
        if ws.phase == Phase::Closing {
            return data.len();
        }
        used
    }

    /// The server's input budget is spent and this connection holds the most: close 1009.
    pub fn on_input_over_budget<S, M>(&mut self, cx: &mut Context<'_, S, M>, ws: &mut WsConn) {
        ws.decoder.discard();
        let why = "server input budget exceeded";
        close(cx, &mut ws.phase, Some(CloseCode::TOO_BIG), why);
    }

    /// Delivers `text` to this process' `/ws` clients (from a local sender, or from another
    /// process through Redis), as `📢 새로운 알림: {text}` (the `--broadcast-format`): one
    /// formatted string, at most two encoded frames (compressed, plain), each shared by every
    /// queue that takes it.
    pub fn deliver<S, M>(&mut self, cx: &mut Context<'_, S, M>, text: &str) {
        broadcast(
            cx,
            &self.clients,
            &mut self.encoder,
            &self.broadcast_format,
            text,
        );
    }

    /// A flush left output waiting: a `/ws` client over `--ws-max-pending` is cut off with close
    /// 1008, so one slow reader neither delays the others nor grows our memory.
    pub fn on_write_blocked<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        ws: &mut WsConn,
        pending: usize,
    ) {
        let id = cx.id();
        let limit = self.max_pending;
        if pending <= limit || ws.endpoint != Endpoint::Broadcast || ws.phase == Phase::Closing {
            return;
        }
        warn!(target: LOG, "conn {id}: {pending} bytes the socket will not take, over {limit}: closing slow consumer (1008)");
        if let Some(member) = ws.member.take() {
            self.clients.remove(member);
        }
        self.slow_consumers += 1;
        close(cx, &mut ws.phase, Some(CloseCode::POLICY), "too slow");
    }

    /// The ping timer: ping an idle client, or drop one that did not answer the last ping.
    pub fn on_timer<S, M>(&mut self, cx: &mut Context<'_, S, M>, ws: &mut WsConn) {
        let id = cx.id();
        match ws.phase {
            Phase::AwaitingPong => {
                info!(target: LOG, "conn {id}: no pong since the last ping, dropping");
                close(
                    cx,
                    &mut ws.phase,
                    Some(CloseCode::GOING_AWAY),
                    "ping timeout",
                );
            }
            Phase::Open => {
                if let Some(every) = self.ping {
                    cx.send(id, frame(OpCode::Ping, b""));
                    ws.phase = Phase::AwaitingPong;
                    cx.set_timer(id, every);
                }
            }
            Phase::Closing => {}
        }
    }

    /// Shutdown: tell the client we are going away (1001) and close after the flush. A backlog
    /// of broadcasts would hold the close back past the shutdown deadline, so what the socket
    /// has not started on is dropped and the close goes next.
    pub fn on_shutdown<S, M>(&mut self, cx: &mut Context<'_, S, M>, id: ConnId, ws: &mut WsConn) {
        if ws.phase != Phase::Closing {
            ws.phase = Phase::Closing;
            let dropped = cx.discard_unsent(id);
            if dropped > 0 {
                debug!(target: LOG, "conn {id}: {dropped} unsent bytes dropped for the close");
            }
            cx.send(
                id,
                close_frame(Some(CloseCode::GOING_AWAY), "server shutting down", None),
            );
        }
        cx.close_mid_input(id);
    }

    /// The connection is gone.
    pub fn on_close(&mut self, id: ConnId, ws: &WsConn, why: CloseReason) {
        self.open = self.open.saturating_sub(1);
        if let Some(member) = ws.member {
            self.clients.remove(member);
        }
        if ws.endpoint == Endpoint::Broadcast {
            info!(target: LOG, "conn {id}: WebSocket disconnected ({why:?}; {} connected)", self.clients.len());
        }
    }
}

/// Sends `text`, wrapped in `format`, to every `/ws` client: each variant of the frame is
/// encoded at most once and shared by the queues that take it.
fn broadcast<S, M>(
    cx: &mut Context<'_, S, M>,
    audience: &Slab<(ConnId, Compression)>,
    encoder: &mut Encoder,
    format: &str,
    text: &str,
) {
    let formatted = format.replace("{}", text);
    let mut variants = Variants::new(OpCode::Text, formatted.as_bytes());
    for (_, &(client, compression)) in audience {
        cx.send(client, Chunk::Shared(variants.frame(encoder, compression)));
    }
    debug!(target: LOG, "broadcast {} bytes to {} clients", formatted.len(), audience.len());
    if variants.encoded() > 1 {
        debug!(target: LOG, "broadcast encoded twice: compressed and plain");
    }
}

/// Starts the closing handshake from our side: queues our close frame (once) and closes the
/// connection after the flush. The peer goes on sending until it reads our frame (it may be
/// part-way through a 16 MiB message), so the close lingers rather than turn its next bytes
/// into a reset that would destroy the frame before it is read.
fn close<S, M>(cx: &mut Context<'_, S, M>, phase: &mut Phase, code: Option<CloseCode>, why: &str) {
    send_close_frame(cx, phase, code, why);
    let id = cx.id();
    cx.close_mid_input(id);
}

/// Queues our close frame, once per connection: the phase says whether it went already.
fn send_close_frame<S, M>(
    cx: &mut Context<'_, S, M>,
    phase: &mut Phase,
    code: Option<CloseCode>,
    why: &str,
) {
    if *phase != Phase::Closing {
        *phase = Phase::Closing;
        let id = cx.id();
        cx.send(id, close_frame(code, why, None));
    }
}

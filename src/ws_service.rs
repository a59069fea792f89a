//! The WebSocket service: `/ws` broadcast (the FastAPI `ConnectionManager`) and `/echo`.
//!
//! A connection arrives here from `http_service` after a successful upgrade, with any bytes
//! that followed the handshake. Frames are decoded by the sans-IO `ws::MessageDecoder` (masks
//! removed in place in the loop's read buffer, UTF-8 checked as it streams) and answered here:
//! - `/ws`: a text message is formatted once, encoded into one frame once, and that frame is
//!   shared (`Rc<[u8]>`) by every recipient's output queue. A recipient whose socket refuses
//!   more than `--ws-max-pending` bytes (judged when a flush comes up short, not while a burst
//!   is being queued for everyone) is cut off with close 1008 instead of slowing anyone.
//! - `/echo`: every message goes back as it came, text as text, binary as binary.
//! - Pings get pongs; idle clients are pinged every `--ws-ping` and dropped if the next ping
//!   finds the previous one unanswered; a close is answered with a close, then the TCP
//!   connection is closed after the flush (the loop's lingering close bounds the wait).

use crate::handler::{CloseReason, ConnId, Context};
use crate::out_queue::Chunk;
#[cfg(feature = "redis")]
use crate::redis::Group;
use crate::server::{Conn, Server};
use crate::ws::close::{close_payload, CloseCode};
use crate::ws::frame::{frame, OpCode};
use crate::ws::message::{Message, MessageDecoder, Role};
use log::{debug, info, warn};
use std::rc::Rc;

const LOG: &str = "readyloop::ws";

/// Which WebSocket endpoint a connection upgraded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws`: text messages are broadcast to every `/ws` client.
    Broadcast,
    /// `/echo`: messages come back unchanged.
    Echo,
}

/// State of one WebSocket connection.
#[derive(Debug)]
pub struct WsConn {
    decoder: MessageDecoder,
    endpoint: Endpoint,
    /// Our close frame is queued: nothing more is sent or decoded.
    close_sent: bool,
    /// A ping went out and no frame has come back since.
    awaiting_pong: bool,
}

impl WsConn {
    /// Marks our close frame as sent; true the first time (when the caller must queue it).
    /// After it nothing more is sent or decoded on this connection.
    fn begin_close(&mut self) -> bool {
        !std::mem::replace(&mut self.close_sent, true)
    }
}

/// Our close frame: `code` and `reason`, or an empty payload when the peer's close had no code.
fn close_frame(code: Option<CloseCode>, reason: &str) -> Vec<u8> {
    frame(
        OpCode::Close,
        &code.map_or_else(Vec::new, |c| close_payload(c, reason)),
    )
}

/// What to do after a decoded message, decided while the message borrows the decoder.
enum Action {
    Nothing,
    Send(Vec<u8>),
    Broadcast(String),
    /// Send a close frame with this code (and reason), then close the connection.
    Close(Option<CloseCode>, &'static str),
}

impl Server {
    fn take_ws(cx: &mut Context<'_, Self>) -> Option<Box<WsConn>> {
        match cx.state() {
            Conn::Ws(slot) => slot.take(),
            _ => None,
        }
    }

    fn put_ws(cx: &mut Context<'_, Self>, ws: Box<WsConn>) {
        if let Conn::Ws(slot) = cx.state() {
            *slot = Some(ws);
        }
    }

    /// Turns the current HTTP connection into a WebSocket one (the 101 is already queued).
    pub(crate) fn ws_upgraded(&mut self, cx: &mut Context<'_, Self>, endpoint: Endpoint) {
        let id = cx.id();
        let decoder = MessageDecoder::with_max_message(Role::Server, self.config.web.max_message);
        *cx.state() = Conn::Ws(Some(Box::new(WsConn {
            decoder,
            endpoint,
            close_sent: false,
            awaiting_pong: false,
        })));
        self.ws_open += 1;
        match endpoint {
            Endpoint::Broadcast => {
                self.ws_clients.push(id);
                info!(target: LOG, "conn {id}: WebSocket connected to /ws ({} connected)", self.ws_clients.len());
            }
            Endpoint::Echo => debug!(target: LOG, "conn {id}: WebSocket connected to /echo"),
        }
        match self.config.web.ws_ping {
            Some(every) => cx.set_timer(id, every),
            None => cx.cancel_timer(id),
        }
    }

    pub(crate) fn ws_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize {
        let id = cx.id();
        let Some(mut ws) = Self::take_ws(cx) else {
            return data.len();
        };
        // Any frame shows the peer is alive: it is not idle, so no ping is due yet.
        ws.awaiting_pong = false;
        if let Some(every) = self.config.web.ws_ping {
            cx.set_timer(id, every);
        }
        let mut used = 0;
        while !ws.close_sent {
            let (n, action) = match ws.decoder.decode(&mut data[used..]) {
                Err(e) => {
                    debug!(target: LOG, "conn {id}: failing the connection: {e}");
                    (0, Action::Close(Some(e.code), e.reason))
                }
                Ok((n, None)) => {
                    if n == 0 {
                        break;
                    }
                    (n, Action::Nothing)
                }
                Ok((n, Some(msg))) => (n, decide(ws.endpoint, msg)),
            };
            used += n;
            match action {
                Action::Nothing => {}
                Action::Send(frame) => {
                    cx.send(id, frame);
                }
                Action::Broadcast(text) => self.ws_broadcast(cx, &text),
                Action::Close(code, reason) => {
                    if ws.begin_close() {
                        cx.send(id, close_frame(code, reason));
                    }
                    cx.close(id);
                }
            }
        }
        if ws.close_sent {
            used = data.len();
        }
        Self::put_ws(cx, ws);
        used
    }

    /// Sends `📢 새로운 알림: {text}` (the `--broadcast-format`) to every `/ws` client, sender
    /// included, and hands it to Redis for the other processes (with `--redis`).
    fn ws_broadcast(&mut self, cx: &mut Context<'_, Self>, text: &str) {
        self.ws_deliver(cx, text);
        #[cfg(feature = "redis")]
        self.redis_publish(cx, Group::Ws, text.as_bytes());
    }

    /// Delivers `text` to this process' `/ws` clients (from a local sender, or from another
    /// process through Redis): one formatted string, one encoded frame, shared by every queue.
    pub(crate) fn ws_deliver(&mut self, cx: &mut Context<'_, Self>, text: &str) {
        let formatted = self.config.web.broadcast_format.replace("{}", text);
        let shared: Rc<[u8]> = frame(OpCode::Text, formatted.as_bytes()).into();
        for &client in &self.ws_clients {
            cx.send(client, Chunk::Shared(shared.clone()));
        }
        debug!(target: LOG, "broadcast {} bytes to {} clients", shared.len(), self.ws_clients.len());
    }

    /// A flush left output waiting: a `/ws` client over `--ws-max-pending` is cut off with close
    /// 1008, so one slow reader neither delays the others nor grows our memory.
    pub(crate) fn ws_write_blocked(&mut self, cx: &mut Context<'_, Self>, pending: usize) {
        let id = cx.id();
        let limit = self.config.web.ws_max_pending;
        if pending <= limit {
            return;
        }
        let Some(mut ws) = Self::take_ws(cx) else {
            return;
        };
        if ws.endpoint == Endpoint::Broadcast && !ws.close_sent {
            warn!(target: LOG, "conn {id}: {pending} bytes the socket will not take, over {limit}: closing slow consumer (1008)");
            self.ws_clients.retain(|&c| c != id);
            ws.begin_close();
            cx.send(id, close_frame(Some(CloseCode::POLICY), "too slow"));
            cx.close(id);
        }
        Self::put_ws(cx, ws);
    }

    pub(crate) fn ws_timer(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        let Some(mut ws) = Self::take_ws(cx) else {
            return;
        };
        if ws.awaiting_pong {
            info!(target: LOG, "conn {id}: no pong since the last ping, dropping");
            if ws.begin_close() {
                cx.send(id, close_frame(Some(CloseCode::GOING_AWAY), "ping timeout"));
            }
            cx.close(id);
        } else if let Some(every) = self.config.web.ws_ping {
            cx.send(id, frame(OpCode::Ping, b""));
            ws.awaiting_pong = true;
            cx.set_timer(id, every);
        }
        Self::put_ws(cx, ws);
    }

    /// Shutdown: tell the client we are going away (1001) and close after the flush.
    pub(crate) fn ws_going_away(&mut self, cx: &mut Context<'_, Self>, id: ConnId) {
        if let Some(Conn::Ws(Some(ws))) = cx.state_of(id) {
            if ws.begin_close() {
                cx.send(
                    id,
                    close_frame(Some(CloseCode::GOING_AWAY), "server shutting down"),
                );
            }
        }
        cx.close(id);
    }

    pub(crate) fn ws_closed(&mut self, id: ConnId, ws: Option<Box<WsConn>>, why: CloseReason) {
        self.ws_open = self.ws_open.saturating_sub(1);
        if ws.is_some_and(|ws| ws.endpoint == Endpoint::Broadcast) {
            self.ws_clients.retain(|&c| c != id);
            info!(target: LOG, "conn {id}: WebSocket disconnected ({why:?}; {} connected)", self.ws_clients.len());
        }
    }
}

fn decide(endpoint: Endpoint, msg: Message<'_>) -> Action {
    match (msg, endpoint) {
        (Message::Text(t), Endpoint::Broadcast) => Action::Broadcast(t.to_string()),
        (Message::Text(t), Endpoint::Echo) => Action::Send(frame(OpCode::Text, t.as_bytes())),
        (Message::Binary(_), Endpoint::Broadcast) => {
            Action::Close(Some(CloseCode::UNSUPPORTED_DATA), "/ws takes text messages")
        }
        (Message::Binary(b), Endpoint::Echo) => Action::Send(frame(OpCode::Binary, b)),
        (Message::Ping(p), _) => Action::Send(frame(OpCode::Pong, p)),
        (Message::Pong(_), _) => Action::Nothing,
        // Echo the peer's code (§5.5.1); a close without a code is answered without one.
        (Message::Close(code), _) => Action::Close(code.map(|(c, _)| c), ""),
    }
}

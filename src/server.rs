//! `Server`: the `Handler` that runs readyloop's protocols, one per listener.
//!
//! This is the glue between the loop and the sans-IO codecs: it owns the configuration of the
//! `serve` command, knows which listener speaks which protocol, and turns what a codec parsed
//! into `Context` actions (send, close, broadcast, arm a timer). The protocols themselves:
//! - **hello**: queue the greeting on open, close once it is flushed.
//! - **line**: echo each line, or broadcast it to every other line client; `exit` closes.
//! - **http**: HTTP/1.1 and WebSocket upgrades (see `http_service`).

use crate::event_loop::{Config, EventLoop, ListenerId};
use crate::handler::{CloseReason, ConnId, Context, Handler};
use crate::line::{next_line, LineTooLong, TOO_LONG_REPLY};
use log::{debug, info, warn};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// What the line listener does with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineMode {
    /// Write each line back to its sender.
    Echo,
    /// Write each line to every *other* line client (push instead of poll).
    Broadcast,
}

/// The protocols a listener can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Greeting, then close.
    Hello,
    /// Newline-framed messages.
    Line,
    /// HTTP/1.1 and WebSocket.
    Http,
}

impl Protocol {
    /// The name used in `listening <name> <addr>` and in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hello => "hello",
            Protocol::Line => "line",
            Protocol::Http => "http",
        }
    }
}

/// Configuration of `readyloop serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listeners to bind, in order; `None` addresses are disabled (`off`).
    pub http: Option<SocketAddr>,
    /// See `http`.
    pub line: Option<SocketAddr>,
    /// See `http`.
    pub hello: Option<SocketAddr>,
    /// The hello greeting, sent as is followed by `\n`.
    pub greeting: String,
    /// Echo or broadcast.
    pub line_mode: LineMode,
    /// Longest accepted line, in bytes (without its terminator).
    pub max_line: usize,
    /// Close line and hello connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// SO_REUSEPORT on every listener (worker processes).
    pub reuse_port: bool,
    /// The loop's own tunables.
    pub loop_config: Config,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8000))),
            line: Some(SocketAddr::from(([127, 0, 0, 1], 10000))),
            hello: Some(SocketAddr::from(([127, 0, 0, 1], 8001))),
            greeting: "Hello, World!".to_string(),
            line_mode: LineMode::Echo,
            max_line: 65536,
            idle_timeout: None,
            reuse_port: false,
            loop_config: Config::default(),
        }
    }
}

/// Per-connection state: which protocol, and that protocol's state. Hello and line need none
/// beyond what the loop keeps (the input tail), so their connections cost nothing extra.
#[derive(Debug)]
pub enum Conn {
    /// A hello connection.
    Hello,
    /// A line connection.
    Line,
    /// An HTTP connection (stub until the HTTP service lands: answers 503).
    Http,
}

/// Messages worker threads send back to the loop.
#[derive(Debug)]
pub enum Message {}

/// A listener `Server::bind` bound: its protocol and its real address.
pub type Bound = (Protocol, SocketAddr);

/// The handler of `readyloop serve`.
pub struct Server {
    config: ServeConfig,
    greeting: &'static [u8],
    /// The protocol of each listener, indexed by `ListenerId`.
    protocols: Vec<Protocol>,
    /// Open line connections, in the order they connected (broadcast recipients).
    line_clients: Vec<ConnId>,
}

impl Server {
    /// A server for `config`; listeners are bound by `bind`.
    pub fn new(config: ServeConfig) -> Server {
        // Leaked once per process: the greeting is queued as a `Chunk::Static` on every
        // hello connection, with no copy.
        let greeting: &'static [u8] =
            Box::leak(format!("{}\n", config.greeting).into_boxed_str()).as_bytes();
        Server {
            config,
            greeting,
            protocols: Vec::new(),
            line_clients: Vec::new(),
        }
    }

    /// Builds the loop and binds every enabled listener. Returns the loop and the bound
    /// `(protocol, address)` pairs (real ports where port 0 was asked for).
    pub fn bind(config: ServeConfig) -> io::Result<(EventLoop<Server>, Vec<Bound>)> {
        let loop_config = config.loop_config.clone();
        let wanted = [
            (Protocol::Http, config.http),
            (Protocol::Line, config.line),
            (Protocol::Hello, config.hello),
        ];
        let reuse_port = config.reuse_port;
        let mut ev = EventLoop::new(Server::new(config), loop_config)?;
        let mut bound = Vec::new();
        for (protocol, addr) in wanted {
            let Some(addr) = addr else { continue };
            let (id, local) = ev
                .listen_with(protocol.name(), addr, reuse_port)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("bind {} {addr}: {e}", protocol.name()))
                })?;
            debug_assert_eq!(id.0 as usize, ev.handler().protocols.len());
            ev.handler_mut().protocols.push(protocol);
            bound.push((protocol, local));
        }
        Ok((ev, bound))
    }

    fn arm_idle(&self, cx: &mut Context<'_, Self>) {
        if let Some(t) = self.config.idle_timeout {
            let id = cx.id();
            cx.set_timer(id, t);
        }
    }

    fn line_data(&mut self, cx: &mut Context<'_, Self>, data: &[u8]) -> usize {
        let id = cx.id();
        self.arm_idle(cx);
        let mut used = 0;
        loop {
            match next_line(&data[used..], self.config.max_line) {
                Ok(Some((line, n))) => {
                    used += n;
                    info!(target: "readyloop::line", "conn {id} line: {}", String::from_utf8_lossy(line));
                    if line == b"exit" {
                        cx.close(id);
                        return used;
                    }
                    match self.config.line_mode {
                        LineMode::Echo => {
                            cx.send_copy(id, line);
                            cx.send_copy(id, b"\n");
                        }
                        LineMode::Broadcast => {
                            let mut msg = Vec::with_capacity(line.len() + 1);
                            msg.extend_from_slice(line);
                            msg.push(b'\n');
                            let msg: Rc<[u8]> = msg.into();
                            let others: Vec<ConnId> = self
                                .line_clients
                                .iter()
                                .copied()
                                .filter(|&c| c != id)
                                .collect();
                            let n = cx.broadcast(&others, msg);
                            debug!(target: "readyloop::line", "conn {id} line pushed to {n} clients");
                        }
                    }
                }
                Ok(None) => return used,
                Err(LineTooLong) => {
                    warn!(target: "readyloop::line", "conn {id}: line over {} bytes, closing", self.config.max_line);
                    cx.send(id, TOO_LONG_REPLY);
                    cx.close(id);
                    return data.len();
                }
            }
        }
    }

    fn http_stub(&mut self, cx: &mut Context<'_, Self>, data: &[u8]) -> usize {
        let id = cx.id();
        if data.windows(4).any(|w| w == b"\r\n\r\n") {
            cx.send(
                id,
                &b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
            );
            cx.close(id);
            return data.len();
        }
        0
    }
}

impl Handler for Server {
    type Conn = Conn;
    type Message = Message;

    fn accept(&mut self, listener: ListenerId, _peer: SocketAddr) -> Option<Conn> {
        Some(match self.protocols.get(listener.0 as usize)? {
            Protocol::Hello => Conn::Hello,
            Protocol::Line => Conn::Line,
            Protocol::Http => Conn::Http,
        })
    }

    fn on_open(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        match cx.state() {
            Conn::Hello => {
                cx.send(id, self.greeting);
                cx.close(id);
            }
            Conn::Line => {
                self.line_clients.push(id);
                debug!(target: "readyloop::line", "conn {id} joined ({} line clients)", self.line_clients.len());
                self.arm_idle(cx);
            }
            Conn::Http => {}
        }
    }

    fn on_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize {
        match cx.state() {
            // A hello client has nothing to say; its bytes are read and dropped.
            Conn::Hello => data.len(),
            Conn::Line => self.line_data(cx, data),
            Conn::Http => self.http_stub(cx, data),
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        info!("conn {id}: idle timeout, closing");
        cx.close(id);
    }

    fn on_close(&mut self, _cx: &mut Context<'_, Self>, id: ConnId, state: Conn, why: CloseReason) {
        if let Conn::Line = state {
            self.line_clients.retain(|&c| c != id);
            debug!(target: "readyloop::line", "conn {id} left ({why:?}, {} line clients)", self.line_clients.len());
        }
    }
}

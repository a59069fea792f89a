//! `Server`: the `Handler` that runs readyloop's protocols, one per listener.
//!
//! This is the glue between the loop and the sans-IO codecs: it owns the configuration of the
//! `serve` command, knows which listener speaks which protocol, and turns what a codec parsed
//! into `Context` actions (send, close, broadcast, arm a timer). The protocols themselves:
//! - **hello**: queue the greeting on open, close once it is flushed.
//! - **line**: echo each line, or broadcast it to every other line client; `exit` closes.
//! - **http**: HTTP/1.1 routes and uploads (`http_service`) and WebSocket upgrades
//!   (`ws_service`).
//! - **redis** (outgoing, with `--redis`): broadcasts relayed to and from other processes
//!   (`redis::link`).

use crate::event_loop::{Config, EventLoop, ListenerId};
use crate::handler::{CloseReason, ConnId, Context, Handler};
#[cfg(feature = "http")]
use crate::http_service::{HttpConn, Tasks};
use crate::line::{next_line, LineTooLong, TOO_LONG_REPLY};
#[cfg(feature = "redis")]
use crate::redis::{Group, RedisLink, RedisUrl, Role};
#[cfg(feature = "http")]
use crate::upload_store::{TaskUpdate, UploadStore};
#[cfg(feature = "websocket")]
use crate::ws_service::WsConn;
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
    #[cfg(feature = "http")]
    Http,
}

impl Protocol {
    /// The name used in `listening <name> <addr>` and in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hello => "hello",
            Protocol::Line => "line",
            #[cfg(feature = "http")]
            Protocol::Http => "http",
        }
    }
}

/// Configuration of `readyloop serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listeners to bind, in order; `None` addresses are disabled (`off`). Without the `http`
    /// feature the default is `None`, and `bind` refuses `Some` with a message saying so.
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
    /// HTTP and WebSocket settings (unused without an HTTP listener, like with `--http off`).
    pub web: WebConfig,
    /// Relay broadcasts through Redis pub/sub to other processes (`--redis`).
    #[cfg(feature = "redis")]
    pub redis: Option<RedisUrl>,
    /// The loop's own tunables.
    pub loop_config: Config,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            http: cfg!(feature = "http").then(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
            line: Some(SocketAddr::from(([127, 0, 0, 1], 10000))),
            hello: Some(SocketAddr::from(([127, 0, 0, 1], 8001))),
            greeting: "Hello, World!".to_string(),
            line_mode: LineMode::Echo,
            max_line: 65536,
            idle_timeout: None,
            reuse_port: false,
            web: WebConfig::default(),
            #[cfg(feature = "redis")]
            redis: None,
            loop_config: Config::default(),
        }
    }
}

/// HTTP and WebSocket settings of `readyloop serve`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Largest request body, in bytes (`--max-body`, 64 MiB).
    pub max_body: u64,
    /// The request head must arrive within this (`--header-timeout`, 10 s; slowloris).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this (`--keepalive-timeout`, 75 s).
    pub keepalive_timeout: Duration,
    /// Where uploads are stored (`--upload-dir`, `./uploads`).
    pub upload_dir: std::path::PathBuf,
    /// Background task threads (`--task-threads`, 1).
    pub task_threads: usize,
    /// Queued task messages per thread before uploads get 503 (`--task-queue`).
    pub task_queue: usize,
    /// Ping idle WebSocket clients this often, and drop them if no pong came by the next
    /// ping (`--ws-ping`, 30 s; `None` disables).
    pub ws_ping: Option<Duration>,
    /// Largest WebSocket message, in bytes (`--max-message`, 16 MiB; over it → close 1009).
    pub max_message: usize,
    /// Pending output over which a `/ws` client is cut off as too slow (`--ws-max-pending`, 4 MiB).
    pub ws_max_pending: usize,
    /// How `/ws` wraps a broadcast message; `{}` is replaced by the message.
    pub broadcast_format: String,
    /// Allowed `Origin` values for WebSocket upgrades (empty: any).
    pub allowed_origins: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_body: 64 << 20,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            upload_dir: "uploads".into(),
            task_threads: 1,
            #[cfg(feature = "http")]
            task_queue: crate::upload_store::DEFAULT_QUEUE_DEPTH,
            #[cfg(not(feature = "http"))]
            task_queue: 0, // no task threads without `http`
            ws_ping: Some(Duration::from_secs(30)),
            max_message: 16 << 20,
            ws_max_pending: 4 << 20,
            broadcast_format: "📢 새로운 알림: {}".to_string(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Per-connection state: which protocol, and that protocol's state. Hello and line need none
/// beyond what the loop keeps (the input tail), and an idle HTTP keep-alive connection only a
/// null pointer, so every connection's slab entry stays small (the largest variant sets it).
#[derive(Debug)]
pub enum Conn {
    /// A hello connection.
    Hello,
    /// A line connection.
    Line,
    /// An HTTP connection: `None` between requests, the request in progress otherwise.
    #[cfg(feature = "http")]
    Http(Option<Box<HttpConn>>),
    /// A WebSocket connection (after the upgrade). `None` only while a callback holds it.
    #[cfg(feature = "websocket")]
    Ws(Option<Box<WsConn>>),
    /// One of our two outgoing connections to Redis (`Server::redis` holds their state).
    #[cfg(feature = "redis")]
    Redis(Role),
}

/// Messages worker threads send back to the loop (none without `http`, which has the only
/// worker threads).
#[derive(Debug)]
pub enum Message {
    /// A background task changed status.
    #[cfg(feature = "http")]
    Task(TaskUpdate),
}

/// A listener `Server::bind` bound: its protocol and its real address.
pub type Bound = (Protocol, SocketAddr);

/// The handler of `readyloop serve`.
pub struct Server {
    pub(crate) config: ServeConfig,
    greeting: &'static [u8],
    /// The protocol of each listener, indexed by `ListenerId`.
    protocols: Vec<Protocol>,
    /// Open line connections, in the order they connected (broadcast recipients).
    line_clients: Vec<ConnId>,
    /// Open `/ws` connections (broadcast recipients).
    #[cfg(feature = "websocket")]
    pub(crate) ws_clients: Vec<ConnId>,
    /// Open WebSocket connections on any path (for `/stats`; 0 without `websocket`).
    #[cfg(feature = "http")]
    pub(crate) ws_open: usize,
    /// Saves uploads on worker threads (`None` until `bind` starts it).
    #[cfg(feature = "http")]
    pub(crate) store: Option<UploadStore>,
    /// Background tasks and their status.
    #[cfg(feature = "http")]
    pub(crate) tasks: Tasks,
    /// The Redis links, with `--redis`.
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<RedisLink>,
}

impl Server {
    /// A server for `config`; listeners are bound by `bind`.
    pub fn new(config: ServeConfig) -> Server {
        // Leaked once per process: the greeting is queued as a `Chunk::Static` on every
        // hello connection, with no copy.
        let greeting: &'static [u8] =
            Box::leak(format!("{}\n", config.greeting).into_boxed_str()).as_bytes();
        Server {
            greeting,
            protocols: Vec::new(),
            line_clients: Vec::new(),
            #[cfg(feature = "websocket")]
            ws_clients: Vec::new(),
            #[cfg(feature = "http")]
            ws_open: 0,
            #[cfg(feature = "http")]
            store: None,
            #[cfg(feature = "http")]
            tasks: Tasks::default(),
            #[cfg(feature = "redis")]
            redis: config.redis.clone().map(RedisLink::new),
            config,
        }
    }

    /// Builds the loop and binds every enabled listener. Returns the loop and the bound
    /// `(protocol, address)` pairs (real ports where port 0 was asked for). With an HTTP
    /// listener, this also starts the upload worker threads (and creates `--upload-dir`).
    pub fn bind(config: ServeConfig) -> io::Result<(EventLoop<Server>, Vec<Bound>)> {
        #[cfg(not(feature = "http"))]
        if let Some(addr) = config.http {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("bind http {addr}: this readyloop was built without the `http` feature"),
            ));
        }
        let mut loop_config = config.loop_config.clone();
        // One whole WebSocket message (plus a read's worth) must fit in a connection's input,
        // and its echo in its output.
        let message = config.web.max_message;
        loop_config.max_inbuf = loop_config.max_inbuf.max(message + (1 << 20));
        loop_config.max_pending = loop_config.max_pending.max(2 * message + (1 << 20));
        let wanted = [
            #[cfg(feature = "http")]
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
        #[cfg(feature = "http")]
        if ev.handler().config.http.is_some() {
            let handle = ev.handle();
            let web = &ev.handler().config.web;
            let store = UploadStore::start(
                web.upload_dir.clone(),
                web.task_threads,
                web.task_queue,
                move |update| {
                    // The loop may be gone during teardown; the update then has no reader.
                    let _ = handle.send(Message::Task(update));
                },
            )
            .map_err(|e| {
                io::Error::new(e.kind(), format!("upload dir {:?}: {e}", web.upload_dir))
            })?;
            ev.handler_mut().store = Some(store);
        }
        #[cfg(feature = "redis")]
        ev.with_context(|h, cx| h.redis_start(cx));
        Ok((ev, bound))
    }

    /// Stops the upload workers after the loop has ended (they have drained by then unless the
    /// shutdown timed out; queued work is still finished before this returns).
    pub fn finish(&mut self) {
        #[cfg(feature = "http")]
        if let Some(store) = self.store.take() {
            store.shutdown();
        }
    }

    fn arm_idle(&self, cx: &mut Context<'_, Self>) {
        if let Some(t) = self.config.idle_timeout {
            let id = cx.id();
            cx.set_timer(id, t);
        }
    }

    /// Open connections per protocol, for `/stats` and the workers' shared counters.
    pub(crate) fn open_connections(&self, cx: &Context<'_, Self>) -> Vec<(&'static str, usize)> {
        #[cfg(feature = "http")]
        let ws_open = self.ws_open;
        #[cfg(not(feature = "http"))]
        let ws_open = 0;
        let mut out = vec![("http", 0), ("ws", ws_open), ("line", 0), ("hello", 0)];
        for (i, p) in self.protocols.iter().enumerate() {
            let n = cx.stats().open.get(i).copied().unwrap_or(0);
            let slot = match p {
                #[cfg(feature = "http")]
                Protocol::Http => 0,
                Protocol::Line => 2,
                Protocol::Hello => 3,
            };
            out[slot].1 += n;
        }
        out[0].1 = out[0].1.saturating_sub(ws_open);
        out
    }

    /// Pushes `line` (plus `\n`, one shared allocation) to every line client but `except`
    /// (the sender, when it is ours; a line from another process goes to all).
    pub(crate) fn line_deliver(
        &mut self,
        cx: &mut Context<'_, Self>,
        line: &[u8],
        except: Option<ConnId>,
    ) {
        if self.line_clients.is_empty() {
            return;
        }
        let mut msg = Vec::with_capacity(line.len() + 1);
        msg.extend_from_slice(line);
        msg.push(b'\n');
        let msg: Rc<[u8]> = msg.into();
        let others: Vec<ConnId> = self
            .line_clients
            .iter()
            .copied()
            .filter(|&c| Some(c) != except)
            .collect();
        let n = cx.broadcast(&others, msg);
        debug!(target: "readyloop::line", "line pushed to {n} clients");
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
                            self.line_deliver(cx, line, Some(id));
                            #[cfg(feature = "redis")]
                            self.redis_publish(cx, Group::Line, line);
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
}

impl Handler for Server {
    type Conn = Conn;
    type Message = Message;

    fn accept(&mut self, listener: ListenerId, _peer: SocketAddr) -> Option<Conn> {
        Some(match self.protocols.get(listener.0 as usize)? {
            Protocol::Hello => Conn::Hello,
            Protocol::Line => Conn::Line,
            #[cfg(feature = "http")]
            Protocol::Http => Conn::Http(None),
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
                // Only broadcast needs the list of line clients; echo keeps nothing per client.
                if self.config.line_mode == LineMode::Broadcast {
                    self.line_clients.push(id);
                    debug!(target: "readyloop::line", "conn {id} joined ({} line clients)", self.line_clients.len());
                }
                self.arm_idle(cx);
            }
            #[cfg(feature = "http")]
            Conn::Http(_) => self.http_open(cx),
            #[cfg(feature = "websocket")]
            Conn::Ws(_) => {}
            #[cfg(feature = "redis")]
            &mut Conn::Redis(role) => self.redis_open(cx, role),
        }
    }

    fn on_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize {
        match cx.state() {
            // A hello client has nothing to say; its bytes are read and dropped.
            Conn::Hello => data.len(),
            Conn::Line => self.line_data(cx, data),
            #[cfg(feature = "http")]
            Conn::Http(_) => self.http_data(cx, data),
            #[cfg(feature = "websocket")]
            Conn::Ws(_) => self.ws_data(cx, data),
            #[cfg(feature = "redis")]
            &mut Conn::Redis(role) => self.redis_data(cx, role, data),
        }
    }

    fn on_eof(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        #[cfg(feature = "http")]
        if let Conn::Http(_) = cx.state() {
            return self.http_eof(cx);
        }
        cx.close(id);
    }

    #[cfg(feature = "websocket")]
    fn on_write_blocked(&mut self, cx: &mut Context<'_, Self>, pending: usize) {
        if let Conn::Ws(_) = cx.state() {
            self.ws_write_blocked(cx, pending);
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        match cx.state() {
            #[cfg(feature = "http")]
            Conn::Http(_) => self.http_timer(cx),
            #[cfg(feature = "websocket")]
            Conn::Ws(_) => self.ws_timer(cx),
            #[cfg(feature = "redis")]
            &mut Conn::Redis(role) => self.redis_timer(cx, role),
            _ => {
                info!("conn {id}: idle timeout, closing");
                cx.close(id);
            }
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn on_close(&mut self, cx: &mut Context<'_, Self>, id: ConnId, state: Conn, why: CloseReason) {
        match state {
            Conn::Line if self.config.line_mode == LineMode::Broadcast => {
                self.line_clients.retain(|&c| c != id);
                debug!(target: "readyloop::line", "conn {id} left ({why:?}, {} line clients)", self.line_clients.len());
            }
            #[cfg(feature = "http")]
            Conn::Http(Some(http)) => self.http_closed(id, *http, why),
            #[cfg(feature = "websocket")]
            Conn::Ws(ws) => self.ws_closed(id, ws, why),
            #[cfg(feature = "redis")]
            Conn::Redis(role) => self.redis_closed(cx, id, role, why),
            _ => {}
        }
    }

    #[cfg(feature = "redis")]
    fn on_loop_timer(&mut self, cx: &mut Context<'_, Self>, tag: u32) {
        self.redis_retry(cx, tag);
    }

    fn on_message(&mut self, _cx: &mut Context<'_, Self>, msg: Message) {
        match msg {
            #[cfg(feature = "http")]
            Message::Task(update) => self.tasks.update(update),
        }
    }

    fn on_shutdown(&mut self, cx: &mut Context<'_, Self>) {
        for id in cx.ids() {
            match cx.state_of(id) {
                // An HTTP request in progress is answered first (the response closes it);
                // one whose head is still arriving is refused now.
                #[cfg(feature = "http")]
                Some(Conn::Http(Some(_))) => self.http_shutdown(cx, id),
                #[cfg(feature = "websocket")]
                Some(Conn::Ws(_)) => self.ws_going_away(cx, id),
                #[cfg(feature = "redis")]
                Some(&mut Conn::Redis(role)) => self.redis_shutdown(cx, id, role),
                _ => cx.close(id),
            }
        }
    }

    #[cfg(feature = "http")]
    fn has_pending_work(&self) -> bool {
        self.tasks.in_flight() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Connection;

    #[test]
    fn every_connection_of_the_server_is_small() {
        // The slab entry of every connection (hello, line, idle HTTP or WebSocket) is the
        // loop's 24 bytes plus the largest protocol variant (a tag and a pointer): 40 bytes.
        let limit = if cfg!(debug_assertions) { 56 } else { 40 };
        let size = std::mem::size_of::<Connection<Conn>>();
        assert!(size <= limit, "Connection<Conn> grew to {size} bytes");
    }
}

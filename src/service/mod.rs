//! The services of `readyloop serve`, and `Server`, the one dispatcher where they meet.
//!
//! Each service owns its state in a struct of its own and knows no other service:
//! - `hello.rs`: greet and close.
//! - `line.rs`: echo each line, or broadcast it to every other line client; `exit` closes.
//! - `http/` (feature `http`): HTTP/1.1 routes, request timers, uploads on task threads.
//! - `ws.rs` (feature `websocket`): `/ws` broadcast and `/echo`; `ws_deflate.rs` holds the
//!   loop's permessage-deflate contexts and builds the frames it sends.
//! - `redis_relay.rs` (feature `redis`): broadcasts relayed to and from other processes.
//! - `stats.rs`: `/stats` from plain figures, and the memory workers share them through.
//! - `metrics.rs`: `/metrics`, the same figures and the loop's own as Prometheus families.
//! - `inspect.rs` (feature `websocket`, `--inspect`): the frames of the live `/loop` page.
//!
//! `Server` (this file) is the `Handler` the loop calls. It knows which listener speaks which
//! protocol, keeps one `Conn` enum per connection (which service owns it, and that service's
//! state), routes every callback to its service, and is the only place where services meet:
//! an HTTP connection that upgrades becomes a WebSocket one here, broadcasts are handed to the
//! Redis relay here and what the relay receives is delivered here, and `/stats` is gathered here.

pub mod config;
mod hello;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "websocket")]
pub mod inspect;
mod line;
pub mod metrics;
#[cfg(feature = "redis")]
pub mod redis_relay;
pub mod stats;
#[cfg(feature = "websocket")]
pub mod ws;
#[cfg(feature = "websocket")]
mod ws_deflate;

pub use self::config::{LineMode, Protocol, ServeConfig, WebConfig};
use self::hello::Hello;
#[cfg(feature = "http")]
use self::http::{Delegated, HttpConn, HttpService, Progress, TaskUpdate, UploadStore};
#[cfg(feature = "websocket")]
use self::inspect::Inspector;
use self::line::{LineConn, LineService};
#[cfg(feature = "redis")]
use self::redis_relay::{Group, RedisRelay, Role};
use self::stats::{Connections, Snapshot};
#[cfg(feature = "websocket")]
use self::ws::{Endpoint, WsConn, WsService};
#[cfg(feature = "http")]
use crate::codec::http::Response;
use crate::runtime::{Addr, CloseReason, ConnId, ContextOf, EventLoop, Handler, ListenerId};
use log::info;
use std::io;
use std::os::fd::FromRawFd;

/// The `Context` of the server's callbacks.
type Cx<'a> = ContextOf<'a, Server>;

/// Per-connection state: which service owns the connection, and that service's state. Hello
/// and line need none beyond what the loop keeps (the input tail), and an idle HTTP keep-alive
/// connection only a null pointer, so every connection's state stays small (the largest
/// variant, a tag and a pointer, sets it).
#[derive(Debug)]
pub enum Conn {
    /// A hello connection.
    Hello,
    /// A line connection (its place in the broadcast audience).
    Line(LineConn),
    /// An HTTP connection: `None` between requests, the request in progress otherwise.
    #[cfg(feature = "http")]
    Http(HttpConn),
    /// A WebSocket connection (after the upgrade).
    #[cfg(feature = "websocket")]
    Ws(Box<WsConn>),
    /// One of our two outgoing connections to Redis (the relay holds their state).
    #[cfg(feature = "redis")]
    Redis(Role),
}

#[cfg(feature = "redis")]
impl From<Role> for Conn {
    fn from(role: Role) -> Conn {
        Conn::Redis(role)
    }
}

/// Messages task threads send back to the loop (none without `http`, which has the only task
/// threads).
#[derive(Debug)]
pub enum Message {
    /// A background task changed status.
    #[cfg(feature = "http")]
    Task(TaskUpdate),
}

/// A listener `Server::bind` bound: its protocol and its real address.
pub type Bound = (Protocol, Addr);

/// The handler of `readyloop serve`: every service, and the protocol of each listener.
pub struct Server {
    /// The protocol of each listener, indexed by `ListenerId`.
    protocols: Vec<Protocol>,
    hello: Hello,
    line: LineService,
    #[cfg(feature = "http")]
    http: HttpService,
    #[cfg(feature = "websocket")]
    ws: WsService,
    /// The watchers of `/loop/ws` (`--inspect`).
    #[cfg(feature = "websocket")]
    inspector: Inspector,
    /// With `--redis`.
    #[cfg(feature = "redis")]
    redis: Option<RedisRelay>,
}

impl Server {
    /// A server for `config`, with no listeners and no task threads yet (see `bind`).
    pub fn new(config: &ServeConfig) -> Server {
        Server {
            protocols: Vec::new(),
            hello: Hello::new(&config.greeting),
            line: LineService::new(config.line_mode, config.max_line, config.idle_timeout),
            #[cfg(feature = "http")]
            http: HttpService::new(&config.web, None),
            #[cfg(feature = "websocket")]
            ws: WsService::new(&config.web),
            #[cfg(feature = "websocket")]
            inspector: Inspector::new(),
            #[cfg(feature = "redis")]
            redis: config.redis.clone().map(RedisRelay::new),
        }
    }

    /// Builds the loop and binds every enabled listener. Returns the loop and the bound
    /// `(protocol, address)` pairs (real ports where port 0 was asked for). With an HTTP
    /// listener, this also starts the upload task threads (and creates `--upload-dir`).
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
        // and its echo in its output. A compressed message may be 1/16 longer than the limit
        // when it does not compress (`codec::ws::message::compressed_bound`).
        let message = config.web.max_message;
        let compressed = message.saturating_add(message >> 4).saturating_add(64);
        loop_config.max_inbuf = loop_config.max_inbuf.max(compressed + (1 << 20));
        loop_config.max_pending = loop_config.max_pending.max(2 * message + (1 << 20));
        let wanted = [
            #[cfg(feature = "http")]
            (Protocol::Http, config.http.as_ref()),
            (Protocol::Line, config.line.as_ref()),
            (Protocol::Hello, config.hello.as_ref()),
        ];
        let mut ev = EventLoop::new(Server::new(&config), loop_config)?;
        let mut bound = Vec::new();
        for (protocol, addr) in wanted {
            let Some(addr) = addr else { continue };
            let inherited = config.inherited.iter().find(|(p, _)| *p == protocol);
            let name = config.listener_name(protocol);
            let (id, local) = match inherited {
                Some(&(_, fd)) => {
                    // SAFETY: the supervisor handed us this listening descriptor, ours alone.
                    let std = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
                    std.set_nonblocking(true)?;
                    let id = ev.add_unix_listener(name, mio::net::UnixListener::from_std(std))?;
                    let local = ev.listener_addr(id).map(|(_, a)| a.clone());
                    (id, local.unwrap_or_else(|| addr.clone()))
                }
                None => ev
                    .listen_at(name, addr, config.reuse_port)
                    .map_err(|e| io::Error::new(e.kind(), format!("bind {name} {addr}: {e}")))?,
            };
            #[cfg(feature = "tls")]
            if let Some(tls) = config
                .tls_config(protocol)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            {
                ev.set_listener_tls(id, tls);
            }
            debug_assert_eq!(id.0 as usize, ev.handler().protocols.len());
            ev.handler_mut().protocols.push(protocol);
            bound.push((protocol, local));
        }
        #[cfg(feature = "http")]
        if config.http.is_some() {
            let handle = ev.handle();
            let web = &config.web;
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
            ev.handler_mut().http = HttpService::new(web, Some(store));
        }
        #[cfg(feature = "redis")]
        ev.with_context(|server, cx| {
            if let Some(redis) = server.redis.as_mut() {
                redis.start(cx);
            }
        });
        Ok((ev, bound))
    }

    /// Stops the upload task threads after the loop has ended (they have drained by then unless
    /// the shutdown timed out; queued work is still finished before this returns).
    pub fn finish(&mut self) {
        #[cfg(feature = "http")]
        self.http.shut_down();
    }

    /// Everything `/stats` reports, gathered from every service.
    pub fn snapshot(&self, cx: &Cx<'_>) -> Snapshot {
        let s = cx.stats();
        let mut connections = Connections::default();
        for (i, p) in self.protocols.iter().enumerate() {
            let n = s.open.get(i).copied().unwrap_or(0);
            match p {
                #[cfg(feature = "http")]
                Protocol::Http => connections.http += n,
                Protocol::Line => connections.line += n,
                Protocol::Hello => connections.hello += n,
            }
        }
        #[cfg(feature = "websocket")]
        {
            connections.ws = self.ws.open();
            connections.http = connections.http.saturating_sub(connections.ws);
        }
        #[cfg_attr(not(any(feature = "http", feature = "redis")), allow(unused_mut))]
        let mut snapshot = Snapshot {
            connections,
            accepted_total: s.accepted_total,
            bytes_read: s.bytes_read,
            bytes_written: s.bytes_written,
            loop_iterations: s.loop_iterations,
            input_buffered: s.input_buffered as u64,
            closed_over_budget: s.closed_over_budget,
            log_dropped: crate::logging::dropped(),
            uptime_s: s.started.elapsed().as_secs_f64(),
            open_outgoing: s.open_outgoing as u64,
            loop_metrics: s.metrics.clone(),
            census: cx.census(),
            ..Snapshot::default()
        };
        #[cfg(feature = "websocket")]
        {
            snapshot.ws_slow_consumers = self.ws.slow_consumers();
        }
        #[cfg(feature = "http")]
        {
            let tasks = self.http.task_counters();
            snapshot.tasks_queued = tasks.queued_total;
            snapshot.tasks_in_flight = tasks.in_flight();
            snapshot.tasks_done = tasks.done;
            snapshot.tasks_failed = tasks.failed;
            snapshot.tasks_unfinished = self.http.unfinished_tasks();
        }
        #[cfg(feature = "redis")]
        {
            snapshot.relay = self.redis.as_ref().map(|r| stats::RelayFigures {
                connected: r.connected(),
                published: r.published,
                received: r.received,
                unrelayed: r.unrelayed,
                in_flight: r.in_flight(),
                links: r.link_states(),
            });
        }
        snapshot
    }

    /// The `/stats` answer (`all`: every worker summed, when this process is one).
    #[cfg(feature = "http")]
    fn stats_response(&self, cx: &Cx<'_>, all: bool) -> Response {
        let snapshot = self.snapshot(cx);
        let summed = all.then(|| stats::all_json(&snapshot)).flatten();
        Response::json(200, summed.unwrap_or_else(|| stats::json(&snapshot)))
    }

    /// The inspector's frame timer: draw the slab strip, make the frame, send it to every
    /// watcher that can take it.
    #[cfg(feature = "websocket")]
    fn inspect_frame(&mut self, cx: &mut Cx<'_>) {
        let snapshot = self.snapshot(cx);
        let mut looks = Vec::new();
        cx.looks(inspect::STRIP_KEYS, &mut looks);
        let mut strip = String::with_capacity(inspect::STRIP_KEYS);
        for (id, look) in looks {
            while strip.len() < id.key() {
                strip.push('.');
            }
            // Indices into `inspect::STRIP_PROTOCOLS`.
            let protocol = match cx.state_of(id) {
                Some(Conn::Http(_)) => 0,
                Some(Conn::Ws(ws)) if ws.endpoint() == Endpoint::Inspect => 5,
                Some(Conn::Ws(_)) => 1,
                Some(Conn::Line(_)) => 2,
                Some(Conn::Hello) => 3,
                _ => 4,
            };
            strip.push(inspect::strip_code(protocol, look));
        }
        let Some(frame) = self.inspector.tick(cx, &snapshot, &strip) else {
            return;
        };
        self.inspector.send(
            cx,
            &frame,
            |cx, id| matches!(cx.state_of(id), Some(Conn::Ws(ws)) if ws.is_open()),
        );
    }

    /// HTTP bytes: requests answered by the HTTP service, `/stats` and upgrades answered here.
    #[cfg(feature = "http")]
    fn http_data(&mut self, cx: &mut Cx<'_>, conn: &mut Conn, data: &mut [u8]) -> usize {
        let mut used = 0;
        loop {
            let Conn::Http(http) = conn else {
                return data.len();
            };
            let delegated = match self.http.on_data(cx, http, &data[used..]) {
                Progress::Used(n) => return used + n,
                Progress::Delegate(n, delegated) => {
                    used += n;
                    delegated
                }
            };
            let response = match delegated {
                Delegated::Stats { all } => self.stats_response(cx, all),
                Delegated::Metrics { all } => Response::new(
                    200,
                    crate::codec::prometheus::CONTENT_TYPE,
                    metrics::text(&self.snapshot(cx), all),
                ),
                #[cfg(feature = "websocket")]
                Delegated::WebSocket(head) if head.path == "/loop/ws" && self.inspector.full() => {
                    Response::text(503, "too many watchers").header("Retry-After", "1")
                }
                #[cfg(feature = "websocket")]
                Delegated::WebSocket(head) => match self.ws.upgrade(cx, &head) {
                    Ok(ws) => {
                        if ws.endpoint() == Endpoint::Inspect {
                            let id = cx.id();
                            self.inspector.join(cx, id);
                        }
                        *conn = Conn::Ws(ws);
                        // What followed the head is already WebSocket frames.
                        return used + self.on_data(cx, conn, &mut data[used..]);
                    }
                    Err(refusal) => refusal,
                },
                #[cfg(not(feature = "websocket"))]
                Delegated::WebSocket(_) => Response::text(404, "not found"),
            };
            if !self.http.answer(cx, http, response) {
                return data.len();
            }
        }
    }
}

impl Handler for Server {
    type Conn = Conn;
    type Message = Message;

    fn accept(&mut self, listener: ListenerId, _peer: &Addr) -> Option<Conn> {
        Some(match self.protocols.get(listener.0 as usize)? {
            Protocol::Hello => Conn::Hello,
            Protocol::Line => Conn::Line(LineConn::OUT),
            #[cfg(feature = "http")]
            Protocol::Http => Conn::Http(None),
        })
    }

    fn on_open(&mut self, cx: &mut Cx<'_>, conn: &mut Conn) {
        match conn {
            Conn::Hello => self.hello.on_open(cx),
            Conn::Line(line) => self.line.on_open(cx, line),
            #[cfg(feature = "http")]
            Conn::Http(_) => self.http.on_open(cx),
            #[cfg(feature = "websocket")]
            Conn::Ws(_) => {}
            #[cfg(feature = "redis")]
            Conn::Redis(role) => {
                if let Some(redis) = self.redis.as_mut() {
                    redis.on_open(cx, *role);
                }
            }
        }
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, conn: &mut Conn, data: &mut [u8]) -> usize {
        match conn {
            // A hello client has nothing to say; its bytes are read and dropped.
            Conn::Hello => data.len(),
            Conn::Line(_) => {
                #[cfg(feature = "redis")]
                let redis = &mut self.redis;
                let mut relay = |cx: &mut Cx<'_>, line: &[u8]| {
                    #[cfg(feature = "redis")]
                    if let Some(redis) = redis.as_mut() {
                        redis.publish(cx, Group::Line, line);
                    }
                    #[cfg(not(feature = "redis"))]
                    let _ = (cx, line);
                };
                self.line.on_data(cx, data, &mut relay)
            }
            #[cfg(feature = "http")]
            Conn::Http(_) => self.http_data(cx, conn, data),
            #[cfg(feature = "websocket")]
            Conn::Ws(ws) => {
                #[cfg(feature = "redis")]
                let redis = &mut self.redis;
                let mut relay = |cx: &mut Cx<'_>, text: &str| {
                    #[cfg(feature = "redis")]
                    if let Some(redis) = redis.as_mut() {
                        redis.publish(cx, Group::Ws, text.as_bytes());
                    }
                    #[cfg(not(feature = "redis"))]
                    let _ = (cx, text);
                };
                self.ws.on_data(cx, ws, data, &mut relay)
            }
            #[cfg(feature = "redis")]
            Conn::Redis(role) => {
                let Some(redis) = self.redis.as_mut() else {
                    return data.len();
                };
                let line = &self.line;
                #[cfg(feature = "websocket")]
                let ws = &mut self.ws;
                let mut deliver = |cx: &mut Cx<'_>, group: Group, msg: &[u8]| match group {
                    #[cfg(feature = "websocket")]
                    Group::Ws => match std::str::from_utf8(msg) {
                        Ok(text) => ws.deliver(cx, text),
                        Err(_) => {
                            log::warn!(target: "readyloop::redis", "a /ws message from redis is not UTF-8, dropped")
                        }
                    },
                    // A build without `websocket` has no /ws clients to deliver to.
                    #[cfg(not(feature = "websocket"))]
                    Group::Ws => {}
                    Group::Line => line.deliver(cx, msg, None),
                };
                redis.on_data(cx, *role, data, &mut deliver)
            }
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>, conn: &mut Conn) {
        match conn {
            #[cfg(feature = "http")]
            Conn::Http(http) => self.http.on_eof(cx, http),
            _ => {
                let id = cx.id();
                cx.close(id);
            }
        }
    }

    fn on_input_over_budget(&mut self, cx: &mut Cx<'_>, conn: &mut Conn, _held: usize) {
        match conn {
            Conn::Line(_) => self.line.on_input_over_budget(cx),
            #[cfg(feature = "http")]
            Conn::Http(http) => self.http.on_input_over_budget(cx, http),
            #[cfg(feature = "websocket")]
            Conn::Ws(ws) => self.ws.on_input_over_budget(cx, ws),
            _ => {
                let id = cx.id();
                cx.abort(id);
            }
        }
    }

    #[cfg(feature = "websocket")]
    fn on_write_blocked(&mut self, cx: &mut Cx<'_>, conn: &mut Conn, pending: usize) {
        if let Conn::Ws(ws) = conn {
            self.ws.on_write_blocked(cx, ws, pending);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_>, conn: &mut Conn) {
        match conn {
            #[cfg(feature = "http")]
            Conn::Http(http) => self.http.on_timer(cx, http),
            #[cfg(feature = "websocket")]
            Conn::Ws(ws) => self.ws.on_timer(cx, ws),
            #[cfg(feature = "redis")]
            Conn::Redis(role) => {
                if let Some(redis) = self.redis.as_mut() {
                    redis.on_timer(cx, *role);
                }
            }
            Conn::Hello | Conn::Line(_) => {
                let id = cx.id();
                info!("conn {id}: idle timeout, closing");
                cx.close(id);
            }
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn on_close(&mut self, cx: &mut Cx<'_>, id: ConnId, conn: Conn, why: CloseReason) {
        match conn {
            Conn::Hello => {}
            Conn::Line(line) => self.line.on_close(id, line, why),
            #[cfg(feature = "http")]
            Conn::Http(http) => self.http.on_close(id, http, why),
            #[cfg(feature = "websocket")]
            Conn::Ws(ws) => {
                self.inspector.leave(id);
                self.ws.on_close(id, &ws, why)
            }
            #[cfg(feature = "redis")]
            Conn::Redis(role) => {
                if let Some(redis) = self.redis.as_mut() {
                    redis.on_close(cx, id, role, why);
                }
            }
        }
    }

    #[cfg(any(feature = "redis", feature = "websocket"))]
    fn on_loop_timer(&mut self, cx: &mut Cx<'_>, tag: u32) {
        match tag {
            #[cfg(feature = "websocket")]
            inspect::TIMER_TAG => self.inspect_frame(cx),
            #[cfg(feature = "redis")]
            _ => {
                if let Some(redis) = self.redis.as_mut() {
                    redis.on_loop_timer(cx, tag);
                }
            }
            #[cfg(not(feature = "redis"))]
            _ => {}
        }
    }

    #[cfg_attr(not(feature = "http"), allow(unused_variables))]
    fn on_message(&mut self, cx: &mut Cx<'_>, msg: Message) {
        match msg {
            #[cfg(feature = "http")]
            Message::Task(update) => self.http.task_update(cx, update),
        }
    }

    fn on_shutdown(&mut self, cx: &mut Cx<'_>) {
        for id in cx.ids() {
            cx.with_state(id, |cx, conn| match conn {
                // An HTTP request in progress is answered first (the response closes it);
                // one whose head is still arriving is refused now.
                #[cfg(feature = "http")]
                Conn::Http(http) => self.http.on_shutdown(cx, id, http),
                #[cfg(feature = "websocket")]
                Conn::Ws(ws) => self.ws.on_shutdown(cx, id, ws),
                #[cfg(feature = "redis")]
                Conn::Redis(role) => match self.redis.as_mut() {
                    Some(redis) => redis.on_shutdown(cx, id, *role),
                    None => cx.abort(id),
                },
                Conn::Hello | Conn::Line(_) => cx.close(id),
            });
        }
    }

    #[cfg(feature = "http")]
    fn has_pending_work(&self) -> bool {
        self.http.task_counters().in_flight() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::connection::Connection;

    #[test]
    fn every_connection_of_the_server_is_small() {
        // The loop's 24 bytes plus the largest protocol variant (a tag and a pointer, with no
        // extra word for `None`: the states vector's `Option` takes a niche): 40 bytes.
        let limit = if cfg!(debug_assertions) { 56 } else { 40 };
        let size = std::mem::size_of::<Connection>() + std::mem::size_of::<Option<Conn>>();
        assert!(size <= limit, "a server connection grew to {size} bytes");
    }
}

//! `EventLoop`: one thread, one `mio::Poll`, every socket non-blocking, and nothing else.
//!
//! This is the part of readyloop that asyncio and tokio hide: who calls `accept`, `read` and
//! `write`, when, and what happens when the kernel says "not now" (`WouldBlock`). Connections live
//! in a `slab::Slab`; a connection's slab key is its `mio::Token`. Listeners, the `Waker` and
//! the signal pipe use reserved tokens at the top of the token space.
//!
//! # One iteration (`run_once`)
//!
//! 1. **Timeout.** Zero when work is already waiting (connections to read again or to flush
//!    because they hit their per-iteration budget); otherwise until the earliest of the next timer,
//!    the retry of a paused accept and the shutdown deadline; otherwise forever.
//! 2. **Poll.** `epoll_wait` via `Poll::poll`. mio is edge-triggered: an event says "something
//!    changed", so every handler below works until `WouldBlock`, or remembers to come back.
//! 3. **Dispatch** each event: the waker drains messages from other threads (`on_message`); the
//!    signal pipe starts a graceful shutdown; a listener accepts until `WouldBlock` (`on_open`);
//!    a connection reads until `WouldBlock` (`on_data`) and/or flushes its output. An event may be
//!    stale (its connection closed earlier in this batch): it finds the connection `Closed`, is
//!    traced and ignored. Slots are only freed in phase 7, so a key is never reused within a batch.
//! 4. **Deferred reads**: connections that hit the read budget or were just un-paused.
//! 5. **Timers**: expire the wheel (`on_timer`, `on_loop_timer`, lingering-close and close-flush
//!    deadlines).
//! 6. **Flush** every connection with queued output (redis' `beforeSleep`): replies from this
//!    iteration go out in one `writev` each. A short write arms WRITABLE; a drained queue drops it.
//! 7. **Reap** connections marked `Closed`: free the slot, close the fd, `on_close`.
//! 8. During shutdown, stop once no connection and no background work is left.

use crate::connection::{flags, interest_name, Buffers, Connection, Phase, READABLE, WRITABLE};
use crate::handler::{CloseReason, ConnId, Context, Handler};
use crate::out_queue::{Chunk, OutQueue, MAX_IOVECS};
use crate::timer::TimerWheel;
use log::{debug, info, log_enabled, trace, warn, Level};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;
use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The log target for one line per syscall; `RUST_LOG=readyloop::io=trace` shows only those.
const IO: &str = "readyloop::io";

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
/// Listener `i` uses token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 2;
/// At most this many listeners per loop (tokens below are connection keys).
const MAX_LISTENERS: usize = 64;
/// The timer wheel's owner key of handler deadlines (`Context::set_loop_timer`); the
/// generation slot carries the handler's tag. Never a slab key (the slab is far smaller).
const LOOP_TIMER_OWNER: usize = usize::MAX;

/// Read at most this many times per connection per readiness event (16 × 64 KiB = 1 MiB)
/// before moving on to other connections; the connection is read again next iteration.
const READS_PER_EVENT: usize = 16;
/// Write at most this many bytes per connection per flush (redis uses 64 KiB per event; we
/// write whole `writev`s, so the cap is looser) before giving other connections their turn.
const WRITE_BUDGET: usize = 1 << 20;
/// Events fetched per `poll`; more wait for the next call.
const EVENTS_CAPACITY: usize = 1024;
/// Pause before retrying `accept` after EMFILE/ENFILE, unless a connection closes sooner.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Emptied buffers kept for reuse: 64, each holding at most 64 KiB of input capacity and a
/// 64 KiB output buffer, so the pool is bounded at a few MiB however many connections come and go.
const SPARE_BUFFERS: usize = 64;
/// Spare buffers. The boxes themselves are what is pooled (a connection holds a `Box`), so
/// reusing one saves its allocation too.
#[allow(clippy::vec_box)]
type BufferPool = Vec<Box<Buffers>>;
/// Input capacity over this (64 KiB) is freed rather than pooled.
const SPARE_INBUF: usize = 64 * 1024;
/// Backlog for listeners we bind (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// Names a listener of this loop (its index in the order they were added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u16);

/// Tunables of the loop. Every limit has a unit and a reason.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes of the one loop-wide read buffer: 64 KiB takes a full TCP window per `read`.
    pub read_buffer: usize,
    /// Pending output (bytes) above which the loop stops reading from a connection: 1 MiB, so
    /// a client that sends but does not read cannot make us buffer without bound.
    pub high_watermark: usize,
    /// Pending output (bytes) below which reading resumes: 256 KiB, hysteresis so a connection
    /// does not flip on every write.
    pub low_watermark: usize,
    /// Output (bytes) the socket refused at which a connection is closed as a slow consumer:
    /// 64 MiB, a last resort for output that backpressure on reads cannot stop (broadcasts);
    /// protocols cut off slow consumers at their own, lower limits first (`on_write_blocked`).
    pub max_pending: usize,
    /// Bytes an incomplete message may occupy in a connection's input buffer: 17 MiB, one
    /// 16 MiB WebSocket message plus headers. Protocols enforce their own, smaller limits first.
    pub max_inbuf: usize,
    /// How long a close may wait for its output to flush: 10 s.
    pub close_timeout: Duration,
    /// How long a lingering close waits for the peer's EOF after our FIN: 2 s.
    pub linger_timeout: Duration,
    /// How long shutdown waits for connections and background work: 10 s.
    pub shutdown_timeout: Duration,
    /// Set TCP_NODELAY on accepted sockets (we coalesce writes ourselves, so Nagle only delays).
    pub nodelay: bool,
    /// Connection slots reserved up front: 1024. The server sets it to the descriptor limit,
    /// which costs only address space: pages of the slab are touched (and become resident) as
    /// connections fill them, and the slab never doubles and copies itself.
    pub reserve_connections: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            read_buffer: 64 * 1024,
            high_watermark: 1 << 20,
            low_watermark: 256 * 1024,
            max_pending: 64 << 20,
            max_inbuf: 17 << 20,
            close_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            nodelay: true,
            reserve_connections: 1024,
        }
    }
}

/// Counters the loop keeps (served as JSON by `GET /stats`).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Connections accepted since start.
    pub accepted_total: u64,
    /// Bytes read from sockets.
    pub bytes_read: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Completed `run_once` iterations.
    pub loop_iterations: u64,
    /// Open connections per listener (index = `ListenerId`).
    pub open: Vec<usize>,
    /// Open outgoing connections (made with `connect`).
    pub open_outgoing: usize,
    /// When the loop was created.
    pub started: Instant,
}

enum Envelope<M> {
    Message(M),
    Shutdown,
}

struct Wake {
    waker: Waker,
    /// True while a wake-up is on its way, so a burst of messages costs one `write(eventfd)`.
    pending: AtomicBool,
}

/// Lets other threads send messages to the loop and stop it. Cheap to clone; `Send + Sync`.
pub struct Handle<M> {
    tx: mpsc::Sender<Envelope<M>>,
    wake: Arc<Wake>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }
}

impl<M: Send> Handle<M> {
    /// Sends `msg` to the loop's `Handler::on_message`. Fails (returning it) once the loop is gone.
    pub fn send(&self, msg: M) -> Result<(), M> {
        match self.tx.send(Envelope::Message(msg)) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(mpsc::SendError(Envelope::Message(m))) => Err(m),
            Err(mpsc::SendError(Envelope::Shutdown)) => unreachable!("sent a message"),
        }
    }

    /// Asks the loop to shut down gracefully, as SIGTERM does.
    pub fn shutdown(&self) {
        if self.tx.send(Envelope::Shutdown).is_ok() {
            self.wake();
        }
    }

    fn wake(&self) {
        if !self.wake.pending.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.wake.waker.wake() {
                warn!("waker failed: {e}");
            }
        }
    }
}

struct Listener {
    socket: Option<TcpListener>,
    name: String,
    addr: SocketAddr,
}

/// Everything a `Context` may touch: the connections, the timers and the work lists. Kept apart
/// from the handler, the poll and the read buffer so that a callback can borrow all three.
pub struct Core<H: Handler> {
    pub(crate) conns: Slab<Connection<H::Conn>>,
    pub(crate) stats: Stats,
    pub(crate) now: Instant,
    pub(crate) handle: Handle<H::Message>,
    pub(crate) shutting_down: bool,
    registry: Registry,
    config: Config,
    timers: TimerWheel,
    /// Connections with output to flush before the loop sleeps.
    flush_list: Vec<usize>,
    /// Connections to read again without waiting for an event.
    read_list: Vec<usize>,
    /// Connections marked `Closed`, freed at the end of the iteration.
    closed: Vec<(usize, CloseReason)>,
    next_gen: u32,
    /// Emptied buffers, lent to the next busy connection (no malloc per busy episode).
    spare: BufferPool,
    /// Peer addresses, kept only while trace logging is on (so the log can name the peer
    /// without costing idle connections 32 bytes each in normal runs).
    peers: HashMap<usize, SocketAddr>,
}

/// Formats `conn KEY PEER` for log lines.
struct Who<'a>(usize, &'a HashMap<usize, SocketAddr>);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.get(&self.0) {
            Some(peer) => write!(f, "conn {} {}", self.0, peer),
            None => write!(f, "conn {}", self.0),
        }
    }
}

impl<H: Handler> Core<H> {
    fn who(&self, key: usize) -> Who<'_> {
        Who(key, &self.peers)
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Connection<H::Conn>> {
        self.conns
            .get(id.key)
            .filter(|c| c.gen == id.gen && c.phase != Phase::Closed)
    }

    pub(crate) fn live(&mut self, id: ConnId) -> Option<&mut Connection<H::Conn>> {
        self.conns
            .get_mut(id.key)
            .filter(|c| c.gen == id.gen && c.phase != Phase::Closed)
    }

    fn open_mut(&mut self, id: ConnId) -> Option<&mut Connection<H::Conn>> {
        open_conn(&mut self.conns, id)
    }

    /// Queues output for an open connection, lending it buffers from the pool if it had none.
    fn out_of(&mut self, id: ConnId) -> Option<&mut OutQueue> {
        let c = open_conn(&mut self.conns, id)?;
        Some(&mut buffers(c, &mut self.spare).out)
    }

    /// Takes an emptied connection's buffers back into the pool.
    fn release_buffers(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if c.bufs.as_ref().is_some_and(|b| b.is_empty()) {
                if let Some(b) = c.bufs.take() {
                    recycle(&mut self.spare, b);
                }
            }
        }
    }

    fn schedule_flush(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.has(flags::IN_FLUSH_LIST) {
                c.flags |= flags::IN_FLUSH_LIST;
                self.flush_list.push(key);
            }
        }
    }

    fn schedule_read(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.has(flags::IN_READ_LIST) {
                c.flags |= flags::IN_READ_LIST;
                self.read_list.push(key);
            }
        }
    }

    pub(crate) fn send(&mut self, id: ConnId, chunk: Chunk) -> bool {
        let Some(out) = self.out_of(id) else {
            return false;
        };
        out.push(chunk);
        self.schedule_flush(id.key);
        true
    }

    pub(crate) fn send_copy(&mut self, id: ConnId, bytes: &[u8]) -> bool {
        let Some(out) = self.out_of(id) else {
            return false;
        };
        out.push_copy(bytes);
        self.schedule_flush(id.key);
        true
    }

    pub(crate) fn close_gracefully(&mut self, id: ConnId) {
        let timeout = self.config.close_timeout;
        let Some(c) = self.open_mut(id) else {
            return;
        };
        debug!(
            "conn {}: closing after {} pending bytes",
            id.key,
            c.pending()
        );
        c.phase = Phase::Closing;
        if let Some(b) = c.bufs.as_mut() {
            b.inbuf.clear();
        }
        self.set_timer_raw(id.key, timeout);
        self.schedule_flush(id.key);
    }

    /// Marks a connection `Closed` (freed in phase 7). `gen` guards against stale ids.
    pub(crate) fn close_now(&mut self, key: usize, gen: Option<u32>, why: CloseReason) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.phase == Phase::Closed || gen.is_some_and(|g| g != c.gen) {
            return;
        }
        c.phase = Phase::Closed;
        if let Some(mut b) = c.bufs.take() {
            b.inbuf.clear();
            b.out.clear();
            recycle(&mut self.spare, b);
        }
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        self.closed.push((key, why));
    }

    pub(crate) fn set_handler_pause(&mut self, id: ConnId, pause: bool) {
        let Some(c) = self.live(id) else {
            return;
        };
        if pause {
            c.flags |= flags::PAUSED_BY_HANDLER;
        } else if c.has(flags::PAUSED_BY_HANDLER) {
            c.flags &= !flags::PAUSED_BY_HANDLER;
            self.schedule_read(id.key);
        }
        self.update_interest(id.key);
    }

    pub(crate) fn set_timer(&mut self, id: ConnId, after: Duration) {
        if self.open_mut(id).is_some() {
            self.set_timer_raw(id.key, after);
        }
    }

    fn set_timer_raw(&mut self, key: usize, after: Duration) {
        let at = self.now + after;
        let c = &mut self.conns[key];
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        c.timer = Some(self.timers.insert(at, (key, c.gen)));
    }

    pub(crate) fn cancel_timer(&mut self, id: ConnId) {
        if let Some(c) = self.open_mut(id) {
            if let Some(t) = c.timer.take() {
                self.timers.cancel(t);
            }
        }
    }

    /// `connect(2)` on a fresh non-blocking socket and a slab slot in `Connecting` (see
    /// `EventLoop::connect`). Never blocks: the result comes back as WRITABLE.
    pub(crate) fn connect(
        &mut self,
        addr: SocketAddr,
        from: Option<std::net::IpAddr>,
        state: H::Conn,
    ) -> io::Result<ConnId> {
        let stream = match from {
            None => TcpStream::connect(addr)?,
            Some(ip) => {
                let socket = socket2::Socket::new(
                    socket2::Domain::for_address(addr),
                    socket2::Type::STREAM,
                    None,
                )?;
                socket.set_nonblocking(true)?;
                // Let the kernel pick the port at connect time, per (src, dst) pair, so each
                // source address gets the whole ephemeral range.
                set_bind_address_no_port(&socket);
                socket.bind(&SocketAddr::new(ip, 0).into())?;
                match socket.connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
                TcpStream::from_std(socket.into())
            }
        };
        let gen = self.next_gen;
        self.next_gen = gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Connection::new(stream, state, gen, None);
        conn.phase = Phase::Connecting;
        conn.interest = READABLE | WRITABLE;
        self.registry.register(
            &mut conn.stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(conn);
        self.stats.open_outgoing += 1;
        trace!(target: IO, "conn {key} connect {addr} in progress");
        Ok(ConnId { key, gen })
    }

    /// Arms a deadline that belongs to the handler, not to a connection: `on_loop_timer(tag)`
    /// runs once it passes. There is no cancel; a handler ignores a tag it no longer wants.
    pub(crate) fn set_loop_timer(&mut self, after: Duration, tag: u32) {
        let at = self.now + after;
        self.timers.insert(at, (LOOP_TIMER_OWNER, tag));
    }

    /// Re-registers only when the wanted interest differs from what the poll has (rule 4).
    fn update_interest(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.phase == Phase::Closed {
            return;
        }
        let want = c.wanted_interest();
        if want == c.interest {
            return;
        }
        let interest = match want {
            READABLE => Interest::READABLE,
            WRITABLE => Interest::WRITABLE,
            _ => Interest::READABLE | Interest::WRITABLE,
        };
        let before = c.interest;
        match self
            .registry
            .reregister(&mut c.stream, Token(key), interest)
        {
            Ok(()) => {
                c.interest = want;
                trace!(target: IO, "{} interest {} -> {}", Who(key, &self.peers),
                    interest_name(before), interest_name(want));
            }
            Err(e) => {
                warn!("{}: reregister failed: {e}", Who(key, &self.peers));
                self.close_now(key, None, CloseReason::PeerGone(e.kind()));
            }
        }
    }
}

/// The event loop: a `Handler`, its listeners and connections, one thread.
pub struct EventLoop<H: Handler> {
    handler: H,
    core: Core<H>,
    poll: Poll,
    events: Events,
    /// The one read buffer of the loop (uSockets): every `read` lands here, and only the
    /// unconsumed tail of an incomplete message is copied into the connection's own `inbuf`.
    scratch: Vec<u8>,
    listeners: Vec<Listener>,
    rx: mpsc::Receiver<Envelope<H::Message>>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    accept_paused_until: Option<Instant>,
    /// Accepts failed for want of descriptors and the backlog has not been drained since: the
    /// warning is logged once per such episode, not on every `ACCEPT_RETRY` (nor again when
    /// closing connections lets the backlog in one descriptor at a time).
    accept_starved: bool,
    shutdown_deadline: Option<Instant>,
    stopped: bool,
}

impl<H: Handler> EventLoop<H> {
    /// A loop with no listeners yet.
    pub fn new(handler: H, config: Config) -> io::Result<EventLoop<H>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = mpsc::channel();
        let handle = Handle {
            tx,
            wake: Arc::new(Wake {
                waker,
                pending: AtomicBool::new(false),
            }),
        };
        let now = Instant::now();
        let core = Core {
            conns: Slab::with_capacity(config.reserve_connections),
            stats: Stats {
                accepted_total: 0,
                bytes_read: 0,
                bytes_written: 0,
                loop_iterations: 0,
                open: Vec::new(),
                open_outgoing: 0,
                started: now,
            },
            now,
            handle,
            shutting_down: false,
            registry: poll.registry().try_clone()?,
            timers: TimerWheel::new(now),
            flush_list: Vec::new(),
            read_list: Vec::new(),
            closed: Vec::new(),
            next_gen: 0,
            peers: HashMap::new(),
            spare: Vec::new(),
            config: config.clone(),
        };
        Ok(EventLoop {
            handler,
            scratch: vec![0; config.read_buffer.max(1)],
            core,
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listeners: Vec::new(),
            rx,
            signals: None,
            accept_paused_until: None,
            accept_starved: false,
            shutdown_deadline: None,
            stopped: false,
        })
    }

    /// Binds `addr` (SO_REUSEADDR, a 4096 backlog) and serves it as listener `name`.
    /// Returns the id and the bound address (the real port when port 0 was asked for).
    pub fn listen(&mut self, name: &str, addr: SocketAddr) -> io::Result<(ListenerId, SocketAddr)> {
        self.listen_with(name, addr, false)
    }

    /// Like `listen`, with SO_REUSEPORT when `reuse_port` is set (several worker processes
    /// sharing one port, each with its own accept queue).
    pub fn listen_with(
        &mut self,
        name: &str,
        addr: SocketAddr,
        reuse_port: bool,
    ) -> io::Result<(ListenerId, SocketAddr)> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let std_listener: std::net::TcpListener = socket.into();
        let id = self.add_listener(name, TcpListener::from_std(std_listener))?;
        Ok((id, self.listeners[id.0 as usize].addr))
    }

    /// Serves an already bound, non-blocking listener.
    pub fn add_listener(&mut self, name: &str, mut socket: TcpListener) -> io::Result<ListenerId> {
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(io::Error::other("too many listeners"));
        }
        let index = self.listeners.len();
        self.poll.registry().register(
            &mut socket,
            Token(LISTENER_BASE - index),
            Interest::READABLE,
        )?;
        let addr = socket.local_addr()?;
        info!("listening {name} {addr}");
        self.listeners.push(Listener {
            socket: Some(socket),
            name: name.to_string(),
            addr,
        });
        self.core.stats.open.push(0);
        Ok(ListenerId(index as u16))
    }

    /// The name and bound address of a listener.
    pub fn listener_addr(&self, id: ListenerId) -> Option<(&str, SocketAddr)> {
        self.listeners
            .get(id.0 as usize)
            .map(|l| (l.name.as_str(), l.addr))
    }

    /// Starts a non-blocking outgoing connection (the client side of the loop, used by the load
    /// generator). `on_open` runs once it completes; a failure ends in
    /// `on_close(.., CloseReason::ConnectFailed)`. From inside a callback, use
    /// `Context::connect`.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        from: Option<std::net::IpAddr>,
        state: H::Conn,
    ) -> io::Result<ConnId> {
        self.core.connect(addr, from, state)
    }

    /// Stops the loop gracefully on SIGINT and SIGTERM (through a self-pipe registered with the
    /// poll, so the signal is just another readiness event).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// A handle for other threads: send messages, or stop the loop.
    pub fn handle(&self) -> Handle<H::Message> {
        self.core.handle.clone()
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// Runs `f` with the handler and a `Context` outside of any callback (a host thread driving
    /// the loop with `run_once` can queue output this way).
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut H, &mut Context<'_, H>) -> R) -> R {
        let mut cx = Context {
            core: &mut self.core,
            current: None,
        };
        f(&mut self.handler, &mut cx)
    }

    /// Runs until a graceful shutdown completes.
    pub fn run(&mut self) -> io::Result<()> {
        while self.run_once(None)? {}
        Ok(())
    }

    /// One iteration (see the module documentation), waiting at most `max_wait` in `poll`
    /// (`None`: as long as the loop's own deadlines allow). Returns false once the loop has
    /// stopped after a shutdown.
    pub fn run_once(&mut self, max_wait: Option<Duration>) -> io::Result<bool> {
        if self.stopped {
            return Ok(false);
        }
        // 1. Timeout.
        let timeout = self.poll_timeout(max_wait);
        // 2. Poll.
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        self.core.now = Instant::now();
        // 3. Dispatch.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                WAKER => self.drain_messages(),
                SIGNALS => self.read_signals(),
                Token(t) if t > LISTENER_BASE - MAX_LISTENERS => {
                    self.accept_ready(LISTENER_BASE - t)
                }
                Token(key) => {
                    trace!(target: IO, "{} event{}{}{}", self.core.who(key),
                        if event.is_readable() { " R" } else { "" },
                        if event.is_writable() { " W" } else { "" },
                        if event.is_read_closed() || event.is_write_closed() { " HUP" } else { "" });
                    let hup = event.is_read_closed() || event.is_error();
                    self.connection_ready(key, event.is_readable(), event.is_writable(), hup);
                }
            }
        }
        self.events = events;
        // 4. Deferred reads.
        let reads = std::mem::take(&mut self.core.read_list);
        for key in reads {
            if let Some(c) = self.core.conns.get_mut(key) {
                c.flags &= !flags::IN_READ_LIST;
                self.read_ready(key, true);
            }
        }
        // 5. Timers.
        self.expire_timers();
        if let Some(at) = self.accept_paused_until {
            if self.core.now >= at {
                self.resume_accepting();
            }
        }
        // 6. Flush.
        self.flush_all();
        // 7. Reap.
        self.reap();
        self.core.stats.loop_iterations += 1;
        // 8. Shutdown progress.
        if self.core.shutting_down {
            let done = self.core.conns.is_empty() && !self.handler.has_pending_work();
            let late = self.shutdown_deadline.is_some_and(|d| self.core.now >= d);
            if done || late {
                if !done {
                    warn!(
                        "shutdown timeout: dropping {} connections",
                        self.core.conns.len()
                    );
                }
                self.finish_shutdown();
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn poll_timeout(&self, max_wait: Option<Duration>) -> Option<Duration> {
        if !self.core.read_list.is_empty() || !self.core.flush_list.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadline = [
            self.core.timers.next_deadline(),
            self.accept_paused_until,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        let until = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match (until, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn cx(&mut self, current: Option<ConnId>) -> (&mut H, Context<'_, H>) {
        (
            &mut self.handler,
            Context {
                core: &mut self.core,
                current,
            },
        )
    }

    fn id_of(&self, key: usize) -> ConnId {
        ConnId {
            key,
            gen: self.core.conns[key].gen,
        }
    }

    fn drain_messages(&mut self) {
        // Clear the flag before draining: a message sent after this point wakes us again.
        self.core
            .handle
            .wake
            .pending
            .store(false, Ordering::Release);
        while let Ok(envelope) = self.rx.try_recv() {
            match envelope {
                Envelope::Message(msg) => {
                    let (h, mut cx) = self.cx(None);
                    h.on_message(&mut cx, msg);
                }
                Envelope::Shutdown => self.begin_shutdown(),
            }
        }
    }

    fn read_signals(&mut self) {
        let mut got = false;
        if let Some(signals) = self.signals.as_mut() {
            for signal in signals.pending() {
                info!("signal {signal}: shutting down gracefully");
                got = true;
            }
        }
        if got {
            self.begin_shutdown();
        }
    }

    /// Starts a graceful shutdown: close the listeners, let the handler close its connections.
    pub fn begin_shutdown(&mut self) {
        if self.core.shutting_down {
            return;
        }
        self.core.shutting_down = true;
        self.shutdown_deadline = Some(self.core.now + self.core.config.shutdown_timeout);
        for l in &mut self.listeners {
            if let Some(mut socket) = l.socket.take() {
                let _ = self.poll.registry().deregister(&mut socket);
                info!("closed listener {} {}", l.name, l.addr);
            }
        }
        let (h, mut cx) = self.cx(None);
        h.on_shutdown(&mut cx);
    }

    fn finish_shutdown(&mut self) {
        let keys: Vec<usize> = self.core.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.core.close_now(key, None, CloseReason::Shutdown);
        }
        self.reap();
        self.stopped = true;
        info!(
            "stopped after {} iterations, {} connections accepted",
            self.core.stats.loop_iterations, self.core.stats.accepted_total
        );
    }

    fn accept_ready(&mut self, index: usize) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(index).and_then(|l| l.socket.as_ref()) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(index, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.accept_starved {
                        // The backlog is empty: every waiting connection got a descriptor.
                        self.accept_starved = false;
                        info!("accept backlog drained: no longer out of descriptors");
                    }
                    trace!(target: IO, "listener {} accept WouldBlock", self.listeners[index].name);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    self.pause_accepting(&e);
                    return;
                }
                Err(e) => {
                    warn!("listener {} accept failed: {e}", self.listeners[index].name);
                    return;
                }
            }
        }
    }

    /// Out of descriptors: the pending connection stays in the backlog, and every `accept`
    /// would fail again at once. Stop asking until a connection closes or `ACCEPT_RETRY` passes.
    fn pause_accepting(&mut self, e: &io::Error) {
        if self.accept_starved {
            debug!("accept failed again: {e}; still pausing accepts");
        } else {
            self.accept_starved = true;
            warn!(
                "accept failed: {e}; pausing accepts ({} connections open) until a descriptor frees up",
                self.core.conns.len()
            );
        }
        self.accept_paused_until = Some(self.core.now + ACCEPT_RETRY);
        for l in &mut self.listeners {
            if let Some(socket) = l.socket.as_mut() {
                let _ = self.poll.registry().deregister(socket);
            }
        }
    }

    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        debug!("resuming accepts");
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if let Some(socket) = l.socket.as_mut() {
                // A fresh registration reports readiness that is already there (the backlog).
                let _ = self.poll.registry().register(
                    socket,
                    Token(LISTENER_BASE - i),
                    Interest::READABLE,
                );
            }
        }
        for i in 0..self.listeners.len() {
            self.accept_ready(i);
        }
    }

    fn admit(&mut self, index: usize, mut stream: TcpStream, peer: SocketAddr) {
        self.core.stats.accepted_total += 1;
        let Some(state) = self.handler.accept(ListenerId(index as u16), peer) else {
            debug!("listener {} refused {peer}", self.listeners[index].name);
            return;
        };
        if self.core.config.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let gen = self.core.next_gen;
        self.core.next_gen = gen.wrapping_add(1);
        let entry = self.core.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .core
            .registry
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            warn!("register {peer} failed: {e}");
            return;
        }
        entry.insert(Connection::new(
            stream,
            state,
            gen,
            Some(ListenerId(index as u16)),
        ));
        self.core.stats.open[index] += 1;
        if log_enabled!(target: IO, Level::Trace) {
            self.core.peers.insert(key, peer);
        }
        trace!(target: IO, "{} accepted on {} (interest R)", self.core.who(key), self.listeners[index].name);
        let (h, mut cx) = self.cx(Some(ConnId { key, gen }));
        h.on_open(&mut cx);
        // Data may already be waiting (the client wrote right after connecting); the
        // registration reports it as an event, so there is no need to read here.
    }

    fn connection_ready(&mut self, key: usize, readable: bool, writable: bool, hup: bool) {
        let Some(c) = self.core.conns.get(key) else {
            trace!(target: IO, "conn {key} stale event: slot empty");
            return;
        };
        match c.phase {
            Phase::Closed => {
                trace!(target: IO, "conn {key} stale event: closed earlier in this batch");
            }
            Phase::Connecting => {
                if writable || readable {
                    self.finish_connect(key);
                }
            }
            _ => {
                if writable {
                    self.flush_outbuf(key);
                }
                if readable {
                    self.read_ready(key, hup);
                }
            }
        }
    }

    fn finish_connect(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        let result = match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => c.stream.peer_addr().map(|_| ()),
        };
        match result {
            Ok(()) => {
                c.phase = Phase::Open;
                trace!(target: IO, "conn {key} connected");
                if self.core.config.nodelay {
                    let _ = self.core.conns[key].stream.set_nodelay(true);
                }
                self.core.update_interest(key);
                let id = self.id_of(key);
                let (h, mut cx) = self.cx(Some(id));
                h.on_open(&mut cx);
                // Output queued while connecting (flushes skip connecting sockets) goes now.
                if self.core.conns.get(key).is_some_and(|c| c.pending() > 0) {
                    self.core.schedule_flush(key);
                }
                self.read_ready(key, true);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                trace!(target: IO, "conn {key} connect still in progress");
            }
            Err(e) => {
                debug!("conn {key} connect failed: {e}");
                self.core
                    .close_now(key, None, CloseReason::ConnectFailed(e.kind()));
            }
        }
    }

    /// Reads until the socket is drained, EOF, an error, a pause, or the per-event budget.
    ///
    /// Edge-triggered readiness means a read we skip is an event we never get again, so the
    /// socket must be drained. A *short* read (fewer bytes than asked) already drained it: TCP
    /// copies until the buffer is full or the queue is empty, and data arriving later raises a
    /// new edge. So we stop there and save the `read` that would only say `WouldBlock` (a third
    /// of the syscalls of a ping-pong). The exception is `until_would_block`: when the event
    /// said the peer closed (the FIN raises no further edge of its own), or when there was no
    /// event at all (deferred reads), we read on until `WouldBlock` or EOF.
    fn read_ready(&mut self, key: usize, until_would_block: bool) {
        let mut budget = READS_PER_EVENT;
        // Bytes left unconsumed while the handler had reading paused are offered first.
        if self
            .core
            .conns
            .get(key)
            .is_some_and(|c| c.phase == Phase::Open && !c.paused() && c.inbuf_len() > 0)
        {
            self.deliver(key, 0);
        }
        loop {
            let Some(c) = self.core.conns.get_mut(key) else {
                return;
            };
            let discarding = matches!(c.phase, Phase::Closing | Phase::Lingering);
            if c.phase == Phase::Closed || c.has(flags::EOF) || (c.paused() && !discarding) {
                return;
            }
            if budget == 0 {
                self.core.schedule_read(key);
                return;
            }
            budget -= 1;
            let asked = self.scratch.len();
            match c.stream.read(&mut self.scratch) {
                Ok(0) => {
                    trace!(target: IO, "{} read EOF", self.core.who(key));
                    self.on_peer_eof(key);
                    return;
                }
                Ok(n) => {
                    self.core.stats.bytes_read += n as u64;
                    trace!(target: IO, "{} read {n} of {asked} (inbuf {})",
                        self.core.who(key), self.core.conns[key].inbuf_len() + n);
                    if discarding {
                        trace!(target: IO, "{} discarded {n} bytes (closing)", self.core.who(key));
                        if n < asked && !until_would_block {
                            return;
                        }
                        continue;
                    }
                    self.deliver(key, n);
                    self.apply_backpressure(key);
                    if n < asked && !until_would_block {
                        trace!(target: IO, "{} short read: socket drained", self.core.who(key));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace!(target: IO, "{} read WouldBlock", self.core.who(key));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("{} read failed: {e}", self.core.who(key));
                    self.core
                        .close_now(key, None, CloseReason::PeerGone(e.kind()));
                    return;
                }
            }
        }
    }

    fn on_peer_eof(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        c.flags |= flags::EOF;
        match c.phase {
            Phase::Lingering => self.core.close_now(key, None, CloseReason::Done),
            Phase::Open => {
                let id = self.id_of(key);
                let (h, mut cx) = self.cx(Some(id));
                h.on_eof(&mut cx);
            }
            _ => {}
        }
    }

    /// Hands `n` fresh bytes in the read buffer (plus any kept tail) to the handler, and keeps
    /// what it did not consume.
    fn deliver(&mut self, key: usize, n: usize) {
        let c = &mut self.core.conns[key];
        let id = ConnId { key, gen: c.gen };
        let kept = match c.bufs.as_mut() {
            Some(b) if !b.inbuf.is_empty() => std::mem::take(&mut b.inbuf),
            _ => {
                // Fast path: the handler reads straight from the loop's buffer; nothing is
                // copied unless it leaves an incomplete message behind.
                let (h, mut cx) = (
                    &mut self.handler,
                    Context {
                        core: &mut self.core,
                        current: Some(id),
                    },
                );
                let used = h.on_data(&mut cx, &mut self.scratch[..n]).min(n);
                if used < n {
                    self.keep_tail(key, used, n);
                }
                return;
            }
        };
        let mut buf = kept;
        if buf.len() + n > self.core.config.max_inbuf {
            warn!(
                "{}: incomplete message over {} bytes, closing",
                self.core.who(key),
                self.core.config.max_inbuf
            );
            self.core.close_now(key, None, CloseReason::Aborted);
            return;
        }
        buf.extend_from_slice(&self.scratch[..n]);
        let (h, mut cx) = self.cx(Some(id));
        let used = h.on_data(&mut cx, &mut buf).min(buf.len());
        buf.drain(..used);
        let c = &mut self.core.conns[key];
        if c.phase != Phase::Open {
            return;
        }
        if buf.capacity() > 4 * buf.len() && buf.capacity() > SPARE_INBUF {
            buf.shrink_to(buf.len().max(SPARE_INBUF));
        }
        // Put the buffer back even when empty, so its capacity goes to the pool with the rest.
        buffers(c, &mut self.core.spare).inbuf = buf;
        self.core.release_buffers(key);
    }

    fn keep_tail(&mut self, key: usize, from: usize, to: usize) {
        let max = self.core.config.max_inbuf;
        let c = &mut self.core.conns[key];
        if c.phase != Phase::Open {
            return;
        }
        if to - from > max {
            self.core.close_now(key, None, CloseReason::Aborted);
            return;
        }
        buffers(c, &mut self.core.spare)
            .inbuf
            .extend_from_slice(&self.scratch[from..to]);
        trace!(target: IO, "{} kept {} byte tail", self.core.who(key), to - from);
    }

    /// Rule: pending output over the high watermark stops reading until it drains below the
    /// low watermark, so a peer that sends without reading cannot grow our memory.
    fn apply_backpressure(&mut self, key: usize) {
        let high = self.core.config.high_watermark;
        let Some(c) = self.core.conns.get(key).filter(|c| c.pending() > high) else {
            return;
        };
        if !c.has(flags::WRITE_BLOCKED) {
            self.flush_outbuf(key);
        }
        let Some(c) = self.core.conns.get_mut(key) else {
            return;
        };
        if c.phase == Phase::Open && c.pending() > high && !c.has(flags::PAUSED_BY_LOOP) {
            debug!(
                "{}: {} bytes pending, pausing reads",
                Who(key, &self.core.peers),
                c.pending()
            );
            c.flags |= flags::PAUSED_BY_LOOP;
            self.core.update_interest(key);
        }
    }

    fn flush_all(&mut self) {
        let keys = std::mem::take(&mut self.core.flush_list);
        for key in keys {
            let Some(c) = self.core.conns.get_mut(key) else {
                continue;
            };
            c.flags &= !flags::IN_FLUSH_LIST;
            if c.has(flags::WRITE_BLOCKED) {
                // The socket refused bytes and has not said WRITABLE since: a `writev` now
                // could only return WouldBlock. Judge the grown queue without the syscall.
                let pending = c.pending();
                trace!(target: IO, "{} still write-blocked, {pending} pending", self.core.who(key));
                self.write_blocked(key);
            } else {
                self.flush_outbuf(key);
            }
        }
    }

    /// Writes queued output with `writev` until the queue drains, the kernel pushes back or the
    /// budget is spent. Arms WRITABLE on a short write, drops it when the queue drains, and
    /// finishes a requested close.
    fn flush_outbuf(&mut self, key: usize) {
        let mut written = 0;
        loop {
            let Some(c) = self.core.conns.get_mut(key) else {
                return;
            };
            if matches!(c.phase, Phase::Closed | Phase::Connecting) {
                return;
            }
            let Some(out) = c
                .bufs
                .as_mut()
                .map(|b| &mut b.out)
                .filter(|o| !o.is_empty())
            else {
                break;
            };
            if written >= WRITE_BUDGET {
                self.core.schedule_flush(key);
                return;
            }
            let pending = out.pending();
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let count = out.io_slices(&mut iov);
            let asked: usize = iov[..count].iter().map(|s| s.len()).sum();
            match c.stream.write_vectored(&iov[..count]) {
                Ok(0) => {
                    self.core
                        .close_now(key, None, CloseReason::PeerGone(io::ErrorKind::WriteZero));
                    return;
                }
                Ok(n) => {
                    out.advance(n);
                    written += n;
                    self.core.stats.bytes_written += n as u64;
                    if n < asked {
                        // A short write means the socket buffer is full: the kernel sets
                        // SOCK_NOSPACE, and will report WRITABLE when space frees up. Trying
                        // again now would only return WouldBlock.
                        trace!(target: IO, "{} write {n} of {asked} in {count} pieces: partial, {} pending",
                            self.core.who(key), pending - n);
                        self.write_blocked(key);
                        return;
                    }
                    trace!(target: IO, "{} write {n} of {asked} in {count} pieces", self.core.who(key));
                    // The socket took all it was offered: it is not blocked, whether or not the
                    // queue drains in this flush (the write budget may stop us first).
                    self.core.conns[key].flags &= !flags::WRITE_BLOCKED;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace!(target: IO, "{} write WouldBlock, {pending} pending", self.core.who(key));
                    self.write_blocked(key);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("{} write failed: {e}", self.core.who(key));
                    self.core
                        .close_now(key, None, CloseReason::PeerGone(e.kind()));
                    return;
                }
            }
        }
        self.output_drained(key);
    }

    /// The kernel refused part of the queue. This, not the size of a queue that no flush has
    /// offered to the socket yet, is what makes a connection slow: a burst queued for everyone
    /// in one iteration says nothing about any one reader.
    fn write_blocked(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        c.flags |= flags::WRITE_BLOCKED | flags::DRAIN_OWED;
        let pending = c.pending();
        if pending > self.core.config.max_pending {
            warn!(
                "{}: {pending} bytes the socket will not take, over the {} byte limit: closing slow consumer",
                self.core.who(key),
                self.core.config.max_pending
            );
            self.core.close_now(key, None, CloseReason::SlowConsumer);
            return;
        }
        let resume = c.has(flags::PAUSED_BY_LOOP) && pending < self.core.config.low_watermark;
        if resume {
            self.resume_after_drain(key);
        }
        self.core.update_interest(key);
        if self.core.conns[key].phase == Phase::Open {
            let id = self.id_of(key);
            let (h, mut cx) = self.cx(Some(id));
            h.on_write_blocked(&mut cx, pending);
        }
    }

    fn resume_after_drain(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        c.flags &= !flags::PAUSED_BY_LOOP;
        debug!(
            "{}: output below low watermark, resuming reads",
            Who(key, &self.core.peers)
        );
        self.core.schedule_read(key);
    }

    fn output_drained(&mut self, key: usize) {
        self.core.release_buffers(key);
        let c = &mut self.core.conns[key];
        let was_blocked = c.has(flags::DRAIN_OWED);
        c.flags &= !(flags::WRITE_BLOCKED | flags::DRAIN_OWED);
        if c.has(flags::PAUSED_BY_LOOP) {
            self.resume_after_drain(key);
        }
        self.core.update_interest(key);
        let c = &mut self.core.conns[key];
        match c.phase {
            Phase::Closing => {
                let eof = c.has(flags::EOF);
                let _ = c.stream.shutdown(Shutdown::Write);
                trace!(target: IO, "{} shutdown(write): FIN sent", self.core.who(key));
                if eof {
                    self.core.close_now(key, None, CloseReason::Done);
                } else {
                    self.core.conns[key].phase = Phase::Lingering;
                    let linger = self.core.config.linger_timeout;
                    self.core.set_timer_raw(key, linger);
                    // The peer's EOF may already be waiting, with no new edge to report it.
                    self.core.schedule_read(key);
                }
            }
            Phase::Open if was_blocked => {
                let id = self.id_of(key);
                let (h, mut cx) = self.cx(Some(id));
                h.on_drained(&mut cx);
            }
            _ => {}
        }
    }

    fn expire_timers(&mut self) {
        if self.core.timers.is_empty() {
            return;
        }
        let mut fired = Vec::new();
        self.core.timers.expire(self.core.now, &mut fired);
        for (key, gen) in fired {
            if key == LOOP_TIMER_OWNER {
                let (h, mut cx) = self.cx(None);
                h.on_loop_timer(&mut cx, gen);
                continue;
            }
            let Some(c) = self.core.conns.get_mut(key) else {
                continue;
            };
            if c.gen != gen {
                continue;
            }
            c.timer = None;
            match c.phase {
                // A deadline armed while connecting is a connect timeout: the handler decides.
                Phase::Open | Phase::Connecting => {
                    let (h, mut cx) = self.cx(Some(ConnId { key, gen }));
                    h.on_timer(&mut cx);
                }
                Phase::Closing | Phase::Lingering => {
                    debug!("{}: close timed out", self.core.who(key));
                    self.core.close_now(key, None, CloseReason::TimedOut);
                }
                Phase::Closed => {}
            }
        }
    }

    fn reap(&mut self) {
        let mut freed = false;
        while !self.core.closed.is_empty() {
            let closed = std::mem::take(&mut self.core.closed);
            for (key, why) in closed {
                let Some(c) = self.core.conns.try_remove(key) else {
                    continue;
                };
                freed = true;
                match c.listener_id() {
                    Some(l) => self.core.stats.open[l.0 as usize] -= 1,
                    None => self.core.stats.open_outgoing -= 1,
                }
                trace!(target: IO, "{} closed ({why:?})", self.core.who(key));
                self.core.peers.remove(&key);
                // Dropping the stream closes the fd, which also removes it from the epoll set
                // (no other fd refers to the socket), so no `deregister` syscall is needed.
                let id = ConnId { key, gen: c.gen };
                let state = c.state;
                drop(c.stream);
                let (h, mut cx) = self.cx(None);
                h.on_close(&mut cx, id, state, why);
            }
        }
        // A descriptor was freed: retry a paused accept now rather than at its deadline. Only
        // then: doing this on every iteration made the retry immediate, and a loop that cannot
        // accept spun on EMFILE at 100% CPU.
        if freed && self.accept_paused_until.is_some() && !self.core.shutting_down {
            self.accept_paused_until = Some(self.core.now);
        }
    }
}

/// IP_BIND_ADDRESS_NO_PORT: with a source address bound before `connect`, let the kernel choose
/// the port at connect time per destination, instead of reserving one per source at `bind`.
fn set_bind_address_no_port(socket: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a plain setsockopt with a valid fd and an int-sized option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn open_conn<S>(conns: &mut Slab<Connection<S>>, id: ConnId) -> Option<&mut Connection<S>> {
    conns
        .get_mut(id.key)
        .filter(|c| c.gen == id.gen && matches!(c.phase, Phase::Open | Phase::Connecting))
}

/// A connection's buffers, taken from the pool (or allocated) if it has none.
fn buffers<'c, S>(c: &'c mut Connection<S>, spare: &mut BufferPool) -> &'c mut Buffers {
    c.bufs
        .get_or_insert_with(|| spare.pop().unwrap_or_default())
}

/// Returns emptied buffers to the pool, trimmed to what is worth keeping.
fn recycle(spare: &mut BufferPool, mut b: Box<Buffers>) {
    if spare.len() >= SPARE_BUFFERS {
        return;
    }
    debug_assert!(b.is_empty());
    if b.inbuf.capacity() > SPARE_INBUF {
        b.inbuf = Vec::new();
    }
    b.out.shrink();
    spare.push(b);
}

//! `EventLoop`: one thread, one `mio::Poll`, every socket non-blocking, and nothing else.
//!
//! This is the part of readyloop that asyncio and tokio hide: who calls `accept`, `read` and
//! `write`, when, and what happens when the kernel says "not now" (`WouldBlock`). Connections live
//! in a `slab::Slab`; a connection's slab key is its `mio::Token`. Listeners, the `Waker` and
//! the signal pipe use reserved tokens at the top of the token space.
//!
//! This file is the loop itself, one iteration as a list of phases. The work of each phase is
//! in the file that owns its state: `accept.rs` (listeners), `conn_io.rs` (reading and
//! flushing one connection), `core.rs` (the connections, timers and work lists), `handler.rs`
//! (calling the protocol).
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

use super::accept::{listener_index, Acceptor};
use super::addr::Addr;
use super::config::{Config, Stats};
use super::conn_io::ConnIo;
use super::connection::{flags, Phase};
use super::core::{Core, IO, LOOP_TIMER_OWNER};
use super::handle::{Envelope, Handle};
use super::handler::{with_conn, with_loop, ContextOf, Handler};
use super::id::{CloseReason, ConnId, ListenerId};
use super::loop_metrics::PollWait;
use super::states::States;
use log::{debug, info, trace, warn};
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
/// Events fetched per `poll`; more wait for the next call.
const EVENTS_CAPACITY: usize = 1024;

/// The event loop: a `Handler`, its listeners and connections, one thread.
pub struct EventLoop<H: Handler> {
    handler: H,
    pub(super) core: Core<H::Message>,
    states: States<H::Conn>,
    poll: Poll,
    events: Events,
    /// The one read buffer of the loop: every `read` lands here (see `ConnIo::scratch`).
    scratch: Vec<u8>,
    /// TLS plaintext of one record, and plaintext gathered for sealing (see `ConnIo::plain`).
    #[cfg(feature = "tls")]
    plain: Vec<u8>,
    acceptor: Acceptor,
    rx: mpsc::Receiver<Envelope<H::Message>>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    stopped: bool,
}

impl<H: Handler> EventLoop<H> {
    /// A loop with no listeners yet.
    pub fn new(handler: H, config: Config) -> io::Result<EventLoop<H>> {
        let poll = Poll::new()?;
        let (handle, rx) = Handle::new(Waker::new(poll.registry(), WAKER)?);
        let scratch = vec![0; config.read_buffer.max(1)];
        let states = States::with_capacity(config.reserve_connections);
        let core = Core::new(poll.registry().try_clone()?, handle, config);
        Ok(EventLoop {
            handler,
            core,
            states,
            scratch,
            #[cfg(feature = "tls")]
            plain: Vec::new(),
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            acceptor: Acceptor::default(),
            rx,
            signals: None,
            stopped: false,
        })
    }

    /// Binds `addr` (SO_REUSEADDR, a 4096 backlog) and serves it as listener `name`.
    /// Returns the id and the bound address (the real port when port 0 was asked for).
    pub fn listen(&mut self, name: &str, addr: SocketAddr) -> io::Result<(ListenerId, SocketAddr)> {
        let (id, bound) = self.listen_at(name, &Addr::Ip(addr), false)?;
        Ok((id, bound.ip().unwrap_or(addr)))
    }

    /// Binds an IP address or a Unix socket path and serves it as listener `name`, with
    /// SO_REUSEPORT when `reuse_port` is set (several worker processes sharing one port, each
    /// with its own accept queue; Unix sockets have no such option). A Unix socket file this
    /// creates is removed when the listener closes.
    pub fn listen_at(
        &mut self,
        name: &str,
        addr: &Addr,
        reuse_port: bool,
    ) -> io::Result<(ListenerId, Addr)> {
        self.acceptor.listen(
            self.poll.registry(),
            &mut self.core.stats,
            name,
            addr,
            reuse_port,
            self.core.config.nodelay,
        )
    }

    /// Makes listener `id` speak TLS: every connection it accepts from now on does its
    /// handshake with `config` and then hands the handler plaintext, as any other.
    #[cfg(feature = "tls")]
    pub fn set_listener_tls(
        &mut self,
        id: ListenerId,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) {
        self.acceptor.set_tls(id, config);
    }

    /// Serves an already bound, non-blocking TCP listener.
    pub fn add_listener(&mut self, name: &str, socket: TcpListener) -> io::Result<ListenerId> {
        self.acceptor
            .add_tcp(self.poll.registry(), &mut self.core.stats, name, socket)
    }

    /// Serves an already bound, non-blocking Unix listener.
    pub fn add_unix_listener(
        &mut self,
        name: &str,
        socket: UnixListener,
    ) -> io::Result<ListenerId> {
        self.acceptor
            .add_unix(self.poll.registry(), &mut self.core.stats, name, socket)
    }

    /// The name and bound address of a listener.
    pub fn listener_addr(&self, id: ListenerId) -> Option<(&str, &Addr)> {
        self.acceptor.addr(id)
    }

    /// Starts a non-blocking outgoing connection (the client side of the loop, used by the load
    /// generator), from source address `from` if given. `on_open` runs once it completes; a
    /// failure ends in `on_close(.., CloseReason::ConnectFailed)`. From inside a callback, use
    /// `Context::connect`.
    pub fn connect(
        &mut self,
        addr: impl Into<Addr>,
        from: Option<std::net::IpAddr>,
        state: H::Conn,
    ) -> io::Result<ConnId> {
        let addr = addr.into();
        self.with_context(|_, cx| cx.connect_from(addr, from, state))
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
    pub fn with_context<R>(&mut self, f: impl FnOnce(&mut H, &mut ContextOf<'_, H>) -> R) -> R {
        with_loop(&mut self.handler, &mut self.core, &mut self.states, f)
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
        let (timeout, wait) = self.poll_timeout(max_wait);
        // 2. Poll.
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        self.core.now = Instant::now();
        // 3. Dispatch.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let mut dispatched = 0;
        for (i, event) in events.iter().enumerate() {
            dispatched = i + 1;
            // A shutdown deadline is kept even inside a long batch (checked every 64 events:
            // a clock read is cheap, but not free).
            if i % 64 == 63 && self.core.past_shutdown_deadline() {
                break;
            }
            match event.token() {
                WAKER => self.drain_messages(),
                SIGNALS => self.read_signals(),
                token => match listener_index(token) {
                    Some(index) => self.acceptor.accept_ready(
                        index,
                        &mut self.handler,
                        &mut self.core,
                        &mut self.states,
                    ),
                    None => {
                        let key = token.0;
                        trace!(target: IO, "{} event{}{}{}", self.core.who(key),
                            if event.is_readable() { " R" } else { "" },
                            if event.is_writable() { " W" } else { "" },
                            if event.is_read_closed() || event.is_write_closed() { " HUP" } else { "" });
                        let hup = event.is_read_closed() || event.is_error();
                        self.io()
                            .ready(key, event.is_readable(), event.is_writable(), hup);
                    }
                },
            }
        }
        self.events = events;
        // 4. Deferred reads.
        let reads = std::mem::take(&mut self.core.read_list);
        for key in reads {
            if let Some(c) = self.core.conns.get_mut(key) {
                c.flags &= !flags::IN_READ_LIST;
                self.io().read_ready(key, true);
            }
        }
        // 5. Timers.
        self.expire_timers();
        if self
            .acceptor
            .retry_at()
            .is_some_and(|at| self.core.now >= at)
        {
            self.acceptor
                .resume(&mut self.handler, &mut self.core, &mut self.states);
        }
        // 6. Flush.
        self.io().flush_all();
        // 7. Reap.
        self.reap();
        self.core.stats.loop_iterations += 1;
        self.core.stats.input_buffered = self.core.budget.total();
        let busy = Instant::now().saturating_duration_since(self.core.now);
        self.core
            .stats
            .metrics
            .iteration(dispatched, timeout, wait, busy);
        // 8. Shutdown progress.
        if self.core.shutting_down {
            let done = self.core.conns.is_empty() && !self.handler.has_pending_work();
            let late = self.core.past_shutdown_deadline();
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

    /// Borrows what one connection event needs.
    fn io(&mut self) -> ConnIo<'_, H> {
        ConnIo {
            handler: &mut self.handler,
            core: &mut self.core,
            states: &mut self.states,
            scratch: &mut self.scratch,
            #[cfg(feature = "tls")]
            plain: &mut self.plain,
        }
    }

    /// Phase 1: how long `poll` may wait, and why.
    fn poll_timeout(&self, max_wait: Option<Duration>) -> (Option<Duration>, PollWait) {
        if !self.core.read_list.is_empty() || !self.core.flush_list.is_empty() {
            return (Some(Duration::ZERO), PollWait::Deferred);
        }
        let deadline = [
            self.core.timers.next_deadline(),
            self.acceptor.retry_at(),
            self.core.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        let until = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match (until, max_wait) {
            (Some(a), Some(b)) if b < a => (Some(b), PollWait::Host),
            (Some(a), _) => (Some(a), PollWait::Deadline),
            (None, Some(b)) => (Some(b), PollWait::Host),
            (None, None) => (None, PollWait::Forever),
        }
    }

    fn drain_messages(&mut self) {
        // Re-arm before draining: a message sent after this point wakes us again.
        self.core.handle.rearm();
        while let Ok(envelope) = self.rx.try_recv() {
            match envelope {
                Envelope::Message(msg) => self.with_context(|h, cx| h.on_message(cx, msg)),
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
        self.core.shutdown_deadline = Some(self.core.now + self.core.config.shutdown_timeout);
        self.acceptor.close_all(self.poll.registry());
        self.with_context(|h, cx| h.on_shutdown(cx));
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

    fn expire_timers(&mut self) {
        if self.core.timers.is_empty() {
            return;
        }
        let mut fired = Vec::new();
        self.core.timers.expire(self.core.now, &mut fired);
        for (key, gen) in fired {
            if key == LOOP_TIMER_OWNER {
                self.with_context(|h, cx| h.on_loop_timer(cx, gen));
                continue;
            }
            let Some(c) = self.core.conns.get_mut(key) else {
                continue;
            };
            if c.gen != gen {
                continue;
            }
            c.timer = None;
            let phase = c.phase;
            #[cfg(feature = "tls")]
            if phase == Phase::Open && self.core.is_handshake_deadline(key) {
                debug!(target: super::tls::LOG, "{}: TLS handshake not done in {:?}, closing",
                    self.core.who(key), self.core.config.tls_handshake_timeout);
                self.core.close_now(key, None, CloseReason::TimedOut);
                continue;
            }
            match phase {
                // A deadline armed while connecting is a connect timeout: the handler decides.
                Phase::Open | Phase::Connecting => {
                    let id = ConnId { key, gen };
                    with_conn(
                        &mut self.handler,
                        &mut self.core,
                        &mut self.states,
                        id,
                        |h, cx, conn| h.on_timer(cx, conn),
                    );
                }
                Phase::Closing(_) | Phase::Lingering => {
                    debug!("{}: close timed out", self.core.who(key));
                    self.core.close_now(key, None, CloseReason::TimedOut);
                }
                Phase::Closed => {}
            }
        }
    }

    /// Phase 7: frees the slots of connections marked `Closed` and hands their state back.
    fn reap(&mut self) {
        let mut freed = false;
        while !self.core.closed.is_empty() {
            let closed = std::mem::take(&mut self.core.closed);
            for (key, why) in closed {
                let Some(c) = self.core.conns.try_remove(key) else {
                    continue;
                };
                freed = true;
                self.core.stats.metrics.closed(why);
                match c.listener_id() {
                    Some(l) => self.core.stats.open[l.0 as usize] -= 1,
                    None => self.core.stats.open_outgoing -= 1,
                }
                trace!(target: IO, "{} closed ({why:?})", self.core.who(key));
                if !self.core.peers.is_empty() {
                    // (Filled only while tracing: no hashing per close otherwise.)
                    self.core.peers.remove(&key);
                }
                // Dropping the stream closes the fd, which also removes it from the epoll set
                // (no other fd refers to the socket), so no `deregister` syscall is needed.
                let id = ConnId { key, gen: c.gen };
                drop(c);
                if let Some(state) = self.states.take(key) {
                    self.with_context(|h, cx| h.on_close(cx, id, state, why));
                }
            }
        }
        if freed && !self.core.shutting_down {
            self.acceptor.descriptor_freed(self.core.now);
        }
    }
}

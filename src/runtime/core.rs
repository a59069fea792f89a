//! `Core`: everything a `Context` may touch, the connections and their bookkeeping, with no
//! `Handler` in sight.
//!
//! The loop is split along its borrows. `EventLoop` owns the handler, the poll and the read
//! buffer; `Core` owns the slab of `Connection`s, the timer wheel, the lists of work to do
//! before the loop sleeps (flush, read again, reap) and a pool of spare buffers. A callback is
//! handed the handler, a `Context` over the `Core` and its own connection's state all at once,
//! because they are three different places.
//!
//! Everything here is immediate bookkeeping: queueing output marks the connection for the flush
//! phase, closing marks it for the reap phase, interest changes go to the poll only when they
//! change (`update_interest`). No callback runs from here.

use super::addr::Addr;
use super::budget::InputBudget;
use super::config::{Config, Stats};
use super::connection::{
    flags, interest_name, Buffers, Connection, Ending, Phase, READABLE, UNREGISTERED, WRITABLE,
};
use super::handle::Handle;
use super::id::{CloseReason, ConnId, ListenerId};
use super::out_queue::{Chunk, OutQueue};
use super::socket::Socket;
use super::sys;
use super::timer::TimerWheel;
use log::{debug, trace, warn};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::collections::HashMap;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The log target for one line per syscall; `RUST_LOG=readyloop::io=trace` shows only those.
pub(crate) const IO: &str = "readyloop::io";

/// The timer wheel's owner key of handler deadlines (`Context::set_loop_timer`); the
/// generation slot carries the handler's tag. Never a slab key (the slab is far smaller).
pub(crate) const LOOP_TIMER_OWNER: usize = usize::MAX;

/// Emptied buffers kept for reuse: 64, each holding at most 64 KiB of input capacity and a
/// 64 KiB output buffer, so the pool is bounded at a few MiB however many connections come and go.
const SPARE_BUFFERS: usize = 64;
/// Beyond those, up to this many more kept bare (no byte buffers, a deque of at most 8 chunks:
/// ~250 B each, ~250 KiB in all). A broadcast lends buffers to every idle recipient at once;
/// with only 64 in the pool, each further delivery cost two `malloc`s and two `free`s
/// (benches/at_floor.rs, `/ws` broadcast to 1,000).
const SPARE_BARE: usize = 1024;
/// Input capacity over this (64 KiB) is freed rather than pooled.
pub(crate) const SPARE_INBUF: usize = 64 * 1024;
/// Spare buffers. The boxes themselves are what is pooled (a connection holds a `Box`), so
/// reusing one saves its allocation too.
#[allow(clippy::vec_box)]
type BufferPool = Vec<Box<Buffers>>;

/// The connections and everything the loop does to them between callbacks.
pub struct Core<M> {
    pub(crate) conns: Slab<Connection>,
    pub(crate) stats: Stats,
    /// The time the loop read after its last `poll`.
    pub(crate) now: Instant,
    pub(crate) handle: Handle<M>,
    pub(crate) shutting_down: bool,
    /// When a graceful shutdown gives up on what is left (`Config::shutdown_timeout`).
    pub(crate) shutdown_deadline: Option<Instant>,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) timers: TimerWheel,
    /// Unfinished input held, per connection and in total.
    pub(crate) budget: InputBudget,
    /// Connections with output to flush before the loop sleeps.
    pub(crate) flush_list: Vec<usize>,
    /// Connections to read again without waiting for an event.
    pub(crate) read_list: Vec<usize>,
    /// Connections marked `Closed`, freed at the end of the iteration.
    pub(crate) closed: Vec<(usize, CloseReason)>,
    next_gen: u32,
    /// Emptied buffers, lent to the next busy connection (no malloc per busy episode).
    spare: BufferPool,
    /// Peer addresses, kept only while trace logging is on (so the log can name the peer
    /// without costing idle connections 32 bytes each in normal runs).
    pub(crate) peers: HashMap<usize, Addr>,
}

/// Formats `conn KEY PEER` for log lines.
pub(crate) struct Who<'a>(pub(crate) usize, pub(crate) &'a HashMap<usize, Addr>);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.get(&self.0) {
            Some(peer) => write!(f, "conn {} {}", self.0, peer.as_peer()),
            None => write!(f, "conn {}", self.0),
        }
    }
}

impl<M> Core<M> {
    pub(crate) fn new(registry: Registry, handle: Handle<M>, config: Config) -> Core<M> {
        let now = Instant::now();
        Core {
            conns: Slab::with_capacity(config.reserve_connections),
            stats: Stats::new(now),
            now,
            handle,
            shutting_down: false,
            shutdown_deadline: None,
            registry,
            timers: TimerWheel::new(now),
            budget: InputBudget::new(config.max_buffered_input),
            flush_list: Vec::new(),
            read_list: Vec::new(),
            closed: Vec::new(),
            next_gen: 0,
            peers: HashMap::new(),
            spare: Vec::new(),
            config,
        }
    }

    /// True once a shutdown's deadline has passed (reads the clock: for the phases that may
    /// run long, which check it as they go).
    pub(crate) fn past_shutdown_deadline(&self) -> bool {
        self.shutdown_deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub(crate) fn who(&self, key: usize) -> Who<'_> {
        Who(key, &self.peers)
    }

    /// The id of the connection in slot `key` (which must be occupied).
    pub(crate) fn id_of(&self, key: usize) -> ConnId {
        ConnId {
            key,
            gen: self.conns[key].gen,
        }
    }

    /// A connection that has not been marked closed, if `id` still names it.
    pub(crate) fn get(&self, id: ConnId) -> Option<&Connection> {
        self.conns
            .get(id.key)
            .filter(|c| c.gen == id.gen && c.phase != Phase::Closed)
    }

    /// A connection that is open (or connecting), if `id` still names it.
    fn open_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.conns
            .get_mut(id.key)
            .filter(|c| c.gen == id.gen && matches!(c.phase, Phase::Open | Phase::Connecting))
    }

    /// Puts a freshly accepted or connecting socket in the slab. A connecting one is
    /// registered at once (its completion is an event); an accepted one is registered by
    /// `update_interest` once the handler's `on_open` has run, so that a connection the handler
    /// closes right away (hello: greet, close) costs no `epoll_ctl` at all.
    pub(crate) fn insert(
        &mut self,
        mut stream: Socket,
        listener: Option<ListenerId>,
        phase: Phase,
    ) -> io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let bits = match phase {
            Phase::Connecting => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                self.registry.register(&mut stream, Token(key), interest)?;
                READABLE | WRITABLE
            }
            _ => UNREGISTERED,
        };
        let gen = self.next_gen;
        self.next_gen = gen.wrapping_add(1);
        let mut conn = Connection::new(stream, gen, listener);
        conn.phase = phase;
        conn.interest = bits;
        entry.insert(conn);
        match listener {
            Some(l) => self.stats.open[l.0 as usize] += 1,
            None => self.stats.open_outgoing += 1,
        }
        Ok(ConnId { key, gen })
    }

    /// Queues output for an open connection, lending it buffers from the pool if it had none.
    fn out_of(&mut self, id: ConnId) -> Option<&mut OutQueue> {
        let c = self
            .conns
            .get_mut(id.key)
            .filter(|c| c.gen == id.gen && matches!(c.phase, Phase::Open | Phase::Connecting))?;
        Some(&mut buffers(c, &mut self.spare).out)
    }

    /// The buffers of slot `key`, lent from the pool if it had none.
    pub(crate) fn buffers(&mut self, key: usize) -> &mut Buffers {
        buffers(&mut self.conns[key], &mut self.spare)
    }

    /// Takes an emptied connection's buffers back into the pool. A TLS connection keeps its
    /// `Buffers` (they hold the session), but with nothing in them they hold no memory.
    pub(crate) fn release_buffers(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if c.bufs.as_ref().is_some_and(|b| b.is_empty()) {
                if let Some(b) = c.bufs.take() {
                    recycle(&mut self.spare, b);
                }
            } else if let Some(b) = c.bufs.as_mut() {
                if b.inbuf.is_empty() && b.out.is_empty() {
                    b.inbuf = Vec::new();
                    b.out.free_storage();
                }
            }
        }
    }

    pub(crate) fn schedule_flush(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.has(flags::IN_FLUSH_LIST) {
                c.flags |= flags::IN_FLUSH_LIST;
                self.flush_list.push(key);
            }
        }
    }

    pub(crate) fn schedule_read(&mut self, key: usize) {
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

    /// Drops `id`'s queued output that the socket has not started on (see
    /// `OutQueue::discard_unstarted`); returns the bytes dropped.
    pub(crate) fn discard_unsent(&mut self, id: ConnId) -> usize {
        let dropped = match self.out_of(id) {
            Some(out) => out.discard_unstarted(),
            None => 0,
        };
        if dropped > 0 {
            debug!("conn {}: dropped {dropped} unsent bytes", id.key);
        }
        dropped
    }

    /// Closes `id` once its queue is flushed; `ending` says how (see `Ending`).
    pub(crate) fn close_gracefully(&mut self, id: ConnId, ending: Ending) {
        let timeout = self.config.close_timeout;
        let protocol_held = self.budget.protocol_of(id.key);
        let Some(c) = self.open_mut(id) else {
            return;
        };
        debug!(
            "conn {}: closing after {} pending bytes",
            id.key,
            c.pending()
        );
        // Input the protocol had not finished says the peer was part-way through a message.
        let ending = if c.inbuf_len() > 0 || protocol_held > 0 {
            Ending::Linger
        } else {
            ending
        };
        c.phase = Phase::Closing(ending);
        if let Some(b) = c.bufs.as_mut() {
            // No more input is delivered: free what it held now, not when the slot is reaped.
            b.inbuf = Vec::new();
        }
        self.budget.release(id.key);
        self.set_timer_raw(id.key, timeout);
        self.schedule_flush(id.key);
    }

    /// Marks a connection `Closed` (freed in the reap phase). `gen` guards against stale ids.
    pub(crate) fn close_now(&mut self, key: usize, gen: Option<u32>, why: CloseReason) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.phase == Phase::Closed || gen.is_some_and(|g| g != c.gen) {
            return;
        }
        c.phase = Phase::Closed;
        self.budget.release(key);
        // A failed TLS session's close (its alert flushed, or not in time) says so.
        #[cfg(feature = "tls")]
        let why = match (why, c.bufs.as_ref().and_then(|b| b.tls.as_ref())) {
            (CloseReason::Done | CloseReason::TimedOut, Some(t)) if t.failed() => {
                CloseReason::TlsFailed
            }
            _ => why,
        };
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
        let Some(c) = self
            .conns
            .get_mut(id.key)
            .filter(|c| c.gen == id.gen && c.phase != Phase::Closed)
        else {
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

    /// The handler arms `id`'s deadline.
    pub(crate) fn set_timer(&mut self, id: ConnId, after: Duration) {
        if self.open_mut(id).is_some() {
            self.set_timer_raw(id.key, after);
            #[cfg(feature = "tls")]
            self.deadline_is_the_handlers(id.key);
        }
    }

    /// Arms slot `key`'s one deadline, replacing any earlier one.
    pub(crate) fn set_timer_raw(&mut self, key: usize, after: Duration) {
        let at = self.now + after;
        let c = &mut self.conns[key];
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        c.timer = Some(self.timers.insert(at, (key, c.gen)));
    }

    /// The handler disarms `id`'s deadline.
    pub(crate) fn cancel_timer(&mut self, id: ConnId) {
        if let Some(c) = self.open_mut(id) {
            if let Some(t) = c.timer.take() {
                self.timers.cancel(t);
            }
            #[cfg(feature = "tls")]
            self.deadline_is_the_handlers(id.key);
        }
    }

    /// Arms a deadline that belongs to the handler, not to a connection: `on_loop_timer(tag)`
    /// runs once it passes. There is no cancel; a handler ignores a tag it no longer wants.
    pub(crate) fn set_loop_timer(&mut self, after: Duration, tag: u32) {
        let at = self.now + after;
        self.timers.insert(at, (LOOP_TIMER_OWNER, tag));
    }

    /// `connect(2)` on a fresh non-blocking socket and a slab slot in `Connecting`. Never
    /// blocks: the result comes back as WRITABLE. `from` binds a source address first (IP only).
    pub(crate) fn connect(
        &mut self,
        addr: &Addr,
        from: Option<std::net::IpAddr>,
    ) -> io::Result<ConnId> {
        // SAFETY (each arm): `into_raw_fd` hands over sole ownership of a valid descriptor.
        let fd = match (addr, from) {
            (Addr::Ip(ip), None) => {
                let s = mio::net::TcpStream::connect(*ip)?;
                unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) }
            }
            (Addr::Ip(ip), Some(src)) => OwnedFd::from(sys::connect_from(src, *ip)?),
            (Addr::Unix(path), _) => {
                let s = mio::net::UnixStream::connect(path)?;
                unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) }
            }
        };
        let id = self.insert(Socket::from_fd(fd), None, Phase::Connecting)?;
        trace!(target: IO, "conn {} connect {addr} in progress", id.key);
        Ok(id)
    }

    /// Makes slot `key`'s connection speak TLS through `session`.
    #[cfg(feature = "tls")]
    pub(crate) fn start_tls(&mut self, key: usize, session: super::tls::TlsSession) {
        self.buffers(key).tls = Some(Box::new(session));
        self.conns[key].flags |= flags::TLS;
    }

    /// The TLS session of slot `key`'s connection, if it speaks TLS.
    #[cfg(feature = "tls")]
    fn tls_of(&mut self, key: usize) -> Option<&mut super::tls::TlsSession> {
        let c = self.conns.get_mut(key)?;
        if !c.has(flags::TLS) {
            return None;
        }
        c.bufs.as_mut()?.tls.as_deref_mut()
    }

    /// An accepted TLS connection whose handler armed no deadline in `on_open` gets the loop's
    /// handshake deadline (`Config::tls_handshake_timeout`), so a peer that never finishes
    /// its handshake cannot hold the slot for good.
    #[cfg(feature = "tls")]
    pub(crate) fn arm_handshake_deadline(&mut self, key: usize) {
        let after = self.config.tls_handshake_timeout;
        let Some(c) = self.conns.get(key) else {
            return;
        };
        if c.phase != Phase::Open || c.timer.is_some() {
            return;
        }
        match self.tls_of(key) {
            Some(tls) if tls.phase() == super::tls::TlsPhase::Handshaking => {
                tls.set_handshake_deadline(true);
            }
            _ => return,
        }
        self.set_timer_raw(key, after);
    }

    /// The handshake of slot `key` completed: the loop's handshake deadline, if that is the
    /// one armed, is done with.
    #[cfg(feature = "tls")]
    pub(crate) fn handshake_done(&mut self, key: usize) {
        if !self.is_handshake_deadline(key) {
            return;
        }
        self.deadline_is_the_handlers(key);
        if let Some(t) = self.conns[key].timer.take() {
            self.timers.cancel(t);
        }
    }

    /// Whether slot `key`'s deadline is the loop's handshake deadline.
    #[cfg(feature = "tls")]
    pub(crate) fn is_handshake_deadline(&mut self, key: usize) -> bool {
        self.tls_of(key).is_some_and(|t| t.handshake_deadline())
    }

    /// The handler armed or disarmed slot `key`'s deadline: it is not the loop's any more.
    #[cfg(feature = "tls")]
    fn deadline_is_the_handlers(&mut self, key: usize) {
        if let Some(tls) = self.tls_of(key) {
            tls.set_handshake_deadline(false);
        }
    }

    /// Records the unfinished input `key` holds in the loop's keeping: the tail of a message in
    /// its input buffer, and for TLS the start of a record whose rest has not come.
    pub(crate) fn note_inbuf(&mut self, key: usize) {
        let held = self.conns[key].bufs.as_ref().map_or(0, |b| {
            let tail = if b.inbuf.is_empty() {
                0
            } else {
                b.inbuf.capacity()
            };
            #[cfg(feature = "tls")]
            let record = b.tls.as_ref().map_or(0, |t| t.partial_record());
            #[cfg(not(feature = "tls"))]
            let record = 0;
            tail + record
        });
        self.budget.set_inbuf(key, held);
    }

    /// Re-registers only when the wanted interest differs from what the poll has: a
    /// `reregister` is a syscall, and most writes never change the interest. Registers a
    /// connection that is not yet (`UNREGISTERED`, see `insert`).
    pub(crate) fn update_interest(&mut self, key: usize) {
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
        let registered = c.interest != UNREGISTERED;
        if !registered && matches!(c.phase, Phase::Closing(_)) && want & WRITABLE == 0 {
            // Closing discards input, so until a write blocks there is no event to wait for.
            return;
        }
        let interest = match want {
            READABLE => Interest::READABLE,
            WRITABLE => Interest::WRITABLE,
            _ => Interest::READABLE | Interest::WRITABLE,
        };
        let before = c.interest;
        let done = if registered {
            self.registry
                .reregister(&mut c.stream, Token(key), interest)
        } else {
            self.registry.register(&mut c.stream, Token(key), interest)
        };
        match done {
            Ok(()) => {
                c.interest = want;
                if registered {
                    self.stats.metrics.interest_changes_total += 1;
                }
                trace!(target: IO, "{} interest {} -> {}", Who(key, &self.peers),
                    interest_name(before), interest_name(want));
            }
            Err(e) => {
                warn!("{}: epoll_ctl failed: {e}", Who(key, &self.peers));
                self.close_now(key, None, CloseReason::PeerGone(e.kind()));
            }
        }
    }

    /// The ids of every open connection (not those already closing), for broadcasts.
    pub(crate) fn open_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Open | Phase::Connecting))
            .map(|(key, c)| ConnId { key, gen: c.gen })
            .collect()
    }
}

/// A connection's buffers, taken from the pool (or allocated) if it has none.
fn buffers<'c>(c: &'c mut Connection, spare: &mut BufferPool) -> &'c mut Buffers {
    c.bufs
        .get_or_insert_with(|| spare.pop().unwrap_or_default())
}

/// Returns emptied buffers to the pool, trimmed to what is worth keeping (a TLS session, if
/// any, is dropped: it belonged to the connection).
fn recycle(spare: &mut BufferPool, mut b: Box<Buffers>) {
    #[cfg(feature = "tls")]
    {
        b.tls = None;
    }
    debug_assert!(b.is_empty());
    if spare.len() >= SPARE_BUFFERS + SPARE_BARE {
        return;
    }
    if spare.len() >= SPARE_BUFFERS {
        b.inbuf = Vec::new();
        b.out.strip();
    } else {
        if b.inbuf.capacity() > SPARE_INBUF {
            b.inbuf = Vec::new();
        }
        b.out.shrink();
    }
    spare.push(b);
}

//! The protocol-facing API of the loop: the `Handler` trait and the `Context` it acts through.
//!
//! A protocol never sees a socket. The loop calls the handler with bytes it read (a borrowed
//! slice of the loop-wide read buffer) and the handler answers through a `Context`: queue output
//! for this or any other connection, close after the output is flushed, pause reading, arm a
//! deadline, or hand work to another thread and get the result back through a `Handle`. The
//! per-connection state (`Handler::Conn`) lives inline in the loop's slab, next to the socket,
//! so a connection costs one slab entry and nothing else while it is idle.

use crate::connection::Phase;
use crate::event_loop::{Core, Handle, ListenerId, Stats};
use crate::out_queue::Chunk;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Names one connection: its slab key plus a generation, so an id kept past the connection's
/// close (by a background task, say) can never reach the next connection in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) key: usize,
    pub(crate) gen: u32,
}

impl ConnId {
    /// The slab key, which is also the connection's `mio::Token`.
    pub fn key(&self) -> usize {
        self.key
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.key)
    }
}

/// Why a connection ended, as given to `Handler::on_close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The handler (or the peer's EOF) asked for a close and the output was flushed.
    Done,
    /// The peer closed or reset the connection, or a read or write failed.
    PeerGone(std::io::ErrorKind),
    /// The handler dropped the connection without flushing (`Context::abort`).
    Aborted,
    /// A close could not flush, or a lingering close got no EOF, in time.
    TimedOut,
    /// The connection was too slow to take its output (`Config::max_pending`).
    SlowConsumer,
    /// An outgoing `connect` failed.
    ConnectFailed(std::io::ErrorKind),
    /// The loop stopped with the connection still open (shutdown deadline).
    Shutdown,
}

/// A protocol (or a set of protocols, one per listener) running on the loop.
///
/// Every callback runs on the loop thread and must not block: no disk IO, no DNS, no sleeping.
/// Blocking work goes to another thread, whose result comes back as `on_message`.
pub trait Handler: Sized {
    /// Per-connection state, stored inline in the connection's slab entry.
    type Conn;
    /// Messages other threads send to the loop through `Handle::send`.
    type Message: Send + 'static;

    /// A listener accepted a connection; return its initial state, or `None` to refuse it.
    fn accept(&mut self, listener: ListenerId, peer: SocketAddr) -> Option<Self::Conn>;

    /// The connection is in the slab and may be written to (`cx.id()` is it). For an outgoing
    /// connection this runs when the connect has completed.
    fn on_open(&mut self, _cx: &mut Context<'_, Self>) {}

    /// Bytes arrived. Consume whole messages and return how many bytes were used; the loop keeps
    /// the unused tail (an incomplete message) and offers it again, followed by new bytes.
    /// The slice is mutable so a codec may transform it in place (WebSocket unmasking).
    fn on_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize;

    /// The peer sent EOF (it will send no more). The default closes after flushing.
    fn on_eof(&mut self, cx: &mut Context<'_, Self>) {
        let id = cx.id();
        cx.close(id);
    }

    /// Output that had to wait for the socket (a partial write) has all been written.
    fn on_drained(&mut self, _cx: &mut Context<'_, Self>) {}

    /// A flush left `pending` bytes the socket would not take (WRITABLE is now armed). A
    /// protocol that queues output its peer did not ask for (broadcasts) can cut off a slow
    /// consumer here; the loop itself does at `Config::max_pending`.
    fn on_write_blocked(&mut self, _cx: &mut Context<'_, Self>, _pending: usize) {}

    /// The deadline armed with `Context::set_timer` passed. For an outgoing connection still
    /// connecting, this is its connect timeout (abort it, or leave it to the kernel's).
    fn on_timer(&mut self, _cx: &mut Context<'_, Self>) {}

    /// A deadline armed with `Context::set_loop_timer(_, tag)` passed. `cx.current()` is
    /// `None`: such a deadline belongs to no connection (a reconnect backoff, say).
    fn on_loop_timer(&mut self, _cx: &mut Context<'_, Self>, _tag: u32) {}

    /// The connection is gone; its state is handed back. `cx.current()` is `None` here.
    fn on_close(
        &mut self,
        _cx: &mut Context<'_, Self>,
        _id: ConnId,
        _state: Self::Conn,
        _why: CloseReason,
    ) {
    }

    /// A message from another thread arrived through the loop's `Waker`.
    fn on_message(&mut self, _cx: &mut Context<'_, Self>, _msg: Self::Message) {}

    /// Graceful shutdown began: listeners are closed. The default closes every connection
    /// after its queued output is flushed.
    fn on_shutdown(&mut self, cx: &mut Context<'_, Self>) {
        for id in cx.ids() {
            cx.close(id);
        }
    }

    /// During shutdown the loop exits once no connection is left and this returns false
    /// (background work still to finish, for example).
    fn has_pending_work(&self) -> bool {
        false
    }
}

/// What a handler can do to the loop: borrowed for the duration of one callback.
pub struct Context<'a, H: Handler> {
    pub(crate) core: &'a mut Core<H>,
    pub(crate) current: Option<ConnId>,
}

impl<'a, H: Handler> Context<'a, H> {
    /// The connection this callback is about. Panics in `on_message`/`on_close`, which are not
    /// about one connection (a programming error, never peer-controlled).
    pub fn id(&self) -> ConnId {
        self.current
            .expect("Context::id() called outside a connection callback")
    }

    /// The connection this callback is about, if any.
    pub fn current(&self) -> Option<ConnId> {
        self.current
    }

    /// The current connection's state.
    pub fn state(&mut self) -> &mut H::Conn {
        let id = self.id();
        &mut self.core.conns[id.key].state
    }

    /// Any open connection's state (`None` when the id is stale or the connection closed).
    pub fn state_of(&mut self, id: ConnId) -> Option<&mut H::Conn> {
        self.core.live(id).map(|c| &mut c.state)
    }

    /// The listener a connection came from (`None` for an outgoing connection).
    pub fn listener_of(&self, id: ConnId) -> Option<ListenerId> {
        self.core.get(id).and_then(|c| c.listener_id())
    }

    /// The ids of every open connection (not those already closing), for broadcasts.
    pub fn ids(&self) -> Vec<ConnId> {
        self.core
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open || c.phase == Phase::Connecting)
            .map(|(key, c)| ConnId { key, gen: c.gen })
            .collect()
    }

    /// Queues `chunk` for `id` and schedules a flush before the loop sleeps. Returns false (and
    /// drops the bytes) when the connection is gone or closing.
    pub fn send(&mut self, id: ConnId, chunk: impl Into<Chunk>) -> bool {
        self.core.send(id, chunk.into())
    }

    /// Queues a copy of `bytes` for `id` (coalesced with what is already queued).
    pub fn send_copy(&mut self, id: ConnId, bytes: &[u8]) -> bool {
        self.core.send_copy(id, bytes)
    }

    /// Queues the same shared bytes for every id in `ids` (one allocation for all of them).
    pub fn broadcast(&mut self, ids: &[ConnId], bytes: Rc<[u8]>) -> usize {
        let mut sent = 0;
        for &id in ids {
            if self.core.send(id, Chunk::Shared(bytes.clone())) {
                sent += 1;
            }
        }
        sent
    }

    /// Bytes queued for `id` and not yet written.
    pub fn pending_output(&self, id: ConnId) -> usize {
        self.core.get(id).map_or(0, |c| c.pending())
    }

    /// Closes `id` once its queued output is flushed (then FIN, then a short lingering read
    /// so the peer gets everything before the socket goes). No more data is delivered for it.
    pub fn close(&mut self, id: ConnId) {
        self.core.close_gracefully(id);
    }

    /// Drops `id` now, discarding its queued output.
    pub fn abort(&mut self, id: ConnId) {
        self.core
            .close_now(id.key, Some(id.gen), CloseReason::Aborted);
    }

    /// Stops delivering data for `id` (the kernel buffers, then TCP pushes back on the peer).
    pub fn pause_reading(&mut self, id: ConnId) {
        self.core.set_handler_pause(id, true);
    }

    /// Resumes delivery for `id`, including any bytes that were left unconsumed.
    pub fn resume_reading(&mut self, id: ConnId) {
        self.core.set_handler_pause(id, false);
    }

    /// Arms the connection's one deadline `after` from now, replacing any earlier one.
    pub fn set_timer(&mut self, id: ConnId, after: Duration) {
        self.core.set_timer(id, after);
    }

    /// Arms a deadline of the handler's own, `after` from now, reported as
    /// `Handler::on_loop_timer(tag)`: for timing that outlives any one connection, such as the
    /// backoff before reconnecting to a server that is down. It cannot be cancelled; a handler
    /// ignores a tag it no longer wants.
    pub fn set_loop_timer(&mut self, after: Duration, tag: u32) {
        self.core.set_loop_timer(after, tag);
    }

    /// Starts a non-blocking outgoing connection to `addr` with the initial `state` (the
    /// in-callback twin of `EventLoop::connect`). `on_open` runs once it completes; a failure
    /// ends in `on_close(.., CloseReason::ConnectFailed)`. A timer armed on the returned id
    /// before then is a connect timeout (`on_timer`). Errors here are immediate ones (no
    /// descriptors, unreachable network); nothing blocks, and `addr` is an address, not a name.
    pub fn connect(&mut self, addr: SocketAddr, state: H::Conn) -> std::io::Result<ConnId> {
        self.core.connect(addr, None, state)
    }

    /// Disarms the connection's deadline.
    pub fn cancel_timer(&mut self, id: ConnId) {
        self.core.cancel_timer(id);
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// The time the loop read before dispatching this batch of events.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// A handle other threads use to send `Message`s to this loop and to wake it.
    pub fn handle(&self) -> Handle<H::Message> {
        self.core.handle.clone()
    }

    /// True once graceful shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.core.shutting_down
    }
}

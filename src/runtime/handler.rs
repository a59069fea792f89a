//! The protocol-facing API of the loop: the `Handler` trait and the `Context` it acts through.
//!
//! A protocol never sees a socket. The loop calls the handler with bytes it read (a borrowed
//! slice of the loop-wide read buffer) and with the connection's own state (`&mut Self::Conn`),
//! and the handler answers through a `Context`: queue output for this or any other connection,
//! close after the output is flushed, pause reading, arm a deadline, open a connection, or hand
//! work to another thread and get the result back through a `Handle`. State and context are
//! separate borrows (`states.rs` says how), so a callback can hold its state while it sends.
//!
//! `Context` is generic over the state and message types, not over the handler, so the code of
//! a protocol can take a `&mut Context<'_, S, M>` without naming the handler it is part of:
//! that is what lets each service of the server live in a file that knows no other.

use super::addr::Addr;
use super::config::Stats;
use super::connection::Ending;
use super::core::Core;
use super::handle::Handle;
use super::id::{CloseReason, ConnId, ListenerId};
use super::out_queue::Chunk;
use super::states::{Others, States};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The `Context` a handler's callbacks receive.
pub type ContextOf<'a, H> = Context<'a, <H as Handler>::Conn, <H as Handler>::Message>;

/// A protocol (or a set of protocols, one per listener) running on the loop.
///
/// Every callback runs on the loop thread and must not block: no disk IO, no DNS, no sleeping.
/// Blocking work goes to another thread, whose result comes back as `on_message`. Callbacks
/// about one connection get its state as `conn`; `cx.id()` names it.
pub trait Handler: Sized {
    /// Per-connection state, kept by the loop beside the connection's slab entry.
    type Conn;
    /// Messages other threads send to the loop through `Handle::send`.
    type Message: Send + 'static;

    /// A listener accepted a connection; return its initial state, or `None` to refuse it.
    fn accept(&mut self, listener: ListenerId, peer: &Addr) -> Option<Self::Conn>;

    /// The connection is in the slab and may be written to. For an outgoing connection this
    /// runs when the connect has completed.
    fn on_open(&mut self, _cx: &mut ContextOf<'_, Self>, _conn: &mut Self::Conn) {}

    /// Bytes arrived. Consume whole messages and return how many bytes were used; the loop keeps
    /// the unused tail (an incomplete message) and offers it again, followed by new bytes.
    /// The slice is mutable so a codec may transform it in place (WebSocket unmasking).
    fn on_data(
        &mut self,
        cx: &mut ContextOf<'_, Self>,
        conn: &mut Self::Conn,
        data: &mut [u8],
    ) -> usize;

    /// The peer sent EOF (it will send no more). The default closes after flushing.
    fn on_eof(&mut self, cx: &mut ContextOf<'_, Self>, _conn: &mut Self::Conn) {
        let id = cx.id();
        cx.close(id);
    }

    /// Output that had to wait for the socket (a partial write) has all been written.
    fn on_drained(&mut self, _cx: &mut ContextOf<'_, Self>, _conn: &mut Self::Conn) {}

    /// A flush left `pending` bytes the socket would not take (WRITABLE is now armed). A
    /// protocol that queues output its peer did not ask for (broadcasts) can cut off a slow
    /// consumer here; the loop itself does at `Config::max_pending`.
    fn on_write_blocked(
        &mut self,
        _cx: &mut ContextOf<'_, Self>,
        _conn: &mut Self::Conn,
        _pending: usize,
    ) {
    }

    /// The input all connections hold together went over `Config::max_buffered_input`, and this
    /// connection holds the most (`held` bytes): answer if the protocol has a way to say so
    /// (a WebSocket close 1009, an HTTP 503) and close. The default aborts it; a connection
    /// still open afterwards is aborted anyway.
    fn on_input_over_budget(
        &mut self,
        cx: &mut ContextOf<'_, Self>,
        _conn: &mut Self::Conn,
        _held: usize,
    ) {
        let id = cx.id();
        cx.abort(id);
    }

    /// The deadline armed with `Context::set_timer` passed. For an outgoing connection still
    /// connecting, this is its connect timeout (abort it, or leave it to the kernel's).
    fn on_timer(&mut self, _cx: &mut ContextOf<'_, Self>, _conn: &mut Self::Conn) {}

    /// A deadline armed with `Context::set_loop_timer(_, tag)` passed. `cx.current()` is
    /// `None`: such a deadline belongs to no connection (a reconnect backoff, say).
    fn on_loop_timer(&mut self, _cx: &mut ContextOf<'_, Self>, _tag: u32) {}

    /// The connection is gone; its state is handed back. `cx.current()` is `None` here.
    fn on_close(
        &mut self,
        _cx: &mut ContextOf<'_, Self>,
        _id: ConnId,
        _conn: Self::Conn,
        _why: CloseReason,
    ) {
    }

    /// A message from another thread arrived through the loop's `Waker`.
    fn on_message(&mut self, _cx: &mut ContextOf<'_, Self>, _msg: Self::Message) {}

    /// Graceful shutdown began: listeners are closed. The default closes every connection
    /// after its queued output is flushed.
    fn on_shutdown(&mut self, cx: &mut ContextOf<'_, Self>) {
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
pub struct Context<'a, S, M> {
    pub(crate) core: &'a mut Core<M>,
    /// Every connection's state but the one the callback holds.
    states: Others<'a, S>,
    current: Option<ConnId>,
}

/// Runs `f` as a callback about connection `id`, with its state. `None` when the connection has
/// no state (its slot is being freed).
pub(crate) fn with_conn<H: Handler, R>(
    handler: &mut H,
    core: &mut Core<H::Message>,
    states: &mut States<H::Conn>,
    id: ConnId,
    f: impl FnOnce(&mut H, &mut ContextOf<'_, H>, &mut H::Conn) -> R,
) -> Option<R> {
    let (conn, others) = states.lend(id.key)?;
    let mut cx = Context {
        core,
        states: others,
        current: Some(id),
    };
    let r = f(handler, &mut cx, conn);
    states.settle();
    Some(r)
}

/// Runs `f` as a callback about no one connection (messages, loop timers, closes, shutdown).
pub(crate) fn with_loop<H: Handler, R>(
    handler: &mut H,
    core: &mut Core<H::Message>,
    states: &mut States<H::Conn>,
    f: impl FnOnce(&mut H, &mut ContextOf<'_, H>) -> R,
) -> R {
    let mut cx = Context {
        core,
        states: states.all(),
        current: None,
    };
    let r = f(handler, &mut cx);
    states.settle();
    r
}

impl<'a, S, M> Context<'a, S, M> {
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

    /// Another open connection's state (`None` when the id is stale, the connection closed, or
    /// it is the current connection, whose state the callback already holds).
    pub fn state_of(&mut self, id: ConnId) -> Option<&mut S> {
        self.core.get(id)?;
        self.states.get_mut(id.key)
    }

    /// Runs `f` with another open connection's state and this context, for a callback that
    /// acts on several connections (a shutdown, say). `None` when `id` is stale, closed, or the
    /// current connection (whose state the callback already holds). While `f` runs, `id`'s
    /// state is out of its slot: `state_of(id)` inside `f` sees `None`.
    pub fn with_state<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Self, &mut S) -> R,
    ) -> Option<R> {
        self.core.get(id)?;
        let mut state = self.states.take(id.key)?;
        let r = f(self, &mut state);
        self.states.put(id.key, state);
        Some(r)
    }

    /// The listener a connection came from (`None` for an outgoing connection).
    pub fn listener_of(&self, id: ConnId) -> Option<ListenerId> {
        self.core.get(id).and_then(|c| c.listener_id())
    }

    /// The ids of every open connection (not those already closing), for broadcasts.
    pub fn ids(&self) -> Vec<ConnId> {
        self.core.open_ids()
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

    /// Reports the bytes `id`'s protocol holds of input that is not a whole message yet (the
    /// fragments of a WebSocket message, say), beyond the unfinished tail the loop keeps for
    /// it, so they count against `Config::max_buffered_input`. Report 0 once they are gone.
    pub fn hold_input(&mut self, id: ConnId, bytes: usize) {
        if self.core.get(id).is_some() {
            self.core.budget.set_protocol(id.key, bytes);
        }
    }

    /// Drops the output queued for `id` that the socket has not started on, keeping the chunk
    /// it is part-way through, so what is queued next goes out right after it: a protocol cuts
    /// a backlog this way to send a last word in time (a WebSocket close at shutdown).
    /// Returns the bytes dropped.
    pub fn discard_unsent(&mut self, id: ConnId) -> usize {
        self.core.discard_unsent(id)
    }

    /// Closes `id` once its queued output is flushed, then FIN. No more data is delivered for
    /// it. For a close at a boundary of the peer's input (a reply sent, a greeting): input
    /// that has arrived unread by then makes it a lingering close (read and discard until the
    /// peer's EOF), so the peer gets everything before the socket goes. Input the loop or the
    /// protocol (`hold_input`) still holds unfinished makes it one too.
    pub fn close(&mut self, id: ConnId) {
        self.core.close_gracefully(id, Ending::Look);
    }

    /// Closes `id` as `close` does, for a close in the middle of the peer's input (a protocol
    /// error, a message over the limit, a refused body): the peer is surely still sending, so
    /// the close always lingers. A plain close would look once, might find nothing at that
    /// moment, close, and turn the peer's next bytes into a reset that destroys our last word
    /// (the 1009, the 413) before the peer reads it.
    pub fn close_mid_input(&mut self, id: ConnId) {
        self.core.close_gracefully(id, Ending::Linger);
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

    /// Disarms the connection's deadline.
    pub fn cancel_timer(&mut self, id: ConnId) {
        self.core.cancel_timer(id);
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
    pub fn connect(&mut self, addr: impl Into<Addr>, state: S) -> std::io::Result<ConnId> {
        let id = self.core.connect(&addr.into(), None)?;
        self.states.insert(id.key, state);
        Ok(id)
    }

    /// `connect` from a chosen source address (`from`), for clients that need more
    /// connections to one server than one address has ephemeral ports.
    pub fn connect_from(
        &mut self,
        addr: impl Into<Addr>,
        from: Option<std::net::IpAddr>,
        state: S,
    ) -> std::io::Result<ConnId> {
        let id = self.core.connect(&addr.into(), from)?;
        self.states.insert(id.key, state);
        Ok(id)
    }

    /// `connect` over TLS: the handshake (with `config`, checking the server as `name`) runs
    /// once the TCP connect completes, and the handler sees plaintext, as for any connection.
    /// Output queued before the handshake completes is sealed and sent after it.
    #[cfg(feature = "tls")]
    pub fn connect_tls(
        &mut self,
        addr: impl Into<Addr>,
        from: Option<std::net::IpAddr>,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        state: S,
    ) -> std::io::Result<ConnId> {
        let id = self.core.connect(&addr.into(), from)?;
        match super::tls::TlsSession::client(config, name, id.key) {
            Ok(session) => self.core.start_tls(id.key, session),
            Err(e) => {
                self.core
                    .close_now(id.key, None, super::id::CloseReason::Aborted);
                return Err(std::io::Error::other(format!("TLS: {e}")));
            }
        }
        self.states.insert(id.key, state);
        Ok(id)
    }

    /// The loop's counters.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// The connections' phases, queues and interest right now, and the timers armed: a walk
    /// over every connection, so for a scrape or a watcher, not for every message.
    pub fn census(&self) -> super::loop_metrics::Census {
        super::loop_metrics::census(&self.core.conns, self.core.timers.len())
    }

    /// The connections in slab keys below `below` and what each is doing, into `out`: for a
    /// watcher's picture of the slab, bounded by `below`.
    pub fn looks(&self, below: usize, out: &mut Vec<(ConnId, super::loop_metrics::Look)>) {
        super::loop_metrics::looks(&self.core.conns, below, out);
    }

    /// The time the loop read before dispatching this batch of events.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// A handle other threads use to send `Message`s to this loop and to wake it.
    pub fn handle(&self) -> Handle<M> {
        self.core.handle.clone()
    }

    /// True once graceful shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.core.shutting_down
    }
}

//! `Connection`: what the loop keeps per socket, and nothing more.
//!
//! This is the struct that decides what an idle connection costs: the socket, a few bytes of
//! bookkeeping, and a pointer to `Buffers` that is null while nothing is pending. The buffers
//! (the unfinished tail of an incoming message, the queue of output the kernel has not taken)
//! exist only while a connection is busy; the loop takes them back when they empty and lends
//! them to the next busy connection. The protocol's own state lives beside it, in `States`
//! (see `states.rs` for why apart). `tests::idle_connection_is_small` pins the size.

use super::id::ListenerId;
use super::out_queue::OutQueue;
use super::socket::Socket;
use super::timer::TimerId;
#[cfg(feature = "tls")]
use super::tls::TlsSession;

/// Where a connection is in its life. Transitions only go down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// An outgoing `connect` is in progress; completion shows up as WRITABLE.
    Connecting,
    /// Reading and writing; data goes to the handler.
    Open,
    /// The handler asked to close: flush what is queued, then end as `Ending` says (see
    /// `ConnIo::close_or_linger`). Reads are discarded.
    Closing(Ending),
    /// FIN sent while input was still arriving; read and discard until the peer's EOF (or a
    /// timer), so that unread input does not turn our close into a reset that destroys the
    /// reply in flight (nginx' lingering close).
    Lingering,
    /// Done; the slab entry is freed at the end of this loop iteration.
    Closed,
}

/// How a closing connection ends once its queue is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The close came at a boundary of the peer's input (a reply sent, a greeting, `exit`):
    /// look once for unread input, close at once if there is none, linger if there is.
    Look,
    /// The close came in the middle of the peer's input (a protocol error, a refused body):
    /// more is surely on its way, and a reset would destroy our last word, so linger
    /// whatever one read shows at the moment.
    Linger,
}

/// Interest bits as registered with the poll (mio's `Interest` cannot be empty or const-built).
pub const READABLE: u8 = 1;
/// See `READABLE`.
pub const WRITABLE: u8 = 2;
/// No interest: the socket is not in the poll yet (an accepted connection until its handler's
/// `on_open` has run; see `Core::insert`).
pub const UNREGISTERED: u8 = 0;

/// Bit flags of a connection.
pub mod flags {
    /// The peer sent EOF.
    pub const EOF: u8 = 1;
    /// Reading stopped by the loop: pending output passed the high watermark.
    pub const PAUSED_BY_LOOP: u8 = 2;
    /// Reading stopped by the handler (`Context::pause_reading`).
    pub const PAUSED_BY_HANDLER: u8 = 4;
    /// Already on the loop's list of connections to flush before it sleeps.
    pub const IN_FLUSH_LIST: u8 = 8;
    /// Already on the loop's list of connections to read again without waiting for an event.
    pub const IN_READ_LIST: u8 = 16;
    /// The socket refused bytes and has not taken a full write since: wait for WRITABLE.
    pub const WRITE_BLOCKED: u8 = 32;
    /// A write came up short since the queue last drained: `on_drained` is owed.
    pub const DRAIN_OWED: u8 = 64;
    /// The connection speaks TLS: its `Buffers` hold the session (see `tls.rs`).
    pub const TLS: u8 = 128;
}

/// The buffers of a busy connection, and a TLS connection's session (which it always has:
/// a TLS connection keeps its `Buffers`, with their buffers freed while idle).
#[derive(Default)]
pub struct Buffers {
    /// Only the unconsumed tail of an incomplete message.
    pub(crate) inbuf: Vec<u8>,
    /// Output the kernel has not taken yet (plaintext, for a TLS connection: sealed at flush).
    pub(crate) out: OutQueue,
    /// The TLS session, for a connection that speaks TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<TlsSession>>,
}

impl Buffers {
    /// Nothing half-read, nothing to write, no session: the buffers can go back to the pool.
    pub(crate) fn is_empty(&self) -> bool {
        self.inbuf.is_empty() && self.out.is_empty() && !self.has_tls()
    }

    /// Bytes waiting to be written: queued plaintext, plus sealed ciphertext for TLS.
    pub(crate) fn pending(&self) -> usize {
        #[cfg(feature = "tls")]
        let sealed = self.tls.as_ref().map_or(0, |t| t.pending());
        #[cfg(not(feature = "tls"))]
        let sealed = 0;
        self.out.pending() + sealed
    }

    fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// Marks "no listener" (an outgoing connection) in `Connection::listener`.
pub(crate) const NO_LISTENER: u8 = u8::MAX;

/// One socket and the loop's bookkeeping for it.
pub struct Connection {
    pub(crate) stream: Socket,
    /// `None` while idle: nothing half-read, nothing waiting to be written.
    pub(crate) bufs: Option<Box<Buffers>>,
    pub(crate) timer: Option<TimerId>,
    pub(crate) gen: u32,
    /// The listener's index (`NO_LISTENER` for an outgoing connection).
    pub(crate) listener: u8,
    pub(crate) phase: Phase,
    pub(crate) interest: u8,
    pub(crate) flags: u8,
}

impl Connection {
    pub(crate) fn new(stream: Socket, gen: u32, listener: Option<ListenerId>) -> Self {
        Connection {
            stream,
            bufs: None,
            timer: None,
            gen,
            listener: listener.map_or(NO_LISTENER, |l| l.0 as u8),
            phase: Phase::Open,
            interest: READABLE,
            flags: 0,
        }
    }

    /// The listener this connection came from.
    pub(crate) fn listener_id(&self) -> Option<ListenerId> {
        (self.listener != NO_LISTENER).then_some(ListenerId(self.listener as u16))
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.pending())
    }

    /// Bytes of an incomplete message kept from earlier reads.
    pub(crate) fn inbuf_len(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.inbuf.len())
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn paused(&self) -> bool {
        self.has(flags::PAUSED_BY_LOOP | flags::PAUSED_BY_HANDLER)
    }

    /// The interest this connection should have registered: WRITABLE only while a write is
    /// blocked; READABLE unless reading is paused *and* we wait for WRITABLE anyway (mio needs a
    /// non-empty interest; a paused connection's read events are simply ignored).
    pub(crate) fn wanted_interest(&self) -> u8 {
        if self.phase == Phase::Connecting {
            return READABLE | WRITABLE;
        }
        let w = if self.has(flags::WRITE_BLOCKED) {
            WRITABLE
        } else {
            0
        };
        if self.paused() && w != 0 {
            w
        } else {
            READABLE | w
        }
    }
}

/// Renders interest bits the way the trace log prints them: `R`, `W`, `R|W`.
pub fn interest_name(bits: u8) -> &'static str {
    match bits {
        READABLE => "R",
        WRITABLE => "W",
        3 => "R|W",
        _ => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_is_small() {
        // Socket 4 + buffers pointer 8 + timer 4 + generation 4 + listener, phase, interest and
        // flags 1 each: 24 bytes (the protocol state is kept beside it, in `States`).
        let limit = 24;
        let size = std::mem::size_of::<Connection>();
        assert!(size <= limit, "Connection grew to {size} bytes");
    }

    #[test]
    fn interest_follows_blocked_writes_and_pauses() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut c = Connection::new(Socket::from_fd(ours.into()), 0, None);
        assert_eq!(c.wanted_interest(), READABLE);
        c.flags |= flags::WRITE_BLOCKED;
        assert_eq!(c.wanted_interest(), READABLE | WRITABLE);
        c.flags |= flags::PAUSED_BY_LOOP;
        assert_eq!(c.wanted_interest(), WRITABLE);
        c.flags &= !flags::WRITE_BLOCKED;
        assert_eq!(c.wanted_interest(), READABLE);
    }
}

//! `Connection`: what the loop keeps per socket, and nothing more.
//!
//! This is the struct that decides what an idle connection costs. It holds the socket, the
//! protocol's state, an input buffer that is empty (no capacity) unless an incomplete message
//! is waiting for its tail, an output queue that is empty unless the kernel refused bytes, and a
//! few bytes of bookkeeping. `tests::idle_connection_is_small` pins its size.

use crate::event_loop::ListenerId;
use crate::out_queue::OutQueue;
use crate::timer::TimerId;
use mio::net::TcpStream;

/// Where a connection is in its life. Transitions only go down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// An outgoing `connect` is in progress; completion shows up as WRITABLE.
    Connecting,
    /// Reading and writing; data goes to the handler.
    Open,
    /// The handler asked to close: flush what is queued, then send FIN. Reads are discarded.
    Closing,
    /// FIN sent; read and discard until the peer's EOF (or a timer), so that unread input does
    /// not turn our close into a reset that destroys the reply in flight (nginx' lingering close).
    Lingering,
    /// Done; the slab entry is freed at the end of this loop iteration.
    Closed,
}

/// Interest bits as registered with the poll (mio's `Interest` cannot be empty or const-built).
pub const READABLE: u8 = 1;
/// See `READABLE`.
pub const WRITABLE: u8 = 2;

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
    /// A write came up short since the queue last drained (`on_drained` is owed).
    pub const WRITE_BLOCKED: u8 = 32;
}

/// One socket and its state.
pub struct Connection<S> {
    pub(crate) stream: TcpStream,
    pub(crate) state: S,
    /// Only the unconsumed tail of an incomplete message; empty with no capacity otherwise.
    pub(crate) inbuf: Vec<u8>,
    pub(crate) out: OutQueue,
    pub(crate) timer: Option<TimerId>,
    pub(crate) gen: u32,
    pub(crate) listener: Option<ListenerId>,
    pub(crate) phase: Phase,
    pub(crate) interest: u8,
    pub(crate) flags: u8,
}

impl<S> Connection<S> {
    pub(crate) fn new(stream: TcpStream, state: S, gen: u32, listener: Option<ListenerId>) -> Self {
        Connection {
            stream,
            state,
            inbuf: Vec::new(),
            out: OutQueue::default(),
            timer: None,
            gen,
            listener,
            phase: Phase::Open,
            interest: READABLE,
            flags: 0,
        }
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
        // Socket 4 + inbuf 24 + out queue 48 + timer 8 + gen 4 + listener 4 + 3 bytes, padded:
        // 96 bytes plus the protocol state. Debug builds of mio add a registry id (8 bytes,
        // padded to 16) to every socket to catch double registration.
        let limit = if cfg!(debug_assertions) { 112 } else { 96 };
        let size = std::mem::size_of::<Connection<()>>();
        assert!(size <= limit, "Connection<()> grew to {size} bytes");
    }

    #[test]
    fn interest_follows_blocked_writes_and_pauses() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut c = Connection::new(TcpStream::from_std(stream), (), 0, None);
        assert_eq!(c.wanted_interest(), READABLE);
        c.flags |= flags::WRITE_BLOCKED;
        assert_eq!(c.wanted_interest(), READABLE | WRITABLE);
        c.flags |= flags::PAUSED_BY_LOOP;
        assert_eq!(c.wanted_interest(), WRITABLE);
        c.flags &= !flags::WRITE_BLOCKED;
        assert_eq!(c.wanted_interest(), READABLE);
    }
}

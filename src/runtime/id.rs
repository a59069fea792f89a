//! The names the loop hands out: `ConnId` for a connection, `ListenerId` for a listener, and
//! `CloseReason` for how a connection ended.
//!
//! They sit in a file of their own because every other part of the runtime (and every protocol)
//! speaks in them, while they depend on nothing: a name must not drag the loop along with it.

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

/// Names a listener of this loop (its index in the order they were added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u16);

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
    /// The TLS session failed: a certificate that does not verify, a protocol error, or an
    /// alert from the peer (`readyloop::tls` at debug says which). Its alert was sent first.
    TlsFailed,
}

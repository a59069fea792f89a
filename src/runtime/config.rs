//! `Config`, the loop's tunables, and `Stats`, the counters it keeps.
//!
//! Every limit has a number, a unit and a reason next to it, so a reader (or an operator
//! turning a knob) knows what it protects against.

use super::loop_metrics::LoopMetrics;
use std::time::{Duration, Instant};

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
    /// Bytes of unfinished input all connections together may hold (tails of messages in
    /// input buffers, plus what protocols report holding, see `runtime::budget`): 256 MiB, about
    /// 1% of this machine's 24 GiB and far above what well-behaved clients hold at once. Past
    /// it the connections holding the most are closed (`Handler::on_input_over_budget`).
    pub max_buffered_input: usize,
    /// How long a close may wait for its output to flush: 10 s.
    pub close_timeout: Duration,
    /// How long a lingering close waits for the peer's EOF after our FIN: 2 s.
    pub linger_timeout: Duration,
    /// How long shutdown waits for connections and background work: 10 s.
    pub shutdown_timeout: Duration,
    /// How long an accepted TLS connection may take to finish its handshake when its handler
    /// arms no deadline of its own: 10 s. Without it a peer that connects and never finishes
    /// its ClientHello would hold its slot and its session for as long as it likes.
    pub tls_handshake_timeout: Duration,
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
            max_buffered_input: 256 << 20,
            close_timeout: Duration::from_secs(10),
            linger_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
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
    /// Bytes of unfinished input held now (see `Config::max_buffered_input`).
    pub input_buffered: usize,
    /// Connections closed because the input budget was spent.
    pub closed_over_budget: u64,
    /// When the loop was created.
    pub started: Instant,
    /// Accepts refused and paused, closes by reason, and histograms of each iteration.
    pub metrics: LoopMetrics,
}

impl Stats {
    pub(crate) fn new(started: Instant) -> Stats {
        Stats {
            accepted_total: 0,
            bytes_read: 0,
            bytes_written: 0,
            loop_iterations: 0,
            open: Vec::new(),
            open_outgoing: 0,
            input_buffered: 0,
            closed_over_budget: 0,
            started,
            metrics: LoopMetrics::default(),
        }
    }
}

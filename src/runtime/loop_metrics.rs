//! `LoopMetrics`: what the loop counts about itself beyond `Stats` (accepts refused and paused,
//! closes by reason, partial writes, interest changes, and three histograms of each iteration),
//! and `Census`, a count of the connections' phases and queues taken on demand.
//!
//! These exist so a scrape (`GET /metrics`) can show what the trace log narrates without
//! anyone reading the log. Everything here is fixed-size: counters are `u64`s and histograms
//! are arrays of `u64` buckets on powers of two, so recording is an increment and a
//! `leading_zeros`, never an allocation. What is a *gauge* of the connections (bytes queued now,
//! the largest queue, write interest armed, phases) is not kept up to date on the hot path at all:
//! `census` walks the slab when someone asks, which costs the asker, not the loop's other work.

use super::connection::{flags, Connection, Phase, WRITABLE};
use super::id::{CloseReason, ConnId};
use slab::Slab;
use std::time::Duration;

/// A histogram of `u64` values on powers of two. Bucket 0 holds zeros; bucket `i` (1 ≤ i <
/// N-1) holds values in (2^(i-2), 2^(i-1)], so its upper bound is 2^(i-1); the last bucket
/// holds everything larger (Prometheus' `+Inf`). Buckets are not cumulative here; the writer
/// makes them so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log2Histogram<const N: usize> {
    /// Observations per bucket.
    pub buckets: [u64; N],
    /// Sum of every observed value.
    pub sum: u64,
    /// Number of observations.
    pub count: u64,
}

impl<const N: usize> Default for Log2Histogram<N> {
    fn default() -> Self {
        Log2Histogram {
            buckets: [0; N],
            sum: 0,
            count: 0,
        }
    }
}

impl<const N: usize> Log2Histogram<N> {
    /// Counts one observation of `v`.
    #[inline]
    pub fn record(&mut self, v: u64) {
        let i = if v == 0 {
            0
        } else {
            1 + (64 - (v - 1).leading_zeros()) as usize
        };
        self.buckets[i.min(N - 1)] += 1;
        self.sum = self.sum.wrapping_add(v);
        self.count += 1;
    }

    /// The inclusive upper bound of bucket `i`, `None` for the last one (`+Inf`).
    pub fn upper_bound(i: usize) -> Option<u64> {
        match i {
            0 => Some(0),
            i if i + 1 < N => Some(1 << (i - 1)),
            _ => None,
        }
    }
}

/// Events per `poll`: 0 to 1024 (`EVENTS_CAPACITY`) and more, 13 buckets.
pub type EventsHistogram = Log2Histogram<13>;
/// The poll timeout chosen, in microseconds: 0 to 2^25 µs (about 34 s), then `+Inf`.
pub type TimeoutHistogram = Log2Histogram<28>;
/// Time spent in one iteration after `poll` returned, in nanoseconds: 0 to 2^30 ns (about 1 s).
pub type BusyHistogram = Log2Histogram<33>;

/// Why `poll` waited as long as it did (phase 1 of `run_once`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollWait {
    /// Zero: connections were waiting to be read again or flushed (deferred work).
    Deferred,
    /// Until the earliest deadline: a timer, the retry of a paused accept, or the shutdown.
    Deadline,
    /// Only the caller's `max_wait` of `run_once` bounded it.
    Host,
    /// No bound at all: nothing to do until an event arrives.
    Forever,
}

impl PollWait {
    /// Every reason, in the order of `LoopMetrics::polls`.
    pub const ALL: [PollWait; 4] = [
        PollWait::Deferred,
        PollWait::Deadline,
        PollWait::Host,
        PollWait::Forever,
    ];

    /// The reason's label, as `/metrics` and the trace log name it.
    pub fn name(self) -> &'static str {
        match self {
            PollWait::Deferred => "deferred",
            PollWait::Deadline => "deadline",
            PollWait::Host => "host",
            PollWait::Forever => "forever",
        }
    }
}

/// Every close reason's label, in the order of `LoopMetrics::closed`.
pub const CLOSE_REASONS: [&str; 8] = [
    "done",
    "peer_gone",
    "aborted",
    "timed_out",
    "slow_consumer",
    "connect_failed",
    "shutdown",
    "tls_failed",
];

/// The index of `why` in `CLOSE_REASONS`.
pub fn close_reason_index(why: CloseReason) -> usize {
    match why {
        CloseReason::Done => 0,
        CloseReason::PeerGone(_) => 1,
        CloseReason::Aborted => 2,
        CloseReason::TimedOut => 3,
        CloseReason::SlowConsumer => 4,
        CloseReason::ConnectFailed(_) => 5,
        CloseReason::Shutdown => 6,
        CloseReason::TlsFailed => 7,
    }
}

/// Counters and histograms of the loop's own work (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct LoopMetrics {
    /// Connections the handler accepted and the loop registered (nginx's "handled"); differs
    /// from `Stats::accepted_total` when the handler refuses or registration fails.
    pub handled_total: u64,
    /// Accepted sockets the handler refused (closed at once).
    pub refused_total: u64,
    /// Times accepting was paused for want of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    pub accept_paused_total: u64,
    /// `accept` failures of any other kind.
    pub accept_errors_total: u64,
    /// Connections closed, per reason (index: `close_reason_index`).
    pub closed: [u64; CLOSE_REASONS.len()],
    /// Writes the socket took only part of (each one arms WRITABLE or keeps it armed).
    pub partial_writes_total: u64,
    /// `reregister` calls: the interest of a connection changed.
    pub interest_changes_total: u64,
    /// Polls, per reason for their timeout (index: position in `PollWait::ALL`).
    pub polls: [u64; PollWait::ALL.len()],
    /// Events each `poll` returned.
    pub events_per_poll: EventsHistogram,
    /// The finite timeouts `poll` was given, in microseconds (`forever` is counted in `polls`).
    pub poll_timeout_us: TimeoutHistogram,
    /// Time each iteration spent after `poll` returned (dispatch to reap), in nanoseconds.
    pub iteration_busy_ns: BusyHistogram,
}

impl LoopMetrics {
    /// Counts one iteration: the events its poll returned, the timeout it was given and why,
    /// and the time it spent working.
    #[inline]
    pub(crate) fn iteration(
        &mut self,
        events: usize,
        timeout: Option<Duration>,
        why: PollWait,
        busy: Duration,
    ) {
        self.polls[why as usize] += 1;
        self.events_per_poll.record(events as u64);
        if let Some(t) = timeout {
            self.poll_timeout_us
                .record(u64::try_from(t.as_micros()).unwrap_or(u64::MAX));
        }
        self.iteration_busy_ns
            .record(u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Counts a connection's close.
    #[inline]
    pub(crate) fn closed(&mut self, why: CloseReason) {
        self.closed[close_reason_index(why)] += 1;
    }
}

/// The connections as they are right now, counted on demand (`Context::census`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Connections per phase: connecting, open, closing (flushing before close), lingering
    /// (FIN sent, waiting for the peer's), closed (to be reaped this iteration).
    pub phases: [u64; 5],
    /// Connections with WRITABLE interest armed (a write came up short).
    pub write_armed: u64,
    /// Connections whose reading is paused (backpressure or the handler).
    pub read_paused: u64,
    /// Bytes queued for output on every connection (including sealed TLS records).
    pub queued_bytes: u64,
    /// The longest single output queue, in bytes (redis' `client_longest_output_list`).
    pub largest_queue: u64,
    /// Bytes of unfinished input held in connections' input buffers.
    pub inbuf_bytes: u64,
    /// Deadlines armed in the timer wheel.
    pub timers: u64,
}

/// Every phase's label, in the order of `Census::phases`.
pub const PHASES: [&str; 5] = ["connecting", "open", "closing", "lingering", "closed"];

/// The index of `phase` in `PHASES`.
pub fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Connecting => 0,
        Phase::Open => 1,
        Phase::Closing(_) => 2,
        Phase::Lingering => 3,
        Phase::Closed => 4,
    }
}

/// Walks every connection once (O(open connections); only when asked).
pub(crate) fn census(conns: &Slab<Connection>, timers: usize) -> Census {
    let mut c = Census {
        timers: timers as u64,
        ..Census::default()
    };
    for (_, conn) in conns {
        c.phases[phase_index(conn.phase)] += 1;
        if conn.interest & WRITABLE != 0 {
            c.write_armed += 1;
        }
        if conn.has(flags::PAUSED_BY_LOOP | flags::PAUSED_BY_HANDLER) {
            c.read_paused += 1;
        }
        let queued = conn.pending() as u64;
        c.queued_bytes += queued;
        c.largest_queue = c.largest_queue.max(queued);
        c.inbuf_bytes += conn.inbuf_len() as u64;
    }
    c
}

/// What one connection is doing, as the `/loop` page colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// An outgoing `connect` in progress.
    Connecting,
    /// Open and read when data comes (its queue, if any, is being written).
    Reading,
    /// Open, but not read: backpressure or the handler paused it.
    ReadPaused,
    /// The socket refused output: WRITABLE armed, the queue waits.
    WriteBlocked,
    /// Closing: flushing what is queued before the close.
    Closing,
    /// FIN sent, waiting for the peer's.
    Lingering,
    /// Marked closed, to be reaped at the end of this iteration.
    Closed,
}

impl Look {
    /// Every look, in the order of their codes.
    pub const ALL: [Look; 7] = [
        Look::Connecting,
        Look::Reading,
        Look::ReadPaused,
        Look::WriteBlocked,
        Look::Closing,
        Look::Lingering,
        Look::Closed,
    ];

    /// Its name, as the page's legend says it.
    pub fn name(self) -> &'static str {
        match self {
            Look::Connecting => "connecting",
            Look::Reading => "reading",
            Look::ReadPaused => "read paused",
            Look::WriteBlocked => "write blocked",
            Look::Closing => "closing",
            Look::Lingering => "lingering",
            Look::Closed => "closed",
        }
    }

    fn of(c: &Connection) -> Look {
        match c.phase {
            Phase::Connecting => Look::Connecting,
            Phase::Closing(_) => Look::Closing,
            Phase::Lingering => Look::Lingering,
            Phase::Closed => Look::Closed,
            Phase::Open if c.has(flags::WRITE_BLOCKED) => Look::WriteBlocked,
            Phase::Open if c.paused() => Look::ReadPaused,
            Phase::Open => Look::Reading,
        }
    }
}

/// The connections in slab keys below `below`, with what each is doing, into `out` (cleared
/// first): for the `/loop` page's slab strip, bounded by `below`.
pub(crate) fn looks(conns: &Slab<Connection>, below: usize, out: &mut Vec<(ConnId, Look)>) {
    out.clear();
    for (key, c) in conns {
        if key >= below {
            // Slab iteration is in key order: nothing further is below.
            break;
        }
        out.push((ConnId { key, gen: c.gen }, Look::of(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets_hold_what_their_bounds_say() {
        let mut h = Log2Histogram::<6>::default();
        for v in [0, 1, 2, 3, 4, 5, 8, 9, 1000] {
            h.record(v);
        }
        // Bounds: 0, 1, 2, 4, 8, +Inf.
        assert_eq!(
            (0..6)
                .map(Log2Histogram::<6>::upper_bound)
                .collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2), Some(4), Some(8), None]
        );
        assert_eq!(h.buckets, [1, 1, 1, 2, 2, 2]);
        assert_eq!(h.count, 9);
        assert_eq!(h.sum, 1032);
    }

    #[test]
    fn every_close_reason_has_its_own_label() {
        use std::io::ErrorKind;
        let all = [
            CloseReason::Done,
            CloseReason::PeerGone(ErrorKind::ConnectionReset),
            CloseReason::Aborted,
            CloseReason::TimedOut,
            CloseReason::SlowConsumer,
            CloseReason::ConnectFailed(ErrorKind::ConnectionRefused),
            CloseReason::Shutdown,
            CloseReason::TlsFailed,
        ];
        let mut seen: Vec<usize> = all.iter().map(|&w| close_reason_index(w)).collect();
        seen.sort();
        assert_eq!(seen, (0..CLOSE_REASONS.len()).collect::<Vec<_>>());
    }
}

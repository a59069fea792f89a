//! The inspector (`--inspect`): the frames that feed the `/loop` page over `/loop/ws`, so a
//! learner sees one readiness loop at work instead of reading its trace log.
//!
//! Costs: while nobody watches, nothing at all: no timer is armed, nothing is sampled, and the
//! log level is what `RUST_LOG` says. The first watcher arms a loop timer; every `FRAME_EVERY`
//! (100 ms) `frame` turns the loop's counters (differences since the last frame), a census of
//! the connections, a strip of the slab's first `STRIP_KEYS` slots and a sample of the trace
//! log (`log_capture`, at most `LOG_LINES` lines) into one JSON text of at most `FRAME_MAX`
//! bytes, encoded once as a WebSocket frame and shared by every watcher's queue. A watcher whose
//! queue already holds `MAX_QUEUED` bytes (it reads slower than frames come) gets no frame this
//! time: it sees fewer frames, and never makes us hold more than that for it. At most
//! `MAX_WATCHERS` watch at once. When the last one leaves, the timer is not re-armed and the log
//! sampling is switched off.
//!
//! This file knows no other service: the dispatcher tells it which protocol each connection
//! speaks (`Strip` codes) and which watchers may still be sent to.

use super::stats::Snapshot;
use crate::codec::json;
use crate::codec::ws::frame::{frame as ws_frame, OpCode};
use crate::log_capture;
use crate::runtime::loop_metrics::{Log2Histogram, Look, LoopMetrics, PollWait, CLOSE_REASONS};
use crate::runtime::{Chunk, ConnId, Context};
use std::fmt::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often a frame goes out while someone watches: 100 ms, ten pictures a second.
pub const FRAME_EVERY: Duration = Duration::from_millis(100);
/// The tag of the inspector's loop timer (the Redis relay's are 0 and 1).
pub const TIMER_TAG: u32 = 0x1005;
/// Largest frame: 16 KiB of JSON (the log sample is cut first if a frame would be larger).
pub const FRAME_MAX: usize = 16 * 1024;
/// A watcher with this much output queued (two frames, 32 KiB) is skipped until it drains.
pub const MAX_QUEUED: usize = 2 * FRAME_MAX;
/// Watchers at once: 16 (at most 16 × 32 KiB = 512 KiB queued for them all); more get `503`.
pub const MAX_WATCHERS: usize = 16;
/// Slab slots the strip shows: the first 1024 (one character each).
pub const STRIP_KEYS: usize = 1024;
/// Trace lines sampled per frame: 24 (at most 24 × 160 bytes).
pub const LOG_LINES: usize = 24;

/// The protocols of the strip, in the order of their codes.
pub const STRIP_PROTOCOLS: [&str; 6] = ["http", "ws", "line", "hello", "outgoing", "watcher"];
/// One character per (protocol, look): code = protocol × 8 + look.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Whether frames are being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticking {
    /// Nobody watches: no timer armed.
    Idle,
    /// The frame timer is armed.
    Armed,
}

/// What the previous frame saw, to send differences.
#[derive(Debug, Clone)]
struct Previous {
    at: Instant,
    metrics: LoopMetrics,
    accepted: u64,
    iterations: u64,
    read: u64,
    written: u64,
}

/// The watchers and the frame clock.
#[derive(Debug)]
pub struct Inspector {
    watchers: Vec<ConnId>,
    ticking: Ticking,
    previous: Option<Previous>,
    /// Frames not sent to a watcher that had not read the earlier ones.
    skipped: u64,
    started: Instant,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new()
    }
}

impl Inspector {
    /// No watchers yet.
    pub fn new() -> Inspector {
        Inspector {
            watchers: Vec::new(),
            ticking: Ticking::Idle,
            previous: None,
            skipped: 0,
            started: Instant::now(),
        }
    }

    /// True when another watcher would be one too many.
    pub fn full(&self) -> bool {
        self.watchers.len() >= MAX_WATCHERS
    }

    /// True when `id` is a watcher.
    pub fn watches(&self, id: ConnId) -> bool {
        self.watchers.contains(&id)
    }

    /// A watcher joined: the first one starts the frames.
    pub fn join<S, M>(&mut self, cx: &mut Context<'_, S, M>, id: ConnId) {
        self.watchers.push(id);
        log_capture::skip_conn(id.key(), true);
        if self.ticking == Ticking::Idle {
            self.ticking = Ticking::Armed;
            self.previous = None;
            // The first frame soon, so the page fills at once.
            cx.set_loop_timer(Duration::from_millis(1), TIMER_TAG);
            log_capture::arm(LOG_LINES);
        }
    }

    /// A watcher left (or was never one: nothing happens).
    pub fn leave(&mut self, id: ConnId) {
        let before = self.watchers.len();
        self.watchers.retain(|&w| w != id);
        if self.watchers.len() != before {
            log_capture::skip_conn(id.key(), false);
        }
    }

    /// The frame timer fired. Returns the frame to send (and re-arms the timer) while someone
    /// watches; `None`, and everything switched off, once nobody does. `snapshot` is the
    /// process' figures now, `strip` the slab strip the dispatcher drew (`strip_code`).
    pub fn tick<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        snapshot: &Snapshot,
        strip: &str,
    ) -> Option<Rc<[u8]>> {
        if self.watchers.is_empty() {
            self.ticking = Ticking::Idle;
            self.previous = None;
            log_capture::disarm();
            return None;
        }
        cx.set_loop_timer(FRAME_EVERY, TIMER_TAG);
        let mut log = Vec::new();
        log_capture::take(&mut log);
        log_capture::arm(LOG_LINES);
        let now = Instant::now();
        let text = self.frame_json(snapshot, strip, &log, now);
        self.previous = Some(Previous {
            at: now,
            metrics: snapshot.loop_metrics.clone(),
            accepted: snapshot.accepted_total,
            iterations: snapshot.loop_iterations,
            read: snapshot.bytes_read,
            written: snapshot.bytes_written,
        });
        Some(ws_frame(OpCode::Text, text.as_bytes()).into())
    }

    /// Queues `frame` for every watcher `may_send` allows (its WebSocket is still open) whose
    /// queue has room; the others are skipped this time.
    pub fn send<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        frame: &Rc<[u8]>,
        mut may_send: impl FnMut(&mut Context<'_, S, M>, ConnId) -> bool,
    ) {
        for &id in &self.watchers {
            if !may_send(cx, id) {
                continue;
            }
            if cx.pending_output(id) >= MAX_QUEUED {
                self.skipped += 1;
                continue;
            }
            cx.send(id, Chunk::Shared(frame.clone()));
        }
    }

    /// The watchers now.
    pub fn watchers(&self) -> &[ConnId] {
        &self.watchers
    }

    fn frame_json(&self, s: &Snapshot, strip: &str, log: &[String], now: Instant) -> String {
        let m = &s.loop_metrics;
        let zero = LoopMetrics::default();
        let (p, dt) = match &self.previous {
            Some(p) => (p, now.saturating_duration_since(p.at).as_secs_f64()),
            None => (&Previous::from_zero(&zero), 0.0),
        };
        let pm = &p.metrics;
        let mut out = String::with_capacity(8 * 1024);
        let c = s.connections;
        let _ = write!(
            out,
            "{{\"t\": {:.3}, \"dt\": {dt:.3}, \"worker\": {}, \
             \"stats\": {{\"accepted_total\": {}, \"bytes_read\": {}, \"bytes_written\": {}, \
             \"loop_iterations\": {}, \"connections\": {{\"http\": {}, \"ws\": {}, \"line\": {}, \"hello\": {}}}, \
             \"tasks_in_flight\": {}, \"input_buffered\": {}}}",
            now.saturating_duration_since(self.started).as_secs_f64(),
            super::stats::worker_index().map_or("null".to_string(), |i| i.to_string()),
            s.accepted_total,
            s.bytes_read,
            s.bytes_written,
            s.loop_iterations,
            c.http,
            c.ws,
            c.line,
            c.hello,
            s.tasks_in_flight,
            s.input_buffered,
        );
        let _ = write!(
            out,
            ", \"delta\": {{\"iterations\": {}, \"accepted\": {}, \"handled\": {}, \"refused\": {}, \
             \"paused\": {}, \"read\": {}, \"written\": {}, \"partial_writes\": {}, \
             \"interest_changes\": {}}}",
            s.loop_iterations.saturating_sub(p.iterations),
            s.accepted_total.saturating_sub(p.accepted),
            m.handled_total.saturating_sub(pm.handled_total),
            m.refused_total.saturating_sub(pm.refused_total),
            m.accept_paused_total.saturating_sub(pm.accept_paused_total),
            s.bytes_read.saturating_sub(p.read),
            s.bytes_written.saturating_sub(p.written),
            m.partial_writes_total.saturating_sub(pm.partial_writes_total),
            m.interest_changes_total
                .saturating_sub(pm.interest_changes_total),
        );
        let _ = write!(
            out,
            ", \"totals\": {{\"handled\": {}, \"refused\": {}, \"paused\": {}, \"partial_writes\": {}, \"interest_changes\": {}}}",
            m.handled_total, m.refused_total, m.accept_paused_total, m.partial_writes_total, m.interest_changes_total
        );
        out.push_str(", \"polls\": {");
        for (i, w) in PollWait::ALL.iter().enumerate() {
            let d = m.polls[i].saturating_sub(pm.polls[i]);
            let _ = write!(out, "{}\"{}\": {d}", sep(i), w.name());
        }
        out.push_str("}, \"closed\": {");
        for (i, r) in CLOSE_REASONS.iter().enumerate() {
            let _ = write!(out, "{}\"{r}\": {}", sep(i), m.closed[i]);
        }
        out.push('}');
        histogram_delta(&mut out, "events", &m.events_per_poll, &pm.events_per_poll);
        histogram_delta(
            &mut out,
            "timeout_us",
            &m.poll_timeout_us,
            &pm.poll_timeout_us,
        );
        histogram_delta(
            &mut out,
            "busy_ns",
            &m.iteration_busy_ns,
            &pm.iteration_busy_ns,
        );
        let k = &s.census;
        let _ = write!(
            out,
            ", \"census\": {{\"phases\": {:?}, \"write_armed\": {}, \"read_paused\": {}, \
             \"queued_bytes\": {}, \"largest_queue\": {}, \"inbuf_bytes\": {}, \"timers\": {}}}",
            k.phases,
            k.write_armed,
            k.read_paused,
            k.queued_bytes,
            k.largest_queue,
            k.inbuf_bytes,
            k.timers
        );
        let _ = write!(
            out,
            ", \"watchers\": {}, \"skipped\": {}, \"strip\": ",
            self.watchers.len(),
            self.skipped
        );
        quoted(strip, &mut out);
        out.push_str(", \"log\": [");
        let mut first = true;
        for line in log {
            // Room for this line, the closing brackets and some slack.
            if out.len() + line.len() + 16 > FRAME_MAX {
                break;
            }
            if !first {
                out.push_str(", ");
            }
            first = false;
            quoted(line, &mut out);
        }
        out.push_str("]}");
        out
    }
}

impl Previous {
    fn from_zero(zero: &LoopMetrics) -> Previous {
        Previous {
            at: Instant::now(),
            metrics: zero.clone(),
            accepted: 0,
            iterations: 0,
            read: 0,
            written: 0,
        }
    }
}

/// `s` as a JSON string, quotes included.
fn quoted(s: &str, out: &mut String) {
    out.push('"');
    json::escape_into(s, out);
    out.push('"');
}

fn sep(i: usize) -> &'static str {
    if i == 0 {
        ""
    } else {
        ", "
    }
}

/// `, "NAME": {"le": [...], "n": [...]}`: the observations since the last frame per bucket,
/// with each bucket's upper bound (`null`: `+Inf`), trailing empty buckets left out.
fn histogram_delta<const N: usize>(
    out: &mut String,
    name: &str,
    now: &Log2Histogram<N>,
    before: &Log2Histogram<N>,
) {
    let d: Vec<u64> = (0..N)
        .map(|i| now.buckets[i].saturating_sub(before.buckets[i]))
        .collect();
    let used = d.iter().rposition(|&n| n > 0).map_or(0, |i| i + 1);
    let _ = write!(out, ", \"{name}\": {{\"le\": [");
    for i in 0..used {
        match Log2Histogram::<N>::upper_bound(i) {
            Some(b) => {
                let _ = write!(out, "{}{b}", sep(i));
            }
            None => {
                let _ = write!(out, "{}null", sep(i));
            }
        }
    }
    let _ = write!(
        out,
        "], \"n\": {:?}, \"sum\": {}}}",
        &d[..used],
        now.sum.wrapping_sub(before.sum)
    );
}

/// The strip's character for a connection of protocol `protocol` (an index into
/// `STRIP_PROTOCOLS`) that looks like `look`; `.` is a free slot.
pub fn strip_code(protocol: usize, look: Look) -> char {
    let l = Look::ALL.iter().position(|&x| x == look).unwrap_or(0);
    ALPHABET
        .get(protocol * 8 + l)
        .map_or('?', |&b| char::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_json_safe() {
        let mut seen = std::collections::BTreeSet::new();
        for p in 0..STRIP_PROTOCOLS.len() {
            for look in Look::ALL {
                let c = strip_code(p, look);
                assert!(c.is_ascii_alphanumeric() || c == '-' || c == '_', "{c}");
                assert!(seen.insert(c), "{c} twice");
            }
        }
    }

    #[test]
    fn a_frame_with_everything_full_stays_under_its_limit() {
        let mut s = Snapshot::default();
        s.loop_metrics.events_per_poll.record(1024);
        s.loop_metrics.poll_timeout_us.record(u64::MAX);
        s.loop_metrics.iteration_busy_ns.record(u64::MAX);
        s.accepted_total = u64::MAX;
        let strip: String = (0..STRIP_KEYS)
            .map(|_| strip_code(5, Look::Closed))
            .collect();
        let long = "conn 123456 [ffff:ffff::1]:65535 write 65536 of 65536 in 64 pieces: partial, 123456789 pending ".repeat(3);
        let log: Vec<String> = (0..log_capture::RING).map(|_| long.clone()).collect();
        let inspector = Inspector::new();
        let text = inspector.frame_json(&s, &strip, &log, Instant::now());
        assert!(text.len() <= FRAME_MAX, "{} bytes", text.len());
        assert!(text.ends_with("]}"), "{text}");
        assert!(text.contains("\"strip\": \""));
    }
}

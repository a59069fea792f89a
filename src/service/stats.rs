//! `/stats`: every service's figures as one JSON object, and the shared memory through which
//! the workers of `serve --workers N` see each other's.
//!
//! The dispatcher gathers a `Snapshot` (plain numbers, no service types: this file knows no
//! service) and `json` writes it. With `--workers`, each worker writes its snapshot into its
//! slot of a small shared memory file (a `memfd` created by the supervisor, one slot of 64-bit
//! words per worker) about once a second and again just before it answers `/stats?all=1`,
//! which sums every live worker's slot (`summed_json`). Reading shared memory is a few loads,
//! no system call and no disk: nothing blocks the loop. A worker that exits has its slot cleared
//! by the supervisor, so its counters leave the sum (totals are since each live worker started).

use crate::runtime::{Census, LoopMetrics};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Open connections per protocol, in the order `/stats` lists them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// HTTP connections (not upgraded).
    pub http: usize,
    /// WebSocket connections.
    pub ws: usize,
    /// Line connections.
    pub line: usize,
    /// Hello connections.
    pub hello: usize,
}

impl Connections {
    fn values(&self) -> [usize; 4] {
        [self.http, self.ws, self.line, self.hello]
    }
}

/// The Redis relay's figures (`--redis` only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayFigures {
    /// Both links up.
    pub connected: bool,
    /// Messages handed to Redis (answered by it).
    pub published: u64,
    /// Messages from other processes delivered here.
    pub received: u64,
    /// Messages that could not be relayed.
    pub unrelayed: u64,
    /// `PUBLISH`es sent and not yet answered.
    pub in_flight: u64,
    /// Each link's state (subscriber, publisher), as indices into the relay's `LINK_STATES`.
    pub links: [usize; 2],
}

/// Everything `/stats` reports about this process, as plain numbers.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Open connections per protocol.
    pub connections: Connections,
    /// Connections accepted since start.
    pub accepted_total: u64,
    /// Bytes read from sockets.
    pub bytes_read: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Loop iterations.
    pub loop_iterations: u64,
    /// Bytes of unfinished input held now (against `--max-buffered`).
    pub input_buffered: u64,
    /// Connections closed to keep the input budget.
    pub closed_over_budget: u64,
    /// Background tasks accepted since start.
    pub tasks_queued: u64,
    /// Tasks accepted and not yet done or failed.
    pub tasks_in_flight: u64,
    /// Tasks done.
    pub tasks_done: u64,
    /// Tasks failed.
    pub tasks_failed: u64,
    /// Log records dropped because the log output could not keep up (`crate::logging`; 0 when
    /// no sink is installed).
    pub log_dropped: u64,
    /// Seconds since the loop started.
    pub uptime_s: f64,
    /// The Redis relay, with `--redis`.
    pub relay: Option<RelayFigures>,
    /// Outgoing connections open (the Redis links).
    pub open_outgoing: u64,
    /// The loop's accept, close, write and iteration figures (for `/metrics`).
    pub loop_metrics: LoopMetrics,
    /// The connections' phases and queues, counted when the snapshot was taken.
    pub census: Census,
    /// Upload tasks not finished, by state (queued, running, sealed), with `http`.
    pub tasks_unfinished: [u64; 3],
    /// `/ws` clients cut off as slow consumers (close 1008).
    pub ws_slow_consumers: u64,
}

/// The `GET /stats` body of this process.
pub fn json(s: &Snapshot) -> String {
    let c = s.connections;
    let mut out = format!(
        "{{\"connections\": {{\"http\": {}, \"ws\": {}, \"line\": {}, \"hello\": {}}}, \
         \"accepted_total\": {}, \"bytes_read\": {}, \"bytes_written\": {}, \
         \"loop_iterations\": {}, \"tasks_queued\": {}, \"tasks_in_flight\": {}, \
         \"tasks_done\": {}, \"tasks_failed\": {}, \"input_buffered\": {}, \
         \"closed_over_budget\": {}, \"log_dropped\": {}, \"uptime_s\": {:.3}, \"pid\": {}",
        c.http,
        c.ws,
        c.line,
        c.hello,
        s.accepted_total,
        s.bytes_read,
        s.bytes_written,
        s.loop_iterations,
        s.tasks_queued,
        s.tasks_in_flight,
        s.tasks_done,
        s.tasks_failed,
        s.input_buffered,
        s.closed_over_budget,
        s.log_dropped,
        s.uptime_s,
        std::process::id(),
    );
    if let Some(r) = &s.relay {
        out += &format!(
            ", \"redis_connected\": {}, \"redis_unrelayed\": {}, \"redis_published\": {}, \"redis_received\": {}",
            r.connected, r.unrelayed, r.published, r.received
        );
    }
    out.push('}');
    out
}

/// 64-bit words of a slot for `/stats`: 24 (192 bytes, three cache lines), of which 17 are used
/// (indices below) and the rest are room for more counters.
const STATS_WORDS: usize = 24;
/// 64-bit words of a slot for the worker's `/metrics` series, flattened (`service::metrics`):
/// 256 (2 KiB), room for the ~170 words every family takes today with every feature on.
pub const METRIC_WORDS: usize = 256;
/// 64-bit words per worker slot: the `/stats` words, then the `/metrics` words.
const SLOT_WORDS: usize = STATS_WORDS + METRIC_WORDS;
const W_METRICS: usize = STATS_WORDS;
const W_PID: usize = 0;
const W_PUBLISHED_MS: usize = 1;
const W_STARTED_MS: usize = 2;
/// Open connections per protocol: http, ws, line, hello (the order of `/stats`).
const W_CONNS: usize = 3;
const CONN_NAMES: [&str; 4] = ["http", "ws", "line", "hello"];
const W_ACCEPTED: usize = 7;
const W_READ: usize = 8;
const W_WRITTEN: usize = 9;
const W_ITERATIONS: usize = 10;
const W_TASKS_QUEUED: usize = 11;
const W_TASKS_IN_FLIGHT: usize = 12;
const W_TASKS_DONE: usize = 13;
const W_TASKS_FAILED: usize = 14;
/// Written by the parent: how many times this slot's worker was restarted.
const W_RESTARTS: usize = 15;
const W_LOG_DROPPED: usize = 16;
/// The summed counters, with their `/stats` names.
const SUMMED: [(&str, usize); 9] = [
    ("accepted_total", W_ACCEPTED),
    ("bytes_read", W_READ),
    ("bytes_written", W_WRITTEN),
    ("loop_iterations", W_ITERATIONS),
    ("tasks_queued", W_TASKS_QUEUED),
    ("tasks_in_flight", W_TASKS_IN_FLIGHT),
    ("tasks_done", W_TASKS_DONE),
    ("tasks_failed", W_TASKS_FAILED),
    ("log_dropped", W_LOG_DROPPED),
];

/// One slot of counters per worker in memory shared by the supervisor and all workers (a `memfd`
/// mapped `MAP_SHARED`). Every word is an `AtomicU64`; a reader may see one worker's words from
/// two different publications, which is fine for counters.
pub struct SharedStats {
    words: &'static [AtomicU64],
}

impl SharedStats {
    /// Creates the memory for `workers` slots (zeroed); the fd is inherited by the workers.
    pub fn create(workers: usize) -> io::Result<(OwnedFd, SharedStats)> {
        // SAFETY: the name is a valid C string; the returned fd (if any) is ours.
        let fd = unsafe { libc::memfd_create(c"readyloop-stats".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = workers * SLOT_WORDS * 8;
        // SAFETY: ftruncate on our own fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let stats = SharedStats::map(fd.as_raw_fd())?;
        Ok((fd, stats))
    }

    /// Maps the whole of `fd` (its size says how many slots there are). The mapping lives as
    /// long as the process.
    fn map(fd: RawFd) -> io::Result<SharedStats> {
        // SAFETY: fstat writes into the struct we pass.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = st.st_size as usize;
        if len == 0 || len % (SLOT_WORDS * 8) != 0 {
            return Err(io::Error::other(format!("stats fd {fd}: size {len}")));
        }
        // SAFETY: a shared read-write mapping of a file we may read and write; we never unmap
        // it, so the `'static` slice stays valid. The memory is only accessed as atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ptr` is page-aligned, `len` bytes long, zero-initialised or written only
        // through atomics by the other processes; AtomicU64 has the layout of u64.
        let words = unsafe { std::slice::from_raw_parts(ptr as *const AtomicU64, len / 8) };
        Ok(SharedStats { words })
    }

    /// How many worker slots there are.
    pub fn slots(&self) -> usize {
        self.words.len() / SLOT_WORDS
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        &self.words[i * SLOT_WORDS..(i + 1) * SLOT_WORDS]
    }

    fn get(&self, i: usize, w: usize) -> u64 {
        self.slot(i)[w].load(Ordering::Relaxed)
    }

    /// Records how many times slot `i`'s worker was restarted (the supervisor's word).
    pub fn set_restarts(&self, i: usize, restarts: u64) {
        self.slot(i)[W_RESTARTS].store(restarts, Ordering::Relaxed);
    }

    /// Slot `i`'s figures in words, for the supervisor's SIGUSR1 report.
    pub fn describe(&self, i: usize) -> String {
        let conns: Vec<String> = CONN_NAMES
            .iter()
            .enumerate()
            .map(|(k, n)| format!("{n} {}", self.get(i, W_CONNS + k)))
            .collect();
        format!(
            "restarts {}, connections {}, accepted {}, read {} B, written {} B, log dropped {}",
            self.get(i, W_RESTARTS),
            conns.join(" "),
            self.get(i, W_ACCEPTED),
            self.get(i, W_READ),
            self.get(i, W_WRITTEN),
            self.get(i, W_LOG_DROPPED),
        )
    }

    /// Zeroes slot `i` (its worker exited), all but the restart count.
    pub fn clear(&self, i: usize) {
        for (k, w) in self.slot(i).iter().enumerate() {
            if k != W_RESTARTS {
                w.store(0, Ordering::Relaxed);
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This worker's index and the shared slots (set once, in workers only).
static WORKER: OnceLock<(usize, SharedStats)> = OnceLock::new();

/// In a worker process: maps the stats memory inherited as `fd` and takes slot `index`.
pub fn join(index: usize, fd: RawFd) -> io::Result<()> {
    let stats = SharedStats::map(fd)?;
    if index >= stats.slots() {
        return Err(io::Error::other(format!(
            "worker index {index} but {} slots",
            stats.slots()
        )));
    }
    let slot = stats.slot(index);
    slot[W_PID].store(u64::from(std::process::id()), Ordering::Relaxed);
    slot[W_STARTED_MS].store(unix_ms(), Ordering::Relaxed);
    let _ = WORKER.set((index, stats));
    Ok(())
}

/// Writes this worker's snapshot into its slot (nothing outside a worker).
pub fn publish(s: &Snapshot) {
    let Some((index, stats)) = WORKER.get() else {
        return;
    };
    let slot = stats.slot(*index);
    let set = |w: usize, v: u64| slot[w].store(v, Ordering::Relaxed);
    for (i, n) in s.connections.values().into_iter().enumerate() {
        set(W_CONNS + i, n as u64);
    }
    set(W_ACCEPTED, s.accepted_total);
    set(W_READ, s.bytes_read);
    set(W_WRITTEN, s.bytes_written);
    set(W_ITERATIONS, s.loop_iterations);
    set(W_TASKS_QUEUED, s.tasks_queued);
    set(W_TASKS_IN_FLIGHT, s.tasks_in_flight);
    set(W_TASKS_DONE, s.tasks_done);
    set(W_TASKS_FAILED, s.tasks_failed);
    set(W_LOG_DROPPED, s.log_dropped);
    set(W_PID, u64::from(std::process::id()));
    set(W_PUBLISHED_MS, unix_ms());
}

/// Writes this worker's `/metrics` series, flattened, into its slot (nothing outside a worker;
/// words past `METRIC_WORDS` are dropped).
pub fn publish_metric_words(words: &[u64]) {
    let Some((index, stats)) = WORKER.get() else {
        return;
    };
    let slot = &stats.slot(*index)[W_METRICS..];
    for (w, &v) in slot.iter().zip(words) {
        w.store(v, Ordering::Relaxed);
    }
}

/// One live worker's `/metrics` words, as `workers_metric_words` reads them.
#[derive(Debug, Clone)]
pub struct WorkerWords {
    /// The worker's index (its slot).
    pub index: usize,
    /// How many times the supervisor restarted this slot's worker.
    pub restarts: u64,
    /// Its flattened `/metrics` series (`METRIC_WORDS` of them).
    pub words: Vec<u64>,
}

/// In a worker: this worker's index, the number of slots, and every live worker's `/metrics`
/// words. `None` outside a worker.
pub fn workers_metric_words() -> Option<(usize, usize, Vec<WorkerWords>)> {
    let (me, stats) = WORKER.get()?;
    let live = (0..stats.slots())
        .filter(|&i| stats.get(i, W_PID) != 0)
        .map(|i| WorkerWords {
            index: i,
            restarts: stats.get(i, W_RESTARTS),
            words: stats.slot(i)[W_METRICS..]
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .collect(),
        })
        .collect();
    Some((*me, stats.slots(), live))
}

/// This worker's index, `None` outside a worker.
pub fn worker_index() -> Option<usize> {
    WORKER.get().map(|(i, _)| *i)
}

/// `GET /stats?all=1` in a worker: every live worker's counters summed, and each worker's own
/// under `per_worker`. `None` outside a worker (plain `/stats` is the whole story then).
pub fn all_json(s: &Snapshot) -> Option<String> {
    let (me, stats) = WORKER.get()?;
    publish(s);
    Some(summed_json(stats, Some(*me)))
}

/// Every live worker's figures summed, and each one's under `per_worker` (`me`: the worker
/// answering, reported as `answered_by`).
pub fn summed_json(stats: &SharedStats, me: Option<usize>) -> String {
    let now = unix_ms();
    let live: Vec<usize> = (0..stats.slots())
        .filter(|&i| stats.get(i, W_PID) != 0)
        .collect();
    let sum = |w: usize| live.iter().map(|&i| stats.get(i, w)).sum::<u64>();
    let conns = |f: &dyn Fn(usize) -> u64| {
        CONN_NAMES
            .iter()
            .enumerate()
            .map(|(k, name)| format!("\"{name}\": {}", f(W_CONNS + k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let uptime = |i: usize| now.saturating_sub(stats.get(i, W_STARTED_MS)) as f64 / 1000.0;
    let mut out = format!(
        "{{\"workers\": {}, \"workers_live\": {}, \"answered_by\": {}, \"connections\": {{{}}}",
        stats.slots(),
        live.len(),
        me.map_or("null".to_string(), |i| i.to_string()),
        conns(&sum)
    );
    for (name, w) in SUMMED {
        out += &format!(", \"{name}\": {}", sum(w));
    }
    let oldest = live.iter().map(|&i| uptime(i)).fold(0.0, f64::max);
    out += &format!(", \"uptime_s\": {oldest:.3}, \"per_worker\": [");
    for (n, &i) in live.iter().enumerate() {
        let one = |w: usize| stats.get(i, w);
        out += &format!(
            "{}{{\"worker\": {i}, \"pid\": {}, \"restarts\": {}, \"age_ms\": {}, \"uptime_s\": {:.3}, \"connections\": {{{}}}",
            if n > 0 { ", " } else { "" },
            one(W_PID),
            one(W_RESTARTS),
            now.saturating_sub(one(W_PUBLISHED_MS)),
            uptime(i),
            conns(&one)
        );
        for (name, w) in SUMMED {
            out += &format!(", \"{name}\": {}", one(w));
        }
        out += "}";
    }
    out += "]}";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summed_view_adds_live_workers_only() {
        let (_fd, stats) = SharedStats::create(3).unwrap();
        assert_eq!(stats.slots(), 3);
        for (i, pid) in [(0, 100u64), (2, 102)] {
            let slot = stats.slot(i);
            slot[W_PID].store(pid, Ordering::Relaxed);
            slot[W_STARTED_MS].store(unix_ms(), Ordering::Relaxed);
            slot[W_CONNS + 2].store(10 + i as u64, Ordering::Relaxed); // line
            slot[W_ACCEPTED].store(1000, Ordering::Relaxed);
            slot[W_LOG_DROPPED].store(5 + i as u64, Ordering::Relaxed);
        }
        // Slot 1 holds a dead worker's leftovers, cleared by the parent.
        stats.slot(1)[W_ACCEPTED].store(7, Ordering::Relaxed);
        stats.slot(1)[W_LOG_DROPPED].store(7, Ordering::Relaxed);
        stats.clear(1);
        let json = summed_json(&stats, Some(2));
        assert!(
            json.starts_with("{\"workers\": 3, \"workers_live\": 2, \"answered_by\": 2"),
            "{json}"
        );
        assert!(json.contains("\"line\": 22"), "{json}");
        assert!(json.contains("\"accepted_total\": 2000"), "{json}");
        assert!(json.contains("\"log_dropped\": 12"), "{json}");
        assert!(
            json.contains("\"pid\": 100") && json.contains("\"pid\": 102"),
            "{json}"
        );
        assert!(!json.contains("\"worker\": 1,"), "{json}");
    }
}

//! A log sink that never blocks the thread that logs: formatted records go into a queue bounded
//! in bytes, and a thread of the sink's own writes them out, blocking on the output if it must.
//!
//! Why: the loop logs on its own thread, and a write to stderr blocks once the pipe behind it
//! is full (64 KiB on Linux) and nobody reads it — systemd, docker, `| tee` to a slow disk, a
//! terminal scrolled back. A blocked log write stops every connection, and a client could cause
//! it on purpose by doing whatever gets logged. Here, a record that does not fit in the queue is
//! dropped and counted ([`LogSink::dropped`], `log_dropped` in `/stats`); once a write succeeds
//! again, the sink writes one line saying how many records were lost. The log is allowed to be
//! incomplete; the server is not allowed to stop.
//!
//! What the logging thread pays per record: one uncontended mutex and a copy of the record into
//! the queue; a wake-up of the writer (a `futex` call) only for the first record after a quiet
//! spell, because a writer that just wrote lingers a millisecond and takes what came meanwhile
//! in one batch (`LINGER`). The writer holds the mutex only to swap the queue for its empty
//! spare and to count written bytes, never while it writes, so the logging thread never waits
//! behind the output.
//!
//! The sink knows nothing of levels or formats: a logger (the binary's `env_logger`) filters and
//! formats, and hands each whole record to [`SinkWriter`], its `io::Write` end. Embedders can do
//! the same with their own logger, or call [`LogSink::push`].

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of records a sink holds at most, queued and being written: 1 MiB, about 10,000 lines
/// of 100 bytes. Enough to ride out a reader that pauses for seconds (a busy journald, a
/// terminal being scrolled) without losing a line; small enough that a reader that is gone for
/// good costs a small host little: the queue and the batch being written are two buffers, each
/// allocated to at most this size.
pub const CAPACITY: usize = 1 << 20;

/// The writer keeps an empty spare buffer of at most this capacity between bursts: 64 KiB (one
/// pipe's worth). A bigger one, left by a burst, is shrunk back once written, so an idle sink
/// holds little memory.
const KEEP_SPARE: usize = 64 * 1024;

/// While records keep coming, the writer takes the queue at most once a millisecond (sooner
/// when `WRITE_AT` bytes wait): a stream of records goes out in one `write` a millisecond
/// instead of one `write`, and one wake-up of the writer, a record. A lone record still goes
/// out at once; a stream reaches the output at most 1 ms later than it would one by one.
const LINGER: Duration = Duration::from_millis(1);

/// Bytes waiting that the writer takes at once, lingering or not: 64 KiB, a pipe's worth.
const WRITE_AT: usize = 64 * 1024;

/// How long the writer waits before trying again when the output says `WouldBlock` (a stderr
/// that another process sharing it set non-blocking): 10 ms, long enough not to spin a core,
/// short next to how long a human or a log collector takes to notice.
const WOULD_BLOCK_RETRY: Duration = Duration::from_millis(10);

/// Builds the line the sink writes after losing `n` records (see [`LogSink::with_dropped_line`]).
type DroppedLine = Box<dyn Fn(u64) -> String + Send>;

/// The text of the warning after `n` records were dropped, without a header or a newline, for
/// a [`LogSink::with_dropped_line`] that adds the header of its own log format.
pub fn dropped_message(n: u64) -> String {
    let records = if n == 1 { "record" } else { "records" };
    format!("{n} log {records} dropped: the log output could not keep up")
}

/// The warning line of [`LogSink::new`]: `[WARN  readyloop::log] N log records dropped: …`,
/// shaped like `env_logger`'s lines.
pub fn default_dropped_line(n: u64) -> String {
    format!("[WARN  readyloop::log] {}\n", dropped_message(n))
}

/// A non-blocking log sink: a bounded queue and the thread that writes it out.
///
/// Dropping it lets the writer thread finish what is queued and end; records pushed after that
/// through a [`SinkWriter`] are dropped and counted. A process-wide sink is [`install`]ed and
/// lives until the process exits.
pub struct LogSink {
    shared: Arc<Shared>,
}

/// What the logging threads and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// The writer thread sleeps here while the queue is empty.
    work: Condvar,
    /// `flush` callers sleep here until everything queued is written.
    idle: Condvar,
    /// Records dropped since the sink started (read without the lock, for `/stats`).
    dropped: AtomicU64,
    /// The byte bound on `State::held`.
    capacity: usize,
}

/// The queue and its accounting, under `Shared::state`.
struct State {
    /// Whole records, back to back, not yet taken by the writer.
    queue: Vec<u8>,
    /// Records in `queue`.
    records: u64,
    /// Bytes of `queue` plus bytes of the writer's batch not yet written: the bounded figure.
    held: usize,
    /// Records dropped and not yet told in a warning line.
    unreported: u64,
    /// The last write succeeded: a warning about `unreported` records is due now, not only
    /// with the next record.
    healthy: bool,
    /// The writer has a batch (or a warning line) in hand.
    busy: bool,
    /// The writer is asleep on `work`: the next push must wake it.
    writer_asleep: bool,
    /// Threads waiting in `flush`.
    flushers: usize,
    /// The `LogSink` is gone: the writer ends once the queue is empty.
    closed: bool,
}

impl State {
    /// Whether the writer has something to do: records to write, or drops to tell of to an
    /// output that works.
    fn has_work(&self) -> bool {
        !self.queue.is_empty() || (self.unreported > 0 && self.healthy)
    }
}

impl LogSink {
    /// A sink holding at most `capacity` bytes of records, written to `out` by a new thread,
    /// with [`default_dropped_line`] as its warning after drops. `readyloop`'s binary uses
    /// `io::stderr()` and [`CAPACITY`], with a warning line in its own format.
    pub fn new<W: Write + Send + 'static>(out: W, capacity: usize) -> io::Result<LogSink> {
        LogSink::with_dropped_line(out, capacity, default_dropped_line)
    }

    /// Like [`new`](LogSink::new), with `dropped_line(n)` as the line written after `n` records
    /// were dropped, as soon as the output takes bytes again. It is written by the sink itself,
    /// past any logger's filter (it reports what the log never got), right after the records
    /// that were queued before the drops. It should end with `\n`.
    pub fn with_dropped_line<W, F>(out: W, capacity: usize, dropped_line: F) -> io::Result<LogSink>
    where
        W: Write + Send + 'static,
        F: Fn(u64) -> String + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Vec::new(),
                records: 0,
                held: 0,
                unreported: 0,
                healthy: true,
                busy: false,
                writer_asleep: false,
                flushers: 0,
                closed: false,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            dropped: AtomicU64::new(0),
            capacity,
        });
        let theirs = shared.clone();
        let dropped_line: DroppedLine = Box::new(dropped_line);
        thread::Builder::new()
            .name("readyloop-log".into())
            .spawn(move || write_loop(&theirs, out, &dropped_line))?;
        Ok(LogSink { shared })
    }

    /// Queues one whole record without blocking; `false` if it was dropped (and counted)
    /// because the queue has no room for it.
    pub fn push(&self, record: &[u8]) -> bool {
        self.shared.push(record)
    }

    /// The `io::Write` end for a logger: each `write` call is one record, queued whole or
    /// dropped whole, and always reported fully written (a dropped record is counted, not an
    /// error). `env_logger`'s `Target::Pipe` fits: it formats a record into a buffer of its
    /// own, then hands it over with one `write_all`, which is one `write` here.
    pub fn writer(&self) -> SinkWriter {
        SinkWriter {
            shared: self.shared.clone(),
        }
    }

    /// Records dropped since the sink started: they did not fit, or their write failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is written, and the warning about any drops, at
    /// most `timeout`; `true` if it was. For the end of `main`: a normal exit loses no record
    /// unless the output stays blocked for the whole `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        st.flushers += 1;
        let done = loop {
            if !st.busy && !st.has_work() {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            st = match self.shared.idle.wait_timeout(st, left) {
                Ok((st, _)) => st,
                Err(poisoned) => poisoned.into_inner().0,
            };
        };
        st.flushers -= 1;
        done
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
    }
}

/// The `io::Write` end of a [`LogSink`] (see [`LogSink::writer`]).
#[derive(Clone)]
pub struct SinkWriter {
    shared: Arc<Shared>,
}

impl Write for SinkWriter {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        self.shared.push(record);
        Ok(record.len())
    }

    /// Returns at once: waiting for the output is what this sink exists to avoid.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    /// The state, whatever a panicking thread left (every update of it is a complete one).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, record: &[u8]) -> bool {
        let mut st = self.lock();
        let fits = !st.closed && record.len() <= self.capacity - st.held;
        if fits {
            // Grow by doubling, as `Vec` does, but never past the capacity.
            let need = st.queue.len() + record.len();
            if need > st.queue.capacity() {
                let grown = need.max(2 * st.queue.capacity()).min(self.capacity);
                let more = grown - st.queue.len();
                st.queue.reserve_exact(more);
            }
            st.queue.extend_from_slice(record);
            st.held += record.len();
            st.records += 1;
        } else {
            st.unreported += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Only a writer that sleeps needs the wake-up (a system call): a busy one looks at the
        // queue again before it sleeps.
        let wake = std::mem::take(&mut st.writer_asleep);
        drop(st);
        if wake {
            self.work.notify_one();
        }
        fits
    }
}

/// The writer thread: take the whole queue as one batch (lingering first, see `LINGER`), write
/// it (blocking as long as the output does), then the warning about the drops that happened before the batch was taken;
/// repeat. Drops while a batch is being written are told after the next batch, which may be
/// empty: the warning comes as soon as the output takes bytes again, not with the next record.
fn write_loop<W: Write>(sh: &Shared, mut out: W, dropped_line: &DroppedLine) {
    let mut batch: Vec<u8> = Vec::new();
    let mut last_take: Option<Instant> = None;
    loop {
        let (records, report) = {
            let mut st = sh.lock();
            loop {
                while !st.has_work() {
                    if st.closed {
                        return;
                    }
                    st.writer_asleep = true;
                    st = sh.work.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                st.writer_asleep = false;
                // Linger (see `LINGER`): asleep in `thread::sleep`, not on `work`, so the
                // records that come meanwhile cost their senders no wake-up.
                let since = last_take.map_or(LINGER, |t| t.elapsed());
                if since >= LINGER || st.queue.len() >= WRITE_AT || st.closed {
                    break;
                }
                drop(st);
                thread::sleep(LINGER - since);
                st = sh.lock();
            }
            last_take = Some(Instant::now());
            st.busy = true;
            std::mem::swap(&mut st.queue, &mut batch);
            (
                std::mem::take(&mut st.records),
                std::mem::take(&mut st.unreported),
            )
        };
        // The bound frees up as the bytes go out, not only once the whole batch is out.
        let release = |n: usize| sh.lock().held -= n;
        let batch_out = write_all(&mut out, &batch, release);
        if let Err(left) = batch_out {
            release(left);
            sh.dropped.fetch_add(records, Ordering::Relaxed);
        }
        let lost = if batch_out.is_ok() { 0 } else { records };
        let told = batch_out.is_ok()
            && (report == 0
                || write_all(&mut out, dropped_line(report).as_bytes(), |_| {}).is_ok());
        let mut st = sh.lock();
        st.healthy = told;
        if !told {
            st.unreported += report + lost; // told with the next warning that gets out
        }
        st.busy = false;
        if st.flushers > 0 && !st.has_work() {
            sh.idle.notify_all();
        }
        drop(st);
        batch.clear();
        batch.shrink_to(KEEP_SPARE);
    }
}

/// Writes all of `buf`, calling `progress(n)` after every `n` bytes that went out; on a failure,
/// `Err(bytes not written)`. Waits out `WouldBlock` and retries `Interrupted`.
fn write_all<W: Write>(
    out: &mut W,
    mut buf: &[u8],
    mut progress: impl FnMut(usize),
) -> Result<(), usize> {
    while !buf.is_empty() {
        match out.write(buf) {
            Ok(0) => return Err(buf.len()),
            Ok(n) => {
                buf = &buf[n..];
                progress(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(WOULD_BLOCK_RETRY),
            Err(_) => return Err(buf.len()),
        }
    }
    out.flush().map_err(|_| 0)
}

/// The process' sink, once [`install`]ed.
static INSTALLED: OnceLock<LogSink> = OnceLock::new();

/// Makes `sink` the process' log sink, the one [`dropped`] reports on (and `/stats` with it),
/// for the rest of the process' life. `Err(sink)` if one is installed already.
pub fn install(sink: LogSink) -> Result<&'static LogSink, LogSink> {
    INSTALLED.set(sink)?;
    Ok(INSTALLED.get().expect("just set"))
}

/// The installed sink, if any.
pub fn installed() -> Option<&'static LogSink> {
    INSTALLED.get()
}

/// Records the installed sink dropped; 0 when none is installed (an embedder logging its own
/// way).
pub fn dropped() -> u64 {
    installed().map_or(0, LogSink::dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;

    /// How long a test waits for the writer thread before it fails: generous, for a loaded
    /// 2-core machine; a working sink takes microseconds.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Collected output, shared with the test.
    type Collected = Arc<Mutex<Vec<u8>>>;

    /// An output that takes nothing until the test opens it, then collects everything.
    struct Gate {
        open: mpsc::Receiver<()>,
        opened: bool,
        out: Collected,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.opened {
                self.open.recv().map_err(io::Error::other)?;
                self.opened = true;
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Record `i`: 100 bytes with its number, newline included.
    fn record(i: usize) -> Vec<u8> {
        let mut r = format!("record {i:05} ").into_bytes();
        r.resize(99, b'.');
        r.push(b'\n');
        r
    }

    fn text(out: &Collected) -> String {
        String::from_utf8_lossy(&out.lock().unwrap()).into_owned()
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_one_warning_follows_the_recovery() {
        let (open, gate) = mpsc::channel();
        let out = Collected::default();
        let gate = Gate {
            open: gate,
            opened: false,
            out: out.clone(),
        };
        // Room for exactly ten 100-byte records, queued or in the writer's hands.
        let sink = LogSink::new(gate, 1000).unwrap();
        for i in 0..10 {
            assert!(sink.push(&record(i)), "record {i} fits");
        }
        for i in 10..15 {
            assert!(!sink.push(&record(i)), "record {i} does not fit");
        }
        assert_eq!(sink.dropped(), 5);
        assert!(
            !sink.flush(Duration::from_millis(20)),
            "the output is blocked"
        );
        open.send(()).unwrap();
        assert!(sink.flush(PATIENCE), "drained once the output takes bytes");
        let mut want: Vec<u8> = (0..10).flat_map(record).collect();
        want.extend_from_slice(default_dropped_line(5).as_bytes());
        assert_eq!(text(&out), String::from_utf8_lossy(&want));

        // Healthy again: records pass and no second warning comes.
        out.lock().unwrap().clear();
        assert!(sink.push(&record(20)));
        assert!(sink.flush(PATIENCE));
        assert_eq!(text(&out), String::from_utf8_lossy(&record(20)));
        // A record over the capacity never fits; its loss is told at once, on its own.
        out.lock().unwrap().clear();
        assert!(!sink.push(&[b'x'; 1001]));
        assert!(sink.flush(PATIENCE));
        assert_eq!(text(&out), default_dropped_line(1));
        assert_eq!(sink.dropped(), 6);
    }

    #[test]
    fn a_pipe_nobody_reads_never_blocks_the_logger() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        // Fill the socket's buffer first (with empty lines), so the writer's first write blocks.
        ours.set_nonblocking(true).unwrap();
        while ours.write(&[b'\n'; 4096]).is_ok() {}
        ours.set_nonblocking(false).unwrap();
        let sink = LogSink::new(ours, 64 * 1024).unwrap();
        // A push that blocked would hang, so the pushes run on a thread the test waits for.
        let (done, finished) = mpsc::channel();
        let mut writer = sink.writer();
        thread::spawn(move || {
            // 1 MB of records into 64 KiB of queue.
            for i in 0..10_000 {
                writer.write_all(&record(i)).unwrap();
            }
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(PATIENCE)
            .expect("pushing never blocks");
        let dropped = sink.dropped();
        assert!(
            dropped >= 10_000 - 656,
            "at most 64 KiB kept: {dropped} dropped"
        );
        // Now read: what was kept arrives whole and in order, and the drops are told.
        theirs.set_read_timeout(Some(PATIENCE)).unwrap();
        let (lines_tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(&mut theirs).lines() {
                let _ = lines_tx.send(line.unwrap());
            }
        });
        let (mut last, mut told, mut warnings) = (None, 0, 0);
        while told < dropped {
            let line = lines
                .recv_timeout(PATIENCE)
                .expect("lines until every drop is told");
            if line.is_empty() {
                continue; // the filler
            }
            if let Some(n) = line.strip_prefix("[WARN  readyloop::log] ") {
                told += n.split(' ').next().unwrap().parse::<u64>().unwrap();
                warnings += 1;
                continue;
            }
            assert!(line.starts_with("record ") && line.len() == 99, "{line:?}");
            let i: usize = line[7..12].parse().unwrap();
            assert!(last < Some(i), "in order: {last:?} then {i}");
            last = Some(i);
        }
        assert_eq!(told, dropped);
        // The writer blocked on its first record, so the drops come in one run: one warning
        // (two if it was so late to take its first batch that drops had begun already).
        assert!((1..=2).contains(&warnings), "{warnings} warnings");
        assert!(sink.flush(PATIENCE));
        assert!(
            lines.recv_timeout(Duration::from_millis(100)).is_err(),
            "nothing more"
        );
    }

    #[test]
    fn partial_and_would_block_writes_keep_records_whole() {
        /// Takes at most 7 bytes a call, and says `WouldBlock` every third call.
        struct Trickle(Collected, usize);
        impl Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.1 += 1;
                if self.1 % 3 == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(7);
                self.0.lock().unwrap().extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out = Collected::default();
        let sink = LogSink::new(Trickle(out.clone(), 0), CAPACITY).unwrap();
        for i in 0..5 {
            assert!(sink.push(&record(i)));
        }
        assert!(sink.flush(PATIENCE));
        let want: Vec<u8> = (0..5).flat_map(record).collect();
        assert_eq!(text(&out), String::from_utf8_lossy(&want));
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn a_failing_output_counts_its_records_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = LogSink::new(Broken, CAPACITY).unwrap();
        for i in 0..3 {
            assert!(sink.push(&record(i)), "queued; the write fails later");
        }
        assert!(
            sink.flush(PATIENCE),
            "a failed write is done with, not retried"
        );
        assert_eq!(sink.dropped(), 3);
    }
}

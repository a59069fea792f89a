//! Samples of the loop's own trace log for the `/loop` page: a logger that wraps the real one
//! and, only when asked, keeps the next few `readyloop::io` records in a small ring.
//!
//! Why this way: the page's list of loop events must read exactly like the trace log, and the
//! surest way to be the trace log is to be its records. Nothing is captured, and the log level
//! is not touched, until `arm` is called: the global `log::max_level` stays at what `RUST_LOG`
//! asked for, so the `trace!` calls on the loop's hot path stay one compare of a static. `arm(n)`
//! (the inspector calls it once per frame, 10 times a second, only while someone watches)
//! raises the level to `Trace` until `n` more records of `readyloop::io` have been kept, then
//! puts it back from inside the logger. So a watched loop pays for `n` formatted lines per frame,
//! however busy it is, and an unwatched one pays nothing. Records the real logger wants still go
//! to it whatever happens here.
//!
//! Lines naming a connection in `skip` (the watchers' own: their frames would otherwise fill
//! the sample with their own writes) are dropped. Every kept line is cut to `MAX_LINE` bytes.

use log::{LevelFilter, Log, Metadata, Record};
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The target whose records are sampled: the loop's per-syscall narration.
pub const TARGET: &str = "readyloop::io";
/// Lines the ring keeps at most: 64 (with `MAX_LINE`, at most 10 KiB).
pub const RING: usize = 64;
/// Bytes of one kept line at most: 160, a long trace line with a peer address.
pub const MAX_LINE: usize = 160;

/// A logger that samples `readyloop::io` records when armed, and passes every record the inner
/// logger wants to it.
pub struct Capturing {
    inner: Box<dyn Log>,
    /// The level the inner logger asked for, restored when a sample is complete.
    inner_max: LevelFilter,
}

struct Shared {
    /// Records still to keep in this sample (0: not armed).
    quota: AtomicUsize,
    /// Set once a `Capturing` logger is installed.
    installed: AtomicBool,
    inner_max: OnceLock<LevelFilter>,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<String>,
    /// Prefixes of lines not kept (`"conn 7 "` for watcher 7).
    skip: Vec<String>,
}

static SHARED: Shared = Shared {
    quota: AtomicUsize::new(0),
    installed: AtomicBool::new(false),
    inner_max: OnceLock::new(),
    ring: Mutex::new(Ring {
        lines: VecDeque::new(),
        skip: Vec::new(),
    }),
};

impl Capturing {
    /// Wraps `inner`, which filters at `inner_max` (what `log::set_max_level` would be without
    /// this wrapper).
    pub fn new(inner: Box<dyn Log>, inner_max: LevelFilter) -> Capturing {
        Capturing { inner, inner_max }
    }

    /// Installs this as the global logger with `inner_max` as the level.
    pub fn install(self) -> Result<(), log::SetLoggerError> {
        let max = self.inner_max;
        // Leaked: the global logger lives as long as the process (what `set_boxed_logger` does,
        // without needing log's `std` feature).
        log::set_logger(Box::leak(Box::new(self)))?;
        log::set_max_level(max);
        let _ = SHARED.inner_max.set(max);
        SHARED.installed.store(true, Ordering::Release);
        Ok(())
    }
}

fn sampled(metadata: &Metadata<'_>) -> bool {
    metadata.target() == TARGET && SHARED.quota.load(Ordering::Relaxed) > 0
}

impl Log for Capturing {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        sampled(metadata) || self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if sampled(record.metadata()) {
            keep(record);
        }
        if self.inner.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn keep(record: &Record<'_>) {
    let mut line = String::new();
    let _ = write!(line, "{}", record.args());
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    let Ok(mut ring) = SHARED.ring.lock() else {
        return;
    };
    if ring.skip.iter().any(|p| line.starts_with(p.as_str())) {
        return;
    }
    if ring.lines.len() == RING {
        ring.lines.pop_front();
    }
    ring.lines.push_back(line);
    drop(ring);
    // The last line of the sample puts the level back: the rest of the frame costs nothing.
    let before = SHARED
        .quota
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| q.checked_sub(1))
        .unwrap_or(0);
    if before <= 1 {
        restore_level();
    }
}

fn restore_level() {
    if let Some(max) = SHARED.inner_max.get() {
        log::set_max_level(*max);
    }
}

/// True when a `Capturing` logger is installed (the binary installs one; an embedder may not).
pub fn installed() -> bool {
    SHARED.installed.load(Ordering::Acquire)
}

/// Keeps the next `n` `readyloop::io` records (raising the log level until they came). Does
/// nothing without a `Capturing` logger.
pub fn arm(n: usize) {
    if !installed() || n == 0 {
        return;
    }
    SHARED.quota.store(n, Ordering::Relaxed);
    log::set_max_level(LevelFilter::Trace);
}

/// Stops sampling and puts the level back (the last watcher left).
pub fn disarm() {
    SHARED.quota.store(0, Ordering::Relaxed);
    restore_level();
    if let Ok(mut ring) = SHARED.ring.lock() {
        ring.lines.clear();
        ring.lines.shrink_to_fit();
    }
}

/// Moves the lines kept so far into `out`, oldest first.
pub fn take(out: &mut Vec<String>) {
    if let Ok(mut ring) = SHARED.ring.lock() {
        out.extend(ring.lines.drain(..));
    }
}

/// Lines naming connection `key` (`conn KEY ...`) are not kept (`on`) or kept again (`!on`).
pub fn skip_conn(key: usize, on: bool) {
    if let Ok(mut ring) = SHARED.ring.lock() {
        let prefix = format!("conn {key} ");
        let colon = format!("conn {key}:");
        ring.skip.retain(|p| *p != prefix && *p != colon);
        if on {
            ring.skip.push(prefix);
            ring.skip.push(colon);
        }
    }
}

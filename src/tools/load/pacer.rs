//! The pacer: a thread that does nothing but sleep, precisely, until the next send of the
//! `--rate` schedule is due, and then wake the loop through its `Handle`.
//!
//! Why a thread, in a tool built on a single-threaded loop: the loop sleeps in `epoll_wait`,
//! whose timeout is in whole milliseconds (mio rounds up), so a loop that timed its own sends
//! would send each one up to 1 ms late, and, since the corrected latency counts from the
//! intended time, add that to every sample. That is wrk2's floor: its `ae` timers are whole
//! milliseconds too, ~0.5 ms of the tool's own lateness in each figure, more than a fast
//! server's whole answer on loopback. `clock_nanosleep` on an absolute `CLOCK_MONOTONIC`
//! deadline, with the thread's timer slack cut to 1 µs, wakes within microseconds; the wake-up
//! reaches the loop as a readiness event on its eventfd, and the loop, still the only thread
//! doing any I/O, sends what is due (`LoadClient::dispatch`). What lateness remains is measured
//! and reported (`send_lag_us`).

use super::client::mono_us;
use super::schedule::Schedule;
use crate::runtime::Handle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Least time between two wake-ups: 25 µs, so at most 40,000 per second. Above that rate each
/// wake-up carries several sends, which go out together, at most 25 µs late.
const MIN_GAP_US: u64 = 25;
/// Longest single sleep: 50 ms, so a stop (or a slow `--rate`) is noticed within that.
const MAX_SLEEP_US: u64 = 50_000;
/// Timer slack of the pacer thread: 1 µs instead of Linux's default 50 µs.
const TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// The running pacer; stopped and joined on drop.
pub struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Starts waking `handle`'s loop at each due time of `schedule`, counted from `t0_us`
    /// (`mono_us` time).
    pub fn start(schedule: Schedule, t0_us: u64, handle: Handle<()>) -> std::io::Result<Pacer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("load-pacer".into())
            .spawn(move || pace(schedule, t0_us, &handle, &flag))?;
        Ok(Pacer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pace(schedule: Schedule, t0_us: u64, handle: &Handle<()>, stop: &AtomicBool) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) changes only this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS) };
    let mut last_wake = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = mono_us();
        // The first send not yet due, and when it is.
        let next = schedule.due_by(now.saturating_sub(t0_us));
        let at = (t0_us + schedule.offset_us(next)).max(last_wake + MIN_GAP_US);
        let until = at.min(now + MAX_SLEEP_US);
        sleep_until_us(until);
        if until < at {
            continue; // a long wait, cut short to look at the stop flag
        }
        last_wake = at;
        if handle.send(()).is_err() {
            return; // the loop is gone
        }
    }
}

/// Sleeps until `mono_us() >= at`.
fn sleep_until_us(at: u64) {
    // The field types, not `libc::time_t` by name (deprecated on musl, whose `time_t` changes).
    let ts = libc::timespec {
        tv_sec: (at / 1_000_000) as _,
        tv_nsec: ((at % 1_000_000) * 1000) as _,
    };
    // SAFETY: clock_nanosleep reads `ts`; with TIMER_ABSTIME the remainder is not written.
    // EINTR (a signal) just ends the sleep early; the caller looks at the clock again.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

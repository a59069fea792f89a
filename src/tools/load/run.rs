//! The driver of one load process: it owns the `EventLoop` and turns the loop's crank with
//! `run_once`, doing between iterations what no callback can (callbacks cannot `connect`):
//!
//! 1. **Ramp**: start connections up to what `--rate` allows by now, up to `--conns`, each from
//!    the next `--src-ips` address.
//! 2. **Reopen** hello slots whose conversation ended (or failed and waited `RETRY_DELAY`).
//! 3. **Send** what the ws-broadcast schedule owes.
//! 4. **Progress**: one line per second on stderr.
//! 5. `run_once`, waiting at most `TICK` (1 ms while broadcasting) so the ramp and the
//!    schedule stay smooth.
//!
//! At `--duration` measuring stops: the report is taken (and the server's RSS sampled), every
//! connection is closed, and the loop runs until they are gone or `CLOSE_GRACE` passes.

use super::client::{mono_us, Conn, LoadClient};
use super::report::Report;
use super::{Mode, Opts};
use crate::runtime::{Config, EventLoop};
use std::io::Write;
use std::time::{Duration, Instant};

/// Longest wait in `poll` between driver steps.
const TICK: Duration = Duration::from_millis(10);
/// Wait while ws-broadcast sends, so a message goes out within ~1 ms of its schedule.
const SEND_TICK: Duration = Duration::from_millis(1);
/// ws-broadcast: how long after the ramp to wait for stragglers before sending anyway.
const SEND_START_GRACE: Duration = Duration::from_secs(3);
/// ws-broadcast: how long, after the last send, receivers may take to catch up.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the close-down may take before the remaining sockets are simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs one load process and returns its figures.
pub fn run(opts: &Opts) -> Result<Report, Box<dyn std::error::Error>> {
    let client = LoadClient::new(
        opts.mode,
        opts.addr,
        opts.conns as u64,
        opts.size,
        opts.pipeline,
        opts.ws_path(),
        opts.text,
        opts.child.unwrap_or(0) as u32,
        opts.senders,
        opts.msg_rate,
    );
    let config = Config {
        linger_timeout: Duration::from_secs(1),
        close_timeout: CLOSE_GRACE,
        ..Config::default()
    };
    let mut ev = EventLoop::new(client, config)?;
    let rss_start = opts.server_pid.and_then(|pid| sample_rss(pid, "start"));
    let tag = match opts.child {
        Some(i) => format!("load {} [proc {i}]", opts.mode.name()),
        None => format!("load {}", opts.mode.name()),
    };

    let start = Instant::now();
    let end = start + opts.duration;
    ev.handler_mut().first_started_us = mono_us();
    let mut started = 0usize;
    let mut next_src = opts.child.unwrap_or(0);
    let mut next_progress = start + Duration::from_secs(1);
    let mut last_msgs = 0u64;

    let mut connect = |ev: &mut EventLoop<LoadClient>, slot: u32, first: bool| {
        let src = if opts.src_ips.is_empty() {
            None
        } else {
            next_src = (next_src + 1) % opts.src_ips.len();
            Some(opts.src_ips[next_src])
        };
        if let Err(e) = ev.connect(opts.addr, src, Conn::new(slot, first)) {
            let h = ev.handler_mut();
            h.report.conns_failed += 1;
            h.report.error(&format!("connect: {:?}", e.kind()));
            if opts.mode == Mode::Hello {
                h.reopen
                    .push((slot, mono_us() + super::client::RETRY_DELAY_US));
            }
        }
    };

    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        // 1. Ramp.
        let allowed = if opts.rate > 0.0 {
            (((now - start).as_secs_f64() * opts.rate) as usize + 1).min(opts.conns)
        } else {
            opts.conns
        };
        while started < allowed {
            connect(&mut ev, started as u32, true);
            started += 1;
        }
        // Nothing left that could happen: every slot failed or was closed, and only hello
        // connects again. Stop now rather than wait out the duration.
        if opts.mode != Mode::Hello && started >= opts.conns && ev.stats().open_outgoing == 0 {
            break;
        }
        // 2. Reopen.
        if !ev.handler().reopen.is_empty() {
            let t = mono_us();
            let due: Vec<u32> = {
                let h = ev.handler_mut();
                let mut due = Vec::new();
                h.reopen.retain(|&(slot, at)| {
                    let ready = at <= t;
                    if ready {
                        due.push(slot);
                    }
                    !ready
                });
                due
            };
            for slot in due {
                connect(&mut ev, slot, false);
            }
        }
        // 3. Send.
        let broadcasting = opts.mode == Mode::WsBroadcast;
        if broadcasting {
            let anyway = started >= opts.conns
                && now.duration_since(start) > opts.ramp_time() + SEND_START_GRACE;
            ev.with_context(|h, cx| h.broadcast_tick(cx, anyway));
        }
        // 4. Progress.
        if now >= next_progress && !opts.quiet() {
            let h = ev.handler();
            let msgs = h.report.msgs;
            eprintln!(
                "{tag}: {:>3.0}s open {} ok {} failed {} errors {} msgs/s {}",
                (now - start).as_secs_f64(),
                h.open,
                h.report.conns_ok,
                h.report.conns_failed,
                h.report.error_count(),
                msgs - last_msgs
            );
            last_msgs = msgs;
            next_progress += Duration::from_secs(1);
        }
        // 5. One loop iteration.
        let mut wait = if broadcasting { SEND_TICK } else { TICK };
        wait = wait.min(end.saturating_duration_since(Instant::now()));
        ev.run_once(Some(wait))?;
    }

    // ws-broadcast: let the receivers catch up with what was sent.
    if opts.mode == Mode::WsBroadcast {
        let deadline = Instant::now() + DRAIN_GRACE;
        while Instant::now() < deadline && !ev.with_context(|h, cx| h.broadcast_caught_up(cx)) {
            ev.run_once(Some(TICK))?;
        }
        let missing = ev.with_context(|h, cx| h.missing_now(cx));
        if missing > 0 {
            *ev.handler_mut()
                .report
                .errors
                .entry("ws-broadcast: missing".into())
                .or_insert(0) += missing;
        }
    }

    // Measuring ends here.
    let elapsed = start
        .elapsed()
        .as_secs_f64()
        .min(opts.duration.as_secs_f64());
    let rss_end = opts.server_pid.and_then(|pid| sample_rss(pid, "end"));
    let (bytes_read, bytes_written) = (ev.stats().bytes_read, ev.stats().bytes_written);
    {
        let h = ev.handler_mut();
        h.report.elapsed_s = elapsed;
        h.report.conns_open = h.open;
        h.report.bytes_received = bytes_read;
        h.report.bytes_sent = bytes_written;
        if h.last_first_open_us > h.first_started_us {
            h.report.ramp_s = (h.last_first_open_us - h.first_started_us) as f64 / 1e6;
        }
        if let (Some(a), Some(b)) = (rss_start, rss_end) {
            h.report.server_rss = Some((a, b));
        }
    }
    ev.with_context(|h, cx| h.close_all(cx));
    let deadline = Instant::now() + CLOSE_GRACE;
    while ev.stats().open_outgoing > 0 && Instant::now() < deadline {
        ev.run_once(Some(TICK))?;
    }
    let _ = std::io::stderr().flush();
    let mut report = ev.handler().report.clone();
    report.conns = opts.conns as u64;
    Ok(report)
}

fn sample_rss(pid: u32, when: &str) -> Option<u64> {
    match crate::runtime::sys::rss_bytes(Some(pid)) {
        Ok(b) => Some(b),
        Err(e) => {
            log::warn!("cannot read RSS of pid {pid} at {when}: {e}");
            None
        }
    }
}

//! The driver of one load process: it owns the `EventLoop` and turns the loop's crank with
//! `run_once`, doing between iterations what belongs to no connection:
//!
//! 1. **Ramp**: start connections up to what `--connect-rate` (or `--ramp`) allows by now, up
//!    to `--conns`, each from the next `--src-ips` address.
//! 2. **Reopen** slots whose connection ended and whose retry time came (hello, http).
//! 3. **Send**: under `--rate`, start the timetable (and its pacer) once the connections are
//!    up, and make the sends that are due; for ws-broadcast, what its schedule owes.
//! 4. **Every second** (checked first): one timeline entry, and one progress line on stderr,
//!    the same for every mode: elapsed, connections, rate, p99 so far, errors (and, under
//!    `--rate`, sends that waited or are still due).
//! 5. `run_once`, waiting at most `TICK` (1 ms while broadcasting); the pacer's wake-ups end
//!    the wait early when a send is due.
//!
//! At `--duration` measuring stops: the report is taken (and the server's RSS sampled), every
//! connection is closed, and the loop runs until they are gone or `CLOSE_GRACE` passes. A run
//! also stops early when nothing more can happen: no connection ever succeeded and every slot
//! has failed once (an unreachable server), or every connection is gone in a mode that does not
//! connect again.

use super::client::{mono_us, LoadClient};
use super::opts::{Mode, Opts};
use super::pacer::Pacer;
use super::report::{fmt_us, Report};
use crate::runtime::{Config, EventLoop};
use std::io::Write;
use std::time::{Duration, Instant};

/// Longest wait in `poll` between driver steps.
const TICK: Duration = Duration::from_millis(10);
/// Wait while ws-broadcast sends, so a message goes out within ~1 ms of its schedule.
const SEND_TICK: Duration = Duration::from_millis(1);
/// How long after the connection ramp to wait for stragglers before the schedule (ws-broadcast,
/// `--rate`) starts anyway.
const SEND_START_GRACE: Duration = Duration::from_secs(3);
/// ws-broadcast: how long, after the last send, receivers may take to catch up.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the close-down may take before the remaining sockets are simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs one load process and returns its figures.
pub fn run(opts: &Opts) -> Result<Report, Box<dyn std::error::Error>> {
    let config = Config {
        linger_timeout: Duration::from_secs(1),
        close_timeout: CLOSE_GRACE,
        ..Config::default()
    };
    let mut ev = EventLoop::new(LoadClient::new(opts), config)?;
    let rss_start = opts.server_pid.and_then(|pid| sample_rss(pid, "start"));
    let tag = match opts.child {
        Some(i) => format!("load {} [proc {i}]", opts.mode.name()),
        None => format!("load {}", opts.mode.name()),
    };

    let start = Instant::now();
    let end = start + opts.duration;
    ev.handler_mut().first_started_us = mono_us();
    let mut started = 0usize;
    let mut next_second = start + Duration::from_secs(1);
    let mut pacer: Option<Pacer> = None;
    let connect_time = opts.connect_time();

    loop {
        let now = Instant::now();
        // 4. Every second (first, so the last whole second is in the timeline too).
        if now >= next_second {
            let h = ev.handler_mut();
            let sec = h.take_second();
            h.report.timeline.push(sec);
            if !opts.quiet {
                eprintln!("{}", progress(&tag, (now - start).as_secs(), opts, h, sec));
            }
            next_second += Duration::from_secs(1);
        }
        if now >= end {
            break;
        }
        let elapsed = now - start;
        // 1. Ramp.
        let allowed = if connect_time.is_zero() {
            opts.conns
        } else {
            ((elapsed.as_secs_f64() / connect_time.as_secs_f64() * opts.conns as f64) as usize + 1)
                .min(opts.conns)
        };
        if started < allowed {
            ev.with_context(|h, cx| {
                for slot in started..allowed {
                    h.start_slot(cx, slot as u32);
                }
            });
            started = allowed;
        }
        let h = ev.handler();
        let all_failed = h.report.conns_ok == 0 && h.report.conns_failed >= opts.conns as u64;
        let all_gone = !h.reconnects() && started >= opts.conns && ev.stats().open_outgoing == 0;
        if all_failed || all_gone {
            break; // nothing more can happen: stop rather than wait out the duration
        }
        // 2. Reopen.
        ev.with_context(|h, cx| h.reopen_due(cx));
        // 3. Send.
        let up = {
            let h = ev.handler();
            started >= opts.conns
                && (h.open + h.report.conns_failed >= opts.conns as u64
                    || elapsed > connect_time + SEND_START_GRACE)
        };
        if let Some(om) = ev.handler_mut().open_model.as_mut() {
            let closes = opts.closes();
            if om.t0_us.is_none() && (up || closes) {
                let t0 = mono_us();
                om.t0_us = Some(t0);
                pacer = Some(Pacer::start(om.schedule(), t0, ev.handle())?);
            }
        }
        ev.with_context(|h, cx| h.dispatch(cx));
        let broadcasting = opts.mode == Mode::WsBroadcast;
        if broadcasting {
            ev.with_context(|h, cx| h.broadcast_tick(cx, up));
        }
        // 5. One loop iteration.
        let wait = if broadcasting { SEND_TICK } else { TICK };
        let wait = wait
            .min(end.saturating_duration_since(Instant::now()))
            .min(next_second.saturating_duration_since(Instant::now()));
        ev.run_once(Some(wait))?;
    }
    drop(pacer);

    // ws-broadcast: let the receivers catch up with what was sent.
    if opts.mode == Mode::WsBroadcast {
        let deadline = Instant::now() + DRAIN_GRACE;
        while Instant::now() < deadline && !ev.with_context(|h, cx| h.broadcast_caught_up(cx)) {
            ev.run_once(Some(TICK))?;
        }
        let missing = ev.with_context(|h, cx| h.missing_now(cx));
        if missing > 0 {
            ev.handler_mut().count_missing(missing);
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
        if let Some(om) = &h.open_model {
            h.report.sends_due = om.due(mono_us());
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

/// The progress line of second `t`: `load http: 3s conns 50/50 rate 9998/s p99 412 µs errors 0`.
fn progress(tag: &str, t: u64, opts: &Opts, h: &LoadClient, sec: super::report::Second) -> String {
    let r = &h.report;
    let p99 = if r.latency.is_empty() {
        "-".to_string()
    } else {
        fmt_us(r.latency.value_at_quantile(0.99))
    };
    let mut line = format!(
        "{tag}: {t}s conns {}/{} rate {}/s p99 {p99} errors {}",
        h.open,
        opts.conns,
        sec.msgs,
        r.error_count()
    );
    if let (Some(rate), Some(om)) = (r.rate, &h.open_model) {
        line.push_str(&format!(" sent {}/s of {rate}", sec.sent));
        let backlog = om.due(mono_us()).saturating_sub(r.msgs_sent);
        if backlog as f64 > rate / 100.0 {
            line.push_str(&format!(" BACKLOG: {backlog} sends due and not made"));
        }
        if sec.late > 0 {
            line.push_str(&format!(
                " BEHIND: {} sends waited for a connection, up to {} late",
                sec.late,
                fmt_us(r.send_lag.max())
            ));
        }
    }
    line
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

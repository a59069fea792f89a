//! `readyloop load MODE`: a load generator built on readyloop's own `EventLoop`, used as a
//! client (non-blocking `connect`, completion seen as WRITABLE and checked with `take_error`).
//!
//! - `opts.rs`: the flags, checked (and names resolved) before anything connects.
//! - `run.rs`: the driver of one process (ramp, reopen, sends, progress, stop).
//! - `client.rs`: the `Handler`, one state machine per connection, per mode, and when sends go
//!   out (closed model, or `--rate`'s open model).
//! - `http.rs`: `load http`'s request and its responses, parsed by `codec::http`.
//! - `schedule.rs` and `pacer.rs`: the open model's timetable, and the thread that wakes the
//!   loop on time for it.
//! - `report.rs`: the figures, the table, the JSON, and the merge of children's results.
//! - `thresholds.rs`: `--threshold` conditions; `html.rs` and `svg.rs`: `--report FILE.html`.
//! - `procs.rs`: running child processes of ourselves and merging what they print.
//! - `json.rs`: the little JSON this needs, by hand.
//!
//! The exit status says how the run went: 0 when it ran and every check held; 1 when a
//! `--threshold` was missed or an answer failed its check (a payload that does not match, a
//! malformed HTTP response, a status outside 2xx/3xx); 2 for bad flags or when no connection
//! succeeded at all. Lost connections alone are errors in the report, not a failure: a load
//! test that kills its server on purpose still ends 0.

mod client;
mod html;
mod http;
mod json;
mod opts;
mod pacer;
mod procs;
mod report;
mod run;
mod schedule;
mod svg;
mod thresholds;

pub use opts::{Mode, CONNS_PER_PROC};
pub use report::Report;

use std::ffi::OsString;
use std::fmt;
use std::io::Write;

/// A run that completed but failed: a threshold missed or a check failed. The binary exits 1
/// for it (2 for every other error).
#[derive(Debug)]
pub struct Failed(pub String);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failed {}

/// Entry point of `readyloop load`.
pub fn main(args: Vec<OsString>) -> Result<(), Box<dyn std::error::Error>> {
    let Some(mut opts) = opts::parse_args(args)? else {
        return Ok(());
    };
    match crate::runtime::sys::raise_nofile_limit() {
        Ok((before, after)) => log::debug!("RLIMIT_NOFILE soft limit {before} -> {after}"),
        Err(e) => log::warn!("could not raise RLIMIT_NOFILE: {e}"),
    }
    let report = if opts.child.is_none() && opts.proc_count() > 1 {
        procs::run(&opts)?
    } else {
        run::run(&opts)?
    };
    let verdicts: Vec<_> = opts.thresholds.iter().map(|t| t.check(&report)).collect();
    if opts.json {
        println!("{}", report.to_json(opts.child.is_some(), &verdicts));
    } else {
        print!("{}", report.to_table());
        for v in &verdicts {
            let mark = if v.ok { "ok  " } else { "MISS" };
            println!("  threshold {mark} {:<14} ({})", v.expr, v.shown);
        }
    }
    std::io::stdout().flush()?;
    if let Some((path, file)) = opts.report.take() {
        html::write(file, &report, &opts, &verdicts)
            .map_err(|e| format!("--report: cannot write {:?}: {e}", path.display()))?;
    }
    if opts.child.is_some() {
        return Ok(()); // the parent judges the merged report
    }
    for note in [report.behind_schedule(), report.own_lateness()]
        .into_iter()
        .flatten()
    {
        eprintln!("readyloop load: {note}");
    }
    verdict(&report, &verdicts)
}

/// The exit status of a finished run, as an error when it is not 0.
fn verdict(
    report: &Report,
    verdicts: &[report::Verdict],
) -> Result<(), Box<dyn std::error::Error>> {
    if report.conns_ok == 0 {
        let why = report
            .errors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(kind, n)| format!("{} ({n} times)", describe(kind, &report.addr)))
            .unwrap_or_else(|| "no attempt finished".into());
        return Err(format!("no connection to {} succeeded: {why}", report.addr).into());
    }
    let mut failed = Vec::new();
    if report.checks_failed > 0 {
        let kinds: Vec<String> = report
            .errors
            .iter()
            .filter(|(k, _)| is_check(k))
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        failed.push(format!(
            "{} answers failed their check ({})",
            report.checks_failed,
            kinds.join(", ")
        ));
    }
    for v in verdicts.iter().filter(|v| !v.ok) {
        failed.push(format!("threshold {} missed ({})", v.expr, v.shown));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Box::new(Failed(format!("load: {}", failed.join("; ")))))
    }
}

/// Error kinds that are failed checks (see `Report::checks_failed`).
fn is_check(kind: &str) -> bool {
    kind.contains("mismatch")
        || kind.starts_with("http: ")
        || kind.starts_with("hello:")
        || kind.starts_with("ws-broadcast:")
        || kind.starts_with("ws: protocol")
        || kind.starts_with("ws: upgrade refused")
        || kind.starts_with("echo:")
}

/// `connect: ConnectionRefused` → `connect 127.0.0.1:1: refused`.
fn describe(kind: &str, addr: &str) -> String {
    match kind.strip_prefix("connect: ") {
        Some(k) => format!("connect {addr}: {}", crate::tools::client::kind_words(k)),
        None => kind.to_string(),
    }
}

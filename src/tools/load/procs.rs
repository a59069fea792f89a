//! `--procs N`: one process can hold only so many sockets (its descriptor limit), so past
//! `CONNS_PER_PROC` connections the tool runs N copies of itself, each with its share of
//! `--conns`, `--connect-rate`, `--rate`, `--senders` and `--msg-rate`, each with `--json`.
//! Their last stdout line is their report, with the histograms as `[value, count]` pairs and
//! the timeline; the parent adds the counts and merges the histograms (exact, bucket by
//! bucket). Children print their own progress lines on the shared stderr, tagged with their
//! index. Thresholds, the HTML report and the exit status are the parent's alone: a child
//! always exits 0 once it has printed its report.
//!
//! `--server-pid` is sampled here, by the parent: at start, and just before the children's
//! `--duration` ends (they still hold their connections then).

use super::json;
use super::opts::{Mode, Opts};
use super::report::Report;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long after `--duration` a child may take to close down and report before it is killed:
/// 15 s, plus 1 ms per connection of its share (closing 9,000 connections on a machine shared by
/// a hundred processes took longer than 15 s in the 1,000,000-connection run).
const CHILD_GRACE: Duration = Duration::from_secs(15);
const CHILD_GRACE_PER_CONN: Duration = Duration::from_millis(1);
/// Sample the server's RSS this long before the children stop measuring.
const RSS_LEAD: Duration = Duration::from_millis(300);

/// `total` split into `n` shares that differ by at most one; share `i`.
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

fn child_args(opts: &Opts, n: usize, i: usize) -> Vec<String> {
    let mut a = vec![
        "load".to_string(),
        opts.mode.name().to_string(),
        // The address as resolved by the parent: children do not look the name up again.
        "--addr".into(),
        opts.addr.to_string(),
        "--conns".into(),
        share(opts.conns, n, i).to_string(),
        "--duration".into(),
        opts.duration.as_secs_f64().to_string(),
        "--connect-rate".into(),
        (opts.connect_rate / n as f64).to_string(),
        "--procs".into(),
        "1".into(),
        "--json".into(),
        "--child".into(),
        i.to_string(),
    ];
    if matches!(
        opts.mode,
        Mode::Echo | Mode::WsEcho | Mode::WsBroadcast | Mode::Idle
    ) {
        a.extend(["--size".into(), opts.size.to_string()]);
    }
    if opts.mode.has_open_model() {
        a.extend(["--pipeline".into(), opts.pipeline.to_string()]);
    }
    if opts.mode == Mode::WsBroadcast {
        let senders = share(opts.senders, n, i);
        let rate = opts.msg_rate * senders as f64 / opts.senders.max(1) as f64;
        a.extend(["--senders".into(), senders.to_string()]);
        a.extend(["--msg-rate".into(), rate.to_string()]);
    }
    if let Some(rate) = opts.rate {
        // Each child's share of the total rate, as of its share of the connections.
        let r = rate * share(opts.conns, n, i) as f64 / opts.conns as f64;
        a.extend(["--rate".into(), r.to_string()]);
    }
    if let Some(r) = opts.ramp {
        a.extend(["--ramp".into(), r.as_secs_f64().to_string()]);
    }
    if opts.mode == Mode::Http {
        let h = &opts.http;
        a.extend([
            "--path".into(),
            h.path.clone(),
            "--method".into(),
            h.method.clone(),
        ]);
        if !h
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            a.extend(["--header".into(), format!("Host:{}", h.host)]);
        }
        for (k, v) in &h.headers {
            a.extend(["--header".into(), format!("{k}:{v}")]);
        }
        if let Some(f) = &h.body_file {
            a.extend(["--body-file".into(), f.display().to_string()]);
        }
        if h.close {
            a.push("--close".into());
        }
    }
    if let Some(t) = &opts.tls {
        a.extend([
            "--tls".into(),
            "--server-name".into(),
            t.server_name.clone(),
        ]);
        if let Some(ca) = &t.ca {
            a.extend(["--ca".into(), ca.display().to_string()]);
        }
        if t.insecure {
            a.push("--insecure".into());
        }
    }
    if let Some(s) = &opts.src_spec {
        a.extend(["--src-ips".into(), s.clone()]);
    }
    if let Some(p) = &opts.ws {
        a.extend(["--ws".into(), p.clone()]);
    }
    if opts.text {
        a.push("--text".into());
    }
    if opts.quiet {
        a.push("--quiet".into());
    }
    a
}

/// Runs the children and merges their reports.
pub fn run(opts: &Opts) -> Result<Report, Box<dyn std::error::Error>> {
    let n = opts.proc_count();
    let exe = std::env::current_exe()?;
    let rss_start = opts
        .server_pid
        .and_then(|pid| crate::runtime::sys::rss_bytes(Some(pid)).ok());
    let start = Instant::now();
    let mut children: Vec<(Child, std::thread::JoinHandle<String>)> = Vec::new();
    for i in 0..n {
        let mut child = Command::new(&exe)
            .args(child_args(opts, n, i))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut out = child.stdout.take().expect("stdout was piped");
        // Read on a thread so a child never blocks on a full pipe while we wait for others.
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        children.push((child, reader));
    }

    let mut rss_end = None;
    if let Some(pid) = opts.server_pid {
        let at = start + opts.duration.saturating_sub(RSS_LEAD);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        rss_end = crate::runtime::sys::rss_bytes(Some(pid)).ok();
    }

    let largest_share = (0..n).map(|i| share(opts.conns, n, i)).max().unwrap_or(0);
    let deadline =
        start + opts.duration + CHILD_GRACE + CHILD_GRACE_PER_CONN * largest_share as u32;
    let mut merged = Report::new(opts.mode.name(), &opts.addr.to_string(), 0);
    merged.procs = n as u64;
    for (i, (mut child, reader)) in children.into_iter().enumerate() {
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = reader.join().unwrap_or_default();
        let report = out
            .lines()
            .last()
            .ok_or_else(|| "no output".to_string())
            .and_then(json::parse)
            .and_then(|v| Report::from_json(&v));
        match (status, report) {
            (Some(s), Ok(r)) if s.success() => merged.merge(&r),
            (status, r) => {
                let why = match (status, r) {
                    (None, _) => "killed after the time limit".to_string(),
                    (Some(s), Ok(_)) => format!("exited with {s}"),
                    (Some(s), Err(e)) => format!("exited with {s}, no report: {e}"),
                };
                eprintln!("load: child {i} failed: {why}");
                merged.conns += share(opts.conns, n, i) as u64;
                merged.error("proc: child failed");
            }
        }
    }
    if let (Some(a), Some(b)) = (rss_start, rss_end) {
        merged.server_rss = Some((a, b));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        for (total, n) in [(10, 3), (2, 2), (19_000, 3), (1, 4)] {
            let sum: usize = (0..n).map(|i| share(total, n, i)).sum();
            assert_eq!(sum, total);
        }
    }
}

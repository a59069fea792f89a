//! `readyloop load http` against `wrk`, in the same run, on the same `readyloop serve`:
//!
//! 1. **Saturation**: `wrk -t1 -cN` (one thread, as `load` is one process on one loop) and
//!    `readyloop load http --conns N`, closed model, `GET /healthz`. Issue 14 asks for ≥ 0.9×
//!    wrk's requests per second.
//! 2. **A fixed rate well below saturation**: `wrk -t1 -c1` with a Lua `delay()` of 1 ms
//!    between requests (wrk has no rate flag; one connection, so no bursts of timers firing
//!    together), then `readyloop load http --conns 1 --rate R` at the rate wrk reached. Both
//!    measure lone requests on an idle server; issue 14 asks for percentiles within 10%.
//!    `load`'s corrected and uncorrected figures are both shown.
//!
//! Rounds alternate the two tools (A B A B ...) so a burst of load from elsewhere on a shared
//! machine hits both; medians of `BENCH_ROUNDS` rounds (default 3) are reported, each run
//! `BENCH_SECS` long (default 5), with `BENCH_CONNS` connections at saturation (default 50).
//!
//! With two cores or more the server is pinned to CPU 1 and each client to CPU 0
//! (`sched_setaffinity`; `BENCH_PIN=0` turns it off). Unpinned, where the scheduler puts a
//! client and the server decides a lone round trip more than the client does: wrk's one thread
//! tends to share the server's core, `load`'s loop and pacer threads spread, and on a shared
//! VM the figures swing by ±50% between rounds.
//! The table goes to stdout and to `target/bench-load-vs-wrk.md`. Without `wrk` on the PATH
//! (Debian: `apt-get install wrk`) it prints a notice and exits 0.

mod common;
use common::pin;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The CPU the server is pinned to, and the one the clients are.
const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;

/// `cmd`, pinned to the client CPU when pinning is on.
fn client(mut cmd: Command, pinned: bool) -> Command {
    if pinned {
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(|| pin(0, CLIENT_CPU));
        }
    }
    cmd
}

/// `wrk`'s Lua hook: wait this many milliseconds before each request on a connection.
const DELAY_SCRIPT: &str = "function delay()\n  return 1\nend\n";

fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// What one run of either tool measured: requests/s and latency percentiles (µs).
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
}

/// `12.34us`, `1.50ms`, `2.00s` → µs.
fn wrk_time(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        _ => f64::NAN,
    }
}

fn wrk(
    url: &str,
    conns: usize,
    secs: u64,
    script: Option<&std::path::Path>,
    pinned: bool,
) -> Figures {
    let mut cmd = client(Command::new("wrk"), pinned);
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors: {text}"
    );
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(p)).then(|| it.next()).flatten()
            })
            .map(wrk_time)
            .unwrap_or_else(|| panic!("no {p} in {text}"))
    };
    Figures {
        rps: text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Requests/sec in {text}")),
        p50: pct("50%"),
        p90: pct("90%"),
        p99: pct("99%"),
    }
}

/// The number after `"key":` inside the object `"within":{...}` (or at top level).
fn json_num(json: &str, within: Option<&str>, key: &str) -> f64 {
    let scope = match within {
        Some(w) => {
            let at = json
                .find(&format!("\"{w}\":{{"))
                .unwrap_or_else(|| panic!("no {w} in {json}"));
            &json[at..at + json[at..].find('}').unwrap()]
        }
        None => json,
    };
    let pat = format!("\"{key}\":");
    let at = scope
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {scope}"))
        + pat.len();
    let end = scope[at..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(scope.len(), |e| at + e);
    scope[at..end].parse().unwrap()
}

/// `readyloop load http ARGS --json --quiet`: (requests/s and the `latency_us` percentiles,
/// the `latency_uncorrected_us` ones when there are).
fn load(url: &str, args: &[&str], pinned: bool) -> (Figures, Option<Figures>) {
    let out = client(Command::new(env!("CARGO_BIN_EXE_readyloop")), pinned)
        .args(["load", "http", "--url", url, "--json", "--quiet"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run readyloop load");
    assert!(
        out.status.success(),
        "readyloop load {args:?}: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.lines().last().expect("a JSON line");
    assert_eq!(json_num(json, None, "errors"), 0.0, "errors: {json}");
    let figures = |within: &str| Figures {
        rps: json_num(json, None, "msgs_per_s"),
        p50: json_num(json, Some(within), "p50"),
        p90: json_num(json, Some(within), "p90"),
        p99: json_num(json, Some(within), "p99"),
    };
    let uncorrected = json
        .contains("latency_uncorrected_us")
        .then(|| figures("latency_uncorrected_us"));
    (figures("latency_us"), uncorrected)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn medians(runs: &[Figures]) -> Figures {
    let of = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    Figures {
        rps: of(|f| f.rps),
        p50: of(|f| f.p50),
        p90: of(|f| f.p90),
        p99: of(|f| f.p99),
    }
}

fn main() {
    if !have_wrk() {
        println!("load_vs_wrk: skipped: wrk is not installed (Debian: apt-get install wrk)");
        return;
    }
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) is a quick look.
    let quick = std::env::args().all(|a| a != "--bench");
    let secs: u64 = common::env_num("BENCH_SECS", if quick { 1 } else { 5 });
    let rounds: usize = common::env_num("BENCH_ROUNDS", if quick { 1 } else { 3 });
    let conns: usize = common::env_num("BENCH_CONNS", 50);

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut pinned = cpus >= 2 && std::env::var("BENCH_PIN").map_or(true, |v| v != "0");
    let (mut server, addr) = common::spawn_http(&mut common::readyloop_http("load-vs-wrk"));
    if pinned {
        if let Err(e) = pin(server.id() as libc::pid_t, SERVER_CPU) {
            println!("not pinning: {e}");
            pinned = false;
        }
    }
    let url = format!("http://{addr}/healthz");
    let script =
        std::env::temp_dir().join(format!("readyloop-wrk-delay-{}.lua", std::process::id()));
    std::fs::write(&script, DELAY_SCRIPT).expect("write the wrk script");
    // Warm up both (page cache, the server's buffers, CPU frequency).
    wrk(&url, conns, 1, None, pinned);

    let (mut sat_wrk, mut sat_load) = (Vec::new(), Vec::new());
    let (mut fix_wrk, mut fix_load, mut fix_load_unc) = (Vec::new(), Vec::new(), Vec::new());
    let secs_s = secs.to_string();
    let conns_s = conns.to_string();
    for round in 1..=rounds {
        let w = wrk(&url, conns, secs, None, pinned);
        let (l, _) = load(&url, &["--conns", &conns_s, "--duration", &secs_s], pinned);
        println!(
            "round {round} saturation: wrk {:.0} req/s, load {:.0} req/s ({:.2}×)",
            w.rps,
            l.rps,
            l.rps / w.rps
        );
        sat_wrk.push(w);
        sat_load.push(l);

        let w = wrk(&url, 1, secs, Some(&script), pinned);
        let rate = format!("{:.0}", w.rps);
        let (l, unc) = load(
            &url,
            &["--conns", "1", "--rate", &rate, "--duration", &secs_s],
            pinned,
        );
        let unc = unc.expect("an open-model run has uncorrected figures");
        println!(
            "round {round} at {rate}/s: wrk p50 {:.0} p90 {:.0} p99 {:.0} µs; load corrected \
             p50 {:.0} p90 {:.0} p99 {:.0}, uncorrected p50 {:.0} p90 {:.0} p99 {:.0}",
            w.p50, w.p90, w.p99, l.p50, l.p90, l.p99, unc.p50, unc.p90, unc.p99
        );
        fix_wrk.push(w);
        fix_load.push(l);
        fix_load_unc.push(unc);
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&script);

    let (sw, sl) = (medians(&sat_wrk), medians(&sat_load));
    let (fw, fl, fu) = (
        medians(&fix_wrk),
        medians(&fix_load),
        medians(&fix_load_unc),
    );
    let ratio = |a: f64, b: f64| format!("{:.2}×", a / b);
    let mut t = format!(
        "`readyloop load http` vs `wrk`, `GET /healthz` on one `readyloop serve`; medians of \
         {rounds} alternating rounds of {secs} s; {} cores, shared with whatever else runs; {}\n\n\
         | run | requests/s | p50 | p90 | p99 | vs wrk (req/s; p50, p90, p99) |\n\
         |---|---:|---:|---:|---:|---|\n",
        cpus,
        if pinned {
            "server pinned to CPU 1, clients to CPU 0"
        } else {
            "nothing pinned"
        }
    );
    let row = |t: &mut String, name: &str, f: &Figures, base: &Figures, rate_only: bool| {
        let vs = if rate_only {
            ratio(f.rps, base.rps)
        } else {
            format!(
                "{}, {}, {}",
                ratio(f.p50, base.p50),
                ratio(f.p90, base.p90),
                ratio(f.p99, base.p99)
            )
        };
        t.push_str(&format!(
            "| {name} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {vs} |\n",
            f.rps, f.p50, f.p90, f.p99
        ));
    };
    row(&mut t, &format!("`wrk -t1 -c{conns}`"), &sw, &sw, true);
    row(
        &mut t,
        &format!("`load http --conns {conns}`"),
        &sl,
        &sw,
        true,
    );
    row(&mut t, "`wrk -t1 -c1`, `delay()` 1 ms", &fw, &fw, false);
    row(
        &mut t,
        &format!("`load http --conns 1 --rate {:.0}`, corrected", fw.rps),
        &fl,
        &fw,
        false,
    );
    row(&mut t, "the same run, uncorrected", &fu, &fw, false);
    t.push_str(&format!(
        "\nSaturation: load reaches {} of wrk's requests/s (issue 14 asks ≥ 0.90×). At a fixed \
         rate the latencies are those of lone requests; their ratios to wrk's are the agreement \
         issue 14 asks to be within 10%.\n",
        ratio(sl.rps, sw.rps)
    ));
    common::publish("bench-load-vs-wrk.md", &t);
}

//! What watching the loop costs: server CPU per message of line echo and `/ws` broadcast with
//! `serve` as it ships, with `--inspect` and nobody watching, and with `--inspect` and one
//! `/loop/ws` watcher reading every frame, all in one run.
//!
//! The server (the real binary) is pinned to CPU 0 and the client (`readyloop load`, another
//! process) to CPU 1 with `taskset`; the watcher is a thread of this bench reading frames with
//! `tungstenite`. Server CPU is its threads' on-CPU time over the client's whole run
//! (as the scheduler counts it, see `cpu_secs`) divided by the messages the client counted: so a figure is CPU per message, not a rate, and
//! holds however fast the noisy machine let the run go. Configurations alternate round by round
//! (`BENCH_ROUNDS`, default 3) and the median of each is reported with its ratio to `off`.
//!
//! Loads: `echo`, 50 connections ping-pong 64-byte lines (closed loop); `ws-broadcast`, 200
//! `/ws` subscribers and one sender at 2,000 messages/s (each message is 200 deliveries; the
//! client counts deliveries); `idle`, 1,000 line connections held open and nothing sent, where
//! the figure is server CPU milliseconds per second (what a watcher costs by itself: its frames,
//! the census and strip over 1,000 connections, the trace sample). `BENCH_SECS` (default 4) is each run's length; `BENCH_ONLY=echo`
//! or `ws-broadcast` runs one load.
//! Run: `nice -n 10 cargo bench --bench inspect_cost`; writes target/bench-inspect.md.

mod common;

use common::{env_num, publish};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The three ways the server runs.
#[derive(Clone, Copy, PartialEq)]
enum Watch {
    /// `serve` without `--inspect`.
    Off,
    /// `serve --inspect`, nobody on `/loop/ws`.
    Unwatched,
    /// `serve --inspect` and one watcher reading every frame.
    Watched,
}

impl Watch {
    const ALL: [Watch; 3] = [Watch::Off, Watch::Unwatched, Watch::Watched];

    fn name(self) -> &'static str {
        match self {
            Watch::Off => "off",
            Watch::Unwatched => "--inspect, nobody watching",
            Watch::Watched => "--inspect, one watcher",
        }
    }
}

/// The server process, killed on drop.
struct Served {
    child: Child,
    http: SocketAddr,
    line: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(inspect: bool) -> Served {
    let dir = std::env::temp_dir().join(format!("readyloop-inspect-bench-{}", std::process::id()));
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", env!("CARGO_BIN_EXE_readyloop"), "serve"])
        .args([
            "--http",
            "127.0.0.1:0",
            "--line",
            "127.0.0.1:0",
            "--hello",
            "off",
        ])
        .args(["--ws-ping", "0", "--upload-dir"])
        .arg(&dir);
    if inspect {
        cmd.arg("--inspect");
    }
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("taskset and the readyloop binary");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut http, mut line) = (None, None);
    while http.is_none() || line.is_none() {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "the server exited");
        let mut words = l.split_whitespace().skip(1);
        match (words.next(), words.next()) {
            (Some("http"), Some(a)) => http = a.parse().ok(),
            (Some("line"), Some(a)) => line = a.parse().ok(),
            _ => {}
        }
    }
    Served {
        child,
        http: http.unwrap(),
        line: line.unwrap(),
    }
}

/// CPU seconds process `pid` has used, all its threads: the sum of each thread's on-CPU time
/// in /proc/PID/task/TID/schedstat (nanoseconds, the scheduler's own account), because the
/// 10 ms ticks of utime + stime in /proc/PID/stat are too coarse for the differences measured
/// here; those are the fallback where schedstat is missing.
fn cpu_secs(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let mut ns = 0u64;
    let mut found = false;
    for t in tasks.into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue;
        };
        if let Some(n) = text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        {
            ns += n;
            found = true;
        }
    }
    if found {
        return ns as f64 / 1e9;
    }
    common::proc_cpu_secs(pid)
}

/// The pid of the server itself (taskset execs it, so the child's pid is the server's).
fn server_pid(s: &Served) -> u32 {
    s.child.id()
}

/// A `/loop/ws` watcher on its own thread, reading (and counting) frames until dropped.
struct Watcher {
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(http: SocketAddr) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let (s, f) = (stop.clone(), frames.clone());
        let stream = std::net::TcpStream::connect(http).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (mut ws, _) =
            tungstenite::client(format!("ws://{http}/loop/ws"), stream).expect("watch /loop/ws");
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(m) if m.is_text() => {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("watcher: {e}"),
                }
            }
        });
        Watcher {
            stop,
            frames,
            thread: Some(thread),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `readyloop load ARGS --json` on CPU 1; the messages it counted.
fn load(args: &[String]) -> u64 {
    let out = Command::new("taskset")
        .args(["-c", "1", env!("CARGO_BIN_EXE_readyloop"), "load"])
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("readyloop load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or_default();
    assert!(out.status.success(), "load {args:?}: {json}");
    let msgs = json
        .split("\"msgs\":")
        .nth(1)
        .and_then(|r| r.trim_start().split([',', '}']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("msgs in {json}"));
    msgs
}

/// One run: server CPU microseconds per message, and the watcher's frames.
fn run(workload: &str, watch: Watch, secs: u64) -> (f64, u64) {
    let server = serve(watch != Watch::Off);
    let watcher = (watch == Watch::Watched).then(|| Watcher::start(server.http));
    // Let the watcher's first frames arrive before measuring.
    thread::sleep(Duration::from_millis(300));
    let duration = secs.to_string();
    let args: Vec<String> = match workload {
        "echo" => vec![
            "echo".into(),
            "--addr".into(),
            server.line.to_string(),
            "--conns".into(),
            "50".into(),
            "--duration".into(),
            duration,
        ],
        "idle" => vec![
            "idle".into(),
            "--addr".into(),
            server.line.to_string(),
            "--conns".into(),
            "1000".into(),
            "--duration".into(),
            duration,
        ],
        _ => vec![
            "ws-broadcast".into(),
            "--addr".into(),
            server.http.to_string(),
            "--conns".into(),
            "200".into(),
            "--senders".into(),
            "1".into(),
            "--msg-rate".into(),
            "2000".into(),
            "--duration".into(),
            duration,
        ],
    };
    let pid = server_pid(&server);
    if workload == "idle" {
        // No messages: server CPU milliseconds per second, over a window that starts once the
        // connections are up (1 s in) and ends before the client closes them.
        let mut args = args;
        let last = args.len() - 1;
        args[last] = (secs + 2).to_string();
        let mut client = Command::new("taskset")
            .args(["-c", "1", env!("CARGO_BIN_EXE_readyloop"), "load"])
            .args(&args)
            .args(["--quiet"])
            .stdout(Stdio::null())
            .spawn()
            .expect("readyloop load idle");
        thread::sleep(Duration::from_secs(1));
        let (before, f0) = (cpu_secs(pid), frames_of(&watcher));
        let started = std::time::Instant::now();
        thread::sleep(Duration::from_secs(secs));
        let cpu = cpu_secs(pid) - before;
        let elapsed = started.elapsed().as_secs_f64();
        let frames = frames_of(&watcher) - f0;
        let _ = client.wait();
        return (cpu * 1e3 / elapsed, frames);
    }
    let before = cpu_secs(pid);
    let msgs = load(&args);
    let cpu = cpu_secs(pid) - before;
    let frames = watcher
        .as_ref()
        .map_or(0, |w| w.frames.load(Ordering::Relaxed));
    drop(watcher);
    (cpu * 1e6 / msgs.max(1) as f64, frames)
}

fn frames_of(w: &Option<Watcher>) -> u64 {
    w.as_ref().map_or(0, |w| w.frames.load(Ordering::Relaxed))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = env_num("BENCH_SECS", 4);
    let rounds: usize = env_num("BENCH_ROUNDS", 3);
    let mut report = String::from(
        "| load | server | server CPU per message (median; idle: per second) | vs off | watcher frames (per run) |\n|---|---|---|---|---|\n",
    );
    let only = std::env::var("BENCH_ONLY").ok();
    for workload in ["echo", "ws-broadcast", "idle"] {
        if only.as_deref().is_some_and(|o| o != workload) {
            continue;
        }
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); 3];
        let mut frames = 0;
        for r in 0..rounds {
            for (i, w) in Watch::ALL.iter().enumerate() {
                let (us, f) = run(workload, *w, secs);
                eprintln!("{workload} round {r} {}: {us:.3}", w.name());
                per[i].push(us);
                frames = frames.max(f);
            }
        }
        let off = median(per[0].clone());
        for (i, w) in Watch::ALL.iter().enumerate() {
            let m = median(per[i].clone());
            let _ = std::fmt::Write::write_fmt(
                &mut report,
                format_args!(
                    "| {workload} | {} | {m:.3} {} | {} | {} |\n",
                    w.name(),
                    if workload == "idle" {
                        "ms per s"
                    } else {
                        "µs"
                    },
                    if workload == "idle" {
                        format!("{:+.3} ms per s", m - off)
                    } else {
                        format!("{:+.1}%", (m / off - 1.0) * 100.0)
                    },
                    if *w == Watch::Watched {
                        frames.to_string()
                    } else {
                        "–".into()
                    }
                ),
            );
        }
    }
    publish("bench-inspect.md", &report);
}

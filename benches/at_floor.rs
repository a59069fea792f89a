//! Every hot path against its floor: server CPU per operation of readyloop (default flags, so
//! INFO logging on, and `RUST_LOG=warn`), of a raw-epoll floor (`benches/floor/`), of the tokio
//! baseline (`benches/common/`) and, for HTTP, of nginx with one worker, all in one run, and the
//! ratios in one table.
//!
//! **The figure** is the server process's CPU time (user + system, every thread, read with
//! `clock_getcpuclockid` + `clock_gettime`: the same utime + stime as `/proc/PID/stat`, at
//! nanosecond rather than 10 ms resolution) over the measured window, divided by the operations
//! the client completed in that window. Throughput alone says little on two cores: the client
//! saturates first. The server is pinned to the last CPU, the client (and everything it starts)
//! to CPU 0 (`sched_setaffinity`), so neither takes the other's core.
//!
//! **Paths** (`BENCH_PATHS`, comma-separated, default all):
//! - `line1`, `line16`: line echo, 50 connections, 64-byte lines, 1 or 16 in flight per
//!   connection (`readyloop load echo --pipeline K`). Operation: one echoed line.
//! - `http`: keep-alive `GET /healthz`, `wrk -t1 -c50` (or `readyloop load http --conns 50`
//!   when wrk is not installed, said in the table). Operation: one response.
//! - `ws-echo`: WebSocket `/echo`, 50 connections, 64-byte binary messages, 1 in flight
//!   (`readyloop load ws-echo`). Operation: one echoed message.
//! - `ws-broadcast`: `/ws`, 1,000 subscribers, one sender at 20 messages/s
//!   (`readyloop load ws-broadcast`). Operation: one message delivered to one subscriber.
//! - `hello`: accept, greet, close, 50 slots connecting again at once (`readyloop load hello`).
//!   Operation: one connection.
//!
//! **Servers**, each a child process started and measured alike (this bench re-executes itself
//! with `AT_FLOOR_SERVE=ROLE` for the floors and the tokio baselines; every server prints
//! `listening KIND ADDR` first): readyloop (`readyloop serve` with only the listener the path
//! needs; its log goes to /dev/null), the floor, tokio `current_thread` (line: `BufReader` +
//! `BufWriter` flushed when the input is drained; HTTP: the same fixed response as the floor;
//! WebSocket: tokio-tungstenite; hello: accept, write, drop), nginx 1 worker (`master_process
//! off`, `return 200 "ok"`; skipped, and said, when not installed).
//!
//! **Window**: the load client prints one progress line a second with that second's
//! completions; CPU is sampled at the line of second `BENCH_WARM` (default 2; 3 for
//! ws-broadcast, whose sends start once all 1,000 are connected) and at the line
//! `BENCH_SECS` (default 5) seconds later, and the completions of the seconds in between are
//! the operations. wrk has no progress lines: its whole run is the window.
//!
//! **Noise**: the machine may be shared. `BENCH_ROUNDS` (default 3) rounds, servers
//! alternating within each round (A B C D A B C D ...); the table shows the median per server
//! and the spread (min–max over rounds) of each ratio.
//!
//! **Before and after**: `BENCH_BEFORE=/path/to/an/older/readyloop` adds that binary (default
//! flags) to every round, and a second table of the new build's CPU per operation over the
//! older one's: a change's figure before and after, measured in one run.
//!
//! Output: Markdown on stdout and in `target/bench-at-floor.md`. Run:
//! `cargo bench --bench at_floor` (or `BENCH_PATHS=line1,line16 cargo bench --bench at_floor`).

mod common;
mod floor;

use common::{env_num, publish};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of this bench's own children that run a floor or a tokio baseline.
const SERVE_ENV: &str = "AT_FLOOR_SERVE";
/// floor-http and tokio-http: the file holding the response to answer every request with.
const RESPONSE_ENV: &str = "AT_FLOOR_RESPONSE";
/// readyloop's default greeting, which the hello floor and baseline send too.
const GREETING: &[u8] = b"Hello, World!\n";

/// One hot path: how readyloop is started for it, which floor and baseline stand beside it,
/// and the client that drives them all.
struct PathSpec {
    name: &'static str,
    what: &'static str,
    /// readyloop's listener for this path (`line`, `http`, `hello`).
    listener: &'static str,
    /// The `AT_FLOOR_SERVE` roles of the floor and the tokio baseline.
    floor: &'static str,
    tokio: &'static str,
    nginx: bool,
    /// `readyloop load` mode and options (`--addr` is added); `None`: HTTP (wrk or load http).
    load: Option<&'static [&'static str]>,
    warm: u64,
    unit: &'static str,
}

const PATHS: &[PathSpec] = &[
    PathSpec {
        name: "line1",
        what: "line echo, 50 conns, 64 B, 1 in flight",
        listener: "line",
        floor: "floor-line",
        tokio: "tokio-line",
        nginx: false,
        load: Some(&["echo", "--conns", "50", "--size", "63", "--pipeline", "1"]),
        warm: 2,
        unit: "message",
    },
    PathSpec {
        name: "line16",
        what: "line echo, 50 conns, 64 B, 16 in flight",
        listener: "line",
        floor: "floor-line",
        tokio: "tokio-line",
        nginx: false,
        load: Some(&["echo", "--conns", "50", "--size", "63", "--pipeline", "16"]),
        warm: 2,
        unit: "message",
    },
    PathSpec {
        name: "http",
        what: "HTTP/1.1 keep-alive GET /healthz, 50 conns",
        listener: "http",
        floor: "floor-http",
        tokio: "tokio-http",
        nginx: true,
        load: None,
        warm: 2,
        unit: "request",
    },
    PathSpec {
        name: "ws-echo",
        what: "WebSocket /echo, 50 conns, 64 B, 1 in flight",
        listener: "http",
        floor: "floor-ws",
        tokio: "tokio-ws",
        nginx: false,
        load: Some(&["ws-echo", "--conns", "50", "--size", "64"]),
        warm: 2,
        unit: "message",
    },
    PathSpec {
        name: "ws-broadcast",
        what: "/ws broadcast, 1,000 subscribers, 20 msg/s",
        listener: "http",
        floor: "floor-ws",
        tokio: "tokio-ws",
        nginx: false,
        load: Some(&[
            "ws-broadcast",
            "--conns",
            "1000",
            "--senders",
            "1",
            "--msg-rate",
            "20",
        ]),
        warm: 3,
        unit: "delivery",
    },
    PathSpec {
        name: "hello",
        what: "hello: accept, greet, close, 50 slots",
        listener: "hello",
        floor: "floor-hello",
        tokio: "tokio-hello",
        nginx: false,
        load: Some(&["hello", "--conns", "50"]),
        warm: 2,
        unit: "connection",
    },
];

/// The servers of one path, in the order they run within a round.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `BENCH_BEFORE`'s binary, default flags.
    Before,
    ReadyloopDefault,
    ReadyloopWarn,
    Floor,
    Tokio,
    Nginx,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Before => "readyloop before (BENCH_BEFORE, default flags)",
            Kind::ReadyloopDefault => "readyloop (default: INFO)",
            Kind::ReadyloopWarn => "readyloop (RUST_LOG=warn)",
            Kind::Floor => "floor (raw epoll)",
            Kind::Tokio => "tokio",
            Kind::Nginx => "nginx (1 worker)",
        }
    }
}

/// `BENCH_BEFORE`: an older readyloop binary to measure beside this one.
fn before_bin() -> Option<PathBuf> {
    std::env::var_os("BENCH_BEFORE")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
}

/// The CPUs of this machine: the server takes the last, clients CPU 0; `None` with one CPU.
fn cpus() -> Option<(usize, usize)> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (n >= 2).then_some((n - 1, 0))
}

/// Pins what `cmd` starts to `cpu`.
fn pin(cmd: &mut Command, cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: sched_setaffinity is async-signal-safe and touches only the set built here.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// CPU time (user + system, all threads) process `pid` has used, in nanoseconds.
fn cpu_ns(pid: u32) -> f64 {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls write only into the locals passed.
    unsafe {
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) != 0
            || libc::clock_gettime(clock, &mut ts) != 0
        {
            return f64::NAN;
        }
    }
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// Whether `program` runs (`program -v` or `-V` exits, whatever its status).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A server child process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: Option<TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("at-floor-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `cmd` pinned to the server CPU and waits for its `listening KIND ADDR` line.
fn spawn_server(mut cmd: Command, dir: Option<TempDir>) -> Server {
    pin(&mut cmd, cpus().map(|c| c.0));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server {
        child,
        addr,
        _dir: dir,
    }
}

fn start(kind: Kind, path: &PathSpec, response: &Path) -> Option<Server> {
    match kind {
        Kind::Before | Kind::ReadyloopDefault | Kind::ReadyloopWarn => {
            let dir = TempDir::new("uploads");
            let mut cmd = match (kind, before_bin()) {
                (Kind::Before, Some(bin)) => Command::new(bin),
                (Kind::Before, None) => return None,
                _ => Command::new(env!("CARGO_BIN_EXE_readyloop")),
            };
            cmd.arg("serve");
            for l in ["line", "http", "hello"] {
                let addr = if l == path.listener {
                    "127.0.0.1:0"
                } else {
                    "off"
                };
                cmd.args([format!("--{l}"), addr.to_string()]);
            }
            cmd.args(["--ws-ping", "0", "--upload-dir"]).arg(&dir.0);
            if kind == Kind::ReadyloopWarn {
                cmd.env("RUST_LOG", "warn");
            } else {
                cmd.env_remove("RUST_LOG");
            }
            Some(spawn_server(cmd, Some(dir)))
        }
        Kind::Floor | Kind::Tokio => {
            let role = if kind == Kind::Floor {
                path.floor
            } else {
                path.tokio
            };
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.env(SERVE_ENV, role).env(RESPONSE_ENV, response);
            Some(spawn_server(cmd, None))
        }
        Kind::Nginx => start_nginx(),
    }
}

/// nginx with one worker process doing everything (`master_process off`), answering
/// `/healthz` with `return 200 "ok"`, no access log.
fn start_nginx() -> Option<Server> {
    let bin = ["nginx", "/usr/sbin/nginx"].into_iter().find(|b| have(b))?;
    let dir = TempDir::new("nginx");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let d = dir.0.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
           fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           server {{ listen 127.0.0.1:{port}; location = /healthz {{ return 200 \"ok\"; }} }} }}\n"
    );
    std::fs::write(dir.0.join("nginx.conf"), conf).ok()?;
    let mut cmd = Command::new(bin);
    cmd.args(["-p"])
        .arg(&dir.0)
        .arg("-c")
        .arg(dir.0.join("nginx.conf"));
    pin(&mut cmd, cpus().map(|c| c.0));
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = Server {
        child,
        addr,
        _dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            eprintln!("at_floor: nginx did not start listening");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// What one measured window gave.
struct Sample {
    ops: f64,
    secs: f64,
    cpu_ns: f64,
    note: String,
}

/// Runs `readyloop load` against `server` and samples its CPU at the progress lines that
/// open and close the window.
fn measure_load(server: &Server, args: &[&str], warm: u64, secs: u64) -> Sample {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_readyloop"));
    cmd.arg("load")
        .args(args)
        .args(["--addr", &server.addr.to_string()])
        .args(["--duration", &(warm + secs + 1).to_string()]);
    pin(&mut cmd, cpus().map(|c| c.1));
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn readyloop load");
    let pid = server.child.id();
    let (mut ops, mut cpu0, mut cpu1, mut errors) = (0.0, f64::NAN, f64::NAN, String::new());
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        // `load echo: 3s conns 50/50 rate 9998/s p99 412 µs errors 0`
        let mut words = line.split_whitespace();
        let Some(t) = words
            .nth(2)
            .and_then(|w| w.strip_suffix('s'))
            .and_then(|w| w.parse::<u64>().ok())
        else {
            continue;
        };
        let rate = line
            .split(" rate ")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or(0.0);
        if t == warm {
            cpu0 = cpu_ns(pid);
        } else if t > warm && t <= warm + secs {
            ops += rate;
            if t == warm + secs {
                cpu1 = cpu_ns(pid);
            }
        }
        if let Some(e) = line.split(" errors ").nth(1) {
            errors = e.split_whitespace().next().unwrap_or("").to_string();
        }
    }
    let status = child.wait().expect("wait for readyloop load");
    let mut note = String::new();
    if !status.success() {
        note = format!("load exited {status}");
    }
    if !errors.is_empty() && errors != "0" {
        note = format!("{note} {errors} errors").trim().to_string();
    }
    Sample {
        ops,
        secs: secs as f64,
        cpu_ns: cpu1 - cpu0,
        note,
    }
}

/// `wrk -t1 -c50 -dSECS http://ADDR/healthz`: the server's CPU over wrk's whole run.
fn measure_wrk(server: &Server, secs: u64) -> Sample {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c50", &format!("-d{secs}s")])
        .arg(format!("http://{}/healthz", server.addr));
    pin(&mut cmd, cpus().map(|c| c.1));
    let pid = server.child.id();
    let cpu0 = cpu_ns(pid);
    let out = cmd.output().expect("run wrk");
    let cpu1 = cpu_ns(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    // `  123456 requests in 5.00s, 12.34MB read`
    let ops = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    let mut note = String::new();
    if let Some(l) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("errors"))
    {
        note = l.trim().to_string();
    }
    Sample {
        ops,
        secs: secs as f64,
        cpu_ns: cpu1 - cpu0,
        note,
    }
}

/// The response readyloop gives to `GET /healthz` (head and body), for the HTTP floor and
/// baseline to answer with.
fn capture_response(addr: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect to readyloop");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read response");
        assert!(n > 0, "readyloop closed before answering");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                got.truncate(end + 4 + len);
                return got;
            }
        }
    }
}

/// What one server did on one path over all rounds.
struct Figures {
    kind: Kind,
    ns_per_op: Vec<f64>,
    ops_per_s: Vec<f64>,
    notes: Vec<String>,
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs one path: every server, `rounds` times, alternating.
fn run_path(path: &PathSpec, rounds: usize, warm: u64, secs: u64) -> (String, Vec<Figures>) {
    let wrk = path.load.is_none() && have("wrk");
    let client = match path.load {
        Some(args) => format!("readyloop load {}", args.join(" ")),
        None if wrk => "wrk -t1 -c50".to_string(),
        None => "readyloop load http --conns 50 (wrk not installed)".to_string(),
    };
    let mut kinds = vec![
        Kind::ReadyloopDefault,
        Kind::ReadyloopWarn,
        Kind::Floor,
        Kind::Tokio,
    ];
    if path.nginx {
        kinds.push(Kind::Nginx);
    }
    if before_bin().is_some() {
        kinds.insert(0, Kind::Before);
    }
    let response_dir = TempDir::new("response");
    let response_file = response_dir.0.join("response");
    if path.listener == "http" {
        let server = start(Kind::ReadyloopWarn, path, &response_file).unwrap();
        std::fs::write(&response_file, capture_response(server.addr)).unwrap();
    }
    let mut figures: Vec<Figures> = kinds
        .iter()
        .map(|&kind| Figures {
            kind,
            ns_per_op: Vec::new(),
            ops_per_s: Vec::new(),
            notes: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for f in &mut figures {
            let Some(server) = start(f.kind, path, &response_file) else {
                f.notes.push("skipped: nginx not installed".into());
                continue;
            };
            let s = match path.load {
                Some(args) => measure_load(&server, args, path.warm.max(warm), secs),
                None if wrk => {
                    // wrk's whole run is the window: warm the server up first.
                    let _ = measure_wrk(&server, 1);
                    measure_wrk(&server, secs)
                }
                None => measure_load(
                    &server,
                    &["http", "--conns", "50", "--path", "/healthz"],
                    warm,
                    secs,
                ),
            };
            drop(server);
            let ns = s.cpu_ns / s.ops;
            eprintln!(
                "at_floor {} round {}: {}: {:.0} {}/s, {ns:.0} ns server CPU per {} {}",
                path.name,
                round + 1,
                f.kind.label(),
                s.ops / s.secs,
                path.unit,
                path.unit,
                s.note
            );
            f.ns_per_op.push(ns);
            f.ops_per_s.push(s.ops / s.secs);
            if !s.note.is_empty() {
                f.notes.push(s.note);
            }
        }
    }
    (client, figures)
}

fn serve(role: &str) {
    let response = || std::fs::read(std::env::var(RESPONSE_ENV).unwrap()).unwrap();
    let tokio = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    };
    let bind = |kind: &'static str| async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        floor::announce(kind, l.local_addr().unwrap());
        l
    };
    let result = match role {
        "floor-line" => floor::run("line", floor::line::LineEcho),
        "floor-http" => floor::run("http", floor::http::FixedResponse::new(response())),
        "floor-ws" => floor::run("http", floor::ws::WsFloor::new(common::ws_client::PREFIX)),
        "floor-hello" => floor::hello::run(GREETING),
        "tokio-line" => {
            tokio(Box::pin(async move {
                common::tokio_line_server(bind("line").await, std::future::pending()).await
            }));
            Ok(())
        }
        "tokio-http" => {
            let response = response();
            tokio(Box::pin(async move {
                common::tokio_fixed_http(bind("http").await, response).await
            }));
            Ok(())
        }
        "tokio-hello" => {
            tokio(Box::pin(async move {
                common::tokio_hello(bind("hello").await, GREETING).await
            }));
            Ok(())
        }
        "tokio-ws" => {
            common::tokio_ws::run_tokio_ws_server();
            Ok(())
        }
        other => panic!("unknown {SERVE_ENV}={other}"),
    };
    if let Err(e) = result {
        eprintln!("{role}: {e}");
        std::process::exit(1);
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns.is_finite() {
        format!("{ns:.0}")
    } else {
        "–".into()
    }
}

/// `a / b` of the medians, and the spread of the per-round ratios.
fn ratio(a: &Figures, b: &Figures) -> String {
    let m = median(&a.ns_per_op) / median(&b.ns_per_op);
    if !m.is_finite() {
        return "–".into();
    }
    let per_round: Vec<f64> = a
        .ns_per_op
        .iter()
        .zip(&b.ns_per_op)
        .map(|(x, y)| x / y)
        .filter(|r| r.is_finite())
        .collect();
    let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per_round.iter().copied().fold(0.0, f64::max);
    if per_round.len() > 1 {
        format!("**{m:.2}×** ({lo:.2}–{hi:.2})")
    } else {
        format!("**{m:.2}×**")
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    readyloop::runtime::sys::raise_nofile_limit().unwrap();
    if let Ok(role) = std::env::var(SERVE_ENV) {
        serve(&role);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too: keep that quick.
    let quick = std::env::args().all(|a| a != "--bench");
    let secs: u64 = env_num("BENCH_SECS", if quick { 1 } else { 5 });
    let warm: u64 = env_num("BENCH_WARM", if quick { 1 } else { 2 });
    let rounds: usize = env_num("BENCH_ROUNDS", if quick { 1 } else { 3 }).max(1);
    let only = std::env::var("BENCH_PATHS").ok();
    let paths: Vec<&PathSpec> = PATHS
        .iter()
        .filter(|p| {
            only.as_deref()
                .map_or(true, |o| o.split(',').any(|n| n == p.name))
        })
        .collect();
    let mut rows = Vec::new();
    let mut before_rows = Vec::new();
    let mut detail = Vec::new();
    for path in paths {
        let (client, figures) = run_path(path, rounds, warm, secs);
        let get = |k: Kind| figures.iter().find(|f| f.kind == k);
        let (def, warn, fl, tk) = (
            get(Kind::ReadyloopDefault).unwrap(),
            get(Kind::ReadyloopWarn).unwrap(),
            get(Kind::Floor).unwrap(),
            get(Kind::Tokio).unwrap(),
        );
        let nginx = get(Kind::Nginx);
        if let Some(b) = get(Kind::Before) {
            before_rows.push(format!(
                "| {} | {} | {} | {} |",
                path.what,
                fmt_ns(median(&b.ns_per_op)),
                fmt_ns(median(&def.ns_per_op)),
                ratio(def, b)
            ));
        }
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            path.what,
            fmt_ns(median(&def.ns_per_op)),
            fmt_ns(median(&warn.ns_per_op)),
            fmt_ns(median(&fl.ns_per_op)),
            fmt_ns(median(&tk.ns_per_op)),
            nginx.map_or("".into(), |n| fmt_ns(median(&n.ns_per_op))),
            ratio(def, fl),
            ratio(warn, fl),
            ratio(def, tk),
            ratio(warn, tk),
            nginx.map_or("".into(), |n| ratio(def, n)),
        ));
        for f in &figures {
            let per: Vec<String> = f.ns_per_op.iter().map(|x| fmt_ns(*x)).collect();
            let mut notes = f.notes.clone();
            notes.dedup();
            detail.push(format!(
                "| {} | {} | {} | {} | {:.0} | {} |",
                path.name,
                client,
                f.kind.label(),
                per.join(", "),
                median(&f.ops_per_s),
                notes.join("; ")
            ));
        }
    }
    let pinning = match cpus() {
        Some((server, client)) => format!("server pinned to CPU {server}, client to CPU {client}"),
        None => "one CPU: nothing pinned".into(),
    };
    let before = match before_bin() {
        Some(bin) if !before_rows.is_empty() => format!(
            "### This build against `{}` (default flags, same rounds)\n\n\
             | path | before | after | after / before |\n|---|---:|---:|---:|\n{}\n\n",
            bin.display(),
            before_rows.join("\n")
        ),
        _ => String::new(),
    };
    let report = format!(
        "## At the floor: server CPU per operation (ns), median of {rounds} rounds × {secs} s\n\n\
         {pinning}; readyloop's ratios against each baseline, medians with the per-round spread.\n\n\
         | path | readyloop default | readyloop warn | floor | tokio | nginx | default / floor | warn / floor | default / tokio | warn / tokio | default / nginx |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{}\n\n{before}\
         ### Per round\n\n\
         | path | client | server | ns per op, each round | ops/s (median) | notes |\n\
         |---|---|---|---|---:|---|\n{}\n",
        rows.join("\n"),
        detail.join("\n")
    );
    publish("bench-at-floor.md", &report);
}

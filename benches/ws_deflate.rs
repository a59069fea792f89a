//! permessage-deflate benchmark (RFC 7692), one run, side by side:
//!
//! - **broadcast**: 1,000 `/ws` subscribers and one sender of 1 KiB JSON-like chat messages,
//!   `WINDOW` messages in flight; readyloop with every subscriber offering deflate, readyloop
//!   with none offering it, and Python `websockets` (compression on, its default: a zlib
//!   context per connection, so `broadcast()` compresses once per recipient). Reported per
//!   delivery: bytes on the wire (frame header included) and **server CPU** (utime + stime
//!   from /proc/PID/stat over the measured window). tokio-tungstenite 0.28 has no
//!   permessage-deflate, so it has no row.
//! - **/echo**: 50 connections ping-pong 1 KiB JSON-like text (sent plain, answered
//!   compressed when negotiated): round trips/s and server CPU per round trip.
//! - **idle**: user-space bytes per idle WebSocket (RSS growth / N, `BENCH_IDLE_CONNS`,
//!   default 2,000, on a fresh server each), with and without deflate negotiated; each
//!   connection first echoes one compressed-size message, so the loop's one compressor and
//!   inflater exist before the *before* figure (they are per loop, reported separately).
//!
//! The server is pinned to CPU 1 and this client to CPU 0 (`BENCH_PIN=0`: off). The client
//! only parses frame headers and counts bytes; it never inflates. `BENCH_SECS` (default 3)
//! sets each timed run. Prints a Markdown table, also written to target/bench-ws-deflate.md.
//! Run: `cargo bench --bench ws_deflate`.

mod common;

use common::ws_client::{self, write_all};
use common::{env_num, pin};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 1000;
const WINDOW: usize = 16;
const MESSAGE: usize = 1024;
const ECHO_CONNS: usize = 50;
const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Python websockets' broadcast server: `/ws` sends `PREFIX + message` to every client with
/// `broadcast()`, `/echo` echoes. Compression is on (the library's default).
const PYTHON_SERVER: &str = r#"
import asyncio
from websockets.asyncio.server import serve, broadcast
PREFIX = "📢 새로운 알림: "
CLIENTS = set()
async def handler(ws):
    if ws.request.path == "/ws":
        CLIENTS.add(ws)
        try:
            async for m in ws:
                broadcast(CLIENTS, PREFIX + m)
        finally:
            CLIENTS.discard(ws)
    else:
        async for m in ws:
            await ws.send(m)
async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
                     max_queue=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening http 127.0.0.1:{port}", flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

/// A server process, killed on drop.
struct Server(Child, SocketAddr);

impl Server {
    fn start(mut cmd: Command, pinned: bool) -> Server {
        if pinned {
            // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs before exec.
            unsafe {
                cmd.pre_exec(|| pin(0, SERVER_CPU));
            }
        }
        let (child, addr) = common::spawn_http(&mut cmd);
        Server(child, addr)
    }

    fn readyloop(pinned: bool) -> Server {
        Self::start(common::readyloop_http("bench-deflate"), pinned)
    }

    fn python(pinned: bool) -> Option<Server> {
        let ok = Command::new("python3")
            .args(["-c", "import websockets.asyncio.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("python3 with websockets >= 13 not found: no Python row");
            return None;
        }
        let mut cmd = Command::new("python3");
        // Its tracebacks when the bench drops 1,000 connections at once are not news.
        cmd.args(["-c", PYTHON_SERVER]).stderr(Stdio::null());
        Some(Self::start(cmd, pinned))
    }

    /// CPU seconds (user + system) used so far.
    fn cpu_secs(&self) -> f64 {
        common::proc_cpu_secs(self.0.id())
    }

    /// Resident set size in bytes, from /proc/PID/statm.
    fn rss(&self) -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.0.id())).unwrap();
        let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Upgrades `path` on a blocking socket (offering deflate when `deflate`), then hands it over
/// non-blocking; returns whether the server accepted the extension.
fn connect(addr: SocketAddr, path: &str, deflate: bool) -> (TcpStream, bool) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        if deflate { OFFER } else { "" }
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF in the handshake");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let negotiated = head.contains("sec-websocket-extensions: permessage-deflate");
    s.set_nonblocking(true).unwrap();
    (TcpStream::from_std(s), negotiated)
}

/// A masked client text frame of any length.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [1, 2, 3, 4];
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

/// A JSON-like chat message of `MESSAGE` bytes, different for every `seq`.
fn chat(seq: u64) -> Vec<u8> {
    let rooms = ["general", "random", "ops", "design"];
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < MESSAGE {
        let n = seq.wrapping_mul(31).wrapping_add(i);
        s.push_str(&format!(
            "{{\"id\":{n},\"user\":\"user{}\",\"room\":\"{}\",\"text\":\"message {n} about \
             the deploy at {}:{:02}\",\"ts\":{}}},",
            n % 97,
            rooms[(n % 4) as usize],
            n % 24,
            n % 60,
            1_733_100_000_000u64 + n
        ));
        i += 1;
    }
    let mut b = s.into_bytes();
    b.truncate(MESSAGE);
    b
}

/// Reads what is there; returns (bytes read, whole frames). Frames that are not complete
/// stay in `buf`.
fn drain(s: &mut TcpStream, buf: &mut Vec<u8>, scratch: &mut [u8]) -> (u64, u64) {
    let mut frames = 0;
    let bytes = ws_client::drain(s, buf, scratch, |_| frames += 1);
    (bytes, frames)
}

/// What one timed run measured.
struct Measured {
    deliveries: u64,
    wire_bytes: u64,
    secs: f64,
    cpu_secs: f64,
    negotiated: bool,
}

impl Measured {
    fn row(&self, name: &str, unit: &str) -> String {
        let n = self.deliveries.max(1) as f64;
        format!(
            "| {name} | {} | {:.0} | {:.0} | {:.2} |",
            if self.negotiated { "yes" } else { "no" },
            self.deliveries as f64 / self.secs,
            self.wire_bytes as f64 / n,
            self.cpu_secs * 1e6 / n,
        ) + &format!(" {unit} |")
    }
}

/// The closed-loop broadcast: `SUBSCRIBERS` subscribers, one sender, `WINDOW` in flight
/// (a message counts as done once `SUBSCRIBERS` more frames have arrived in total).
fn broadcast(server: &Server, deflate: bool, secs: f64) -> Measured {
    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    let mut negotiated = true;
    for _ in 0..SUBSCRIBERS {
        let (s, n) = connect(server.1, "/ws", deflate);
        negotiated &= n;
        conns.push((s, Vec::new()));
    }
    let (sender, _) = connect(server.1, "/ws", false);
    conns.push((sender, Vec::new()));
    let sender = SUBSCRIBERS;
    for (i, (s, _)) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .unwrap();
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let (mut sent, mut deliveries, mut wire_bytes) = (0u64, 0u64, 0u64);
    let cpu_before = server.cpu_secs();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut last = start;
    loop {
        let done = deliveries / SUBSCRIBERS as u64;
        let now = Instant::now();
        while sent - done < WINDOW as u64 && now < end {
            write_all(&mut conns[sender].0, &masked_text(&chat(sent)));
            sent += 1;
        }
        if done == sent {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        if events.is_empty() {
            eprintln!("no progress for 5 s: ending the run with {deliveries} deliveries");
            break;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let (s, buf) = &mut conns[i];
            let (bytes, frames) = drain(s, buf, &mut scratch);
            if i != sender {
                wire_bytes += bytes;
                deliveries += frames;
                last = Instant::now();
            }
        }
    }
    Measured {
        deliveries,
        wire_bytes,
        secs: (last - start).as_secs_f64(),
        cpu_secs: server.cpu_secs() - cpu_before,
        negotiated,
    }
}

/// `ECHO_CONNS` connections ping-pong a 1 KiB message on `/echo`.
fn echo(server: &Server, deflate: bool, secs: f64) -> Measured {
    let mut poll = Poll::new().unwrap();
    let mut negotiated = true;
    let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..ECHO_CONNS)
        .map(|_| {
            let (s, n) = connect(server.1, "/echo", deflate);
            negotiated &= n;
            (s, Vec::new())
        })
        .collect();
    let cpu_before = server.cpu_secs();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    for (i, (s, _)) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .unwrap();
        write_all(s, &masked_text(&chat(i as u64)));
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let (mut trips, mut wire_bytes, mut waiting) = (0u64, 0u64, ECHO_CONNS);
    let mut last = start;
    while waiting > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "echo: no progress for 5 s");
        for ev in events.iter() {
            let (s, buf) = &mut conns[ev.token().0];
            let (bytes, frames) = drain(s, buf, &mut scratch);
            wire_bytes += bytes;
            for _ in 0..frames {
                trips += 1;
                last = Instant::now();
                if last < end {
                    write_all(s, &masked_text(&chat(trips)));
                } else {
                    waiting -= 1;
                }
            }
        }
    }
    Measured {
        deliveries: trips,
        wire_bytes,
        secs: (last - start).as_secs_f64(),
        cpu_secs: server.cpu_secs() - cpu_before,
        negotiated,
    }
}

/// User-space bytes per idle `/echo` WebSocket on a fresh server, after each one echoed one
/// 1 KiB message; and the RSS the warm-up connection added (the per-loop contexts).
fn idle(deflate: bool, conns: usize, pinned: bool) -> (f64, i64) {
    let server = Server::readyloop(pinned);
    let exchange = |s: &mut TcpStream| {
        write_all(s, &masked_text(&chat(7)));
        let (mut buf, mut scratch) = (Vec::new(), vec![0u8; 4096]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while drain(s, &mut buf, &mut scratch).1 == 0 {
            assert!(Instant::now() < deadline, "idle: no echo");
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    let fresh = server.rss();
    let (mut warm, _) = connect(server.1, "/echo", deflate);
    exchange(&mut warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss();
    let mut open = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (mut s, n) = connect(server.1, "/echo", deflate);
        assert_eq!(n, deflate);
        exchange(&mut s);
        open.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss();
    (
        (after as f64 - before as f64) / conns as f64,
        before as i64 - fresh as i64,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    readyloop::runtime::sys::raise_nofile_limit().unwrap();
    let secs: f64 = env_num("BENCH_SECS", 3.0);
    let idle_conns: usize = env_num("BENCH_IDLE_CONNS", 2000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = env_num("BENCH_PIN", 1) == 1 && cores > SERVER_CPU;
    if pinned {
        pin(0, CLIENT_CPU).unwrap();
    }
    let mut rows = Vec::new();

    let ours = Server::readyloop(pinned);
    let unit = "per delivery";
    let plain = broadcast(&ours, false, secs);
    rows.push(plain.row("broadcast, readyloop, plain", unit));
    let deflated = broadcast(&ours, true, secs);
    rows.push(deflated.row("broadcast, readyloop, permessage-deflate", unit));
    let python = Server::python(pinned).map(|py| broadcast(&py, true, secs));
    if let Some(py) = &python {
        rows.push(py.row("broadcast, Python websockets, compression on", unit));
    }
    let unit = "per round trip";
    rows.push(echo(&ours, false, secs).row("/echo 50 conns, readyloop, plain", unit));
    rows.push(echo(&ours, true, secs).row("/echo 50 conns, readyloop, permessage-deflate", unit));
    drop(ours);

    let (idle_plain, warm_plain) = idle(false, idle_conns, pinned);
    let (idle_deflate, warm_deflate) = idle(true, idle_conns, pinned);
    let per_loop = warm_deflate - warm_plain;
    let ratio = |a: &Measured, b: &Measured| {
        let per = |m: &Measured| m.cpu_secs / m.deliveries.max(1) as f64;
        per(a) / per(b)
    };
    let bytes_per = |m: &Measured| m.wire_bytes as f64 / m.deliveries.max(1) as f64;
    let mut table = format!(
        "permessage-deflate, {secs} s per run, {cores} cores, server pinned to CPU {SERVER_CPU} and \
         client to CPU {CLIENT_CPU}: {pinned}. Broadcast: {SUBSCRIBERS} subscribers, {WINDOW} \
         messages of {MESSAGE} B JSON in flight. Server CPU is utime + stime over the run.\n\n\
         | run | deflate negotiated | deliveries/s | wire bytes | server CPU µs | per |\n\
         |---|---|---:|---:|---:|---|\n{}\n\n",
        rows.join("\n")
    );
    table.push_str(&format!(
        "Broadcast: deflate sends {:.1}× fewer bytes than plain for {:.2}× the server CPU per \
         delivery",
        bytes_per(&plain) / bytes_per(&deflated).max(1e-9),
        ratio(&deflated, &plain),
    ));
    if let Some(py) = &python {
        table.push_str(&format!(
            "; Python websockets (compression on) uses {:.1}× readyloop-deflate's CPU per delivery",
            ratio(py, &deflated)
        ));
    }
    table.push_str(&format!(
        ".\n\nIdle /echo WebSocket, {idle_conns} connections on a fresh server each: \
         {idle_plain:.0} B each plain, {idle_deflate:.0} B each with deflate negotiated \
         (the loop's one compressor + inflater, made on first use: {} KiB once).\n",
        per_loop / 1024
    ));
    print!("{table}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    std::fs::write(target.join("bench-ws-deflate.md"), &table).unwrap();
}

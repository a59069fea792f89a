//! Broadcast across processes through Redis: what the relay costs.
//!
//! 1,000 `/ws` subscribers in total and one sender (on the first process) keeping `WINDOW`
//! messages in flight (a message is complete once every subscriber has it), closed loop:
//! - **1 process**: all subscribers on one `readyloop serve`, no Redis (the baseline);
//! - **1 process + Redis**: the same, with `--redis` (each message is also published, and
//!   its echo from the subscription skipped);
//! - **2 processes + Redis**: 500 subscribers on each; the second process gets every message
//!   through Redis.
//!
//! Reported: deliveries/s (frames received by subscribers) and p50/p99 send-to-receive latency.
//! `BENCH_SECS` (default 3) sets each run's length. Needs Debian's `redis-server` (skipped with a
//! message when it is absent). Prints a Markdown table and writes it to target/bench-redis.md.
//! Run: `cargo bench --bench redis_broadcast`.

mod common;

use common::ws_client::{broadcast, BROADCAST_SIZE, SUBSCRIBERS, WINDOW};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Option<(Proc, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let proc = Proc(child);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((proc, port))
}

/// `readyloop serve` with only HTTP, optionally relaying through Redis; waits until its Redis
/// links are up.
fn readyloop(redis: Option<u16>) -> (Proc, SocketAddr) {
    let mut cmd = common::readyloop_http("bench-redis");
    if let Some(port) = redis {
        cmd.arg("--redis").arg(format!("redis://127.0.0.1:{port}"));
    }
    let (child, addr) = common::spawn_http(&mut cmd);
    let proc = Proc(child);
    if redis.is_some() {
        let end = Instant::now() + Duration::from_secs(10);
        while !get(addr, "/stats").contains("\"redis_connected\": true") {
            assert!(Instant::now() < end, "readyloop never connected to redis");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (proc, addr)
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    readyloop::runtime::sys::raise_nofile_limit().unwrap();
    let secs: f64 = common::env_num("BENCH_SECS", 3.0);
    let Some((_redis, port)) = redis_server() else {
        eprintln!(
            "redis_broadcast: skipped, `redis-server` is not installed \
             (apt-get install -y redis-server)"
        );
        return;
    };
    let mut rows = Vec::new();
    let setups: [(&str, usize, bool); 3] = [
        ("1 process", 1, false),
        ("1 process + Redis", 1, true),
        ("2 processes + Redis", 2, true),
    ];
    for (name, n, with_redis) in setups {
        let procs: Vec<(Proc, SocketAddr)> = (0..n)
            .map(|_| readyloop(with_redis.then_some(port)))
            .collect();
        let addrs: Vec<SocketAddr> = procs.iter().map(|p| p.1).collect();
        let r = broadcast(&addrs, secs);
        eprintln!("{name}: {:.0} deliveries/s ({} total)", r.rate, r.count);
        rows.push(format!(
            "| {name} | {} | {:.0} | {} µs | {} µs |",
            SUBSCRIBERS / n,
            r.rate,
            r.p50_us,
            r.p99_us
        ));
    }
    let report = format!(
        "Broadcast through Redis pub/sub: {SUBSCRIBERS} `/ws` subscribers in total, one sender on the \
         first process, {WINDOW} messages of {BROADCAST_SIZE} B in flight (closed loop), {secs} s per \
         run, {} cores, one loop thread per process, one local redis-server; client, servers and \
         Redis share the machine (load average at the end: {}).\n\
         Command: `cargo bench --bench redis_broadcast`\n\n\
         | setup | subscribers per process | deliveries/s | p50 | p99 |\n\
         |---|---:|---:|---:|---:|\n{}\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split(' ').next().map(str::to_string))
            .unwrap_or_else(|| "?".into()),
        rows.join("\n")
    );
    common::publish("bench-redis.md", &report);
}

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

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 1000;
/// Broadcast messages in flight at once (each one goes to every subscriber).
const WINDOW: usize = 16;
const PREFIX: &str = "📢 새로운 알림: ";
/// Bytes of the sender's text: `seq` (16 digits) and the send time in ns (20 digits), padded.
const BROADCAST_SIZE: usize = 64;

struct Result {
    rate: f64,
    p50_us: u64,
    p99_us: u64,
    count: u64,
}

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

/// Connects and upgrades on a blocking socket, then hands it over non-blocking.
fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF in the handshake");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s.set_nonblocking(true).unwrap();
    TcpStream::from_std(s)
}

/// A masked client text frame (a fixed key: masking is for proxies, not secrecy).
fn masked_text(payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [1, 2, 3, 4];
    assert!(payload.len() < 126);
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

fn write_all(s: &mut TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads what is there; calls `on_frame(payload)` for every whole (small) server frame.
fn drain(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    scratch: &mut [u8],
    mut on_frame: impl FnMut(&[u8]),
) {
    loop {
        match s.read(scratch) {
            Ok(0) => panic!("server closed a connection"),
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    let mut at = 0;
    while buf.len() - at >= 2 {
        let rest = &buf[at..];
        let (len, head) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            126 => break,
            n => (n as usize, 2),
        };
        if rest.len() < head + len {
            break;
        }
        on_frame(&rest[head..head + len]);
        at += head + len;
    }
    buf.drain(..at);
}

fn field(payload: &[u8], from: usize, len: usize) -> u64 {
    std::str::from_utf8(&payload[from..from + len])
        .unwrap()
        .parse()
        .unwrap()
}

/// Subscribers spread evenly over `servers`; the sender is on the first.
fn broadcast(servers: &[SocketAddr], secs: f64) -> Result {
    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..SUBSCRIBERS)
        .map(|i| (connect(servers[i % servers.len()]), Vec::new()))
        .collect();
    conns.push((connect(servers[0]), Vec::new()));
    for (i, (s, _)) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .unwrap();
    }
    let sender = SUBSCRIBERS;
    let prefix = PREFIX.len();
    let base = Instant::now();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let ring = 1024;
    let mut remaining = vec![0usize; ring];
    let (mut next_seq, mut in_flight, mut deliveries) = (0u64, 0usize, 0u64);
    let send = |conns: &mut Vec<(TcpStream, Vec<u8>)>, seq: u64| {
        let mut text = format!("{seq:016}{:020}", base.elapsed().as_nanos());
        while text.len() < BROADCAST_SIZE {
            text.push('.');
        }
        write_all(&mut conns[sender].0, &masked_text(text.as_bytes()));
    };
    let end = base + Duration::from_secs_f64(secs);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let mut last = base;
    while in_flight < WINDOW {
        remaining[next_seq as usize % ring] = SUBSCRIBERS;
        send(&mut conns, next_seq);
        next_seq += 1;
        in_flight += 1;
    }
    while in_flight > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            !events.is_empty(),
            "no progress for 5 s ({in_flight} in flight)"
        );
        let mut completed = 0;
        for ev in events.iter() {
            let i = ev.token().0;
            let (s, buf) = &mut conns[i];
            let now_ns = base.elapsed().as_nanos() as u64;
            drain(s, buf, &mut scratch, |p| {
                if i == sender {
                    return;
                }
                let seq = field(p, prefix, 16);
                let sent = field(p, prefix + 16, 20);
                hist.record((now_ns - sent) / 1000).unwrap();
                deliveries += 1;
                let r = &mut remaining[seq as usize % ring];
                *r -= 1;
                if *r == 0 {
                    completed += 1;
                }
            });
        }
        in_flight -= completed;
        if completed > 0 {
            last = Instant::now();
        }
        while in_flight < WINDOW && Instant::now() < end {
            remaining[next_seq as usize % ring] = SUBSCRIBERS;
            send(&mut conns, next_seq);
            next_seq += 1;
            in_flight += 1;
        }
    }
    Result {
        rate: deliveries as f64 / (last - base).as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        count: deliveries,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    readyloop::sys::raise_nofile_limit().unwrap();
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

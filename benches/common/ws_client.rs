//! The WebSocket bench client shared by ws_broadcast and redis_broadcast: one thread on `mio`
//! that upgrades plain TCP connections, writes masked client frames, and only parses frame
//! headers and the numbers each message carries, so it stays cheaper than the servers it drives.
//! Also the closed-loop `/ws` broadcast measurement both benches run.

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `/ws` subscribers in a broadcast run (in total, over all servers).
pub const SUBSCRIBERS: usize = 1000;
/// Broadcast messages in flight at once (each one goes to every subscriber).
pub const WINDOW: usize = 16;
/// What a `/ws` server puts before each broadcast text.
pub const PREFIX: &str = "📢 새로운 알림: ";
/// Bytes of the sender's text: `seq` (16 digits) and the send time in ns (20 digits), padded.
pub const BROADCAST_SIZE: usize = 64;

/// One closed-loop run.
pub struct Run {
    /// Deliveries (or round trips) per second.
    pub rate: f64,
    /// Length of the run, s.
    pub secs: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub count: u64,
}

/// Connects and upgrades `path` on a blocking socket, then hands it over non-blocking.
pub fn connect(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "EOF in the handshake");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.set_nonblocking(true).unwrap();
    TcpStream::from_std(s)
}

/// A masked client frame (the key is fixed: masking is for proxies, not secrecy).
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [1, 2, 3, 4];
    assert!(payload.len() < 126);
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

/// Writes all of `bytes` to a non-blocking socket (tiny frames: WouldBlock is rare; spin).
pub fn write_all(s: &mut TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads what is there; calls `on_frame(payload)` for every whole server frame (frames not
/// yet complete stay in `buf`). Returns the bytes read from the socket.
pub fn drain(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    scratch: &mut [u8],
    mut on_frame: impl FnMut(&[u8]),
) -> u64 {
    let mut bytes = 0;
    loop {
        match s.read(scratch) {
            Ok(0) => panic!("server closed a connection"),
            Ok(n) => {
                bytes += n as u64;
                buf.extend_from_slice(&scratch[..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            break;
        }
        let (len, head) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if rest.len() < head + len {
            break;
        }
        on_frame(&rest[head..head + len]);
        at += head + len;
    }
    buf.drain(..at);
    bytes
}

/// The decimal number in `payload[from..from + len]`.
pub fn field(payload: &[u8], from: usize, len: usize) -> u64 {
    std::str::from_utf8(&payload[from..from + len])
        .unwrap()
        .parse()
        .unwrap()
}

/// `SUBSCRIBERS` `/ws` subscribers spread evenly over `servers`, and one sender (on the first)
/// keeping `WINDOW` messages in flight; a message is complete once every subscriber has it.
/// Runs `secs`, then waits for what is in flight.
pub fn broadcast(servers: &[SocketAddr], secs: f64) -> Run {
    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..SUBSCRIBERS)
        .map(|i| (connect(servers[i % servers.len()], "/ws"), Vec::new()))
        .collect();
    conns.push((connect(servers[0], "/ws"), Vec::new()));
    for (i, (s, _)) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .unwrap();
    }
    let sender = SUBSCRIBERS; // the last connection sends; its own copies are not counted
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
        write_all(&mut conns[sender].0, &masked(0x1, text.as_bytes()));
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
    Run {
        rate: deliveries as f64 / (last - base).as_secs_f64(),
        secs: (last - base).as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        count: deliveries,
    }
}

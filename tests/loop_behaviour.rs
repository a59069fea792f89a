//! What the loop does under pressure, observed from outside with real sockets: backpressure
//! and bounded memory, resets, many connections, descriptor exhaustion, graceful shutdown, and
//! the trace log.

#![cfg(feature = "cli")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const MIB: usize = 1 << 20;

/// 10 MiB of lines echoed to a client that reads slowly at first: every byte comes back in
/// order, and the server's RSS stays bounded because it stops reading past its high watermark.
#[test]
fn burst_to_slow_reader_is_echoed_intact_with_bounded_memory() {
    let server = Server::start(&[]);
    let mut s = connect(server.line());
    // A small receive buffer (autotuning off): the kernel cannot absorb the burst for us, so
    // without backpressure the server itself would hold most of the 10 MiB.
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(64 * 1024)
        .unwrap();
    // Warm up the connection path so the baseline includes the allocator's first arenas.
    echo(&mut s, "warm up\n");
    let base = server.rss();
    let data = numbered_lines(10 * MIB, 1000);
    let writer = {
        let mut w = s.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            w.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
            w.write_all(&data).expect("write the burst");
        })
    };
    let mut got = Vec::with_capacity(data.len());
    let mut peak = base;
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    // Slow phase: 1 KiB reads with pauses for ~1.5 s, long enough for the writer to fill every
    // buffer between us and stall on the paused server.
    while start.elapsed() < Duration::from_millis(1500) {
        let n = s.read(&mut buf[..1024]).expect("slow read");
        assert!(n > 0, "early EOF");
        got.extend_from_slice(&buf[..n]);
        peak = peak.max(server.rss());
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        got.len() < 2 * MIB,
        "slow phase read {} bytes: not slow",
        got.len()
    );
    // Fast phase.
    let mut reads = 0u64;
    while got.len() < data.len() {
        let n = s.read(&mut buf).expect("fast read");
        assert!(n > 0, "EOF after {} of {} bytes", got.len(), data.len());
        got.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads % 16 == 0 {
            peak = peak.max(server.rss());
        }
    }
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    if got != data {
        let at = got.iter().zip(&data).position(|(a, b)| a != b).unwrap();
        panic!("echo differs at byte {at}");
    }
    let grew = peak.saturating_sub(base);
    eprintln!("RSS base {base} peak {peak} (+{grew} bytes)");
    assert!(
        grew < 4 * MIB as u64,
        "RSS grew by {grew} bytes during a 10 MiB burst (base {base}, peak {peak})"
    );
    echo(&mut s, "after the burst\n");
}

/// A client that resets its connection while the server is writing a big echo to it does not
/// take the server down; other clients keep being served.
#[test]
fn reset_mid_write_leaves_others_served() {
    let server = Server::start(&[]);
    let mut bystander = connect(server.line());
    echo(&mut bystander, "before\n");
    for round in 0..3 {
        let mut victim = connect(server.line());
        // Send lines without reading until the server stops taking them: by then it has a
        // full socket buffer and its own queue of echoes for us.
        let data = numbered_lines(16 * MIB, 4096);
        let sent = stuff(&mut victim, &data, Duration::from_millis(300));
        assert!(sent > MIB, "only {sent} bytes accepted");
        // Read a little so the server is mid-flush, then reset.
        let _ = read_n(&mut victim, 4096);
        socket2::SockRef::from(&victim)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(victim);
        echo(&mut bystander, &format!("after reset {round}\n"));
        let mut fresh = connect(server.line());
        echo(&mut fresh, "fresh\n");
        let mut h = connect(server.hello());
        assert_eq!(read_to_eof(&mut h), b"Hello, World!\n");
    }
    let mut server = server;
    assert!(server.alive());
}

/// 5,000 line connections open at once, each echoing its own line.
#[test]
fn five_thousand_concurrent_connections() {
    const N: usize = 5000;
    let limit = raise_nofile();
    assert!(limit > N as u64 + 200, "RLIMIT_NOFILE hard limit {limit}");
    let server = Server::start(&[]);
    let addr = server.line();
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(connect(addr));
    }
    // Every connection is open before any of them talks.
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("conn {i}\n").as_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let want = format!("conn {i}\n");
        assert_eq!(String::from_utf8(read_n(c, want.len())).unwrap(), want);
    }
    // And again, in reverse order, on the same connections.
    for (i, c) in conns.iter_mut().enumerate().rev() {
        echo(c, &format!("again {i}\n"));
    }
    eprintln!("{N} connections served in {:?}", start.elapsed());
    let mut server = server;
    assert!(server.alive());
}

/// Out of descriptors: the server keeps serving the connections it has, does not spin on the
/// accept that keeps failing, warns once, and recovers when descriptors free up.
#[test]
fn emfile_pauses_accepts_without_spinning_and_recovers() {
    const CLIENTS: usize = 100;
    let server = Server::start_with(
        &["--http", "off"],
        Options {
            nofile: Some(64),
            ..Options::default()
        },
    );
    let addr = server.line();
    // The kernel completes every handshake into the backlog; the server can only accept
    // about 64 minus its own descriptors.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("client {i}\n").as_bytes()).unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    let ready = readable(&clients.iter().collect::<Vec<_>>(), Duration::ZERO);
    let served: Vec<usize> = (0..CLIENTS).filter(|&i| ready[i]).collect();
    let waiting: Vec<usize> = (0..CLIENTS).filter(|&i| !ready[i]).collect();
    assert!(
        served.len() >= 30 && !waiting.is_empty(),
        "served {} of {CLIENTS} under RLIMIT_NOFILE 64",
        served.len()
    );
    for &i in &served {
        let want = format!("client {i}\n");
        assert_eq!(
            String::from_utf8(read_n(&mut clients[i], want.len())).unwrap(),
            want
        );
    }
    // Saturated: the backlog holds connections it cannot accept. It must sleep, not spin.
    let cpu_before = server.cpu_time();
    let wall = Instant::now();
    thread::sleep(Duration::from_millis(1000));
    let cpu = server.cpu_time() - cpu_before;
    let wall = wall.elapsed();
    assert!(
        cpu < Duration::from_millis(250),
        "server used {cpu:?} of CPU in {wall:?} while saturated"
    );
    // Still serving the ones it has.
    for &i in served.iter().take(10) {
        echo(&mut clients[i], &format!("still {i}\n"));
    }
    let ready = readable(
        &waiting.iter().map(|&i| &clients[i]).collect::<Vec<_>>(),
        Duration::ZERO,
    );
    assert!(ready.iter().all(|r| !r), "a waiting client got an answer");
    // Free descriptors: the waiting ones are served.
    let mut waiting_clients = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        if waiting.contains(&i) {
            waiting_clients.push((i, c));
        }
    }
    for (i, c) in waiting_clients.iter_mut() {
        let want = format!("client {i}\n");
        assert_eq!(
            String::from_utf8(read_n(c, want.len())).unwrap(),
            want,
            "waiting client {i} after descriptors freed up"
        );
    }
    for (i, c) in waiting_clients.iter_mut() {
        echo(c, &format!("recovered {i}\n"));
    }
    let stderr = server.stderr_text();
    let warnings = stderr.matches("pausing accepts").count();
    assert_eq!(
        warnings, 1,
        "expected one `pausing accepts` warning, stderr:\n{stderr}"
    );
}

/// SIGTERM with megabytes of echoes queued for a client that has not read them yet: listeners
/// close at once, the client still gets every echoed byte, and the server exits 0.
#[test]
fn sigterm_flushes_queued_output_then_exits_zero() {
    // An 8 MiB high watermark lets the server queue 8 MiB for us before it stops reading:
    // more than the kernel buffers between us can hold (our receive buffer is pinned small),
    // so the bytes only arrive if the server really flushes its queue after SIGTERM.
    let mut server = Server::start(&["--shutdown-timeout", "10", "--high-watermark", "8388608"]);
    let mut s = connect(server.line());
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(64 * 1024)
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let data = numbered_lines(32 * MIB, 1000);
    let sent = stuff(&mut s, &data, Duration::from_millis(500));
    assert!(sent > 2 * MIB, "only {sent} bytes accepted");
    // Give the server a moment to queue what it has read.
    thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();
    // New connections are refused while the old one is still being flushed.
    let line = server.line();
    let hello = server.hello();
    let refused = |addr| loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            // Refused; or reset, when the handshake landed in the backlog just before the
            // listener closed (the kernel then resets what it had queued).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return
            }
            Err(e) => panic!("connect after SIGTERM: {e}"),
            Ok(_) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(3),
                    "{addr} still accepts connections after SIGTERM"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    };
    refused(line);
    refused(hello);
    assert!(server.alive(), "exited before flushing its client");
    let got = read_to_eof(&mut s);
    eprintln!("sent {sent} bytes, {} echoed after SIGTERM", got.len());
    // Every line it read was echoed: what came back is a prefix of what was sent, made of
    // whole lines, and more than the watermark (so more than the kernel buffers held).
    assert!(got.len() > 8 * MIB, "only {} bytes echoed", got.len());
    assert!(got.len() <= sent);
    if got[..] != data[..got.len()] {
        let at = got.iter().zip(&data).position(|(a, b)| a != b).unwrap();
        panic!("echo differs at byte {at}");
    }
    assert_eq!(got.last(), Some(&b'\n'));
    drop(s);
    let status = server
        .wait_exit(Duration::from_secs(12))
        .expect("server did not exit within the shutdown timeout");
    assert!(status.success(), "exit status {status}");
}

/// `RUST_LOG=readyloop=trace` narrates the syscalls of a connection, naming it and its peer.
#[test]
fn trace_log_narrates_io() {
    let mut server = Server::start_with(
        &[],
        Options {
            rust_log: Some("readyloop=trace".into()),
            ..Options::default()
        },
    );
    let mut s = connect(server.line());
    let peer = s.local_addr().unwrap().to_string();
    // Big lines, few of them: a slow reader provokes a partial write.
    let data = numbered_lines(32 * MIB, 16 * 1024);
    let sent = stuff(&mut s, &data, Duration::from_millis(300));
    // The last line may be incomplete, and is not echoed.
    let whole = data[..sent].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let got = read_n(&mut s, whole);
    assert!(got[..] == data[..whole], "echo differs");
    // Complete the last line, then leave.
    s.write_all(b"\nexit\n").unwrap();
    let mut tail = data[whole..sent].to_vec();
    tail.push(b'\n');
    assert!(read_to_eof(&mut s) == tail, "tail differs");
    drop(s);
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(10)).expect("exit");
    let log = server.stderr_text();
    let ours: Vec<&str> = log.lines().filter(|l| l.contains(&peer)).collect();
    let conn = ours
        .iter()
        .find(|l| l.contains("accepted"))
        .unwrap_or_else(|| panic!("no accept line for {peer}:\n{log}"));
    // `conn <token> <peer>`.
    let token = conn
        .split("conn ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `conn <token>` in {conn:?}"));
    token.parse::<usize>().expect("numeric token");
    let who = format!("conn {token} {peer}");
    for needle in [
        " accepted",
        " read ",
        "WouldBlock",
        " write ",
        " interest R -> R|W",
    ] {
        assert!(
            ours.iter().any(|l| l.contains(&who) && l.contains(needle)),
            "no trace line with {who:?} and {needle:?}:\n{}",
            ours.join("\n")
        );
    }
    let read_of = ours
        .iter()
        .any(|l| l.contains(&who) && l.contains(" read ") && l.contains(" of "));
    let write_of = ours
        .iter()
        .any(|l| l.contains(&who) && l.contains(" write ") && l.contains(" of "));
    assert!(read_of && write_of, "no `read N of` / `write N of` lines");
}

//! Keeps `docs/guide.md` honest: every log line the guide quotes (inside its fenced
//! ```` ```text trace ```` blocks) must still be produced, in shape, by the real binary under
//! `RUST_LOG=readyloop=trace`, doing what the guide's session does: one hello, one line echo
//! big enough to provoke a partial write, one WebSocket broadcast, then SIGTERM.
//!
//! A line's *shape* is the line with every run of digits replaced by `N`, so connection keys,
//! ports, byte counts and timings may differ from the captured session; any other change (a
//! word, the order of fields, the logger's prefix) fails the test, and then the guide and its
//! quoted session must be updated together. Lines starting with `#` in a trace block are the
//! guide's own notes (trimmed stretches) and are skipped.
//!
//! `GUIDE_TRACE_DUMP=FILE cargo test --test guide_trace` writes the whole log to FILE, which is
//! how the guide's session was captured.

#![cfg(all(feature = "cli", feature = "websocket"))]

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use support::{
    connect, echo, numbered_lines, read_n, read_to_eof, stuff, Options, RawClient, Server, TempDir,
    IO_TIMEOUT,
};

const GUIDE: &str = include_str!("../docs/guide.md");

/// Log text the guide's line-echo section quotes that only some bursts produce.
const TIMING_DEPENDENT: &[&str] = &[" pieces: partial, ", " interest W -> R\n"];

/// The lines of every ```` ```text trace ```` block of the guide, notes (`#`) and blanks left out.
fn quoted_lines(guide: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in guide.lines() {
        let t = line.trim_end();
        if !inside {
            inside = t == "```text trace";
        } else if t.starts_with("```") {
            inside = false;
        } else if !t.is_empty() && !t.starts_with('#') {
            out.push(t);
        }
    }
    assert!(!inside, "unterminated trace block in docs/guide.md");
    out
}

/// The line with every run of ASCII digits replaced by `N`.
fn shape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

#[test]
fn shape_replaces_numbers_ports_and_keys() {
    assert_eq!(
        shape("[TRACE readyloop::io] conn 12 127.0.0.1:50314 read 37 of 65536 (inbuf 37)"),
        "[TRACE readyloop::io] conn N N.N.N.N:N read N of N (inbuf N)"
    );
    assert_eq!(shape("interest R -> R|W"), "interest R -> R|W");
}

#[test]
fn quoted_lines_are_found_in_the_guide() {
    let lines = quoted_lines("x\n```text trace\n# note\n[A] one 1\n\n```\n```text\nnot me\n```\n");
    assert_eq!(lines, ["[A] one 1"]);
    assert!(
        quoted_lines(GUIDE).len() >= 30,
        "docs/guide.md should quote its trace session in ```text trace blocks"
    );
}

/// A client socket whose receive buffer is 8 KiB (the kernel doubles what is asked), so what
/// the server sends it backs up into the server's socket quickly.
fn small_receive_buffer(addr: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Runs the guide's session against the real binary and returns its stderr.
fn run_session() -> String {
    let dir = TempDir::new("guide");
    let mut server = Server::start_with(
        &["--upload-dir", dir.arg()],
        Options {
            rust_log: Some("readyloop=trace".into()),
            ..Options::default()
        },
    );

    // 1. hello: the greeting, then EOF.
    let mut s = connect(server.hello());
    assert_eq!(read_to_eof(&mut s), b"Hello, World!\n");
    drop(s);

    // 2. line echo: one short line, then a partial write. The client's receive buffer is
    //    kept small (8 KiB) so the server's socket fills up before our echo does; it sends
    //    without reading until the server stops taking bytes (it can only stop by pausing
    //    reads, once its queue for us passed the high watermark), then reads every echo back.
    //    Two things the guide narrates depend on timing: a `writev` that comes up short
    //    (rather than taking all or nothing), and the queue draining completely on the first
    //    WRITABLE event after the pause (`interest W -> R`). The burst is repeated, at most 5
    //    times, until the log shows both.
    let mut s = small_receive_buffer(server.line());
    echo(&mut s, "hello\n");
    for _ in 0..5 {
        let data = numbered_lines(32 << 20, 1024);
        let sent = stuff(&mut s, &data, Duration::from_millis(300));
        // The kernel may have taken half a line: finish it from another thread (the server
        // takes more only as we read).
        let end = sent
            + data[sent..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
        let rest = data[sent..end].to_vec();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&rest).unwrap());
        let echoed = read_n(&mut s, end);
        assert!(
            echoed == data[..end],
            "the line echo differs from what was sent"
        );
        writer.join().unwrap();
        let log = server.stderr_text();
        if TIMING_DEPENDENT.iter().all(|m| log.contains(m)) {
            break;
        }
    }
    s.write_all(b"exit\n").unwrap();
    assert!(read_to_eof(&mut s).is_empty(), "nothing follows the echo");
    drop(s);

    // 3. WebSocket broadcast: two clients on /ws, one message, both get it; then both close.
    let http = server.http();
    let mut a = RawClient::connect(http, "/ws");
    let mut b = RawClient::connect(http, "/ws");
    a.send(true, 0x1, "hi".as_bytes());
    for c in [&mut a, &mut b] {
        let f = c.read_frame().expect("the broadcast");
        assert_eq!(
            (f.opcode, f.payload),
            (0x1, "📢 새로운 알림: hi".as_bytes().to_vec())
        );
    }
    for c in [&mut a, &mut b] {
        c.send(true, 0x8, &1000u16.to_be_bytes());
        assert_eq!(c.expect_close(), Some(1000));
        assert!(c.at_eof());
    }
    drop((a, b));

    // 4. SIGTERM: a graceful stop.
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    server.stderr_text()
}

#[test]
fn the_guide_quotes_the_real_trace_format() {
    let log = run_session();
    if let Ok(path) = std::env::var("GUIDE_TRACE_DUMP") {
        std::fs::write(&path, &log).unwrap();
    }
    let seen: BTreeSet<String> = log.lines().map(shape).collect();
    let quoted = quoted_lines(GUIDE);
    assert!(
        !quoted.is_empty(),
        "docs/guide.md has no ```text trace block"
    );
    let missing: Vec<&str> = quoted
        .into_iter()
        .filter(|l| !seen.contains(&shape(l)))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/guide.md quotes {} log line(s) whose shape the real run no longer prints; update \
         the guide's session (GUIDE_TRACE_DUMP=FILE cargo test --test guide_trace) together with \
         the log format:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

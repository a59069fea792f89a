//! The hello and line protocols of `readyloop serve`, over real loopback sockets.

#![cfg(feature = "cli")]

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn hello_greets_then_closes() {
    let server = Server::start(&[]);
    let mut s = connect(server.hello());
    assert_eq!(read_to_eof(&mut s), b"Hello, World!\n");
}

#[test]
fn hello_greeting_flag() {
    let server = Server::start(&["--greeting", "안녕, readyloop"]);
    for _ in 0..3 {
        let mut s = connect(server.hello());
        assert_eq!(
            String::from_utf8(read_to_eof(&mut s)).unwrap(),
            "안녕, readyloop\n"
        );
    }
}

#[test]
fn line_echo() {
    let server = Server::start(&[]);
    let mut s = connect(server.line());
    echo(&mut s, "hello\n");
    echo(&mut s, "\n");
    echo(&mut s, "a second line with spaces\n");
    // Several lines in one write come back as several lines.
    s.write_all(b"one\ntwo\nthree\n").unwrap();
    assert_eq!(read_n(&mut s, 14), b"one\ntwo\nthree\n");
}

#[test]
fn exit_closes_after_flushing_what_is_queued() {
    let server = Server::start(&[]);
    let mut s = connect(server.line());
    s.write_all(b"a\nexit\nb\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"a\n");
}

#[test]
fn crlf_is_accepted() {
    let server = Server::start(&[]);
    let mut s = connect(server.line());
    s.write_all(b"x\r\n").unwrap();
    assert_eq!(read_n(&mut s, 2), b"x\n");
    s.write_all(b"exit\r\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"");
}

#[test]
fn lf_and_crlf_lines_mixed_in_one_write_come_back_in_order() {
    // Runs of `\n` lines are echoed as one copy of the input; a `\r\n` line between them
    // breaks the run and comes back with `\n`; `exit` ends it all, and a line longer than
    // --max-line after echoed lines still lets those out first.
    let server = Server::start(&["--max-line", "8"]);
    let mut s = connect(server.line());
    s.write_all(b"a\nbb\nc\r\n\r\nd\ne\nexit\nnot echoed\n")
        .unwrap();
    assert_eq!(read_to_eof(&mut s), b"a\nbb\nc\n\nd\ne\n");
    let mut s = connect(server.line());
    s.write_all(b"x\ny\r\nz\nthis line is too long\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"x\ny\nz\nerror: line too long\n");
}

#[test]
fn line_split_across_one_byte_writes() {
    let server = Server::start(&[]);
    let mut s = connect(server.line());
    s.set_nodelay(true).unwrap();
    let input = b"split across many tiny writes\r\nand another\n";
    for &b in input {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let want = b"split across many tiny writes\nand another\n";
    assert_eq!(read_n(&mut s, want.len()), want);
    // Nothing was echoed early: the next byte is the echo of a fresh line.
    echo(&mut s, "after\n");
}

#[test]
fn too_long_line_is_refused_and_closed() {
    let server = Server::start(&["--max-line", "16"]);
    // Exactly 16 bytes is fine.
    let mut ok = connect(server.line());
    echo(&mut ok, "0123456789abcdef\n");
    // 17 bytes with a newline.
    let mut s = connect(server.line());
    s.write_all(b"0123456789abcdefg\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"error: line too long\n");
    // No newline at all: refused as soon as it cannot fit any more.
    let mut s = connect(server.line());
    s.write_all(&[b'z'; 40]).unwrap();
    assert_eq!(read_to_eof(&mut s), b"error: line too long\n");
    // The good client is untouched.
    echo(&mut ok, "still here\n");
}

#[test]
fn interleaved_clients_each_get_their_own_lines() {
    let server = Server::start(&[]);
    let mut clients: Vec<_> = (0..8).map(|_| connect(server.line())).collect();
    for round in 0..20 {
        // Half lines first on every client, then the rest, so the server holds eight
        // incomplete lines at once.
        for (i, c) in clients.iter_mut().enumerate() {
            write!(c, "client {i} ").unwrap();
        }
        for c in clients.iter_mut() {
            writeln!(c, "round {round}").unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = format!("client {i} round {round}\n");
            assert_eq!(String::from_utf8(read_n(c, want.len())).unwrap(), want);
        }
    }
}

#[test]
fn broadcast_reaches_the_others_not_the_sender() {
    let server = Server::start(&["--line-mode", "broadcast"]);
    let mut c: Vec<_> = (0..3).map(|_| connect(server.line())).collect();
    // Every client must be in the server's list before the first broadcast: a line from the
    // last one reaching the first proves the first two joined; from the first to the last,
    // that the last joined.
    c[2].write_all(b"sync\n").unwrap();
    assert_eq!(read_n(&mut c[0], 5), b"sync\n");
    assert_eq!(read_n(&mut c[1], 5), b"sync\n");
    for (from, text) in [(0, "from zero\n"), (1, "from one\n"), (2, "from two\n")] {
        c[from].write_all(text.as_bytes()).unwrap();
        for (i, other) in c.iter_mut().enumerate() {
            if i != from {
                assert_eq!(String::from_utf8(read_n(other, text.len())).unwrap(), text);
            }
        }
    }
    // The senders got nothing of their own: the only bytes waiting anywhere are the marker
    // below, sent after everything else.
    c[0].write_all(b"end\n").unwrap();
    assert_eq!(read_n(&mut c[1], 4), b"end\n");
    assert_eq!(read_n(&mut c[2], 4), b"end\n");
    c[1].write_all(b"end1\n").unwrap();
    assert_eq!(read_n(&mut c[0], 5), b"end1\n", "c0 got its own line back");
    c[0].set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    match c[0].read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("sender got unexpected data: {other:?}"),
    }
}

#[test]
fn idle_timeout_closes_idle_clients_only() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let start = Instant::now();
    let mut idle = connect(server.line());
    let mut active = connect(server.line());
    // The active one talks every 200 ms for 2.5 s: well past the timeout.
    let idle_reader = std::thread::spawn(move || {
        let got = read_to_eof(&mut idle);
        (got, start.elapsed())
    });
    while start.elapsed() < Duration::from_millis(2500) {
        echo(&mut active, "ping\n");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (got, closed_after) = idle_reader.join().unwrap();
    assert_eq!(got, b"");
    assert!(
        closed_after >= Duration::from_millis(500),
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after <= Duration::from_secs(5),
        "closed too late: {closed_after:?}"
    );
    echo(&mut active, "still open\n");
    // And once it stops talking, it times out too.
    let quiet = Instant::now();
    assert_eq!(read_to_eof(&mut active), b"");
    assert!(quiet.elapsed() >= Duration::from_millis(500));
}

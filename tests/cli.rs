//! The binary's command line: `readyloop client`, and what bad input does.

#![cfg(feature = "cli")]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn client(addr: std::net::SocketAddr) -> std::process::Child {
    Command::new(BIN)
        .args(["client", &addr.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn readyloop client")
}

#[test]
fn client_echoes_stdin_lines_and_exits_on_eof() {
    let server = Server::start(&[]);
    let mut child = client(server.line());
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\r\n").unwrap();
        stdin.write_all(b"three\n").unwrap();
        // Dropping stdin is the EOF: the client half-closes, the server flushes and closes.
    }
    let status = wait_timeout(&mut child, IO_TIMEOUT);
    let Some(status) = status else {
        let _ = child.kill();
        panic!("client did not exit after stdin EOF");
    };
    let out = out.recv_timeout(IO_TIMEOUT).unwrap();
    let err = err.recv_timeout(IO_TIMEOUT).unwrap();
    assert!(
        status.success(),
        "client exit {status}; stderr: {}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\n");
}

#[test]
fn client_prints_pushed_lines_while_stdin_stays_open() {
    let server = Server::start(&["--line-mode", "broadcast"]);
    let mut other = connect(server.line());
    let mut child = client(server.line());
    let lines = line_reader(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    // The client is connected once a line it sends reaches the other client.
    stdin.write_all(b"hi from the client\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_n(&mut other, 19), b"hi from the client\n");
    // Now push: stdin stays open and silent, so only the socket can wake the client.
    other.write_all(b"pushed 1\npushed 2\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    for want in ["pushed 1", "pushed 2"] {
        let got = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("{want:?} did not reach the client's stdout"));
        assert_eq!(got, want);
    }
    assert!(child.try_wait().unwrap().is_none(), "client exited early");
    // The server closing ends the client.
    drop(stdin);
    let status = wait_timeout(&mut child, IO_TIMEOUT).expect("client exits");
    assert!(status.success(), "client exit {status}");
}

#[test]
fn unknown_flag_fails_with_a_message() {
    let out = Command::new(BIN)
        .args(["serve", "--no-such-flag"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "stderr: {err}");
    // Without the `serve` word too, and for a bad value.
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
    let out = Command::new(BIN)
        .args(["--line", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-address"));
    let out = Command::new(BIN)
        .args(["--line-mode", "shout"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shout"));
}

#[test]
fn all_listeners_off_prints_no_listening_lines() {
    let mut child = spawn_serve(&["--line", "off", "--hello", "off", "--http", "off"]);
    let out = collect(child.stdout.take().unwrap());
    // It has nothing to serve; give it time to print, then stop it.
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = wait_timeout(&mut child, IO_TIMEOUT).expect("exits when killed");
    let out = out.recv_timeout(IO_TIMEOUT).unwrap();
    assert!(
        !String::from_utf8_lossy(&out).contains("listening"),
        "stdout: {}",
        String::from_utf8_lossy(&out)
    );
}

/// A build without a feature refuses what needs it, saying which feature, before binding
/// anything; `--http off` stays valid everywhere.
#[test]
fn left_out_features_are_refused_by_name() {
    let off = ["--line", "off", "--hello", "off"];
    let mut refused: Vec<(Vec<&str>, &str)> = Vec::new();
    if !cfg!(feature = "http") {
        refused.push((vec!["serve", "--http", "127.0.0.1:0"], "`http` feature"));
    }
    if !cfg!(feature = "redis") {
        refused.push((
            vec!["serve", "--redis", "redis://127.0.0.1:1"],
            "`redis` feature",
        ));
    }
    if !cfg!(feature = "load") {
        refused.push((vec!["load", "echo"], "`load` feature"));
    }
    for (mut args, why) in refused {
        if args[0] == "serve" {
            args.extend(off);
        }
        let out = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} stdout: {:?}", out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?} stderr: {err}");
    }
}

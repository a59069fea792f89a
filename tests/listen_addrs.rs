//! Listeners on IPv6 and on Unix domain sockets, for every protocol: the `listening` line names
//! them (`[::1]:PORT`, `unix:/path`), each protocol is served on them, a stale socket file is
//! replaced and a live one refused, the file goes at shutdown, and `--workers` shares one.
#![cfg(feature = "http")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

fn unix(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path:?}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn greeting<S: Read>(mut s: S) -> String {
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    got
}

fn echoes<S: Read + Write>(s: S, line: &str) {
    let mut s = BufReader::new(s);
    s.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
    let mut got = String::new();
    s.read_line(&mut got).unwrap();
    assert_eq!(got, format!("{line}\n"));
}

fn healthz<S: Read + Write>(mut s: S) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    greeting(s)
}

#[test]
fn every_protocol_is_served_on_ipv6_and_on_unix_sockets() {
    let dir = TempDir::new("unix");
    let http = dir.path().join("http.sock");
    let hello = dir.path().join("hello.sock");
    let (http_arg, hello_arg) = (
        format!("unix:{}", http.display()),
        format!("unix:{}", hello.display()),
    );
    let uploads = dir.path().join("uploads");
    let server = Server::serve(
        &[
            "--http",
            &http_arg,
            "--line",
            "[::1]:0",
            "--hello",
            &hello_arg,
            "--upload-dir",
            uploads.to_str().unwrap(),
        ],
        Options::default(),
    );
    assert_eq!(server.unix("http"), http);
    assert_eq!(server.unix("hello"), hello);
    assert!(server.line().is_ipv6());
    assert_eq!(greeting(unix(&hello)), "Hello, World!\n");
    echoes(connect(server.line()), "over IPv6");
    let answer = healthz(unix(&http));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    // A WebSocket over the Unix socket: the real tungstenite client on a UnixStream.
    let (mut ws, _) = tungstenite::client("ws://localhost/ws", unix(&http)).unwrap();
    ws.send(tungstenite::Message::text("hi")).unwrap();
    let got = ws.read().unwrap();
    assert_eq!(got.into_text().unwrap().as_str(), "📢 새로운 알림: hi");

    // And the other way round: HTTP and hello on IPv6, line on a Unix socket.
    let line = dir.path().join("line.sock");
    let line_arg = format!("unix:{}", line.display());
    let server = Server::serve(
        &[
            "--http",
            "[::1]:0",
            "--line",
            &line_arg,
            "--hello",
            "[::1]:0",
            "--upload-dir",
            uploads.to_str().unwrap(),
        ],
        Options::default(),
    );
    echoes(unix(&line), "over a Unix socket");
    assert_eq!(greeting(connect(server.hello())), "Hello, World!\n");
    let answer = healthz(TcpStream::connect(server.http()).unwrap());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[test]
fn a_stale_socket_file_is_replaced_a_live_one_refused_and_the_file_removed_at_exit() {
    let dir = TempDir::new("unix-stale");
    let path = dir.path().join("line.sock");
    // A socket file nobody listens on any more: what a killed server leaves behind.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let arg = format!("unix:{}", path.display());
    let mut server = Server::serve(
        &["--line", &arg, "--hello", "off", "--http", "off"],
        Options::default(),
    );
    echoes(unix(&path), "replaced the stale socket");
    // A second server on the same live path is refused at start-up, naming it, with exit 2.
    let out = Command::new(BIN)
        .args(["serve", "--line", &arg, "--hello", "off", "--http", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no listening line: {:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("bind line {arg}")), "{err}");
    echoes(unix(&path), "the first server is unharmed");
    // A file that is not a socket is never removed.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--hello", &format!("unix:{}", file.display())])
        .args(["--line", "off", "--http", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // SIGTERM: the server removes the socket file it made.
    let status = server.terminate(IO_TIMEOUT);
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn workers_share_one_unix_listener() {
    let dir = TempDir::new("unix-workers");
    let path = dir.path().join("line.sock");
    let arg = format!("unix:{}", path.display());
    let mut server = Server::serve(
        &[
            "--workers",
            "2",
            "--line",
            &arg,
            "--hello",
            "off",
            "--http",
            "off",
        ],
        Options::default(),
    );
    assert_eq!(server.unix("line"), path);
    for i in 0..20 {
        echoes(unix(&path), &format!("client {i}"));
    }
    let status = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(
        !path.exists(),
        "the supervisor removes the socket file at exit"
    );
}

#[test]
#[cfg(feature = "load")]
fn the_client_and_the_load_generator_reach_unix_and_ipv6_listeners() {
    let dir = TempDir::new("unix-tools");
    let path = dir.path().join("line.sock");
    let arg = format!("unix:{}", path.display());
    let _server = Server::serve(
        &["--line", &arg, "--hello", "[::1]:0", "--http", "off"],
        Options::default(),
    );
    // The interactive client over the Unix socket: a line and its echo, then EOF.
    let out = Command::new(BIN)
        .args(["client", &arg])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"via unix\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via unix\n");
    // The load generator's echo mode over the Unix socket: every payload checked.
    let out = Command::new(BIN)
        .args([
            "load",
            "echo",
            "--addr",
            &arg,
            "--conns",
            "4",
            "--duration",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("\"conns_ok\":4"), "{last}");
    assert!(last.contains("\"errors\":0,"), "{last}");
}

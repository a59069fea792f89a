//! `readyloop load` against the real server (both spawned as the real binary), and against
//! small in-test peers where the server cannot show what is checked (source addresses,
//! WebSocket modes before the WebSocket server lands). Every run is bounded in time.

#![cfg(all(feature = "cli", feature = "load"))]

mod support;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{collect, json_value, wait_timeout, Server, BIN};

/// Runs `readyloop load ARGS --json --quiet`, killing it past `limit`. Returns its JSON line
/// and how long it ran.
fn load(args: &[&str], limit: Duration) -> (String, Duration) {
    load_exiting(args, limit, 0)
}

/// `load`, for a run that must end with exit status `code` (2: no connection succeeded).
fn load_exiting(args: &[&str], limit: Duration, code: i32) -> (String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .arg("load")
        .args(args)
        .args(["--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn load");
    let out = collect(child.stdout.take().unwrap());
    let Some(status) = wait_timeout(&mut child, limit.saturating_sub(start.elapsed())) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("load {args:?} still running after {limit:?}");
    };
    assert_eq!(status.code(), Some(code), "load {args:?}: {status}");
    let took = start.elapsed();
    let out = String::from_utf8(out.recv().unwrap()).unwrap();
    let last = out.lines().last().expect("a JSON line").to_string();
    assert!(last.starts_with('{') && last.ends_with('}'), "{last}");
    (last, took)
}

/// The number after `"key":` (keys are unique in the report, nested ones included).
fn num(json: &str, key: &str) -> f64 {
    json_value(json, key)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {json}"))
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn idle_holds_every_connection() {
    let server = Server::start(&[]);
    let (j, _) = load(
        &[
            "idle",
            "--addr",
            &server.line().to_string(),
            "--conns",
            "50",
            "--duration",
            "2",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_ok"), 50.0, "{j}");
    assert_eq!(num(&j, "conns_open"), 50.0, "{j}");
    assert_eq!(num(&j, "conns_failed"), 0.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    assert!(j.contains("\"mode\":\"idle\""), "{j}");
}

#[test]
fn idle_reports_server_bytes_per_connection() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let (j, _) = load(
        &[
            "idle",
            "--addr",
            &server.line().to_string(),
            "--conns",
            "50",
            "--duration",
            "1",
            "--server-pid",
            &pid,
        ],
        LIMIT,
    );
    assert!(num(&j, "server_rss_end") > 0.0, "{j}");
    assert!(j.contains("\"server_bytes_per_conn\":"), "{j}");
}

#[test]
fn hello_repeats_and_checks_every_greeting() {
    let server = Server::start(&[]);
    let (j, _) = load(
        &[
            "hello",
            "--addr",
            &server.hello().to_string(),
            "--conns",
            "50",
            "--duration",
            "2",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    assert_eq!(num(&j, "conns_failed"), 0.0, "{j}");
    // Every slot repeated: more conversations than slots, each greeting verified.
    assert!(num(&j, "msgs") > 50.0, "{j}");
    assert!(num(&j, "conns_ok") >= num(&j, "msgs"), "{j}");
    assert_eq!(num(&j, "count"), num(&j, "msgs"), "{j}");
}

#[test]
fn echo_verifies_pipelined_payloads() {
    let server = Server::start(&[]);
    let (j, _) = load(
        &[
            "echo",
            "--addr",
            &server.line().to_string(),
            "--conns",
            "50",
            "--duration",
            "2",
            "--size",
            "200",
            "--pipeline",
            "4",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_ok"), 50.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    let msgs = num(&j, "msgs");
    assert!(msgs > 50.0, "{j}");
    // Every verified echo has a latency sample, and at most 4 per connection were in flight.
    assert_eq!(num(&j, "count"), msgs, "{j}");
    assert!(num(&j, "msgs_sent") - msgs <= 200.0, "{j}");
    assert!(
        num(&j, "p50") > 0.0 && num(&j, "max") >= num(&j, "p999"),
        "{j}"
    );
    // 200-byte payload + newline per message, both ways.
    assert!(num(&j, "bytes_received") >= msgs * 201.0, "{j}");
}

#[test]
fn refused_connections_are_counted_and_exit_promptly() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: connects are refused
    let addr = format!("127.0.0.1:{port}");
    let (j, took) = load_exiting(
        &["echo", "--addr", &addr, "--conns", "50", "--duration", "10"],
        LIMIT,
        2,
    );
    assert_eq!(num(&j, "conns_failed"), 50.0, "{j}");
    assert_eq!(num(&j, "conns_ok"), 0.0, "{j}");
    assert_eq!(num(&j, "errors"), 50.0, "{j}");
    assert!(j.contains("\"connect: ConnectionRefused\":50"), "{j}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // hello retries refused slots until the duration ends, counting each failure.
    let (j, took) = load_exiting(
        &["hello", "--addr", &addr, "--conns", "5", "--duration", "1"],
        LIMIT,
        2,
    );
    assert!(num(&j, "conns_failed") >= 5.0, "{j}");
    assert_eq!(num(&j, "errors"), num(&j, "conns_failed"), "{j}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn server_killed_mid_run_is_counted_and_the_tool_still_exits() {
    for mode in ["echo", "idle"] {
        let mut server = Server::start(&[]);
        let addr = server.line().to_string();
        let start = Instant::now();
        let runner = std::thread::spawn(move || {
            load(
                &[mode, "--addr", &addr, "--conns", "50", "--duration", "4"],
                LIMIT,
            )
        });
        std::thread::sleep(Duration::from_millis(1200));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let (j, _) = runner.join().unwrap();
        assert_eq!(num(&j, "conns_ok"), 50.0, "{mode}: {j}");
        assert_eq!(
            num(&j, "errors"),
            50.0,
            "{mode}: every connection lost: {j}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(4 + 3),
            "{mode}: took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn procs_merge_adds_up_the_children() {
    let server = Server::start(&[]);
    let (j, _) = load(
        &[
            "echo",
            "--addr",
            &server.line().to_string(),
            "--conns",
            "31",
            "--duration",
            "1.5",
            "--procs",
            "2",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "procs"), 2.0, "{j}");
    assert_eq!(num(&j, "conns"), 31.0, "{j}");
    assert_eq!(num(&j, "conns_ok"), 31.0, "{j}");
    assert_eq!(num(&j, "conns_open"), 31.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    // The histograms merged sample for sample: one latency per verified echo of either child.
    assert!(num(&j, "msgs") > 31.0, "{j}");
    assert_eq!(num(&j, "count"), num(&j, "msgs"), "{j}");
    assert!(
        !j.contains("latency_hist"),
        "children's histograms stay internal: {j}"
    );
}

#[test]
fn src_ips_are_used_round_robin() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = std::thread::spawn(move || {
        let mut peers = Vec::new();
        let mut held = Vec::new();
        for _ in 0..20 {
            let (s, peer) = listener.accept().unwrap();
            peers.push(peer.ip());
            held.push(s);
        }
        (peers, held) // the connections stay open until joined
    });
    let (j, _) = load(
        &[
            "idle",
            "--addr",
            &addr,
            "--conns",
            "20",
            "--duration",
            "1",
            "--src-ips",
            "127.0.0.2-127.0.0.3",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_ok"), 20.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    let (peers, _held) = acceptor.join().unwrap();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(peers.iter().filter(|&&p| p == ip).count(), 10, "{peers:?}");
    }
}

/// A WebSocket peer on tungstenite (a second implementation, so the load tool's client side is
/// checked against someone else's server): `/echo` echoes, `/ws` broadcasts every text `M` to
/// all `/ws` clients as `📢 새로운 알림: M`, like the contract's server. One thread per
/// connection; a write half (a second `WebSocket` on a clone of the socket) for broadcasts.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback type
fn ws_peer() -> SocketAddr {
    use std::sync::{Arc, Mutex};
    use tungstenite::handshake::server::{Request, Response};
    use tungstenite::protocol::Role;
    use tungstenite::{Message, WebSocket};
    type Writers = Arc<Mutex<Vec<WebSocket<std::net::TcpStream>>>>;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writers: Writers = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let writers = writers.clone();
            std::thread::spawn(move || {
                let mut path = String::new();
                let callback = |req: &Request, resp: Response| {
                    path = req.uri().path().to_string();
                    Ok(resp)
                };
                // Handshake and join the broadcast list under the lock, so that no broadcast
                // can miss a client that already got its 101 (or precede the 101 on the wire).
                let mut all = writers.lock().unwrap();
                let Ok(mut ws) = tungstenite::accept_hdr(stream, callback) else {
                    return;
                };
                if path == "/ws" {
                    let half = ws.get_ref().try_clone().unwrap();
                    all.push(WebSocket::from_raw_socket(half, Role::Server, None));
                }
                drop(all);
                while let Ok(msg) = ws.read() {
                    match (path.as_str(), msg) {
                        ("/echo", m @ (Message::Text(_) | Message::Binary(_))) => {
                            // A failed send shows up as a failed read next.
                            let _ = ws.send(m);
                        }
                        ("/ws", Message::Text(t)) => {
                            let out = format!("📢 새로운 알림: {}", t.as_str());
                            let mut all = writers.lock().unwrap();
                            all.retain_mut(|w| w.send(Message::text(out.clone())).is_ok());
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn ws_echo_verifies_binary_and_text_payloads() {
    let addr = ws_peer().to_string();
    for extra in [&[][..], &["--text"][..]] {
        let mut args = vec![
            "ws-echo",
            "--addr",
            &addr,
            "--conns",
            "20",
            "--duration",
            "1.5",
            "--size",
            "300",
            "--pipeline",
            "2",
        ];
        args.extend_from_slice(extra);
        let (j, _) = load(&args, LIMIT);
        assert_eq!(num(&j, "conns_ok"), 20.0, "{j}");
        assert_eq!(num(&j, "conns_open"), 20.0, "{j}");
        assert_eq!(num(&j, "errors"), 0.0, "{extra:?}: {j}");
        assert!(num(&j, "msgs") > 20.0, "{j}");
        assert_eq!(num(&j, "count"), num(&j, "msgs"), "{j}");
    }
}

#[test]
fn ws_broadcast_every_receiver_gets_every_message_once() {
    let addr = ws_peer().to_string();
    let (j, _) = load(
        &[
            "ws-broadcast",
            "--addr",
            &addr,
            "--conns",
            "20",
            "--duration",
            "2",
            "--senders",
            "2",
            "--msg-rate",
            "200",
            "--size",
            "80",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_ok"), 20.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    let sent = num(&j, "msgs_sent");
    assert!(sent > 100.0, "{j}");
    // All 20 connections (senders included) received every message.
    assert_eq!(num(&j, "msgs"), sent * 20.0, "{j}");
    assert_eq!(num(&j, "count"), num(&j, "msgs"), "{j}");
}

#[test]
fn idle_websockets_upgrade_and_hold() {
    let addr = ws_peer().to_string();
    let (j, _) = load(
        &[
            "idle",
            "--addr",
            &addr,
            "--conns",
            "20",
            "--duration",
            "1",
            "--ws",
            "/echo",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_ok"), 20.0, "{j}");
    assert_eq!(num(&j, "conns_open"), 20.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
}

#[test]
fn ws_modes_against_the_real_server() {
    let server = Server::start(&[]);
    let addr = server.http().to_string();
    let (j, _) = load(
        &[
            "ws-echo",
            "--addr",
            &addr,
            "--conns",
            "30",
            "--duration",
            "1.5",
            "--pipeline",
            "2",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_open"), 30.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    assert!(num(&j, "msgs") > 30.0, "{j}");
    let (j, _) = load(
        &[
            "ws-broadcast",
            "--addr",
            &addr,
            "--conns",
            "30",
            "--duration",
            "1.5",
            "--senders",
            "3",
            "--msg-rate",
            "300",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
    let sent = num(&j, "msgs_sent");
    assert!(sent > 100.0, "{j}");
    assert_eq!(num(&j, "msgs"), sent * 30.0, "{j}");
    let (j, _) = load(
        &[
            "idle",
            "--addr",
            &addr,
            "--conns",
            "30",
            "--duration",
            "1",
            "--ws",
            "/ws",
        ],
        LIMIT,
    );
    assert_eq!(num(&j, "conns_open"), 30.0, "{j}");
    assert_eq!(num(&j, "errors"), 0.0, "{j}");
}

//! Broadcast across processes through a real Redis: several `readyloop serve` processes share
//! one `redis-server` (exactly the "several machines" case; `--workers N` is the same on one
//! machine), with clients spread across them.
//!
//! These tests need Debian's `redis-server` (each test starts its own on a free port). They run
//! in the plain `cargo test` whenever `redis-server` is on PATH, and say they were skipped
//! otherwise (the README's `cargo test` must pass on a machine with nothing installed).
//! `.ci/run` installs it and sets `READYLOOP_REQUIRE_REDIS=1`, which turns a missing
//! `redis-server` into a failure, so CI never counts a skip as a pass.

#![cfg(all(feature = "cli", feature = "redis", feature = "websocket"))]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    connect, json_value, timed_out, tungstenite_client, Client, Options, Server, TempDir,
};
use tungstenite::{Message, WebSocket};

const PROCESSES: usize = 3;
const PREFIX: &str = "📢 새로운 알림: ";
/// How long a client waits for a message that should come.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long it listens for a message that should not come (a duplicate, or the sender's own).
const QUIET: Duration = Duration::from_millis(400);

/// A `redis-server` on a free loopback port, with no persistence, killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    /// A fresh `redis-server`, or `None` (the test is skipped, and says so) when there is none.
    fn start() -> Option<Redis> {
        if !Redis::available() {
            return None;
        }
        Some(Redis::start_now())
    }

    /// Whether `redis-server` can run here; panics when CI requires it and it cannot.
    fn available() -> bool {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var_os("READYLOOP_REQUIRE_REDIS").is_none(),
                "READYLOOP_REQUIRE_REDIS is set but redis-server is not on PATH"
            );
            eprintln!(
                "skipped: redis-server is not on PATH (apt-get install -y redis-server; .ci/run does)"
            );
        }
        found
    }

    fn start_now() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { child: None, port };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need it; install it with \
                     `apt-get install -y redis-server` (.ci/run does)"
                )
            });
        self.child = Some(child);
        let end = Instant::now() + PATIENCE;
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut pong).is_ok()
                    && &pong == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "redis-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `readyloop serve` with HTTP and line broadcast, relaying through `redis`.
fn serve(redis: &Redis, dir: &TempDir) -> Server {
    let dir = dir.arg();
    let url = redis.url();
    Server::start_with(
        &[
            "--hello",
            "off",
            "--line-mode",
            "broadcast",
            "--ws-ping",
            "0",
            "--upload-dir",
            dir,
            "--redis",
            &url,
        ],
        Options {
            rust_log: Some("readyloop=info".into()),
            ..Options::default()
        },
    )
}

/// `GET path` on a fresh connection, the body.
fn get_body(addr: SocketAddr, path: &str) -> String {
    Client::connect(addr)
        .with_read_timeout(Duration::from_secs(5))
        .get(path)
        .text()
}

/// `GET /stats`, the body.
fn stats(addr: SocketAddr) -> String {
    get_body(addr, "/stats")
}

/// A number field of the `/stats` JSON.
fn stat(addr: SocketAddr, field: &str) -> String {
    let body = stats(addr);
    json_value(&body, field)
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_string()
}

fn wait_connected(servers: &[Server], want: bool) {
    let end = Instant::now() + PATIENCE;
    for s in servers {
        let addr = s.http();
        while stat(addr, "redis_connected") != want.to_string() {
            assert!(
                Instant::now() < end,
                "redis_connected never became {want}: {}\n{}",
                stats(addr),
                s.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

type Ws = WebSocket<TcpStream>;

fn ws_connect(addr: SocketAddr) -> Ws {
    tungstenite_client(addr, "/ws", Duration::from_millis(50))
}

/// Calls `read` (a message, or `None` for nothing this time: a read that timed out, or one
/// that is not a message) until `want` messages arrived (or `PATIENCE` passed), then listens
/// `QUIET` more for anything extra. Returns everything received.
fn collect_quietly(want: usize, mut read: impl FnMut() -> Option<String>) -> Vec<String> {
    let mut got = Vec::new();
    let end = Instant::now() + PATIENCE;
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        if got.len() >= want && quiet_until.is_none() {
            quiet_until = Some(now + QUIET);
        }
        if quiet_until.is_some_and(|q| now >= q) || now >= end {
            return got;
        }
        got.extend(read());
    }
}

/// The text messages of `ws`, gathered by `collect_quietly`.
fn ws_collect(ws: &mut Ws, want: usize) -> Vec<String> {
    collect_quietly(want, || match ws.read() {
        Ok(Message::Text(t)) => Some(t.to_string()),
        Ok(_) => None,
        Err(tungstenite::Error::Io(e)) if timed_out(&e) => None,
        Err(e) => panic!("ws read: {e}"),
    })
}

/// A line client with a buffered reader.
struct LineClient {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let w = connect(addr);
        w.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        LineClient {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Like `ws_collect`, for lines.
    fn collect(&mut self, want: usize) -> Vec<String> {
        let mut partial = String::new();
        collect_quietly(want, || match self.r.read_line(&mut partial) {
            Ok(0) => panic!("line connection closed"),
            Ok(_) if partial.ends_with('\n') => {
                let line = partial.trim_end().to_string();
                partial.clear();
                Some(line)
            }
            Ok(_) => None,
            Err(e) if timed_out(&e) => None,
            Err(e) => panic!("line read: {e}"),
        })
    }
}

/// Counts each distinct message; asserts every expected one came exactly once and nothing else.
fn assert_exactly_once(who: &str, got: &[String], expected: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in got {
        *counts.entry(m.as_str()).or_default() += 1;
    }
    for m in expected {
        assert_eq!(
            counts.remove(m.as_str()),
            Some(1),
            "{who}: {m:?} not received exactly once; got {got:?}"
        );
    }
    assert!(counts.is_empty(), "{who}: unexpected messages {counts:?}");
}

#[test]
fn ws_broadcast_reaches_every_client_of_every_process_exactly_once() {
    let Some(redis) = Redis::start() else { return };
    let dir = TempDir::new("redis-ws");
    let servers: Vec<Server> = (0..PROCESSES).map(|_| serve(&redis, &dir)).collect();
    wait_connected(&servers, true);
    // Three clients per process; the first client of each process sends.
    let mut clients: Vec<(usize, Ws)> = Vec::new();
    for (p, s) in servers.iter().enumerate() {
        for _ in 0..3 {
            clients.push((p, ws_connect(s.http())));
        }
    }
    const PER_SENDER: usize = 5;
    let mut expected = Vec::new();
    for seq in 0..PER_SENDER {
        for p in 0..PROCESSES {
            let text = format!("from p{p} #{seq}");
            clients[p * 3].1.send(Message::text(text.clone())).unwrap();
            expected.push(format!("{PREFIX}{text}"));
        }
    }
    for (i, (p, ws)) in clients.iter_mut().enumerate() {
        let got = ws_collect(ws, expected.len());
        assert_exactly_once(&format!("ws client {i} of process {p}"), &got, &expected);
    }
    for s in &servers {
        let addr = s.http();
        assert_eq!(stat(addr, "redis_unrelayed"), "0");
        assert_eq!(stat(addr, "redis_published"), PER_SENDER.to_string());
        assert_eq!(
            stat(addr, "redis_received"),
            ((PROCESSES - 1) * PER_SENDER).to_string()
        );
    }
}

#[test]
fn line_broadcast_reaches_every_other_client_once_and_never_the_sender() {
    let Some(redis) = Redis::start() else { return };
    let dir = TempDir::new("redis-line");
    let servers: Vec<Server> = (0..PROCESSES).map(|_| serve(&redis, &dir)).collect();
    wait_connected(&servers, true);
    let mut clients: Vec<LineClient> = Vec::new();
    for s in &servers {
        for _ in 0..2 {
            clients.push(LineClient::connect(s.line()));
        }
    }
    // Every server has accepted (and registered) its line clients before anything is sent.
    let end = Instant::now() + PATIENCE;
    for s in &servers {
        while stat(s.http(), "line") != "2" {
            assert!(Instant::now() < end, "line clients not accepted");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Every client sends, so each is both a sender (must not hear itself) and a receiver.
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for seq in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            let line = format!("c{i} #{seq}");
            c.send(&line);
            sent[i].push(line);
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let expected: Vec<String> = sent
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .flat_map(|(_, lines)| lines.iter().cloned())
            .collect();
        let got = c.collect(expected.len());
        assert_exactly_once(
            &format!("line client {i} (process {})", i / 2),
            &got,
            &expected,
        );
    }
}

#[test]
fn redis_restart_keeps_local_delivery_and_resumes_cross_process_delivery() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let dir = TempDir::new("redis-restart");
    let servers: Vec<Server> = (0..2).map(|_| serve(&redis, &dir)).collect();
    wait_connected(&servers, true);
    let mut a1 = ws_connect(servers[0].http());
    let mut a2 = ws_connect(servers[0].http());
    let mut b1 = ws_connect(servers[1].http());
    let text = |t: &str| format!("{PREFIX}{t}");

    a1.send(Message::text("before")).unwrap();
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        assert_exactly_once(who, &ws_collect(ws, 1), &[text("before")]);
    }

    redis.kill();
    wait_connected(&servers, false);
    a1.send(Message::text("during")).unwrap();
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2)] {
        assert_exactly_once(who, &ws_collect(ws, 1), &[text("during")]);
    }
    assert_exactly_once(
        "b1 (other process, Redis down)",
        &ws_collect(&mut b1, 0),
        &[],
    );
    let a = servers[0].http();
    assert_eq!(stat(a, "redis_unrelayed"), "1", "{}", stats(a));
    // /metrics says the same, and where each link is.
    let m = get_body(a, "/metrics");
    assert!(m.contains("\nreadyloop_redis_connected 0\n"), "{m}");
    assert!(m.contains("\nreadyloop_redis_unrelayed_total 1\n"), "{m}");
    for link in ["subscriber", "publisher"] {
        let up = format!("readyloop_redis_link_state{{link=\"{link}\",state=\"up\"}} 0\n");
        assert!(m.contains(&up), "{link} is not up: {m}");
    }

    redis.spawn();
    wait_connected(&servers, true);
    b1.send(Message::text("after")).unwrap();
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        assert_exactly_once(who, &ws_collect(ws, 1), &[text("after")]);
    }
    let m = get_body(a, "/metrics");
    assert!(m.contains("\nreadyloop_redis_connected 1\n"), "{m}");
    assert!(m.contains("\nreadyloop_redis_received_total 1\n"), "{m}");
    for link in ["subscriber", "publisher"] {
        let up = format!("readyloop_redis_link_state{{link=\"{link}\",state=\"up\"}} 1\n");
        assert!(m.contains(&up), "{link} is not up: {m}");
    }
    let log = servers[0].stderr_text();
    assert!(log.contains("link down"), "the outage is logged:\n{log}");
    assert!(
        log.contains("1 messages could not be relayed"),
        "the end of the outage is logged with the count:\n{log}"
    );
}

/// `GET /stats?all=1` from a `--workers` server, the body.
fn stats_all(addr: SocketAddr) -> String {
    get_body(addr, "/stats?all=1")
}

/// The open `/ws` connections of each worker, from the `per_worker` list of `?all=1`.
fn ws_per_worker(body: &str) -> Vec<u64> {
    let Some((_, list)) = body.split_once("\"per_worker\": [") else {
        return Vec::new();
    };
    list.split("{\"worker\": ")
        .skip(1)
        .map(|entry| {
            let at = entry.find("\"ws\": ").map(|i| i + 6).unwrap_or(entry.len());
            entry[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn three_workers_relay_every_ws_message_to_every_client_exactly_once() {
    const CLIENTS: usize = 30;
    let Some(redis) = Redis::start() else { return };
    let dir = TempDir::new("redis-workers");
    let url = redis.url();
    let server = Server::start_with(
        &[
            "--workers",
            "3",
            "--hello",
            "off",
            "--line",
            "off",
            "--ws-ping",
            "0",
            "--upload-dir",
            dir.arg(),
            "--redis",
            &url,
        ],
        Options {
            rust_log: Some("readyloop=info".into()),
            ..Options::default()
        },
    );
    let addr = server.http();
    let mut clients: Vec<Ws> = (0..CLIENTS).map(|_| ws_connect(addr)).collect();
    // The kernel spreads connections over the workers by a hash of the 4-tuple: with 30
    // clients every worker gets some (all on two of three: probability ~1e-5). The shared
    // counters are at most a second old.
    let end = Instant::now() + PATIENCE;
    let per_worker = loop {
        let counts = ws_per_worker(&stats_all(addr));
        if counts.iter().sum::<u64>() == CLIENTS as u64 || Instant::now() > end {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(per_worker.len(), 3, "{}", stats_all(addr));
    assert_eq!(
        per_worker.iter().sum::<u64>(),
        CLIENTS as u64,
        "{per_worker:?}"
    );
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "clients not spread over the workers: {per_worker:?}"
    );
    // Each worker's Redis links are up before anyone sends (each worker logs it).
    let end = Instant::now() + PATIENCE;
    let links_up = |log: &str| {
        log.matches("subscriber link up").count() >= 3
            && log.matches("publisher link up").count() >= 3
    };
    while !links_up(&server.stderr_text()) {
        assert!(
            Instant::now() < end,
            "not every worker connected to Redis:\n{}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Five senders, spread over whatever workers they landed on.
    let mut expected = Vec::new();
    for seq in 0..4 {
        for sender in [0, 7, 14, 21, 28] {
            let text = format!("from client {sender} #{seq}");
            clients[sender].send(Message::text(text.clone())).unwrap();
            expected.push(format!("{PREFIX}{text}"));
        }
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        let got = ws_collect(ws, expected.len());
        assert_exactly_once(&format!("ws client {i}"), &got, &expected);
    }
}

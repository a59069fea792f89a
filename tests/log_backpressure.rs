//! The loop never waits for its log (issue 11, "The loop blocks on its log"): with stderr on a
//! pipe that nobody reads, what clients do that gets logged (10,000 lines, thousands of
//! WebSocket connect/close cycles, each cycle two `info` records) fills the pipe's 64 KiB and
//! then the sink's 1 MiB queue; the server goes on serving every listener, counts what it could
//! not log (`log_dropped` in `/stats`), and once stderr is read again says so in one warning.
//!
//! Against a server that writes its log on the loop thread, the cycles stop after a few hundred
//! (the pipe is full and the loop is stuck in `write(2)`): a client's read times out and the
//! test fails, it does not hang.

#![cfg(all(feature = "cli", feature = "websocket"))]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::{json_u64, line_reader, wait_timeout, Client, Options, Server, BIN, STARTUP_TIMEOUT};

/// A served request takes milliseconds; a stalled server never answers. 1 s separates the two
/// even on a loaded 2-core machine running a debug build.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// Every socket operation of a client gives up after this: a stalled server fails the test in
/// seconds instead of hanging it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// WebSocket cycles the issue names; each logs two `info` records (about 150 bytes), so these
/// alone fill the pipe (a server logging on its loop stalls after about 400) but not the queue.
const WS_CYCLES: usize = 1_000;

/// Cycles at most, until `log_dropped` shows the queue full: 1 MiB of queue and 64 KiB of pipe
/// take about 7,000; 30,000 leaves room for longer log lines.
const MAX_WS_CYCLES: usize = 30_000;

/// Client threads doing the cycles: 4, so a busy machine's scheduling delays overlap instead of
/// adding up over thousands of round trips.
const WS_THREADS: usize = 4;

/// The server, killed on drop.
struct Serve {
    child: Child,
    http: SocketAddr,
    line: SocketAddr,
    hello: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("the server had exited: {status}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `readyloop serve` on port 0 with default logging (`RUST_LOG=info`) and its stderr on a pipe
/// that is returned unread.
fn serve() -> (Serve, ChildStderr) {
    let mut child = Command::new(BIN)
        .args(["serve", "--http", "127.0.0.1:0", "--line", "127.0.0.1:0"])
        .args(["--hello", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn readyloop");
    let stderr = child.stderr.take().unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while addrs.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("a `listening` line");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"listening"), "{line:?}");
        addrs.push((
            words[1].to_string(),
            words[2].parse::<SocketAddr>().unwrap(),
        ));
    }
    let addr = |proto: &str| addrs.iter().find(|(p, _)| p == proto).expect(proto).1;
    let server = Serve {
        http: addr("http"),
        line: addr("line"),
        hello: addr("hello"),
        child,
    };
    (server, stderr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    s
}

/// One request on a fresh connection: `(status, body)`.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = Client::over(connect(addr)).get(path);
    (r.status, r.text())
}

/// A number field of a `/stats` body.
fn field(json: &str, name: &str) -> u64 {
    json_u64(json, name).unwrap_or_else(|| panic!("no {name} in {json}"))
}

fn stats(http: SocketAddr) -> String {
    let (status, body) = get(http, "/stats");
    assert_eq!(status, 200, "{body}");
    body
}

/// The `n`th `/ws` client: handshake, close, wait for the server's close frame, then reset the
/// connection (`SO_LINGER` 0): thousands of cycles leave no `TIME_WAIT` sockets behind.
fn ws_cycle(http: SocketAddr, n: usize) {
    let stream = connect(http);
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{http}/ws"), stream)
        .unwrap_or_else(|e| panic!("WebSocket cycle {n}: handshake: {e} (the server stalled?)"));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return,
            Err(e) => panic!("WebSocket cycle {n}: close: {e} (the server stalled?)"),
        }
    }
}

/// Cycles `first..first + count` over `WS_THREADS` threads; the slowest cycle's time.
fn ws_cycles(http: SocketAddr, first: usize, count: usize) -> Duration {
    thread::scope(|scope| {
        let threads: Vec<_> = (0..WS_THREADS)
            .map(|t| {
                scope.spawn(move || {
                    (first + t..first + count)
                        .step_by(WS_THREADS)
                        .map(|n| timed(|| ws_cycle(http, n)))
                        .max()
                        .unwrap_or_default()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .max()
            .unwrap()
    })
}

/// Runs `f`, returning how long it took.
fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// A fresh client on every listener is served: line echo, `GET /healthz`, the hello greeting.
/// Returns the slowest of the three.
fn fresh_clients_served(s: &Serve) -> Duration {
    let line = timed(|| {
        let mut c = connect(s.line);
        c.write_all(b"still there?\n").unwrap();
        let mut echo = String::new();
        BufReader::new(c).read_line(&mut echo).unwrap();
        assert_eq!(echo, "still there?\n");
    });
    let healthz = timed(|| assert_eq!(get(s.http, "/healthz"), (200, "ok".to_string())));
    let hello = timed(|| {
        let mut greeting = String::new();
        connect(s.hello).read_to_string(&mut greeting).unwrap();
        assert_eq!(greeting, "Hello, World!\n");
    });
    println!("fresh clients: line {line:?}, /healthz {healthz:?}, hello {hello:?}");
    line.max(healthz).max(hello)
}

/// Everything `pipe` says from now on, line by line.
fn read_lines(pipe: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_log_nobody_reads_stalls_no_client() {
    let (server, stderr) = serve();
    let mut worst = Duration::ZERO;

    // Every request of the bulk phases is answered (a stalled server fails a read after
    // CLIENT_TIMEOUT); their slowest times are printed. The strict bound is on fresh clients.
    // 10,000 lines on one line connection, 100 at a time, each batch echoed whole.
    let mut c = connect(server.line);
    let mut reader = BufReader::new(c.try_clone().unwrap());
    for batch in 0..100 {
        let lines: String = (0..100).map(|i| format!("line {batch} {i}\n")).collect();
        worst = worst.max(timed(|| {
            c.write_all(lines.as_bytes()).unwrap();
            let mut echoed = vec![0; lines.len()];
            reader
                .read_exact(&mut echoed)
                .unwrap_or_else(|e| panic!("echo of batch {batch}: {e} (the server stalled?)"));
            assert_eq!(echoed, lines.as_bytes());
        }));
    }
    drop((c, reader));
    println!("10,000 lines: slowest batch of 100 echoed in {worst:?}");

    // WebSocket cycles: the 1,000, then on until the queue is full and records drop.
    let mut cycles = 0;
    let mut worst_cycle = Duration::ZERO;
    let dropped = loop {
        worst_cycle = worst_cycle.max(ws_cycles(server.http, cycles, WS_CYCLES));
        cycles += WS_CYCLES;
        let dropped = field(&stats(server.http), "log_dropped");
        if dropped > 0 || cycles >= MAX_WS_CYCLES {
            break dropped;
        }
    };
    println!("{cycles} WebSocket cycles: slowest {worst_cycle:?}; log_dropped {dropped}");
    assert!(
        dropped > 0,
        "after {cycles} cycles nothing was dropped: is the log read?"
    );

    // With the queue full and every new record dropped, fresh clients are served at once.
    let fresh = fresh_clients_served(&server);
    println!("worst latency: lines {worst:?}, cycles {worst_cycle:?}, fresh clients {fresh:?}");
    assert!(fresh < SERVED_WITHIN, "a fresh client waited {fresh:?}");

    // The last disconnect records are counted once every /ws client is gone.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut body = stats(server.http);
    while field(&body, "ws") > 0 {
        assert!(Instant::now() < deadline, "/ws clients linger: {body}");
        thread::sleep(Duration::from_millis(10));
        body = stats(server.http);
    }
    let dropped = field(&body, "log_dropped");

    // Read stderr again: what was queued comes out whole, then one warning with the count.
    let lines = read_lines(stderr);
    let warning = format!("{dropped} log records dropped: the log output could not keep up");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.last().is_some_and(|l: &String| l.contains("dropped")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "no warning after {} lines; the last: {:?}",
                seen.len(),
                seen.last()
            ),
        }
    }
    assert_eq!(
        seen.last().unwrap(),
        &format!("[WARN  readyloop::log] {warning}")
    );

    // A normal exit writes what is still queued: the shutdown's own records arrive.
    let mut server = server;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) },
        0
    );
    let status = wait_timeout(&mut server.child, Duration::from_secs(15)).expect("exit");
    assert!(status.success(), "{status:?}");
    seen.extend(lines.iter());
    let log = seen.join("\n");
    assert!(
        log.contains("shutting down gracefully"),
        "the last records are flushed:\n{}",
        tail(&seen)
    );
    assert_eq!(
        log.matches("log records dropped").count(),
        1,
        "one warning:\n{}",
        tail(&seen)
    );
    // Every record is whole: dropping never cuts one.
    for line in &seen {
        let level = line.get(..7).unwrap_or(line);
        assert!(
            ["[TRACE ", "[DEBUG ", "[INFO  ", "[WARN  ", "[ERROR "].contains(&level),
            "a broken log line: {line:?}"
        );
    }
}

/// `serve --workers 2`: the supervisor and the workers log through their sinks (the workers'
/// lines tagged), `/stats?all=1` sums `log_dropped`, SIGUSR1 still reports every worker, and
/// the supervisor's last record reaches stderr at exit.
#[test]
fn workers_and_their_supervisor_log_through_the_sink() {
    let opts = Options {
        rust_log: Some("info".into()),
        ..Options::default()
    };
    let mut server = Server::start_with(&["--workers", "2"], opts);
    let http = server.http();
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let (status, body) = get(http, "/stats?all=1");
        assert_eq!(status, 200, "{body}");
        if field(&body, "workers_live") == 2 {
            break body;
        }
        assert!(Instant::now() < deadline, "workers never both live: {body}");
        thread::sleep(Duration::from_millis(50));
    };
    // The sum, then each worker's own.
    assert_eq!(field(&all, "log_dropped"), 0, "{all}");
    assert_eq!(all.matches("\"log_dropped\": 0").count(), 3, "{all}");

    server.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_text().contains("readyloop: all workers: ") {
        assert!(
            Instant::now() < deadline,
            "no SIGUSR1 report:\n{}",
            server.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20)).expect("exit");
    assert!(status.success(), "{status:?}");
    let log = server.stderr_text();
    for want in [
        "readyloop: worker 0 pid ",
        "log dropped 0",
        " w0] ",
        " w1] ",
        "all workers exited",
    ] {
        assert!(log.contains(want), "{want:?} missing from:\n{log}");
    }
}

/// The last lines of the log, for a failure message.
fn tail(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(20)..].join("\n")
}

//! `GET /` over keep-alive connections (50 by default), against readyloop's HTTP server and,
//! in the same run, a baseline, plus nginx with one worker when it is installed.
//!
//! - **readyloop**: `Server::bind` on its own thread, exactly as `readyloop serve` runs it.
//! - **baseline**: a *minimal* tokio `current_thread` HTTP/1.1 server written below: it reads
//!   until `\r\n\r\n` and writes back, byte for byte, the response readyloop gave to `GET /`
//!   (captured at start-up: the chat page with the same headers). It parses nothing, checks
//!   nothing and has no timers, routes, limits or bodies; it is a floor for "an async runtime
//!   doing the same socket work", not a real server.
//! - **nginx, 1 worker** (optional): `worker_processes 1`, serving the same page as a static
//!   file (its headers differ: `Server`, `Date`, `ETag`, ...). Skipped when `nginx` is absent.
//!
//! Load: `wrk -t2 -c50 --latency` when `wrk` is on the PATH, otherwise the in-bench mio
//! client below (one thread, one request in flight per connection, latency per request).
//! The result goes to stdout and to `target/bench-http.md` as a Markdown table.
//!
//! Environment: `BENCH_SECS` (default 5), `BENCH_CONNS` (default 50), `BENCH_CLIENT=mio` to
//! skip wrk, `BENCH_NGINX=0` to skip nginx.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

struct Row {
    name: String,
    requests_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    note: String,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too: keep that quick.
    let quick = std::env::args().all(|a| a != "--bench");
    let secs: u64 = env_or("BENCH_SECS", if quick { 1 } else { 5 });
    let conns: usize = env_or("BENCH_CONNS", 50);
    let use_wrk = std::env::var("BENCH_CLIENT").map_or(true, |c| c != "mio") && have("wrk");
    let client = if use_wrk {
        format!("wrk -t2 -c{conns} -d{secs}s")
    } else {
        format!("in-bench mio client, {conns} connections, {secs} s")
    };
    println!("GET / keep-alive, {client}");

    let readyloop = start_readyloop();
    let response = capture_response(readyloop.addr);
    println!("readyloop answers GET / with {} bytes", response.len());
    let baseline = start_baseline(response.clone());
    assert_eq!(
        capture_response(baseline),
        response,
        "baseline must answer the same bytes"
    );

    let mut results = Vec::new();
    let run = |name: &str, addr: SocketAddr, note: &str| {
        let (rps, p50, p99) = if use_wrk {
            run_wrk(addr, conns, secs)
        } else {
            run_mio(addr, conns, secs, response.len())
        };
        println!("{name}: {rps:.0} req/s, p50 {p50:.0} us, p99 {p99:.0} us");
        Row {
            name: name.into(),
            requests_per_s: rps,
            p50_us: p50,
            p99_us: p99,
            note: note.into(),
        }
    };
    results.push(run(
        "readyloop",
        readyloop.addr,
        "this crate, one loop thread",
    ));
    results.push(run(
        "baseline: minimal tokio current_thread",
        baseline,
        "reads to CRLFCRLF, writes fixed bytes; not a real server",
    ));
    if std::env::var("BENCH_NGINX").is_ok_and(|v| v == "0") {
        println!("nginx: skipped (BENCH_NGINX=0)");
    } else {
        match Nginx::start(&readyloop.page()) {
            Some(nginx) => {
                results.push(run(
                    "nginx, 1 worker",
                    nginx.addr,
                    "static file, own headers",
                ));
            }
            None => println!("nginx: skipped (not installed or failed to start)"),
        }
    }
    readyloop.stop();

    let base = results[1].requests_per_s;
    let mut table = format!(
        "`GET /` keep-alive, {client}, {} bytes per response, {} cores\n\n\
         | server | requests/s | p50 latency | p99 latency | vs baseline | note |\n\
         |---|---:|---:|---:|---:|---|\n",
        response.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for r in &results {
        table.push_str(&format!(
            "| {} | {:.0} | {} | {} | {:.2}× | {} |\n",
            r.name,
            r.requests_per_s,
            fmt_us(r.p50_us),
            fmt_us(r.p99_us),
            r.requests_per_s / base,
            r.note
        ));
    }
    println!("\n{table}");
    let out = target_dir().join("bench-http.md");
    match std::fs::write(&out, &table) {
        Ok(()) => println!("written to {}", out.display()),
        Err(e) => println!("could not write {}: {e}", out.display()),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// One `GET /` on a fresh connection; the whole response (head and body) as sent.
fn capture_response(addr: SocketAddr) -> Vec<u8> {
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF before a whole response");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("Content-Length");
            if buf.len() >= end + 4 + len {
                buf.truncate(end + 4 + len);
                return buf;
            }
        }
    }
}

struct Readyloop {
    addr: SocketAddr,
    handle: readyloop::Handle<readyloop::service::Message>,
    thread: std::thread::JoinHandle<()>,
    dir: PathBuf,
}

impl Readyloop {
    /// The body of `GET /` (the chat page), for nginx to serve as a file.
    fn page(&self) -> Vec<u8> {
        let r = capture_response(self.addr);
        let end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        r[end + 4..].to_vec()
    }

    fn stop(self) {
        self.handle.shutdown();
        let _ = self.thread.join();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_readyloop() -> Readyloop {
    use readyloop::service::{ServeConfig, Server};
    let dir = std::env::temp_dir().join(format!("readyloop-bench-{}", std::process::id()));
    let (tx, rx) = std::sync::mpsc::channel();
    let upload_dir = dir.clone();
    // The loop is not `Send` (it holds `Rc`s): build it on the thread that runs it.
    let thread = std::thread::spawn(move || {
        let mut config = ServeConfig {
            http: Some("127.0.0.1:0".parse().unwrap()),
            line: None,
            hello: None,
            ..ServeConfig::default()
        };
        config.web.upload_dir = upload_dir;
        let (mut ev, bound) = Server::bind(config).expect("bind readyloop");
        let addr = bound[0].1.ip().expect("an IP listener");
        tx.send((addr, ev.handle())).unwrap();
        ev.run().expect("readyloop loop");
        ev.handler_mut().finish();
    });
    let (addr, handle) = rx.recv().unwrap();
    Readyloop {
        addr,
        handle,
        thread,
        dir,
    }
}

/// The minimal baseline (`common::tokio_fixed_http`, see the module doc), on a thread of its
/// own for the rest of the process.
fn start_baseline(response: Vec<u8>) -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            common::tokio_fixed_http(listener, response).await;
        });
    });
    addr
}

struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    fn start(page: &[u8]) -> Option<Nginx> {
        let bin = ["nginx", "/usr/sbin/nginx"].into_iter().find(|b| have(b))?;
        let dir =
            std::env::temp_dir().join(format!("readyloop-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("html")).ok()?;
        std::fs::write(dir.join("html/index.html"), page).ok()?;
        let port = StdListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 75s;\n\
               client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
               uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
               types {{ text/html html; }}\n  charset utf-8;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {d}/html;\n    index index.html;\n  }}\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).ok()?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while StdStream::connect(addr).is_err() {
            if Instant::now() > deadline || nginx.child.try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                println!("nginx did not start: {}", log.trim());
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if capture_response(addr).len() < page.len() {
            return None;
        }
        Some(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master must live to stop its worker, which a killed master
        // would leave running as an orphan.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `wrk --latency`: requests/s, p50 and p99 in microseconds.
fn run_wrk(addr: SocketAddr, conns: usize, secs: u64) -> (f64, f64, f64) {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors: {text}"
    );
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in {text}"));
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(p)).then(|| it.next()).flatten()
            })
            .map(parse_wrk_time)
            .unwrap_or_else(|| panic!("no {p} in {text}"))
    };
    (rps, pct("50%"), pct("99%"))
}

fn parse_wrk_time(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => f64::NAN,
    }
}

/// The fallback load generator: `conns` connections on one mio loop, each with one request in
/// flight; a response is complete once `response_len` bytes have arrived for it.
fn run_mio(addr: SocketAddr, conns: usize, secs: u64, response_len: usize) -> (f64, f64, f64) {
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};
    struct C {
        s: TcpStream,
        sent: Instant,
        got: usize,
    }
    let mut poll = Poll::new().unwrap();
    let mut cs = Vec::new();
    for i in 0..conns {
        let std = StdStream::connect(addr).unwrap();
        std.set_nodelay(true).unwrap();
        std.set_nonblocking(true).unwrap();
        let mut s = TcpStream::from_std(std);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .unwrap();
        cs.push(C {
            s,
            sent: Instant::now(),
            got: 0,
        });
    }
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    for c in cs.iter_mut() {
        c.s.write_all(REQUEST).unwrap();
        c.sent = Instant::now();
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 1 << 16];
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            loop {
                match c.s.read(&mut buf) {
                    Ok(0) => panic!("server closed a keep-alive connection"),
                    Ok(n) => {
                        c.got += n;
                        while c.got >= response_len {
                            c.got -= response_len;
                            latencies.push(c.sent.elapsed().as_micros() as u32);
                            // 31 bytes always fit in an idle loopback socket's send buffer.
                            c.s.write_all(REQUEST).unwrap();
                            c.sent = Instant::now();
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&v| f64::from(v))
    };
    (latencies.len() as f64 / elapsed, pct(0.50), pct(0.99))
}

//! What TLS costs, against Debian's nginx (one worker, the same ECDSA P-256 key) in the same
//! run, measured the same way for both:
//!
//! 1. **Idle memory**: `BENCH_CONNS` (10,000) connections, each after a full handshake and one
//!    `GET` on keep-alive, then idle. The server's RSS growth (`/proc/PID/statm`; nginx: its
//!    worker) over the idle connections, per connection: user-space bytes only (socket buffers
//!    and other kernel memory are not in RSS and are the same for both). The same for
//!    plaintext, so the TLS share shows.
//! 2. **Full handshakes**: `BENCH_CLIENTS` (4) threads each connect, do a full TLS 1.3
//!    handshake (no resumption), one `GET`, close_notify, close, over and over for
//!    `BENCH_SECS` (3). The server's CPU time (utime + stime from `/proc/PID/stat`) over the
//!    window per connection is the cost that does not depend on how fast the clients are; its
//!    inverse is the handshakes one server core can do.
//! 3. **Resumed handshakes**: the same with the clients sharing one session store, so every
//!    connection but the first offers a ticket; the fraction resumed is checked and reported.
//! 4. **wss echo**: `readyloop load ws-echo --conns 50` over ws:// and wss:// (64-byte
//!    messages): messages per second and server CPU per message, and the TLS/plaintext ratio.
//!
//! The server is pinned to core 0 and the clients (this process, and `readyloop load`) to
//! core 1 (`BENCH_PIN=0` to not), so neither takes the other's core. Each measurement runs
//! `BENCH_RUNS` (3) times and the median is reported: the machine is shared, single runs are
//! noisy. Without nginx on PATH its rows say so and the rest runs.
//!
//! The clients are rustls' buffered `ClientConnection` with `--insecure`'s verifier (the
//! server's signature is still checked; the chain is not), so the client's share of a
//! handshake is small. Output: a Markdown table on stdout and in `target/bench-tls.md`.

mod common;

use common::{env_num, publish};
use readyloop::runtime::tls_config;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Target: readyloop's user-space bytes per idle TLS connection at most half nginx's.
const IDLE_TARGET_RATIO: f64 = 0.5;
/// Target: full handshakes per server core at least nginx's.
const HANDSHAKE_TARGET_RATIO: f64 = 1.0;
/// Connections opened (handshake and request) before their responses are read.
const BATCH: usize = 500;
/// Time for a server to settle (and RSS to stop moving) after the last response.
const SETTLE: Duration = Duration::from_millis(500);
/// The request every client makes.
const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn main() {
    let conns: usize = env_num("BENCH_CONNS", 10_000);
    let runs: usize = env_num("BENCH_RUNS", 3).max(1);
    let secs: f64 = env_num("BENCH_SECS", 3.0);
    let clients: usize = env_num("BENCH_CLIENTS", 4).max(1);
    let pin = std::env::var("BENCH_PIN").as_deref() != Ok("0");
    if pin {
        pin_to(1);
    }
    let _ = readyloop::runtime::sys::raise_nofile_limit();
    let dir = TempDir::new();
    let (cert, key) = make_cert(dir.path());
    let nginx = nginx_version();
    if nginx.is_none() {
        eprintln!(
            "tls bench: nginx is not installed (apt-get install nginx-light): its rows are skipped"
        );
    }

    let mut rows: Vec<Row> = Vec::new();
    for server in [Server::Readyloop, Server::Nginx] {
        if server == Server::Nginx && nginx.is_none() {
            continue;
        }
        let mut idle_tls = Vec::new();
        let mut idle_plain = Vec::new();
        let mut full = Vec::new();
        let mut resumed = Vec::new();
        for run in 0..runs {
            eprintln!("tls bench: {} run {}/{runs}", server.name(), run + 1);
            let mut s = Running::start(server, &dir, &cert, &key, pin);
            idle_plain.push(idle(&s, s.plain, false, conns));
            idle_tls.push(idle(&s, s.tls, true, conns));
            full.push(handshakes(&s, false, clients, secs));
            resumed.push(handshakes(&s, true, clients, secs));
            s.stop();
        }
        rows.push(Row {
            server,
            idle_tls: median(idle_tls),
            idle_plain: median(idle_plain),
            full: median_by(full),
            resumed: median_by(resumed),
        });
    }
    let wss = (0..runs)
        .map(|_| wss_echo(&dir, &cert, &key, pin))
        .collect::<Vec<_>>();
    let wss_plain = median(wss.iter().map(|w| w.0.rate).collect());
    let wss_tls = median(wss.iter().map(|w| w.1.rate).collect());
    let cpu_plain = median(wss.iter().map(|w| w.0.cpu_us_per_op).collect());
    let cpu_tls = median(wss.iter().map(|w| w.1.cpu_us_per_op).collect());

    let mut report = format!(
        "## TLS: readyloop against nginx{} (1 worker), ECDSA P-256, medians of {runs} runs\n\n\
         Server pinned to core 0, clients to core 1{}. Idle: {conns} connections, each after a \
         full handshake and one GET. Handshakes: {clients} client threads for {secs} s, each \
         connection a TLS 1.3 handshake, one GET and a close; CPU is the server's utime+stime \
         over the window.\n\n\
         | server | idle B/conn TLS | idle B/conn plain | full handshakes/s | server CPU µs / full | full/s per server core | resumed/s | server CPU µs / resumed | resumed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        nginx.as_deref().map(|v| format!(" {v}")).unwrap_or_default(),
        if pin { "" } else { " (not pinned: BENCH_PIN=0)" },
    );
    for r in &rows {
        report += &format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% |\n",
            r.server.name(),
            r.idle_tls,
            r.idle_plain,
            r.full.rate,
            r.full.cpu_us_per_op,
            1e6 / r.full.cpu_us_per_op,
            r.resumed.rate,
            r.resumed.cpu_us_per_op,
            r.resumed.resumed * 100.0,
        );
    }
    if let [ours, theirs] = rows.as_slice() {
        let idle_ratio = ours.idle_tls / theirs.idle_tls;
        let hs_ratio = theirs.full.cpu_us_per_op / ours.full.cpu_us_per_op;
        report += &format!(
            "\nreadyloop / nginx bytes per idle TLS connection: **{idle_ratio:.3}×** (target ≤ {IDLE_TARGET_RATIO}×: {}); \
             full handshakes per server core: **{hs_ratio:.2}×** nginx's (target ≥ {HANDSHAKE_TARGET_RATIO}×: {}); \
             resumed: {:.2}×.\n",
            verdict(idle_ratio <= IDLE_TARGET_RATIO),
            verdict(hs_ratio >= HANDSHAKE_TARGET_RATIO),
            theirs.resumed.cpu_us_per_op / ours.resumed.cpu_us_per_op,
        );
    }
    report += &format!(
        "\nwss echo (`readyloop load ws-echo --conns 50`, 64-byte messages): plaintext {wss_plain:.0} msgs/s at {cpu_plain:.1} µs server CPU each; \
         TLS {wss_tls:.0} msgs/s at {cpu_tls:.1} µs: **{:.2}×** the plaintext rate, {:.2}× the CPU per message.\n",
        wss_tls / wss_plain,
        cpu_tls / cpu_plain,
    );
    publish("bench-tls.md", &report);
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Readyloop,
    Nginx,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Readyloop => "readyloop",
            Server::Nginx => "nginx",
        }
    }
}

struct Row {
    server: Server,
    idle_tls: f64,
    idle_plain: f64,
    full: Rate,
    resumed: Rate,
}

/// A rate with the server's CPU per operation (and, for handshakes, the fraction resumed).
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    rate: f64,
    cpu_us_per_op: f64,
    resumed: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The run with the median server CPU per operation.
fn median_by(mut v: Vec<Rate>) -> Rate {
    v.sort_by(|a, b| a.cpu_us_per_op.total_cmp(&b.cpu_us_per_op));
    v[v.len() / 2]
}

/// Pins this process (and what it starts, unless they pin themselves) to `core`.
fn pin_to(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A command that runs pinned to `core` (when pinning).
fn pinned(cmd: &mut Command, pin: bool, core: usize) {
    if pin {
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(move || {
                pin_to(core);
                Ok(())
            });
        }
    }
}

/// An ECDSA P-256 certificate for localhost and its key, made now (no key is committed).
fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn nginx_version() -> Option<String> {
    let out = Command::new("nginx").arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.trim()
        .strip_prefix("nginx version: ")
        .map(|v| v.replace("nginx/", ""))
}

/// A server under test: the process whose memory and CPU are measured, and its two ports.
struct Running {
    children: Vec<Child>,
    /// The process that serves TLS (readyloop itself; nginx's one worker).
    pid: u32,
    /// The process that serves plaintext (readyloop: a second one; nginx: the same worker).
    plain_pid: u32,
    tls: SocketAddr,
    plain: SocketAddr,
}

impl Running {
    fn start(server: Server, dir: &TempDir, cert: &Path, key: &Path, pin: bool) -> Running {
        match server {
            Server::Readyloop => {
                // One process for each: the HTTP listener is either HTTPS or plaintext.
                let tls = readyloop_serve(dir, Some((cert, key)), pin);
                let plain = readyloop_serve(dir, None, pin);
                Running {
                    pid: tls.0.id(),
                    plain_pid: plain.0.id(),
                    tls: tls.1,
                    plain: plain.1,
                    children: vec![tls.0, plain.0],
                }
            }
            Server::Nginx => start_nginx(dir, cert, key, pin),
        }
    }

    /// The pid that serves `addr`.
    fn pid_for(&self, addr: SocketAddr) -> u32 {
        if addr == self.plain {
            self.plain_pid
        } else {
            self.pid
        }
    }

    fn stop(&mut self) {
        for c in &mut self.children {
            // SIGTERM first (nginx's master then stops its worker), then make sure.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `readyloop serve` with only its HTTP listener, over TLS when given a cert and key.
fn readyloop_serve(dir: &TempDir, tls: Option<(&Path, &Path)>, pin: bool) -> (Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_readyloop"));
    cmd.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--line",
        "off",
        "--hello",
        "off",
    ])
    .args(["--ws-ping", "0", "--keepalive-timeout", "600"])
    .arg("--upload-dir")
    .arg(dir.path().join("uploads"));
    if let Some((cert, key)) = tls {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    pinned(&mut cmd, pin, 0);
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn readyloop");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// A free loopback port (bound and released: nginx binds it right after).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// nginx with one worker: `return 200 "ok"` on a TLS port and a plaintext port, keep-alive
/// for as long as the bench holds connections, no access log.
fn start_nginx(dir: &TempDir, cert: &Path, key: &Path, pin: bool) -> Running {
    let (tls, plain) = (free_port(), free_port());
    let root = dir.path().join("nginx");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let conf = format!(
        "worker_processes 1;\nworker_rlimit_nofile 40000;\ndaemon off;\npid {root}/nginx.pid;\n\
         error_log {root}/logs/error.log warn;\n\
         events {{ worker_connections 30000; }}\n\
         http {{\n  access_log off;\n  keepalive_timeout 600s;\n  keepalive_requests 1000000;\n\
           client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;\n\
           fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;\n\
           ssl_protocols TLSv1.2 TLSv1.3;\n\
           server {{\n    listen {tls} ssl;\n    listen {plain};\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             location / {{ return 200 \"ok\"; }}\n  }}\n}}\n",
        root = root.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let conf_path = root.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-p").arg(&root).arg("-c").arg(&conf_path);
    cmd.arg("-e").arg(root.join("logs/stderr.log"));
    pinned(&mut cmd, pin, 0);
    let master = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(tls).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: see {}",
            root.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let worker = children_of(master.id())
        .into_iter()
        .next()
        .expect("nginx worker");
    Running {
        children: vec![master],
        pid: worker,
        plain_pid: worker,
        tls,
        plain,
    }
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(child);
        }
    }
    out
}

/// utime + stime of `pid`, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks * 1e6 / hz
}

fn rss(pid: u32) -> f64 {
    readyloop::runtime::sys::rss_bytes(Some(pid)).expect("statm") as f64
}

/// The clients' TLS configuration: `--insecure`'s verifier, ALPN http/1.1, and either no
/// resumption or an in-memory session store shared by every connection made with it.
fn client_config(resume: bool) -> Arc<rustls::ClientConfig> {
    let base = tls_config::client_config(None, true, &[b"http/1.1"]).unwrap();
    let mut config = (*base).clone();
    config.resumption = if resume {
        rustls::client::Resumption::in_memory_sessions(1024)
    } else {
        rustls::client::Resumption::disabled()
    };
    Arc::new(config)
}

/// One client connection, plaintext or TLS, with the request written and its response read.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn open(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> io::Result<Conn> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let Some(config) = tls else {
            return Ok(Conn::Plain(tcp));
        };
        let name = tls_config::server_name("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        assert_eq!(
            s.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        Ok(Conn::Tls(Box::new(s)))
    }

    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.as_mut(),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let s = self.stream();
        s.write_all(REQUEST)?;
        s.flush()
    }

    /// Reads one response to `ok` (both servers answer `/healthz` with a 2-byte body).
    fn response(&mut self) -> io::Result<()> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !(got.ends_with(b"\r\n\r\nok")) {
            let n = self.stream().read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::other("EOF before the response"));
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    fn resumed(&self) -> bool {
        match self {
            Conn::Plain(_) => false,
            Conn::Tls(s) => s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }

    fn close(mut self) {
        if let Conn::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Bytes of the server's RSS per idle connection to `addr`.
fn idle(server: &Running, addr: SocketAddr, tls: bool, conns: usize) -> f64 {
    let pid = server.pid_for(addr);
    let config = tls.then(|| client_config(false));
    let mut warm = Conn::open(addr, config.as_ref()).expect("warm-up connect");
    warm.send().unwrap();
    warm.response().unwrap();
    std::thread::sleep(SETTLE);
    let before = rss(pid);
    let started = Instant::now();
    let mut idle: Vec<Conn> = Vec::with_capacity(conns);
    while idle.len() < conns {
        let from = idle.len();
        for _ in from..conns.min(from + BATCH) {
            let mut c = Conn::open(addr, config.as_ref()).unwrap_or_else(|e| {
                panic!("connect #{}: {e}", idle.len() + 1);
            });
            c.send().unwrap();
            idle.push(c);
        }
        for c in &mut idle[from..] {
            c.response().expect("response");
        }
    }
    std::thread::sleep(SETTLE);
    let after = rss(pid);
    eprintln!(
        "  idle {}: {conns} connections in {:.1?}; RSS {:.0} -> {:.0} KiB",
        if tls { "TLS" } else { "plain" },
        started.elapsed(),
        before / 1024.0,
        after / 1024.0
    );
    drop(idle);
    drop(warm);
    // Let the server notice the closes before the next measurement.
    std::thread::sleep(SETTLE);
    (after - before) / conns as f64
}

/// Connections (TLS 1.3 handshake, one request, close) per second from `clients` threads, with
/// the server's CPU per connection.
fn handshakes(server: &Running, resume: bool, clients: usize, secs: f64) -> Rate {
    let addr = server.tls;
    // Both versions offered; both servers choose TLS 1.3 (checked in `Conn::open`).
    let config = client_config(resume);
    if resume {
        // One connection first, so the store has a ticket before the window opens.
        let mut c = Conn::open(addr, Some(&config)).unwrap();
        c.send().unwrap();
        c.response().unwrap();
        c.close();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_us(server.pid);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, done, resumed, config) =
                (stop.clone(), done.clone(), resumed.clone(), config.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut c = Conn::open(addr, Some(&config)).expect("handshake");
                    c.send().unwrap();
                    c.response().unwrap();
                    if c.resumed() {
                        resumed.fetch_add(1, Ordering::Relaxed);
                    }
                    c.close();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let cpu_after = cpu_us(server.pid);
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed) as f64;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let r = Rate {
        rate: n / elapsed,
        cpu_us_per_op: (cpu_after - cpu_before) / n.max(1.0),
        resumed: resumed.load(Ordering::Relaxed) as f64 / n.max(1.0),
    };
    eprintln!(
        "  {} handshakes: {:.0}/s, {:.0} µs server CPU each, {:.0}% resumed",
        if resume { "resumed" } else { "full" },
        r.rate,
        r.cpu_us_per_op,
        r.resumed * 100.0
    );
    // Let the server finish the last closes.
    std::thread::sleep(SETTLE);
    r
}

/// `readyloop load ws-echo --conns 50` over ws:// then wss://: (plaintext, TLS).
fn wss_echo(dir: &TempDir, cert: &Path, key: &Path, pin: bool) -> (Rate, Rate) {
    let mut out = Vec::new();
    for tls in [false, true] {
        let (mut child, addr) = readyloop_serve(dir, tls.then_some((cert, key)), pin);
        let mut load = Command::new(env!("CARGO_BIN_EXE_readyloop"));
        load.args(["load", "ws-echo", "--addr", &addr.to_string()])
            .args(["--conns", "50", "--duration", "5", "--json", "--quiet"]);
        if tls {
            load.args(["--tls", "--insecure"]);
        }
        pinned(&mut load, pin, 1);
        let before = cpu_us(child.id());
        let result = load
            .env("RUST_LOG", "warn")
            .output()
            .expect("readyloop load");
        let cpu = cpu_us(child.id()) - before;
        let text = String::from_utf8_lossy(&result.stdout);
        let json = text.lines().last().unwrap_or_default();
        let msgs = json_num(json, "msgs");
        let rate = json_num(json, "msgs_per_s");
        let _ = child.kill();
        let _ = child.wait();
        eprintln!(
            "  wss echo ({}): {rate:.0} msgs/s, {:.1} µs server CPU each",
            if tls { "TLS" } else { "plain" },
            cpu / msgs.max(1.0)
        );
        out.push(Rate {
            rate,
            cpu_us_per_op: cpu / msgs.max(1.0),
            resumed: 0.0,
        });
    }
    (out[0], out[1])
}

/// The number after `"key":` in a JSON line.
fn json_num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let Some(at) = json.find(&pat) else {
        panic!("no {key} in {json:?}");
    };
    let rest = &json[at + pat.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap_or(0.0)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("readyloop-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

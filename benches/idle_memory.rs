//! User-space memory per idle connection: readyloop's line server against a tokio
//! `current_thread` baseline, measured in the same run the same way.
//!
//! Each server runs alone in a child process, so its RSS (`/proc/PID/statm`) is its own:
//! readyloop is the real binary (`readyloop serve --line 127.0.0.1:0 --http off --hello off`,
//! `RUST_LOG=warn`); tokio is this bench binary re-executed with `BENCH_ROLE=tokio-server`.
//! For each server:
//! 1. start it and read its `listening line ADDR` line;
//! 2. warm it up with one connection that sends a line and reads the echo (first-touch costs
//!    such as the loop's read buffer page are not per-connection), and keep that one open;
//! 3. RSS *before*;
//! 4. open N connections (`BENCH_CONNS`, default 10,000) in batches (`BENCH_BATCH`, default
//!    500), each sending a line and reading its echo, so the server has accepted, registered
//!    and served every one; they then stay idle with nothing pending on either side;
//! 5. RSS *after*, once things settle; report (after − before) / N.
//!
//! Kernel memory (socket buffers, epoll entries, file structs) is not in RSS and not counted:
//! it is the same for both servers. Target for readyloop: ≤ 150 bytes per idle connection.
//!
//! Output: a Markdown table on stdout, also written to `target/bench-idle-memory.md`.

mod common;

use common::{env_num, publish, tokio_line_server};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of user-space memory readyloop may use per idle connection.
const TARGET_BYTES: f64 = 150.0;
/// Connections opened before their echoes are read (`BENCH_BATCH` overrides): below tokio's
/// listen backlog (1024) so no SYN is dropped and no connect waits for a retransmission.
/// The server holds up to this many replies at once, and the allocator keeps the memory they
/// used after it is freed, so a larger batch shows as a little more RSS per connection.
const BATCH: usize = 500;
/// Time for the server to settle (and RSS to stop moving) after the last echo.
const SETTLE: Duration = Duration::from_millis(500);

fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("tokio-server") {
        return tokio_server();
    }
    let conns: usize = env_num("BENCH_CONNS", 10_000);
    let batch: usize = env_num("BENCH_BATCH", BATCH).max(1);
    match readyloop::runtime::sys::raise_nofile_limit() {
        Ok((_, soft)) if (soft as usize) < conns + 64 => {
            eprintln!("idle_memory: RLIMIT_NOFILE is {soft}, too low for {conns} connections")
        }
        Ok(_) => {}
        Err(e) => eprintln!("idle_memory: could not raise RLIMIT_NOFILE: {e}"),
    }

    let readyloop = measure("readyloop", spawn_readyloop(), conns, batch);
    let tokio = measure("tokio current_thread", spawn_tokio(), conns, batch);

    let mut report = format!(
        "## idle memory: {conns} idle line connections (opened {batch} at a time), user-space RSS growth\n\n\
         | server | RSS before KiB | RSS after KiB | bytes / connection |\n\
         |---|---:|---:|---:|\n"
    );
    for (name, m) in [("readyloop", &readyloop), ("tokio current_thread", &tokio)] {
        report += &format!(
            "| {name} | {} | {} | {:.0} |\n",
            m.before / 1024,
            m.after / 1024,
            m.per_conn(conns)
        );
    }
    let ours = readyloop.per_conn(conns);
    report += &format!(
        "\nreadyloop / tokio bytes per connection: **{:.3}×**; readyloop target ≤ {TARGET_BYTES:.0} B: **{}**\n",
        ours / tokio.per_conn(conns),
        if ours <= TARGET_BYTES { "met" } else { "missed" }
    );
    publish("bench-idle-memory.md", &report);
}

/// RSS of a server before and after the idle connections were opened.
struct Rss {
    before: u64,
    after: u64,
}

impl Rss {
    fn per_conn(&self, conns: usize) -> f64 {
        (self.after as f64 - self.before as f64) / conns as f64
    }
}

fn spawn_readyloop() -> Child {
    Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args([
            "serve",
            "--line",
            "127.0.0.1:0",
            "--http",
            "off",
            "--hello",
            "off",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn readyloop")
}

fn spawn_tokio() -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .env("BENCH_ROLE", "tokio-server")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tokio server")
}

/// The child side of the tokio baseline: the same server as in `line_echo`, alone in a process.
fn tokio_server() {
    let _ = readyloop::runtime::sys::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening line {}", listener.local_addr().unwrap());
        io::stdout().flush().unwrap();
        // Runs until the parent kills this process.
        tokio_line_server(listener, std::future::pending()).await;
    });
}

/// Reads the child's `listening line ADDR` line.
fn line_addr(child: &mut Child) -> SocketAddr {
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read server stdout") == 0 {
            panic!("server exited before printing its line address");
        }
        if let Some(addr) = line.trim().strip_prefix("listening line ") {
            return addr.parse().expect("listening address");
        }
    }
}

/// Connects, sends a line and waits for its echo: the server has accepted and served it.
fn exercise(streams: &mut [TcpStream]) -> io::Result<()> {
    for s in streams.iter_mut() {
        s.write_all(b"hi\n")?;
    }
    for s in streams.iter_mut() {
        let mut echo = [0u8; 3];
        s.read_exact(&mut echo)?;
        if &echo != b"hi\n" {
            return Err(io::Error::other("bad echo"));
        }
    }
    Ok(())
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn measure(name: &str, mut child: Child, conns: usize, batch: usize) -> Rss {
    let pid = child.id();
    let addr = line_addr(&mut child);
    let rss = |what: &str| {
        readyloop::runtime::sys::rss_bytes(Some(pid))
            .unwrap_or_else(|e| panic!("{name}: RSS {what}: {e}"))
    };
    let mut warm = vec![connect(addr).expect("warm-up connect")];
    exercise(&mut warm).expect("warm-up echo");
    std::thread::sleep(SETTLE);
    let before = rss("before");

    let started = Instant::now();
    let mut idle: Vec<TcpStream> = Vec::with_capacity(conns);
    while idle.len() < conns {
        let from = idle.len();
        for _ in from..conns.min(from + batch) {
            idle.push(
                connect(addr)
                    .unwrap_or_else(|e| panic!("{name}: connect #{} failed: {e}", idle.len() + 1)),
            );
        }
        exercise(&mut idle[from..]).unwrap_or_else(|e| panic!("{name}: echo failed: {e}"));
    }
    std::thread::sleep(SETTLE);
    let after = rss("after");
    eprintln!(
        "idle_memory: {name}: {conns} connections open and echoed in {:.2?}; RSS {before} -> {after} bytes",
        started.elapsed()
    );

    // Server first: its sockets close with the process, ours then see EOF and close quietly.
    let _ = child.kill();
    let _ = child.wait();
    drop(idle);
    drop(warm);
    Rss { before, after }
}

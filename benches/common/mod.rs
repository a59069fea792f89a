//! What the benchmarks share: the tokio baselines (line echo, fixed-response HTTP, hello;
//! `tokio_ws` for WebSocket), starting `readyloop serve` with only its HTTP listener,
//! environment knobs, and where the Markdown reports go; `ws_client` is the mio WebSocket
//! client and `/ws` broadcast measurement of ws_broadcast and redis_broadcast.
//! Not a bench target itself (Cargo only picks up `benches/*.rs`).
#![allow(dead_code)] // each bench uses a different subset

pub mod tokio_ws;
pub mod ws_client;

use std::future::Future;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// Pins `pid` (0: this process) to `cpu`, so a server and its load generator never share a
/// core.
pub fn pin(pid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
    // sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPU seconds (user + system, every thread) process `pid` has used so far, from
/// /proc/PID/stat (in clock ticks, 10 ms each).
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after_name
        .split(' ')
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[0] + f[1]) as f64 / hz
}

/// `name` from the environment as a number, or `default` (unset, or unparsable with a warning).
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("ignoring {name}={s:?}: not a number");
            default
        }),
        Err(_) => default,
    }
}

/// The tokio baseline: a line echo server as a good tokio user writes it. One task per
/// connection, a `BufReader` (tokio's default 8 KiB buffer) with `read_until(b'\n')`, the
/// lines written into a `BufWriter` that is flushed once the reader's buffer is drained (so
/// pipelined lines that came in one read go back in one write, as readyloop does).
/// TCP_NODELAY is set, as readyloop sets it, so neither side waits on Nagle.
/// Runs until `stop` completes; connection tasks end on EOF or with the runtime.
pub async fn tokio_line_server(listener: TcpListener, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(echo_lines(stream));
                }
                Err(e) => eprintln!("tokio server: accept failed: {e}"),
            },
            _ = &mut stop => return,
        }
    }
}

async fn echo_lines(mut stream: TcpStream) -> io::Result<()> {
    let (reader, writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        writer.write_all(&line).await?;
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

/// The tokio HTTP/1.1 keep-alive baseline: a minimal `current_thread` server that reads
/// until `\r\n\r\n` and writes back `response` (the bytes readyloop gave to the same
/// request) for every complete head, all answers to one read in one write. It parses
/// nothing, checks nothing and has no timers, routes, limits or bodies: "an async runtime
/// doing the same socket work", not a real server. Runs for as long as the runtime does.
pub async fn tokio_fixed_http(listener: TcpListener, response: Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let response: std::rc::Rc<[u8]> = response.into();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let response = response.clone();
                tokio::task::spawn_local(async move {
                    let mut buf = Vec::with_capacity(4096);
                    let mut out = Vec::new();
                    let mut chunk = vec![0u8; 4096];
                    loop {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        // Answer every complete head in the buffer (pipelining).
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            out.extend_from_slice(&response);
                        }
                        if !out.is_empty() {
                            if sock.write_all(&out).await.is_err() {
                                return;
                            }
                            out.clear();
                        }
                    }
                });
            }
        })
        .await;
}

/// The tokio hello baseline: accept, write the greeting, close (no task per connection: the
/// greeting fits a fresh socket's buffer, so the write completes at once).
pub async fn tokio_hello(listener: TcpListener, greeting: &[u8]) {
    loop {
        if let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock.write_all(greeting).await;
        }
    }
}

/// `target/NAME` (honouring CARGO_TARGET_DIR), where a bench leaves its Markdown table.
pub fn report_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    dir.join(name)
}

/// Prints `report` to stdout and writes it to `target/NAME`.
pub fn publish(name: &str, report: &str) {
    print!("{report}");
    let _ = io::stdout().flush();
    let path = report_path(name);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&path, report) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

/// `readyloop serve` with only the HTTP listener (port 0), WebSocket pings off and uploads in
/// a temp dir named after `tag`; add flags, then start it with `spawn_http`.
pub fn readyloop_http(tag: &str) -> Command {
    let dir = std::env::temp_dir().join(format!("readyloop-{tag}-{}", std::process::id()));
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
    .args(["--ws-ping", "0", "--upload-dir"])
    .arg(&dir);
    cmd
}

/// Starts `cmd` (a server that prints `listening http ADDR` first) with `RUST_LOG=warn`, and
/// returns it with that address.
pub fn spawn_http(cmd: &mut Command) -> (Child, SocketAddr) {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening http ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

//! Shared helpers of the integration tests: spawn the real `readyloop` binary on port 0,
//! learn its addresses from the `listening <proto> <addr>` lines, and talk to it over real
//! loopback sockets with every blocking call bounded by a timeout. This is the one place that
//! starts `readyloop serve`: `tests/http_support` and `tests/ws_common` build on `Server` here.
//!
//! Nothing here may hang: reads and writes carry socket timeouts, waits for the child process
//! poll `try_wait` against a deadline, and `Server` kills its process when dropped.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The upper bound on any single blocking socket operation in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a starting server may take to print its `listening` lines: generous, because the
/// HTTP tests start servers while others stream hundreds of MiB.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The real binary, built by cargo for the integration tests. It needs the `cli` feature;
/// without it this is empty, and only the in-process tests (tests/waker.rs) run.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_readyloop") {
    Some(bin) => bin,
    None => "",
};

/// A running `readyloop serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub http: Option<SocketAddr>,
    pub line: Option<SocketAddr>,
    pub hello: Option<SocketAddr>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Where stderr goes instead of `stderr`, when `Options::stderr_file` asked for a file.
    stderr_file: Option<PathBuf>,
    stderr_done: Option<thread::JoinHandle<()>>,
}

/// How to start the server beyond its flags.
#[derive(Default)]
pub struct Options {
    /// `RUST_LOG` for the child (default `warn`: per-line info logs would slow bulk tests).
    pub rust_log: Option<String>,
    /// Set RLIMIT_NOFILE soft and hard to this before exec.
    pub nofile: Option<u64>,
    /// Write the server's stderr to this file (created or truncated) instead of collecting it
    /// in memory; `stderr_text` reads it back.
    pub stderr_file: Option<PathBuf>,
}

impl Server {
    /// `readyloop serve` on three port-0 listeners, plus `extra` flags (later flags win).
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, Options::default())
    }

    /// Like `start`, with `Options`.
    pub fn start_with(extra: &[&str], opts: Options) -> Server {
        let mut args = vec!["--line", "127.0.0.1:0", "--hello", "127.0.0.1:0"];
        // A build without the `http` feature refuses `--http ADDR` (and has no HTTP listener).
        if cfg!(feature = "http") {
            args.extend_from_slice(&["--http", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        Server::serve(&args, opts)
    }

    /// `readyloop serve ARGS` exactly: waits for one `listening` line per listener that `args`
    /// turns on (a listener counts when its flag is given with a value other than `off`).
    pub fn serve(serve_args: &[&str], opts: Options) -> Server {
        let mut args = vec!["serve"];
        args.extend_from_slice(serve_args);
        // Which listeners to expect: the last value given for each flag decides.
        let enabled = |flag: &str| {
            let last = args
                .windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1])
                .next_back();
            last.is_some_and(|v| v != "off")
        };
        let expected = ["--http", "--line", "--hello"]
            .iter()
            .filter(|f| enabled(f))
            .count();
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .env("RUST_LOG", opts.rust_log.as_deref().unwrap_or("warn"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match &opts.stderr_file {
            Some(path) => cmd.stderr(std::fs::File::create(path).expect("stderr file")),
            None => cmd.stderr(Stdio::piped()),
        };
        if let Some(n) = opts.nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn readyloop");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = child.stderr.take().map(|mut pipe| {
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            })
        });
        let lines = line_reader(child.stdout.take().unwrap());
        let mut server = Server {
            child,
            http: None,
            line: None,
            hello: None,
            stderr,
            stderr_file: opts.stderr_file,
            stderr_done,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for _ in 0..expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!(
                    "no `listening` line from readyloop {args:?}; stderr:\n{}",
                    server.stderr_text()
                ),
            };
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("listening"), "stdout line {line:?}");
            let proto = words.next().expect("protocol");
            let addr: SocketAddr = words.next().expect("address").parse().expect("address");
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_ne!(addr.port(), 0, "the real port is printed");
            match proto {
                "http" => server.http = Some(addr),
                "line" => server.line = Some(addr),
                "hello" => server.hello = Some(addr),
                other => panic!("unknown protocol {other:?}"),
            }
        }
        server
    }

    pub fn line(&self) -> SocketAddr {
        self.line.expect("line listener")
    }

    pub fn hello(&self) -> SocketAddr {
        self.hello.expect("hello listener")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        match &self.stderr_file {
            Some(path) => {
                String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
            }
            None => String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned(),
        }
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Waits for the server to exit, at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let status = wait_timeout(&mut self.child, limit)?;
        // The process is gone: its stderr pipe reaches EOF, so the reader finishes.
        if let Some(h) = self.stderr_done.take() {
            let _ = h.join();
        }
        Some(status)
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Resident set size, in bytes.
    pub fn rss(&self) -> u64 {
        readyloop::runtime::sys::rss_bytes(Some(self.pid())).expect("statm")
    }

    /// User + system CPU time consumed so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the `(comm)`, which may itself contain spaces: state is field 3,
        // utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields[11].parse().unwrap();
        let stime: u64 = fields[12].parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis((utime + stime) * 1000 / hz)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `pipe`, delivered through a channel so a reader can wait with a timeout.
pub fn line_reader(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
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

/// Everything `pipe` produces until EOF, through a thread (join it with a deadline via the
/// returned channel).
pub fn collect(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    rx
}

/// `child.wait()` bounded by `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A blocking client socket with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads exactly `n` bytes (panics on timeout or early EOF).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Reads until EOF (panics on timeout or error).
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("reading to EOF (got {} bytes): {e}", all.len()));
    all
}

/// Asserts the next read is a clean EOF.
pub fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("expected EOF, got error {e}"),
    }
}

/// Writes `line` and expects it echoed.
pub fn echo(s: &mut TcpStream, line: &str) {
    s.write_all(line.as_bytes()).unwrap();
    let got = read_n(s, line.len());
    assert_eq!(String::from_utf8_lossy(&got), line);
}

/// Which of `streams` are readable (data or EOF) within `limit`, via poll(2).
pub fn readable(streams: &[&TcpStream], limit: Duration) -> Vec<bool> {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the duration of the call.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            limit.as_millis() as libc::c_int,
        )
    };
    assert!(rc >= 0, "poll: {}", io::Error::last_os_error());
    fds.iter().map(|p| p.revents != 0).collect()
}

/// `n` bytes of numbered lines of `len` bytes each (the last may be shorter but is complete),
/// so a lost, duplicated or reordered line shows up as a mismatch.
pub fn numbered_lines(n: usize, len: usize) -> Vec<u8> {
    assert!(len >= 12);
    let mut out = Vec::with_capacity(n + len);
    let mut i = 0u64;
    while out.len() < n {
        let line_len = len.min(n - out.len()).max(12);
        let start = out.len();
        write!(out, "{i:010}").unwrap();
        while out.len() < start + line_len - 1 {
            out.push(b'a' + (out.len() % 26) as u8);
        }
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Writes as much of `data` as the peer accepts without reading on our side: non-blocking
/// writes until all is written or the socket has refused bytes for `stall`. Returns how many
/// bytes were accepted (the stream is left blocking again).
pub fn stuff(s: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut stalled_since: Option<Instant> = None;
    while sent < data.len() {
        match s.write(&data[sent..]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    sent
}

/// Raises this process' soft RLIMIT_NOFILE to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    readyloop::runtime::sys::raise_nofile_limit()
        .expect("raise RLIMIT_NOFILE")
        .1
}

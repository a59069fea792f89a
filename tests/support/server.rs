//! The one server spawner: `Server` runs the real `readyloop serve` with its listeners on
//! port 0, waits (bounded) for one `listening <proto> <addr>` line per listener it turned on,
//! collects the server's stderr (its log) in memory or in a file, and kills the process on
//! drop, printing the tail of that log first when a test is failing. Its flavours are
//! constructors: `start` (line, hello and, with the `http` feature, HTTP), `serve` (exactly the
//! flags given) and `http_only` (HTTP alone, with an upload dir and log file of its own; the
//! HTTP and WebSocket tests use it), each taking `Options` where needed.
//!
//! Also the helpers for child processes that tests spawn themselves (`readyloop client`,
//! `readyloop load`, or a `serve` whose raw stdout is what is tested).

use super::{TempDir, BIN, STARTUP_TIMEOUT};
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How much of a server's log a failing test prints when the server is dropped.
const LOG_TAIL_ON_PANIC: usize = 4000;

/// A running `readyloop serve`, killed on drop.
pub struct Server {
    pub child: Child,
    http: Option<SocketAddr>,
    line: Option<SocketAddr>,
    hello: Option<SocketAddr>,
    /// Listeners on Unix sockets: `(protocol, path)`.
    unix: Vec<(String, PathBuf)>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Where stderr goes instead of `stderr`, when `Options::stderr_file` asked for a file.
    stderr_file: Option<PathBuf>,
    stderr_done: Option<thread::JoinHandle<()>>,
    /// The directory of an `http_only` server (its upload dir and log file); removed after the
    /// process is killed.
    root: Option<TempDir>,
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

/// `readyloop serve ARGS` with the tests' defaults: `RUST_LOG=warn` and stdin closed.
fn serve_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// `readyloop serve ARGS` as a bare child process, stdout piped and stderr discarded: for the
/// tests of what `Server` hides (a start that binds nothing, or every line the process prints
/// to stdout in its whole life).
pub fn spawn_serve(args: &[&str]) -> Child {
    serve_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn readyloop serve")
}

/// `serve ARGS`, after the tests' port-0 HTTP listener and with line and hello off, that must
/// fail at start-up: exit 2, no stdout (so no `listening` line), and exactly one stderr line,
/// containing `needle`.
pub fn serve_refused(args: &[&str], needle: &str) {
    let mut all = vec!["--http", "127.0.0.1:0", "--line", "off", "--hello", "off"];
    all.extend_from_slice(args);
    let out = serve_command(&all)
        .stdin(Stdio::null())
        .output()
        .expect("run readyloop serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
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

    /// `readyloop serve` with only the HTTP listener, plus `extra` flags, in a fresh directory
    /// of its own: `root/uploads` is the upload dir, `root/stderr.log` holds the log
    /// (`RUST_LOG=readyloop=info`), and the directory goes when the server is dropped.
    pub fn http_only(extra: &[&str]) -> Server {
        Server::http_only_in(TempDir::new("http"), extra)
    }

    /// Like `http_only`, in `root`, whose `uploads` may already hold files.
    pub fn http_only_in(root: TempDir, extra: &[&str]) -> Server {
        let uploads = root.path().join("uploads");
        let mut args = vec!["--http", "127.0.0.1:0", "--line", "off", "--hello", "off"];
        args.extend(["--upload-dir", uploads.to_str().expect("UTF-8 temp dir")]);
        args.extend_from_slice(extra);
        let mut server = Server::serve(
            &args,
            Options {
                rust_log: Some("readyloop=info".into()),
                stderr_file: Some(root.path().join("stderr.log")),
                ..Options::default()
            },
        );
        server.root = Some(root);
        server
    }

    /// `readyloop serve ARGS` exactly: waits for one `listening` line per listener that `args`
    /// turns on (a listener counts when its flag is given with a value other than `off`).
    pub fn serve(serve_args: &[&str], opts: Options) -> Server {
        // Which listeners to expect: the last value given for each flag decides.
        let enabled = |flag: &str| {
            let last = serve_args
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
        let mut cmd = serve_command(serve_args);
        cmd.env("RUST_LOG", opts.rust_log.as_deref().unwrap_or("warn"))
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
            unix: Vec::new(),
            stderr,
            stderr_file: opts.stderr_file,
            stderr_done,
            root: None,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for _ in 0..expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!(
                    "no `listening` line from readyloop serve {serve_args:?}; stderr:\n{}",
                    server.stderr_text()
                ),
            };
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("listening"), "stdout line {line:?}");
            let proto = words.next().expect("protocol");
            let addr = words.next().expect("address");
            if let Some(path) = addr.strip_prefix("unix:") {
                server.unix.push((proto.to_string(), PathBuf::from(path)));
                continue;
            }
            let addr: SocketAddr = addr.parse().expect("address");
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_ne!(addr.port(), 0, "the real port is printed");
            match proto {
                // `https` when the HTTP listener has TLS (--tls-cert): the same listener.
                "http" | "https" => server.http = Some(addr),
                "line" => server.line = Some(addr),
                "hello" => server.hello = Some(addr),
                other => panic!("unknown protocol {other:?}"),
            }
        }
        server
    }

    pub fn http(&self) -> SocketAddr {
        self.http.expect("http listener")
    }

    /// The path of the Unix socket listener of `proto`.
    pub fn unix(&self, proto: &str) -> PathBuf {
        self.unix
            .iter()
            .find(|(p, _)| p == proto)
            .map(|(_, path)| path.clone())
            .unwrap_or_else(|| panic!("no {proto} listener on a Unix socket"))
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

    /// The directory of an `http_only` server.
    pub fn root(&self) -> &Path {
        self.root.as_ref().expect("an http_only server").path()
    }

    /// The upload dir of an `http_only` server.
    pub fn uploads(&self) -> PathBuf {
        self.root().join("uploads")
    }

    /// What the server wrote to stderr (its log) so far.
    pub fn stderr_text(&self) -> String {
        match &self.stderr_file {
            Some(path) => {
                String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
            }
            None => String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned(),
        }
    }

    /// Waits up to `within` for `needle` to appear in the log.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.stderr_text().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
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

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(within).unwrap_or_else(|| {
            panic!(
                "server did not exit within {within:?}\n{}",
                self.stderr_text()
            )
        })
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
        if thread::panicking() {
            let log = self.stderr_text();
            let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL_ON_PANIC).collect();
            eprintln!("--- server log (last {LOG_TAIL_ON_PANIC} lines at most) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("--- server exited: {status}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `root` (if any) is removed after this, with the fields.
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

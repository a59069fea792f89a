//! `readyloop serve --workers N`: N worker processes, each one single-threaded loop, sharing
//! each listener's port through SO_REUSEPORT (the nginx model), under a supervising parent.
//!
//! One process holds at most `RLIMIT_NOFILE` sockets (20,000 on our machines) and uses one
//! core; N processes hold N times as many and use N cores, with no locks between them: the
//! kernel spreads incoming connections over the workers' accept queues by a hash of the
//! 4-tuple. What one worker knows (its connections, its `/ws` and line broadcast audience) the
//! others do not.
//!
//! # The parent (`supervise`)
//! 1. Binds each enabled listener address itself, with SO_REUSEADDR + SO_REUSEPORT, but does not
//!    `listen`: this learns the real port when port 0 was asked for (and reports a port in use
//!    before any worker starts). It keeps these sockets for its whole life, so the port stays
//!    reserved while a crashed worker is restarted; a socket that does not listen gets no
//!    connections.
//! 2. Creates a small shared memory file (`memfd`, one slot of counters per worker) for the
//!    summed `/stats`, below.
//! 3. Starts the workers: its own binary (`/proc/self/exe`) with the same `serve` arguments plus
//!    the concrete addresses and the hidden `--worker-index I --stats-fd FD`. In the child,
//!    before `exec`, `PR_SET_PDEATHSIG` asks the kernel to send the worker SIGTERM (a graceful
//!    drain) when the parent dies, however it dies.
//! 4. Waits until every worker has printed its `listening` lines (it has bound and listens),
//!    then prints them once per listener with the shared port.
//! 5. Supervises, polling every 50 ms (a parent has no loop to run; a short sleep is simple and
//!    cheap): reaps exited workers and restarts them after a back-off (100 ms, doubled while a
//!    worker keeps dying within 10 s of its start, at most 10 s); forwards SIGINT/SIGTERM to
//!    every worker, stops restarting, waits for them to drain (SIGKILL after their own
//!    `--shutdown-timeout` plus 5 s) and exits 0; on SIGUSR1 logs one line per worker.
//!
//! # Stats across workers
//! `GET /stats` is answered by whichever worker accepted the connection, about itself (its
//! `pid` tells which). `GET /stats?all=1` sums every worker through shared memory
//! (`service::stats`): each worker publishes into its slot once a second (`run_worker` drives
//! the loop with `run_once` and publishes between iterations), so other workers' figures are at
//! most about a second old. The parent clears the slot of a worker that exits, and reads the
//! slots for its SIGUSR1 lines.

use crate::runtime::{sys, Addr, EventLoop};
use crate::service::metrics;
use crate::service::stats::{self, SharedStats};
#[cfg(feature = "http")]
use crate::service::Protocol;
use crate::service::{LineMode, ServeConfig, Server};
use log::{debug, error, info, warn};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often the parent looks at its children and its signals: 50 ms, short enough that a
/// crash is noticed at once and long enough to cost nothing.
const SUPERVISE_TICK: Duration = Duration::from_millis(50);
/// First restart delay after a crash.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay (a worker that cannot start is retried this often).
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A worker that ran this long before exiting is restarted after `BACKOFF_MIN` again.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long the workers may take to bind and print their `listening` lines at start-up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a worker gets beyond its `--shutdown-timeout` before the parent kills it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a worker publishes its counters to the shared slots.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Runs a worker's loop until its shutdown completes, publishing its counters to the shared
/// slots about once a second (the loop never waits in `poll` longer than that).
pub fn run_worker(ev: &mut EventLoop<Server>) -> io::Result<()> {
    let mut published = Instant::now();
    ev.with_context(|server, cx| metrics::publish(&server.snapshot(cx)));
    while ev.run_once(Some(PUBLISH_EVERY))? {
        if published.elapsed() >= PUBLISH_EVERY {
            ev.with_context(|server, cx| metrics::publish(&server.snapshot(cx)));
            published = Instant::now();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent

/// One worker slot in the parent.
struct Slot {
    child: Option<Child>,
    started: Instant,
    /// Set while the worker is down: when to start it again.
    restart_at: Option<Instant>,
    backoff: Duration,
    restarts: u64,
}

/// What the parent needs to start a worker.
struct Spawner {
    /// The user's `serve` arguments, passed on unchanged (later flags override them).
    args: Vec<OsString>,
    /// Concrete `--http`/`--line`/`--hello` values.
    addrs: Vec<(&'static str, String)>,
    /// Unix listeners made here, handed to every worker: `(protocol name, fd)`.
    listen_fds: Vec<(&'static str, RawFd)>,
    stats_fd: RawFd,
    /// `listening` lines from workers' stdout: (worker index, line); `None` line at EOF.
    lines: mpsc::Sender<(usize, Option<String>)>,
}

impl Spawner {
    fn spawn(&self, index: usize) -> io::Result<Child> {
        let exe = std::env::current_exe().unwrap_or_else(|_| "readyloop".into());
        // `/proc/self/exe` is the binary this process runs, even if the file was replaced or
        // deleted since (a rebuild during a long run); argv[0] stays readable in `ps`.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(exe).arg("serve").args(&self.args);
        for (flag, value) in &self.addrs {
            cmd.arg(flag).arg(value);
        }
        for (proto, fd) in &self.listen_fds {
            cmd.arg("--listen-fd").arg(format!("{proto}={fd}"));
        }
        cmd.arg("--worker-index")
            .arg(index.to_string())
            .arg("--stats-fd")
            .arg(self.stats_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let parent = std::process::id() as libc::pid_t;
        let fd = self.stats_fd;
        let listen_fds: Vec<RawFd> = self.listen_fds.iter().map(|(_, fd)| *fd).collect();
        // SAFETY: only async-signal-safe calls (prctl, getppid, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody will signal us.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited"));
                }
                // Let the stats memory and the Unix listeners survive exec (they were created
                // close-on-exec).
                for fd in std::iter::once(fd).chain(listen_fds.iter().copied()) {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        let tx = self.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((index, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((index, None));
        });
        Ok(child)
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet (so it is not reused).
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

/// Binds `addr` with SO_REUSEADDR + SO_REUSEPORT without listening (see the module doc).
fn reserve(addr: SocketAddr) -> io::Result<(socket2::Socket, SocketAddr)> {
    let socket = sys::bind_socket(addr, true)?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    Ok((socket, local))
}

/// Binds and listens on a Unix socket path once, for every worker to accept on (a path cannot
/// be shared through SO_REUSEPORT; the workers share this one accept queue instead).
fn listen_unix(path: &Path) -> io::Result<socket2::Socket> {
    let socket = sys::bind_unix(path)?;
    socket.listen(4096)?;
    Ok(socket)
}

/// The parent of `readyloop serve --workers N` (see the module documentation). `args` are the
/// `serve` arguments as given; returns once every worker has exited after SIGINT/SIGTERM.
pub fn supervise(
    cfg: &ServeConfig,
    workers: usize,
    args: Vec<OsString>,
) -> Result<(), Box<dyn std::error::Error>> {
    // 1. Learn the ports (and make the Unix listeners).
    let mut reserved = Vec::new();
    let mut addrs = Vec::new();
    let mut listen_fds = Vec::new();
    let mut unix_paths = Vec::new();
    let mut listening = Vec::new();
    #[cfg(feature = "http")]
    let http = cfg.listener_name(Protocol::Http);
    #[cfg(not(feature = "http"))]
    let http = "http";
    // (the name in `listening` lines, the protocol's own name, its flag, its address)
    for (proto, base, flag, addr) in [
        (http, "http", "--http", &cfg.http),
        ("line", "line", "--line", &cfg.line),
        ("hello", "hello", "--hello", &cfg.hello),
    ] {
        let local = match addr {
            None => {
                addrs.push((flag, "off".to_string()));
                continue;
            }
            Some(Addr::Ip(ip)) => {
                let (socket, local) =
                    reserve(*ip).map_err(|e| format!("bind {proto} {ip}: {e}"))?;
                reserved.push(socket);
                Addr::Ip(local)
            }
            Some(Addr::Unix(path)) => {
                let socket = listen_unix(path)
                    .map_err(|e| format!("bind {proto} {}: {e}", path.display()))?;
                listen_fds.push((base, socket.as_raw_fd()));
                unix_paths.push(path.clone());
                reserved.push(socket);
                Addr::Unix(path.clone())
            }
        };
        addrs.push((flag, local.to_string()));
        listening.push(format!("listening {proto} {local}"));
    }
    // Without a broker, each worker's broadcast audience is its own clients (`--redis` relays).
    #[cfg(feature = "redis")]
    let relayed = cfg.redis.is_some();
    #[cfg(not(feature = "redis"))]
    let relayed = false;
    if !relayed {
        if cfg.line.is_some() && cfg.line_mode == LineMode::Broadcast {
            warn!("--line-mode broadcast with --workers {workers} and no --redis: a line reaches only the clients of the worker that received it");
        }
        if cfg.http.is_some() {
            warn!("--workers {workers} and no --redis: a /ws broadcast reaches only the clients of the worker that received it");
        }
    }
    // 2. Shared stats.
    let (stats_fd, shared) = SharedStats::create(workers)?;
    // Signals first, so none is lost while the workers start.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGUSR1,
    ])?;
    let (tx, lines) = mpsc::channel();
    let spawner = Spawner {
        args,
        addrs,
        listen_fds,
        stats_fd: stats_fd.as_raw_fd(),
        lines: tx,
    };
    // 3. Start the workers.
    let mut slots: Vec<Slot> = Vec::with_capacity(workers);
    for i in 0..workers {
        let child = spawner.spawn(i)?;
        info!("worker {i} started, pid {}", child.id());
        slots.push(Slot {
            child: Some(child),
            started: Instant::now(),
            restart_at: None,
            backoff: BACKOFF_MIN,
            restarts: 0,
        });
    }
    let kill_all = |slots: &mut Vec<Slot>| {
        for s in slots.iter_mut() {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    };
    // 4. Wait for every worker's `listening` lines.
    let mut ready = vec![0usize; workers];
    let deadline = Instant::now() + START_TIMEOUT;
    while ready.iter().any(|&n| n < listening.len()) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left.min(SUPERVISE_TICK)) {
            Ok((i, Some(line))) => {
                if !listening.contains(&line) {
                    kill_all(&mut slots);
                    return Err(format!(
                        "worker {i} printed {line:?}, expected one of {listening:?}"
                    )
                    .into());
                }
                ready[i] += 1;
            }
            Ok((i, None)) => {
                let status = slots[i].child.as_mut().and_then(|c| c.wait().ok());
                kill_all(&mut slots);
                return Err(format!(
                    "worker {i} exited during start-up ({})",
                    status.map_or("?".into(), describe)
                )
                .into());
            }
            Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                kill_all(&mut slots);
                return Err("workers did not start within 10 s".into());
            }
            Err(_) => {}
        }
        if signals.pending().next().is_some() {
            kill_all(&mut slots);
            return Err("interrupted during start-up".into());
        }
    }
    {
        let mut out = io::stdout().lock();
        for line in &listening {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    info!("{workers} workers serving");
    // 5. Supervise.
    let mut shutdown_deadline: Option<Instant> = None;
    loop {
        for sig in signals.pending() {
            match sig {
                signal_hook::consts::SIGUSR1 => {
                    // Asked for explicitly, so printed whatever RUST_LOG says.
                    let mut err = io::stderr().lock();
                    for (i, s) in slots.iter().enumerate() {
                        let pid = s.child.as_ref().map_or(0, |c| c.id());
                        let _ = writeln!(
                            err,
                            "readyloop: worker {i} pid {pid}: {}",
                            shared.describe(i)
                        );
                    }
                    let _ = writeln!(
                        err,
                        "readyloop: all workers: {}",
                        stats::summed_json(&shared, None)
                    );
                }
                sig => {
                    if shutdown_deadline.is_none() {
                        info!("signal {sig}: stopping {workers} workers");
                        shutdown_deadline = Some(
                            Instant::now() + cfg.loop_config.shutdown_timeout + SHUTDOWN_GRACE,
                        );
                    }
                    for s in &mut slots {
                        s.restart_at = None;
                        if let Some(c) = &s.child {
                            signal(c, sig);
                        }
                    }
                }
            }
        }
        // Drain `listening` lines of restarted workers.
        while let Ok((i, line)) = lines.try_recv() {
            if let Some(line) = line {
                debug!("worker {i}: {line}");
            }
        }
        let now = Instant::now();
        for (i, s) in slots.iter_mut().enumerate() {
            if let Some(c) = &mut s.child {
                match c.try_wait() {
                    Ok(None) => continue,
                    Ok(Some(status)) => {
                        let pid = c.id();
                        s.child = None;
                        shared.clear(i);
                        if shutdown_deadline.is_some() {
                            if status.success() {
                                info!("worker {i} (pid {pid}) exited");
                            } else {
                                warn!("worker {i} (pid {pid}) exited: {}", describe(status));
                            }
                            continue;
                        }
                        s.backoff = if now.duration_since(s.started) >= STABLE_AFTER {
                            BACKOFF_MIN
                        } else if s.restarts == 0 {
                            s.backoff
                        } else {
                            (s.backoff * 2).min(BACKOFF_MAX)
                        };
                        error!(
                            "worker {i} (pid {pid}) died: {}; restarting in {} ms",
                            describe(status),
                            s.backoff.as_millis()
                        );
                        s.restart_at = Some(now + s.backoff);
                    }
                    Err(e) => warn!("worker {i}: wait: {e}"),
                }
            } else if let Some(at) = s.restart_at {
                if now >= at {
                    s.started = now;
                    match spawner.spawn(i) {
                        Ok(c) => {
                            s.restarts += 1;
                            shared.set_restarts(i, s.restarts);
                            info!(
                                "worker {i} restarted, pid {} (restart {})",
                                c.id(),
                                s.restarts
                            );
                            s.child = Some(c);
                            s.restart_at = None;
                        }
                        Err(e) => {
                            s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
                            error!(
                                "worker {i}: restart failed: {e}; retrying in {} ms",
                                s.backoff.as_millis()
                            );
                            s.restart_at = Some(now + s.backoff);
                        }
                    }
                }
            }
        }
        if let Some(deadline) = shutdown_deadline {
            if slots.iter().all(|s| s.child.is_none()) {
                info!("all workers exited");
                break;
            }
            if now >= deadline {
                for (i, s) in slots.iter().enumerate() {
                    if let Some(c) = &s.child {
                        warn!("worker {i} (pid {}) did not drain in time: SIGKILL", c.id());
                        signal(c, libc::SIGKILL);
                    }
                }
            }
        }
        std::thread::sleep(SUPERVISE_TICK);
    }
    drop(reserved);
    for path in unix_paths {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

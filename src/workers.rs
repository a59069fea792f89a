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
//! `pid` tells which). `GET /stats?all=1` sums every worker: each worker writes its counters
//! into its slot of the shared memory once a second (the worker's host code drives the loop with
//! `run_once` and publishes between iterations) and again just before it answers `?all=1`, so
//! other workers' figures are at most about a second old. Reading shared memory is a few loads,
//! no system call and no disk: nothing blocks the loop. A worker that exits has its slot cleared
//! by the parent, so its counters leave the sum (totals are since each live worker started).
//! The parent reads the same slots for its SIGUSR1 lines.

use crate::event_loop::EventLoop;
use crate::handler::Context;
use crate::server::{LineMode, ServeConfig, Server};
use log::{debug, error, info, warn};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

// ---------------------------------------------------------------------------------------------
// Shared stats slots

/// 64-bit words per worker slot (one cache line pair; indices below).
const SLOT_WORDS: usize = 16;
const W_PID: usize = 0;
const W_PUBLISHED_MS: usize = 1;
const W_STARTED_MS: usize = 2;
/// Open connections per protocol: http, ws, line, hello (the order of `/stats`).
const W_CONNS: usize = 3;
const CONN_NAMES: [&str; 4] = ["http", "ws", "line", "hello"];
const W_ACCEPTED: usize = 7;
const W_READ: usize = 8;
const W_WRITTEN: usize = 9;
const W_ITERATIONS: usize = 10;
const W_TASKS_QUEUED: usize = 11;
const W_TASKS_IN_FLIGHT: usize = 12;
const W_TASKS_DONE: usize = 13;
const W_TASKS_FAILED: usize = 14;
/// Written by the parent: how many times this slot's worker was restarted.
const W_RESTARTS: usize = 15;
/// The summed counters, with their `/stats` names.
const SUMMED: [(&str, usize); 8] = [
    ("accepted_total", W_ACCEPTED),
    ("bytes_read", W_READ),
    ("bytes_written", W_WRITTEN),
    ("loop_iterations", W_ITERATIONS),
    ("tasks_queued", W_TASKS_QUEUED),
    ("tasks_in_flight", W_TASKS_IN_FLIGHT),
    ("tasks_done", W_TASKS_DONE),
    ("tasks_failed", W_TASKS_FAILED),
];

/// One slot of counters per worker in memory shared by the parent and all workers (a `memfd`
/// mapped `MAP_SHARED`). Every word is an `AtomicU64`; a reader may see one worker's words from
/// two different publications, which is fine for counters.
pub struct SharedStats {
    words: &'static [AtomicU64],
}

impl SharedStats {
    /// Creates the memory for `workers` slots (zeroed); the fd is inherited by the workers.
    fn create(workers: usize) -> io::Result<(OwnedFd, SharedStats)> {
        // SAFETY: the name is a valid C string; the returned fd (if any) is ours.
        let fd = unsafe { libc::memfd_create(c"readyloop-stats".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = workers * SLOT_WORDS * 8;
        // SAFETY: ftruncate on our own fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let stats = SharedStats::map(fd.as_raw_fd())?;
        Ok((fd, stats))
    }

    /// Maps the whole of `fd` (its size says how many slots there are). The mapping lives as
    /// long as the process.
    fn map(fd: RawFd) -> io::Result<SharedStats> {
        // SAFETY: fstat writes into the struct we pass.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = st.st_size as usize;
        if len == 0 || len % (SLOT_WORDS * 8) != 0 {
            return Err(io::Error::other(format!("stats fd {fd}: size {len}")));
        }
        // SAFETY: a shared read-write mapping of a file we may read and write; we never unmap
        // it, so the `'static` slice stays valid. The memory is only accessed as atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ptr` is page-aligned, `len` bytes long, zero-initialised or written only
        // through atomics by the other processes; AtomicU64 has the layout of u64.
        let words = unsafe { std::slice::from_raw_parts(ptr as *const AtomicU64, len / 8) };
        Ok(SharedStats { words })
    }

    fn slots(&self) -> usize {
        self.words.len() / SLOT_WORDS
    }

    fn slot(&self, i: usize) -> &[AtomicU64] {
        &self.words[i * SLOT_WORDS..(i + 1) * SLOT_WORDS]
    }

    fn get(&self, i: usize, w: usize) -> u64 {
        self.slot(i)[w].load(Ordering::Relaxed)
    }

    fn clear(&self, i: usize) {
        for w in self.slot(i).iter().take(W_RESTARTS) {
            w.store(0, Ordering::Relaxed);
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This worker's index and the shared slots (set once, in workers only).
static WORKER: OnceLock<(usize, SharedStats)> = OnceLock::new();

/// In a worker process: maps the stats memory inherited as `fd` and takes slot `index`.
pub fn join(index: usize, fd: RawFd) -> io::Result<()> {
    let stats = SharedStats::map(fd)?;
    if index >= stats.slots() {
        return Err(io::Error::other(format!(
            "worker index {index} but {} slots",
            stats.slots()
        )));
    }
    let slot = stats.slot(index);
    slot[W_PID].store(u64::from(std::process::id()), Ordering::Relaxed);
    slot[W_STARTED_MS].store(unix_ms(), Ordering::Relaxed);
    let _ = WORKER.set((index, stats));
    Ok(())
}

/// Writes this worker's counters into its slot (nothing outside a worker).
pub fn publish(server: &Server, cx: &Context<'_, Server>) {
    let Some((index, stats)) = WORKER.get() else {
        return;
    };
    let slot = stats.slot(*index);
    let s = cx.stats();
    let set = |w: usize, v: u64| slot[w].store(v, Ordering::Relaxed);
    for (i, (_, n)) in server.open_connections(cx).iter().enumerate().take(4) {
        set(W_CONNS + i, *n as u64);
    }
    set(W_ACCEPTED, s.accepted_total);
    set(W_READ, s.bytes_read);
    set(W_WRITTEN, s.bytes_written);
    set(W_ITERATIONS, s.loop_iterations);
    #[cfg(feature = "http")]
    {
        set(W_TASKS_QUEUED, server.tasks.queued_total);
        set(W_TASKS_IN_FLIGHT, server.tasks.in_flight());
        set(W_TASKS_DONE, server.tasks.done);
        set(W_TASKS_FAILED, server.tasks.failed);
    }
    set(W_PID, u64::from(std::process::id()));
    set(W_PUBLISHED_MS, unix_ms());
}

/// `GET /stats?all=1` in a worker: every live worker's counters summed, and each worker's own
/// under `per_worker`. `None` outside a worker (plain `/stats` is the whole story then).
pub fn all_stats_json(server: &Server, cx: &Context<'_, Server>) -> Option<String> {
    let (me, stats) = WORKER.get()?;
    publish(server, cx);
    Some(summed_json(stats, Some(*me)))
}

fn summed_json(stats: &SharedStats, me: Option<usize>) -> String {
    let now = unix_ms();
    let live: Vec<usize> = (0..stats.slots())
        .filter(|&i| stats.get(i, W_PID) != 0)
        .collect();
    let sum = |w: usize| live.iter().map(|&i| stats.get(i, w)).sum::<u64>();
    let conns = |f: &dyn Fn(usize) -> u64| {
        CONN_NAMES
            .iter()
            .enumerate()
            .map(|(k, name)| format!("\"{name}\": {}", f(W_CONNS + k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let uptime = |i: usize| now.saturating_sub(stats.get(i, W_STARTED_MS)) as f64 / 1000.0;
    let mut out = format!(
        "{{\"workers\": {}, \"workers_live\": {}, \"answered_by\": {}, \"connections\": {{{}}}",
        stats.slots(),
        live.len(),
        me.map_or("null".to_string(), |i| i.to_string()),
        conns(&sum)
    );
    for (name, w) in SUMMED {
        out += &format!(", \"{name}\": {}", sum(w));
    }
    let oldest = live.iter().map(|&i| uptime(i)).fold(0.0, f64::max);
    out += &format!(", \"uptime_s\": {oldest:.3}, \"per_worker\": [");
    for (n, &i) in live.iter().enumerate() {
        let one = |w: usize| stats.get(i, w);
        out += &format!(
            "{}{{\"worker\": {i}, \"pid\": {}, \"restarts\": {}, \"age_ms\": {}, \"uptime_s\": {:.3}, \"connections\": {{{}}}",
            if n > 0 { ", " } else { "" },
            one(W_PID),
            one(W_RESTARTS),
            now.saturating_sub(one(W_PUBLISHED_MS)),
            uptime(i),
            conns(&one)
        );
        for (name, w) in SUMMED {
            out += &format!(", \"{name}\": {}", one(w));
        }
        out += "}";
    }
    out += "]}";
    out
}

/// Runs a worker's loop until its shutdown completes, publishing its counters to the shared
/// slots about once a second (the loop never waits in `poll` longer than that).
pub fn run_worker(ev: &mut EventLoop<Server>) -> io::Result<()> {
    let mut published = Instant::now();
    ev.with_context(|server, cx| publish(server, cx));
    while ev.run_once(Some(PUBLISH_EVERY))? {
        if published.elapsed() >= PUBLISH_EVERY {
            ev.with_context(|server, cx| publish(server, cx));
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
        cmd.arg("--worker-index")
            .arg(index.to_string())
            .arg("--stats-fd")
            .arg(self.stats_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let parent = std::process::id() as libc::pid_t;
        let fd = self.stats_fd;
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
                // Let the stats memory survive exec (it was created close-on-exec).
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
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
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    Ok((socket, local))
}

/// The parent of `readyloop serve --workers N` (see the module documentation). `args` are the
/// `serve` arguments as given; returns once every worker has exited after SIGINT/SIGTERM.
pub fn supervise(
    cfg: &ServeConfig,
    workers: usize,
    args: Vec<OsString>,
) -> Result<(), Box<dyn std::error::Error>> {
    // 1. Learn the ports.
    let mut reserved = Vec::new();
    let mut addrs = Vec::new();
    let mut listening = Vec::new();
    for (proto, flag, addr) in [
        ("http", "--http", cfg.http),
        ("line", "--line", cfg.line),
        ("hello", "--hello", cfg.hello),
    ] {
        let Some(addr) = addr else {
            addrs.push((flag, "off".to_string()));
            continue;
        };
        let (socket, local) = reserve(addr).map_err(|e| format!("bind {proto} {addr}: {e}"))?;
        reserved.push(socket);
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
    let (stats_fd, stats) = SharedStats::create(workers)?;
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
                        let c: Vec<String> = CONN_NAMES
                            .iter()
                            .enumerate()
                            .map(|(k, n)| format!("{n} {}", stats.get(i, W_CONNS + k)))
                            .collect();
                        let _ = writeln!(
                            err,
                            "readyloop: worker {i} pid {pid}: restarts {}, connections {}, accepted {}, read {} B, written {} B",
                            s.restarts,
                            c.join(" "),
                            stats.get(i, W_ACCEPTED),
                            stats.get(i, W_READ),
                            stats.get(i, W_WRITTEN),
                        );
                    }
                    let _ = writeln!(err, "readyloop: all workers: {}", summed_json(&stats, None));
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
                        stats.clear(i);
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
                            stats.slot(i)[W_RESTARTS].store(s.restarts, Ordering::Relaxed);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summed_view_adds_live_workers_only() {
        let (_fd, stats) = SharedStats::create(3).unwrap();
        assert_eq!(stats.slots(), 3);
        for (i, pid) in [(0, 100u64), (2, 102)] {
            let slot = stats.slot(i);
            slot[W_PID].store(pid, Ordering::Relaxed);
            slot[W_STARTED_MS].store(unix_ms(), Ordering::Relaxed);
            slot[W_CONNS + 2].store(10 + i as u64, Ordering::Relaxed); // line
            slot[W_ACCEPTED].store(1000, Ordering::Relaxed);
        }
        // Slot 1 holds a dead worker's leftovers, cleared by the parent.
        stats.slot(1)[W_ACCEPTED].store(7, Ordering::Relaxed);
        stats.clear(1);
        let json = summed_json(&stats, Some(2));
        assert!(
            json.starts_with("{\"workers\": 3, \"workers_live\": 2, \"answered_by\": 2"),
            "{json}"
        );
        assert!(json.contains("\"line\": 22"), "{json}");
        assert!(json.contains("\"accepted_total\": 2000"), "{json}");
        assert!(
            json.contains("\"pid\": 100") && json.contains("\"pid\": 102"),
            "{json}"
        );
        assert!(!json.contains("\"worker\": 1,"), "{json}");
    }
}

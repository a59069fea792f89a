//! WebSocket benchmark: readyloop (the real binary, one thread) against a tokio current-thread
//! + tokio-tungstenite server built here, driven by the same client.
//!
//! - **broadcast**: 1,000 subscribers on `/ws` plus one sender connection; the sender keeps
//!   `WINDOW` messages in flight (a message is complete once all 1,000 subscribers have it), so
//!   both servers run closed-loop at their own pace. Reported: deliveries/s (frames received by
//!   subscribers) and p99 send-to-receive latency.
//! - **echo**: 50 connections ping-pong 64-byte binary messages on `/echo`: round trips/s, p99.
//!
//! The client is one thread on `mio` that only parses frame headers and the timestamp each
//! message carries, so it stays cheaper than either server. `BENCH_SECS` (default 3) sets each
//! run's length. Prints a Markdown table and writes it to target/bench-ws.md.
//! Run: `cargo bench --bench ws_broadcast`.

mod common;

use common::ws_client::{connect, drain, field, masked, write_all, Run, BROADCAST_SIZE, WINDOW};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ECHO_CONNS: usize = 50;
const ECHO_SIZE: usize = 64;

/// A server process, killed on drop: the readyloop binary (built by `cargo bench` with the
/// bench profile), or this bench re-executed as the tokio server, so that both run alike.
struct ServerProcess(Child, SocketAddr);

/// Set in the environment of this bench's own child that runs the tokio server.
const TOKIO_CHILD: &str = "WS_BENCH_TOKIO_SERVER";

impl ServerProcess {
    fn readyloop() -> ServerProcess {
        Self::spawn(common::readyloop_http("bench"))
    }

    fn tokio() -> ServerProcess {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(TOKIO_CHILD, "1");
        Self::spawn(cmd)
    }

    /// CPU seconds (user + system) the process has used so far.
    fn cpu_secs(&self) -> f64 {
        common::proc_cpu_secs(self.0.id())
    }

    fn spawn(mut cmd: Command) -> ServerProcess {
        let (child, addr) = common::spawn_http(&mut cmd);
        ServerProcess(child, addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo(addr: SocketAddr, secs: f64) -> Run {
    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..ECHO_CONNS)
        .map(|_| (connect(addr, "/echo"), Vec::new()))
        .collect();
    let base = Instant::now();
    let frame = |seq: u64| {
        let mut p = format!("{:020}", base.elapsed().as_nanos()).into_bytes();
        p.extend(format!("{seq:020}").bytes());
        p.resize(ECHO_SIZE, b'.');
        masked(0x2, &p)
    };
    for (i, (s, _)) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(s, Token(i), Interest::READABLE)
            .unwrap();
        write_all(s, &frame(0));
    }
    let end = base + Duration::from_secs_f64(secs);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let (mut trips, mut waiting) = (0u64, ECHO_CONNS);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut last = base;
    while waiting > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "no progress for 5 s");
        for ev in events.iter() {
            let (s, buf) = &mut conns[ev.token().0];
            let mut got = 0;
            drain(s, buf, &mut scratch, |p| {
                assert_eq!(p.len(), ECHO_SIZE);
                let sent = field(p, 0, 20);
                hist.record((base.elapsed().as_nanos() as u64 - sent) / 1000)
                    .unwrap();
                got += 1;
            });
            for _ in 0..got {
                trips += 1;
                last = Instant::now();
                if last < end {
                    write_all(s, &frame(trips));
                } else {
                    waiting -= 1;
                }
            }
        }
    }
    Run {
        rate: trips as f64 / (last - base).as_secs_f64(),
        secs: (last - base).as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        count: trips,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported, and `cargo test`
    // builds this without running it.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    readyloop::runtime::sys::raise_nofile_limit().unwrap();
    if std::env::var_os(TOKIO_CHILD).is_some() {
        common::tokio_ws::run_tokio_ws_server();
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let readyloop = ServerProcess::readyloop();
    let tokio = ServerProcess::tokio();
    let mut rows = Vec::new();
    for (name, unit, run) in [
        (
            "broadcast: 1,000 subscribers",
            "deliveries/s",
            (|addr, secs| common::ws_client::broadcast(&[addr], secs))
                as fn(SocketAddr, f64) -> Run,
        ),
        ("/echo: 50 conns, 64 B", "round trips/s", echo),
    ] {
        let measure = |server: &ServerProcess| {
            let cpu = server.cpu_secs();
            let r = run(server.1, secs);
            // Server CPU per second of the run: how busy the one server thread was.
            let busy = (server.cpu_secs() - cpu) / r.secs;
            (r, busy)
        };
        let (ours, our_cpu) = measure(&readyloop);
        let (theirs, their_cpu) = measure(&tokio);
        eprintln!(
            "{name}: readyloop {:.0} {unit} ({} total, CPU {our_cpu:.2}), tokio {:.0} ({} total, CPU {their_cpu:.2})",
            ours.rate, ours.count, theirs.rate, theirs.count
        );
        let per_cpu = |r: &Run, cpu: f64| r.rate / cpu.max(1e-9);
        rows.push(format!(
            "| {name} | {unit} | {:.0} | {:.0} | **{:.2}×** | {:.2} / {:.2} | **{:.2}×** | {} / {} µs | {} / {} µs |",
            ours.rate,
            theirs.rate,
            ours.rate / theirs.rate,
            our_cpu,
            their_cpu,
            per_cpu(&ours, our_cpu) / per_cpu(&theirs, their_cpu),
            ours.p50_us,
            ours.p99_us,
            theirs.p50_us,
            theirs.p99_us
        ));
    }
    let table = format!(
        "WebSocket, {secs} s per run, {} cores, one server thread each; closed loop \
         (broadcast: {WINDOW} messages of {BROADCAST_SIZE} B in flight; echo: one message per connection).\n\n\
         Server CPU is the server process's CPU-seconds per second (1.00 = one core busy); \
         per-CPU ratio compares work done per CPU-second.\n\n\
         | benchmark | unit | readyloop | tokio + tokio-tungstenite | ratio | server CPU (ours / tokio) | per-CPU ratio | readyloop p50 / p99 | tokio p50 / p99 |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n{}\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        rows.join("\n")
    );
    print!("{table}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&target);
    std::fs::write(target.join("bench-ws.md"), &table).unwrap();
}

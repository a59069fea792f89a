//! Line echo throughput and latency: readyloop's line server against a tokio `current_thread`
//! baseline, measured in the same run with the same client.
//!
//! Load: 50 connections, 64-byte messages (63 bytes + `\n`), ping-pong: each connection sends
//! one message, waits for its echo, then sends the next. A warm-up (1 s) is followed by the
//! measured window (`BENCH_SECS`, default 5 s). Only echoes that complete inside the window are
//! counted and their round trips recorded.
//!
//! The servers run one after the other, never together (the machine has 2 cores), each on its
//! own thread in this process. The client is one thread with its own `mio::Poll` driving all
//! connections, non-blocking and edge-triggered (reads until the socket is drained: `WouldBlock`
//! or a short read), so it makes the same syscalls whatever the server is: one `recv` and one
//! `send` per message, plus its share of `epoll_wait`.
//!
//! Output: a Markdown table on stdout, also written to `target/bench-line-echo.md`.
//! Environment: `BENCH_SECS` (measured seconds per round, default 5), `BENCH_ROUNDS` (rounds
//! per server, alternating, default 2), `BENCH_CONNS` (connections, default 50), `BENCH_ONLY`
//! (`readyloop` or `tokio`: run one server, for profiling with `perf`/`strace`).

mod common;

use common::{env_num, publish, tokio_line_server};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use readyloop::service::{ServeConfig, Server};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// 63 bytes of payload and the newline: one message on the wire.
const MSG: &[u8; 64] = b"the quick brown fox jumps over the lazy dog, 0123456789abcdefgh\n";
const WARM_UP: Duration = Duration::from_secs(1);

/// What one run against one server measured.
struct Outcome {
    msgs: u64,
    secs: f64,
    latency_ns: Histogram<u64>,
}

impl Outcome {
    fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.secs
    }

    fn us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Starts one of the servers under test.
type Start = fn() -> Running;

/// A running server: its address and how to stop it.
struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce()>,
}

/// readyloop's own line server (`ServeConfig` with only the line listener), on its own thread.
/// The loop holds `Rc`s and is not `Send`, so it is built on that thread; the address and a
/// `Handle` come back over a channel.
fn start_readyloop() -> Running {
    let (tx, rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("readyloop".into())
        .spawn(move || {
            let config = ServeConfig {
                line: Some(SocketAddr::from(([127, 0, 0, 1], 0)).into()),
                http: None,
                hello: None,
                ..ServeConfig::default()
            };
            let (mut ev, bound) = Server::bind(config).expect("bind readyloop line server");
            let addr = bound[0].1.ip().expect("an IP listener");
            tx.send((addr, ev.handle())).unwrap();
            ev.run().expect("readyloop loop failed");
        })
        .unwrap();
    let (addr, handle) = rx.recv().expect("readyloop server did not start");
    Running {
        addr,
        stop: Box::new(move || {
            handle.shutdown();
            thread.join().unwrap();
        }),
    }
}

/// The tokio baseline (see `common::tokio_line_server`) on a `current_thread` runtime of its
/// own thread.
fn start_tokio() -> Running {
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = thread::Builder::new()
        .name("tokio".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                tokio_line_server(listener, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        })
        .unwrap();
    let addr = rx.recv().expect("tokio server did not start");
    Running {
        addr,
        stop: Box::new(move || {
            let _ = stop_tx.send(());
            thread.join().unwrap();
        }),
    }
}

/// One client connection: the message in flight, how much of it is written, and how much of
/// its echo has come back.
struct Client {
    stream: TcpStream,
    sent_at: Instant,
    written: usize,
    got: usize,
}

impl Client {
    /// Writes the rest of the current message; `WouldBlock` leaves the rest for the next
    /// WRITABLE event.
    fn write_msg(&mut self) -> io::Result<()> {
        while self.written < MSG.len() {
            match self.stream.write(&MSG[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn send_next(&mut self, now: Instant) -> io::Result<()> {
        self.sent_at = now;
        self.written = 0;
        self.got = 0;
        self.write_msg()
    }
}

/// Drives `conns` ping-pong connections to `addr` for the warm-up plus `measure`.
fn run_client(addr: SocketAddr, conns: usize, measure: Duration) -> io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        let std_stream = std::net::TcpStream::connect(addr)?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        clients.push(Client {
            stream,
            sent_at: Instant::now(),
            written: 0,
            got: 0,
        });
    }
    let mut latency_ns = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let mut msgs = 0u64;
    let start = Instant::now();
    let window_start = start + WARM_UP;
    let window_end = window_start + measure;
    for c in &mut clients {
        c.send_next(start)?;
    }
    let mut buf = [0u8; 4096];
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        for event in events.iter() {
            let c = &mut clients[event.token().0];
            if event.is_writable() && c.written < MSG.len() {
                c.write_msg()?;
            }
            if !event.is_readable() {
                continue;
            }
            // Edge-triggered, so read until the socket is drained. A read shorter than the
            // buffer has drained it already: data arriving later raises a new edge, so the
            // `WouldBlock` read that would confirm it is skipped (tokio does the same). The
            // exception is a FIN, which raises no further edge: then read on to the EOF.
            let closing = event.is_read_closed();
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("server closed a connection")),
                    Ok(n) => {
                        // Ping-pong: at most one message is in flight, so the echo is exactly
                        // the rest of MSG.
                        if c.got + n > MSG.len() || buf[..n] != MSG[c.got..c.got + n] {
                            return Err(io::Error::other("echo does not match the message"));
                        }
                        c.got += n;
                        if c.got == MSG.len() {
                            let done = Instant::now();
                            if done >= window_start && done < window_end {
                                msgs += 1;
                                latency_ns.saturating_record((done - c.sent_at).as_nanos() as u64);
                            }
                            c.send_next(done)?;
                        }
                        if n < buf.len() && !closing {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(Outcome {
        msgs,
        secs: measure.as_secs_f64(),
        latency_ns,
    })
}

fn bench(name: &str, start: Start, conns: usize, measure: Duration) -> Outcome {
    eprintln!("line_echo: {name}: {conns} connections, {measure:?} after {WARM_UP:?} warm-up");
    let server = start();
    let outcome = run_client(server.addr, conns, measure)
        .unwrap_or_else(|e| panic!("line_echo against {name} failed: {e}"));
    (server.stop)();
    outcome
}

fn main() {
    let secs: f64 = env_num("BENCH_SECS", 5.0);
    let conns: usize = env_num("BENCH_CONNS", 50);
    let rounds: usize = env_num("BENCH_ROUNDS", 2).max(1);
    let only = std::env::var("BENCH_ONLY").ok();
    let measure = Duration::from_secs_f64(secs);
    let servers: Vec<(&str, Start)> = [
        ("readyloop", start_readyloop as Start),
        ("tokio current_thread", start_tokio),
    ]
    .into_iter()
    .filter(|(name, _)| only.as_deref().map_or(true, |o| name.starts_with(o)))
    .collect();
    // Rounds alternate the servers (A B A B ...) so that a burst of load from elsewhere on the
    // machine does not land on one server only; each server's rounds are then added up.
    let mut totals: Vec<Option<Outcome>> = servers.iter().map(|_| None).collect();
    let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    for _ in 0..rounds {
        for (i, (name, start)) in servers.iter().enumerate() {
            let o = bench(name, *start, conns, measure);
            per_round[i].push(o.msgs_per_s());
            match &mut totals[i] {
                None => totals[i] = Some(o),
                Some(t) => {
                    t.msgs += o.msgs;
                    t.secs += o.secs;
                    t.latency_ns.add(&o.latency_ns).unwrap();
                }
            }
        }
    }
    let results: Vec<(&str, Outcome, &Vec<f64>)> = servers
        .iter()
        .zip(totals)
        .zip(&per_round)
        .map(|(((name, _), o), r)| (*name, o.unwrap(), r))
        .collect();

    let mut report = format!(
        "## line echo: {conns} connections, 64-byte messages, ping-pong, {rounds} × {secs} s per server \
         (each after {} s warm-up, servers alternating)\n\n\
         | server | msgs/s | msgs/s per round | p50 µs | p99 µs | p999 µs | max µs |\n\
         |---|---:|---|---:|---:|---:|---:|\n",
        WARM_UP.as_secs_f64()
    );
    for (name, o, r) in &results {
        let r: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        report += &format!(
            "| {name} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            o.msgs_per_s(),
            r.join(", "),
            o.us(0.5),
            o.us(0.99),
            o.us(0.999),
            o.latency_ns.max() as f64 / 1000.0
        );
    }
    if let [(_, ours, _), (_, base, _)] = &results[..] {
        report += &format!(
            "\nreadyloop / tokio msgs/s: **{:.2}×** (p99 latency ratio {:.2}×)\n",
            ours.msgs_per_s() / base.msgs_per_s(),
            ours.us(0.99) / base.us(0.99)
        );
    }
    publish("bench-line-echo.md", &report);
}

//! `readyloop serve --workers N`: several worker processes behind one port each (SO_REUSEPORT),
//! supervised by the parent. The real binary on loopback, every wait bounded.

#![cfg(all(feature = "cli", feature = "http"))]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};
use support::{
    connect, echo, expect_eof, json_u64, line_reader, spawn_serve, wait_timeout, Client, Options,
    Server, IO_TIMEOUT,
};

/// The worker pids of parent `pid` (its direct children, from /proc).
fn children(pid: u32) -> BTreeSet<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Waits until `pid` has `n` children (as they start or restart); returns them.
fn wait_children(pid: u32, n: usize, not: &BTreeSet<u32>) -> BTreeSet<u32> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let c = children(pid);
        if c.len() == n && c.is_disjoint(not) {
            return c;
        }
        assert!(Instant::now() < deadline, "children of {pid}: {c:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// True while `pid` runs (a zombie waiting for its reaper counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// One HTTP/1.1 request on a keep-alive connection; the body, or `None` if the connection
/// was closed or reset.
fn get(c: &mut Client, path: &str) -> Option<String> {
    c.stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .ok()?;
    let r = c.try_response(false)?;
    assert_eq!(r.status, 200, "{}", r.head);
    r.header("content-length").expect("content-length");
    Some(r.text())
}

/// The number after `"key": ` in a JSON text.
fn field(json: &str, key: &str) -> u64 {
    json_u64(json, key).unwrap_or_else(|| panic!("{key} in {json}"))
}

/// The pid of the worker that answers `/stats` on a new connection.
fn stats_pid(http: SocketAddr) -> u32 {
    let mut c = Client::connect(http);
    field(&get(&mut c, "/stats").expect("stats"), "pid") as u32
}

#[test]
fn three_workers_serve_line_and_http_on_one_port_each() {
    let server = Server::start(&["--workers", "3"]);
    let workers = wait_children(server.pid(), 3, &BTreeSet::new());
    // Line echo works on every connection, whichever worker took it.
    let mut lines: Vec<TcpStream> = (0..12).map(|_| connect(server.line())).collect();
    for (i, s) in lines.iter_mut().enumerate() {
        echo(s, &format!("hello {i}\n"));
    }
    // HTTP: the kernel spreads new connections over the three workers' accept queues.
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        seen.insert(stats_pid(server.http()));
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen, workers, "every worker answers on the shared port");
    // The summed view counts every worker (their slots are at most a second old).
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let mut c = Client::connect(server.http());
        let all = get(&mut c, "/stats?all=1").expect("stats?all=1");
        assert_eq!(field(&all, "workers"), 3, "{all}");
        let open_lines = field(&all, "line");
        if field(&all, "workers_live") == 3 && open_lines == 12 {
            for pid in &workers {
                assert!(all.contains(&format!("\"pid\": {pid}")), "{all}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "summed stats never settled: {all}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_killed_worker_loses_only_its_connections_and_is_restarted() {
    let opts = Options {
        rust_log: Some("warn,readyloop::supervisor=info".into()),
        ..Default::default()
    };
    let server = Server::start_with(&["--workers", "3"], opts);
    let http = server.http();
    let workers = wait_children(server.pid(), 3, &BTreeSet::new());
    // Keep-alive connections that know which worker holds them.
    let mut conns: Vec<(Client, u32)> = (0..30)
        .map(|_| {
            let mut c = Client::connect(http);
            let pid = field(&get(&mut c, "/stats").unwrap(), "pid") as u32;
            (c, pid)
        })
        .collect();
    let mut lines: Vec<TcpStream> = (0..15).map(|_| connect(server.line())).collect();
    for s in &mut lines {
        echo(s, "before\n");
    }
    let victim = conns[0].1;
    assert!(workers.contains(&victim));
    // SAFETY: kill(2) on a worker pid we just read from /proc.
    assert_eq!(
        unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) },
        0
    );
    let deadline = Instant::now() + IO_TIMEOUT;
    while alive(victim) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    // The victim's connections are gone; every other one still works, on the same worker.
    let mut lost = 0;
    for (s, pid) in &mut conns {
        let answer = get(s, "/stats");
        if *pid == victim {
            assert!(
                answer.is_none(),
                "a connection of the killed worker answered"
            );
            lost += 1;
        } else {
            let body = answer.expect("a surviving worker's connection stopped working");
            assert_eq!(field(&body, "pid"), u64::from(*pid));
        }
    }
    assert!(lost >= 1 && lost < conns.len());
    // Line clients: those on the victim see EOF or a reset, all others still echo.
    let mut survivors = 0;
    for s in &mut lines {
        if s.write_all(b"after\n").is_ok() {
            let mut got = [0u8; 6];
            if s.read_exact(&mut got).is_ok() {
                assert_eq!(&got, b"after\n");
                survivors += 1;
            }
        }
    }
    assert!(
        survivors >= 1,
        "no line client survived the loss of one worker of three"
    );
    // The parent notices and starts a new worker in the dead one's place.
    let gone = BTreeSet::from([victim]);
    let now = wait_children(server.pid(), 3, &gone);
    let new: Vec<u32> = now.difference(&workers).copied().collect();
    assert_eq!(new.len(), 1, "one new worker: {workers:?} -> {now:?}");
    // It serves the shared port: new connections eventually land on it.
    let deadline = Instant::now() + IO_TIMEOUT;
    while stats_pid(http) != new[0] {
        assert!(
            Instant::now() < deadline,
            "the restarted worker never answered"
        );
    }
    let log = server.stderr_text();
    assert!(
        log.contains(&format!("(pid {victim}) died: signal 9; restarting")),
        "{log}"
    );
    assert!(log.contains(&format!("restarted, pid {}", new[0])), "{log}");
}

#[test]
fn sigterm_drains_every_worker_and_the_parent_exits_0() {
    let mut child = spawn_serve(&[
        "--workers",
        "3",
        "--http",
        "127.0.0.1:0",
        "--line",
        "127.0.0.1:0",
        "--hello",
        "127.0.0.1:0",
    ]);
    let out = line_reader(child.stdout.take().unwrap());
    let mut listening = Vec::new();
    for _ in 0..3 {
        listening.push(out.recv_timeout(IO_TIMEOUT).expect("listening line"));
    }
    let line: SocketAddr = listening
        .iter()
        .find_map(|l| l.strip_prefix("listening line "))
        .expect("line listener")
        .parse()
        .unwrap();
    let workers = wait_children(child.id(), 3, &BTreeSet::new());
    let mut idle = connect(line);
    echo(&mut idle, "hi\n");
    // SAFETY: kill(2) on our child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = wait_timeout(&mut child, IO_TIMEOUT).expect("parent exits");
    assert_eq!(status.code(), Some(0));
    for pid in workers {
        assert!(!alive(pid), "worker {pid} outlived the parent");
    }
    expect_eof(&mut idle);
    // Exactly one `listening` line per listener, for the whole run.
    let rest: Vec<String> = std::iter::from_fn(|| out.recv_timeout(IO_TIMEOUT).ok()).collect();
    assert!(rest.is_empty(), "more stdout: {rest:?}");
    let protos: BTreeSet<&str> = listening
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(protos, BTreeSet::from(["http", "hello", "line"]));
}

#[test]
fn workers_stop_when_the_parent_is_killed() {
    let mut server = Server::start(&["--workers", "2"]);
    let workers = wait_children(server.pid(), 2, &BTreeSet::new());
    server.signal(libc::SIGKILL);
    server.wait_exit(IO_TIMEOUT).expect("parent killed");
    let deadline = Instant::now() + IO_TIMEOUT;
    while workers.iter().any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "workers outlived their parent");
        thread::sleep(Duration::from_millis(20));
    }
}

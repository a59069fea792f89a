//! `--inspect`: `GET /loop` and its feed `/loop/ws` on the real binary. The page itself is
//! driven in headless Chromium by tests/browser/loop.e2e.mjs; here the feed is read frame by
//! frame with the raw WebSocket client, and the switches around it are checked: off by default,
//! loopback only, `--allowed-origin`, a bound on watchers, nothing armed once nobody watches.

#![cfg(all(feature = "cli", feature = "websocket"))]

mod support;

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};
use support::{
    connect, echo, json_u64, spawn_serve, upgrade_request, wait_timeout, Client, RawClient, Server,
    IO_TIMEOUT,
};

/// The largest frame the inspector sends (`service::inspect::FRAME_MAX`).
const FRAME_MAX: usize = 16 * 1024;

/// The next text frame of a watcher, as a string.
fn next_frame(w: &mut RawClient) -> String {
    let f = w.read_frame().expect("a frame");
    assert_eq!(f.opcode, 0x1, "{f:?}");
    assert!(f.payload.len() <= FRAME_MAX, "{} bytes", f.payload.len());
    String::from_utf8(f.payload).expect("UTF-8")
}

/// Frames until one satisfies `done` (bounded).
fn frame_until(w: &mut RawClient, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let f = next_frame(w);
        if done(&f) {
            return f;
        }
        assert!(Instant::now() < deadline, "never came; last frame {f}");
    }
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{text}"))
}

#[test]
fn without_inspect_there_is_no_loop_page() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/loop").status, 404);
    let mut c = Client::connect(server.http());
    c.send(upgrade_request("/loop/ws", "").as_bytes());
    assert_eq!(c.head_response().status, 404);
}

#[test]
fn inspect_refuses_a_listener_that_is_not_loopback() {
    let mut child = spawn_serve(&[
        "--http",
        "0.0.0.0:0",
        "--line",
        "off",
        "--hello",
        "off",
        "--inspect",
    ]);
    let status = wait_timeout(&mut child, IO_TIMEOUT).expect("exits");
    assert_eq!(status.code(), Some(2));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(!out.contains("listening"), "{out}");
}

#[test]
fn the_feed_shows_traffic_and_the_trace_log_in_bounded_frames() {
    let server = Server::start(&["--inspect"]);
    let page = server.get("/loop");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(html.contains("/loop/ws") && !html.contains("http://") && !html.contains("https://"));
    let mut w = RawClient::connect(server.http(), "/loop/ws");
    let first = next_frame(&mut w);
    assert!(first.starts_with("{\"t\": "), "{first}");
    // Three line clients, each echoing once: the frames count them, draw them in the strip
    // (code 'R': line, reading) and quote the trace log's own lines about them.
    let mut lines: Vec<_> = (0..3).map(|_| connect(server.line())).collect();
    for (i, s) in lines.iter_mut().enumerate() {
        echo(s, &format!("look {i}\n"));
    }
    let f = frame_until(&mut w, |f| json_u64(f, "line") == Some(3));
    let strip = f
        .split("\"strip\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(strip.matches('R').count(), 3, "{f}");
    // The watcher itself is in the strip as a watcher (code 'p': protocol 5, reading).
    assert_eq!(strip.matches('p').count(), 1, "{f}");
    let mut saw_accept = false;
    let mut saw_read = false;
    let deadline = Instant::now() + IO_TIMEOUT;
    while !(saw_accept && saw_read) {
        let f = next_frame(&mut w);
        saw_accept |= f.contains(" accepted on line");
        saw_read |= f.contains(" read 7 of ");
        if !saw_accept || !saw_read {
            // More traffic, in case the sample missed it.
            let mut s = connect(server.line());
            echo(&mut s, "look x\n");
        }
        assert!(Instant::now() < deadline, "no trace lines in {f}");
    }
    // /stats agrees with the frames once traffic stops (the next frame is at most 100 ms away).
    drop(lines);
    let stats = server.get("/stats").text();
    let accepted = json_u64(&stats, "accepted_total").unwrap();
    frame_until(&mut w, |f| json_u64(f, "accepted_total") == Some(accepted));
}

#[test]
fn a_watcher_that_leaves_leaves_no_timer_behind() {
    let server = Server::start(&["--inspect"]);
    // An HTTP client of our own holds a keep-alive timer; count with it open.
    let before = metric(&server, "readyloop_timers_armed");
    let mut w = RawClient::connect(server.http(), "/loop/ws");
    next_frame(&mut w);
    assert!(metric(&server, "readyloop_timers_armed") > before);
    drop(w);
    let deadline = Instant::now() + IO_TIMEOUT;
    while metric(&server, "readyloop_timers_armed") > before {
        assert!(Instant::now() < deadline, "the frame timer stayed armed");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn at_most_sixteen_watch_and_allowed_origin_applies() {
    let server = Server::start(&["--inspect", "--allowed-origin", "http://good.example"]);
    let origin = |o: &str| format!("Origin: {o}\r\n");
    let mut c = Client::connect(server.http());
    c.send(upgrade_request("/loop/ws", &origin("http://evil.example")).as_bytes());
    assert_eq!(c.head_response().status, 403);
    let good = upgrade_request("/loop/ws", &origin("http://good.example"));
    let mut watchers: Vec<RawClient> = (0..16)
        .map(|_| RawClient::handshake(connect(server.http()), good.as_bytes()))
        .collect();
    let mut extra = Client::connect(server.http());
    extra.send(good.as_bytes());
    assert_eq!(extra.head_response().status, 503);
    // Every one of the sixteen gets frames.
    for w in &mut watchers {
        next_frame(w);
    }
    // One leaves: there is room again.
    drop(watchers.pop());
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let mut again = Client::connect(server.http());
        again.send(good.as_bytes());
        match again.head_response().status {
            101 => break,
            503 if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            s => panic!("status {s}"),
        }
    }
}

//! The input budget (`--max-buffered`): what all clients together can make the server hold
//! of unfinished messages is bounded. Forty clients each sending fifteen 1 MiB WebSocket
//! fragments and never the last one would hold 600 MiB; with a 64 MiB budget the largest
//! holders are closed with 1009, the server's memory stays near the budget, and well-behaved
//! clients on every protocol are served throughout.
#![cfg(feature = "websocket")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const ATTACKERS: usize = 40;
const FRAGMENTS: usize = 15;
const FRAGMENT: usize = 1 << 20;

/// A masked frame with a zero mask (masking is then the identity, so the frame is built once).
fn fragment(opcode: u8) -> Vec<u8> {
    let mut frame = vec![opcode, 0x80 | 127];
    frame.extend_from_slice(&(FRAGMENT as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.resize(frame.len() + FRAGMENT, b'x');
    frame
}

#[test]
fn forty_clients_holding_fragments_cannot_take_the_servers_memory() {
    let server = Server::start(&["--max-buffered", "67108864", "--ws-ping", "0"]);
    let (http, line) = (server.http(), server.line());
    let rss_before = server.rss();
    let first = Arc::new(fragment(0x02)); // binary, not final
    let more = Arc::new(fragment(0x00)); // continuation, not final
    let closed_1009 = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let (first, more, closed_1009) = (first.clone(), more.clone(), closed_1009.clone());
            thread::spawn(move || {
                let mut ws = connect(http);
                ws.write_all(upgrade_request("/echo", "").as_bytes())
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    ws.read_exact(&mut byte).unwrap();
                    head.push(byte[0]);
                }
                for i in 0..FRAGMENTS {
                    let frame = if i == 0 { &first } else { &more };
                    if ws.write_all(frame).is_err() {
                        break; // closed under us: the budget bit
                    }
                }
                // Never the final fragment. What does the server say, if anything? A
                // connection within the budget says nothing: it is still waiting for more.
                ws.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut h = [0u8; 4];
                let closed = ws.read_exact(&mut h).is_ok() && h[0] == 0x88 && h[1] >= 2;
                if closed && u16::from_be_bytes([h[2], h[3]]) == 1009 {
                    closed_1009.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Meanwhile, well-behaved clients on every protocol, and the server's memory watched.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, pid) = (stop.clone(), server.pid());
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(readyloop::runtime::sys::rss_bytes(Some(pid)).unwrap_or(0));
                thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let mut served = 0;
    let mut worst = Duration::ZERO;
    let mut echo = RawClient::connect(http, "/echo");
    let mut lines = BufReader::new(connect(line));
    while attackers.iter().any(|a| !a.is_finished()) {
        let t = Instant::now();
        echo.send(true, 0x1, b"still here");
        let frame = echo.read_frame().expect("an echo");
        assert_eq!(frame.payload, b"still here");
        lines.get_mut().write_all(b"ping\n").unwrap();
        let mut got = String::new();
        lines.read_line(&mut got).unwrap();
        assert_eq!(got, "ping\n");
        assert_eq!(server.get("/healthz").text(), "ok");
        worst = worst.max(t.elapsed());
        served += 1;
    }
    for a in attackers {
        a.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.join().unwrap();
    let stats = server.get("/stats").text();
    let closed = json_u64(&stats, "closed_over_budget").unwrap();
    eprintln!(
        "RSS {} MiB before, peak {} MiB; {closed} connections closed over budget, {} of them \
         saw 1009; {served} rounds of well-behaved requests, the slowest {worst:?}",
        rss_before >> 20,
        peak >> 20,
        closed_1009.load(Ordering::Relaxed)
    );
    assert!(closed >= 1, "the budget was never enforced: {stats}");
    assert!(
        closed_1009.load(Ordering::Relaxed) >= 1,
        "closed without 1009"
    );
    assert!(
        peak < rss_before + (100 << 20),
        "peak RSS {} MiB over the 64 MiB budget by far",
        peak >> 20
    );
    assert!(served >= 1);
    // What is left is what the survivors hold, within the budget.
    assert!(
        json_u64(&stats, "input_buffered").unwrap() <= 64 << 20,
        "{stats}"
    );
}

//! `/ws` fan-out with 1,000 clients against the real binary: every client receives every
//! message exactly once, in order per sender, while a client that never reads is cut off
//! (close 1008) without delaying or costing anyone else a message.
//!
//! The clients are tokio-tungstenite on one current-thread runtime: 1,000 sockets, one thread.

#![cfg(all(feature = "cli", feature = "websocket"))]

mod support;

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use support::{upgrade_request, RawClient, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 1000;
const SENDERS: usize = 4;
const PER_SENDER: usize = 50;
/// Message size: 4 senders × 50 × 1 KiB = 200 KiB to each client, well past what the slow
/// client's socket buffers hold (see `slow_client`), far below what a reading client's do.
const BODY: usize = 1024;
const PREFIX: &str = "📢 새로운 알림: ";

/// A client that connects and never reads: tiny receive buffer and MSS, so the server's
/// kernel send buffer for it stays small too (Linux sizes it from the peer's MSS), and the
/// server's own queue for it grows past `--ws-max-pending` after a few tens of KiB.
fn slow_client(addr: std::net::SocketAddr) -> RawClient {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.set_tcp_mss(536).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    RawClient::handshake(s, upgrade_request("/ws", "").as_bytes())
}

fn message(sender: usize, seq: usize) -> String {
    let tag = format!("s{sender}:{seq}:");
    format!("{tag}{}", "x".repeat(BODY - tag.len()))
}

#[test]
fn thousand_clients_get_every_message_once_in_order_and_a_slow_one_is_cut_off() {
    let (before, after) = readyloop::runtime::sys::raise_nofile_limit().unwrap();
    assert!(
        after >= 2 * CLIENTS as u64 + 64,
        "RLIMIT_NOFILE {before} -> {after} is too low"
    );
    let server = Server::http_only(&["--ws-ping", "0", "--ws-max-pending", "65536"]);
    let addr = server.http();
    let slow = slow_client(addr);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = server.ws_url("/ws");
    rt.block_on(async move {
        // Connect everyone first: a client whose handshake is done is registered for broadcasts.
        let mut conns = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                .await
                .unwrap();
            conns.push(ws);
        }
        let total = SENDERS * PER_SENDER;
        let mut tasks = Vec::with_capacity(CLIENTS);
        for (i, ws) in conns.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx) = ws.split();
                if i < SENDERS {
                    let sender = tokio::spawn(async move {
                        for seq in 0..PER_SENDER {
                            tx.send(Message::text(message(i, seq))).await.unwrap();
                            // In bursts, over several loop iterations: the server notices a
                            // slow consumer when it broadcasts after a flush it could not finish.
                            if seq % 5 == 4 {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        tx
                    });
                    drop(sender);
                }
                let mut next = [0usize; SENDERS];
                let mut got = 0;
                while got < total {
                    let msg = match rx.next().await {
                        Some(m) => m.expect("read"),
                        None => panic!("client {i}: stream ended after {got} messages"),
                    };
                    let Message::Text(text) = msg else { continue };
                    let body = text.as_str().strip_prefix(PREFIX).expect("prefix");
                    let mut parts = body.splitn(3, ':');
                    let s: usize = parts.next().unwrap()[1..].parse().unwrap();
                    let seq: usize = parts.next().unwrap().parse().unwrap();
                    assert_eq!(
                        seq, next[s],
                        "client {i}: sender {s} out of order or repeated"
                    );
                    assert_eq!(body, message(s, seq), "client {i}: message changed");
                    next[s] += 1;
                    got += 1;
                }
                rx
            }));
        }
        let all = futures_util::future::join_all(tasks);
        let rxs = tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("not every client got every message within 60 s");
        // Nothing more arrives: exactly once.
        let mut rxs: Vec<_> = rxs.into_iter().map(|r| r.unwrap()).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for rx in rxs.iter_mut().take(50) {
            let extra = tokio::time::timeout(Duration::from_millis(1), rx.next()).await;
            assert!(extra.is_err(), "a message arrived twice: {extra:?}");
        }
    });

    assert!(
        server.wait_log("closing slow consumer (1008)", Duration::from_secs(5)),
        "the non-reading client was not cut off; log:\n{}",
        server.stderr_text()
    );
    // Once it reads, it finds a prefix of the broadcast, the 1008 close, then the end.
    let mut c = slow;
    let mut frames = 0;
    let code = loop {
        let f = c.read_frame().expect("EOF before the close");
        if f.opcode == 0x8 {
            break f.close_code();
        }
        frames += 1;
    };
    assert_eq!(code, Some(1008));
    assert!(
        frames < SENDERS * PER_SENDER,
        "the slow client got everything"
    );
    assert!(c.at_eof());
}

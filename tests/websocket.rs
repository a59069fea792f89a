//! WebSocket interop and conformance against the real `readyloop` binary: the `tungstenite`
//! client for the happy paths and close handshakes, and a raw client (tests/support) for what a
//! well-behaved client library refuses to send (bad frames, bad close codes, bad handshakes).

#![cfg(all(feature = "cli", feature = "websocket"))]

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{http_head, timed_out, tungstenite_client, upgrade_request, RawClient, Server};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

const MIB: usize = 1 << 20;

fn serve() -> Server {
    Server::http_only(&["--ws-ping", "0"])
}

/// A tungstenite client on a blocking socket, with no size limits of its own (the server's
/// limit is the one under test).
fn connect(server: &Server, path: &str) -> WebSocket<TcpStream> {
    tungstenite_client(server.http(), path, Duration::from_secs(30))
}

/// Reads the next data message, skipping control frames.
fn next_data(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

/// Text of exactly `len` bytes, with multi-byte characters in it where there is room.
fn text_of(len: usize) -> String {
    let mut s = String::with_capacity(len);
    let pattern = ["한글", "abc", "ü", "📢", "xyz0123"];
    let mut i = 0;
    while s.len() < len {
        let piece = pattern[i % pattern.len()];
        i += 1;
        if s.len() + piece.len() <= len {
            s.push_str(piece);
        } else {
            s.push('.');
        }
    }
    s
}

fn binary_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB];

#[test]
fn echo_text_every_size_up_to_the_limit() {
    let server = serve();
    let mut ws = connect(&server, "/echo");
    for len in SIZES {
        let text = text_of(len);
        ws.send(Message::text(text.clone())).unwrap();
        match next_data(&mut ws) {
            Message::Text(got) => assert!(got.as_str() == text, "text of {len} bytes changed"),
            other => panic!("text of {len} bytes came back as {other:?}"),
        }
    }
}

#[test]
fn echo_binary_every_size_up_to_the_limit() {
    let server = serve();
    let mut ws = connect(&server, "/echo");
    for len in SIZES {
        let data = binary_of(len);
        ws.send(Message::binary(data.clone())).unwrap();
        match next_data(&mut ws) {
            Message::Binary(got) => assert!(got[..] == data[..], "binary of {len} bytes changed"),
            other => panic!("binary of {len} bytes came back as {other:?}"),
        }
    }
}

/// RFC 6455 §10.4 / §7.4.1: a message over `--max-message` (16 MiB) gets close 1009.
#[test]
fn echo_over_the_limit_is_closed_with_1009() {
    let server = serve();
    let mut ws = connect(&server, "/echo");
    ws.send(Message::binary(vec![7u8; 16 * MIB + 1])).unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

/// The limit follows `--max-message`; fragments count together (§5.4).
#[test]
fn fragments_over_max_message_are_closed_with_1009() {
    let server = Server::http_only(&["--ws-ping", "0", "--max-message", "1000"]);
    let mut c = RawClient::connect(server.http(), "/echo");
    c.send(true, 0x2, &[1; 1000]);
    assert_eq!(c.read_frame().unwrap().payload, vec![1; 1000]);
    c.send(false, 0x2, &[1; 600]);
    c.send(true, 0x0, &[1; 401]);
    assert_eq!(c.expect_close(), Some(1009));
    assert!(c.at_eof());
}

/// §5.4, §5.5: control frames may come between the fragments of a message; the pong comes
/// at once and the message is echoed whole, as one frame.
#[test]
fn fragmented_message_with_ping_interleaved() {
    let server = serve();
    let mut c = RawClient::connect(server.http(), "/echo");
    // "wörld" split inside the two-byte "ö": UTF-8 is checked across fragments.
    let word = "Hello, wörld 📢".as_bytes();
    c.send(false, 0x1, &word[..3]);
    c.send(true, 0x9, b"are you there");
    c.send(false, 0x0, &word[3..9]);
    c.send(false, 0x0, &word[9..9]);
    c.send(true, 0x0, &word[9..]);
    let pong = c.read_frame().unwrap();
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (0xA, &b"are you there"[..])
    );
    let echo = c.read_frame().unwrap();
    assert!(echo.fin);
    assert_eq!((echo.opcode, &echo.payload[..]), (0x1, word));

    // Binary too, and large fragments (one 1 MiB message in 64 KiB + 1 pieces).
    let data = binary_of(MIB);
    let mut first = true;
    for (i, piece) in data.chunks(65537).enumerate() {
        let last = (i + 1) * 65537 >= data.len();
        c.send(last, if first { 0x2 } else { 0x0 }, piece);
        if i == 3 {
            c.send(true, 0x9, b"");
        }
        first = false;
    }
    let pong = c.read_frame().unwrap();
    assert_eq!((pong.opcode, pong.payload.len()), (0xA, 0));
    let echo = c.read_frame().unwrap();
    assert_eq!(echo.opcode, 0x2);
    assert!(echo.payload == data, "fragmented binary changed");
}

/// The tungstenite client closes with 1000: the server echoes 1000 and closes TCP.
#[test]
fn client_close_1000_is_echoed_by_tungstenite() {
    let server = serve();
    let mut ws = connect(&server, "/echo");
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the TCP connection closed, got {other:?}"),
    }
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Opens /echo, sends `wire`, expects a Close with `code` (or none), then TCP EOF.
fn expect_failure(path: &str, wire: &[u8], code: Option<u16>) {
    let server = serve();
    let mut c = RawClient::connect(server.http(), path);
    c.send_raw(wire);
    assert_eq!(
        c.expect_close(),
        code,
        "after sending {:02x?}",
        &wire[..wire.len().min(16)]
    );
    assert!(c.at_eof(), "the server kept the TCP connection open");
}

/// §5.5.1: a close is answered with a close carrying the same code; then TCP closes.
#[test]
fn close_codes_1000_and_4000_are_echoed() {
    for code in [1000u16, 4000, 3000, 1001] {
        expect_failure(
            "/echo",
            &RawClient::masked(true, 0x8, &close_payload(code, "done")),
            Some(code),
        );
    }
    // An empty close is answered with an empty close.
    expect_failure("/echo", &RawClient::masked(true, 0x8, b""), None);
}

/// §7.4.1/§7.4.2: 1005, 1006, 1015 are never sent on the wire; 0-999 are unused; → 1002.
#[test]
fn invalid_close_codes_get_1002() {
    for code in [1005u16, 999, 1006, 1015, 1004, 2999, 5000, 0] {
        expect_failure(
            "/echo",
            &RawClient::masked(true, 0x8, &close_payload(code, "")),
            Some(1002),
        );
    }
    // A one-byte close payload is malformed (§5.5.1).
    expect_failure("/echo", &RawClient::masked(true, 0x8, &[3]), Some(1002));
}

/// §8.1: a close reason must be UTF-8 (1007, as Autobahn 7.5.1 expects).
#[test]
fn close_reason_not_utf8_gets_1007() {
    let mut p = close_payload(1000, "");
    p.extend_from_slice(&[0xff, 0xfe]);
    expect_failure("/echo", &RawClient::masked(true, 0x8, &p), Some(1007));
}

/// §8.1: invalid UTF-8 in a text message → 1007, even mid-fragment (fail fast).
#[test]
fn invalid_utf8_text_gets_1007() {
    expect_failure(
        "/echo",
        &RawClient::masked(true, 0x1, b"ok \xc3\x28 no"),
        Some(1007),
    );
    // On /ws too, before any broadcast.
    expect_failure(
        "/ws",
        &RawClient::masked(true, 0x1, b"\xed\xa0\x80"),
        Some(1007),
    );
    // Mid-fragment: the first fragment is already bad; the message never finishes.
    expect_failure(
        "/echo",
        &RawClient::masked(false, 0x1, b"abc\xff"),
        Some(1007),
    );
}

/// §5.1: a client frame that is not masked fails the connection (1002).
#[test]
fn unmasked_client_frame_gets_1002() {
    expect_failure(
        "/echo",
        &RawClient::encode(0x81, b"hello", None),
        Some(1002),
    );
}

/// §5.2: reserved opcodes (3-7 data, 11-15 control) → 1002.
#[test]
fn reserved_opcodes_get_1002() {
    for op in [0x3u8, 0x7, 0xB, 0xF] {
        expect_failure("/echo", &RawClient::masked(true, op, b"x"), Some(1002));
    }
}

/// §5.2: RSV1-3 without a negotiated extension → 1002.
#[test]
fn rsv_bits_get_1002() {
    for rsv in [0x40u8, 0x20, 0x10] {
        let wire = RawClient::encode(0x80 | rsv | 0x1, b"x", Some([1, 2, 3, 4]));
        expect_failure("/echo", &wire, Some(1002));
    }
}

/// §5.5: control frames carry at most 125 bytes and are never fragmented → 1002.
#[test]
fn bad_control_frames_get_1002() {
    expect_failure(
        "/echo",
        &RawClient::masked(true, 0x9, &[0; 126]),
        Some(1002),
    );
    expect_failure("/echo", &RawClient::masked(false, 0x9, b"x"), Some(1002));
}

/// §5.4: continuation without a start, and a new message inside a fragmented one → 1002.
#[test]
fn fragments_out_of_order_get_1002() {
    expect_failure("/echo", &RawClient::masked(true, 0x0, b"x"), Some(1002));
    let mut wire = RawClient::masked(false, 0x1, b"a");
    wire.extend(RawClient::masked(true, 0x1, b"b"));
    expect_failure("/echo", &wire, Some(1002));
}

/// A 125-byte ping is fine and answered with the same payload (§5.5.2).
#[test]
fn ping_of_125_bytes_gets_its_pong() {
    let server = serve();
    let mut c = RawClient::connect(server.http(), "/echo");
    let payload: Vec<u8> = (0..125).collect();
    c.send(true, 0x9, &payload);
    let pong = c.read_frame().unwrap();
    assert_eq!((pong.opcode, pong.payload), (0xA, payload));
}

/// Bytes that follow the handshake in the same packet are not lost (carried over).
#[test]
fn frame_in_the_same_write_as_the_handshake() {
    let server = serve();
    let s = TcpStream::connect(server.http()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut wire = upgrade_request("/echo", "").into_bytes();
    wire.extend(RawClient::masked(true, 0x1, b"early"));
    // One write; the head is checked (`101`), and what follows it kept for the frame reader.
    let mut c = RawClient::handshake(s, &wire);
    assert_eq!(c.read_frame().unwrap().payload, b"early");
}

#[test]
fn handshake_accept_key_is_rfc_sample() {
    let server = serve();
    let r = http_head(server.http(), &upgrade_request("/ws", ""));
    assert_eq!(r.status, 101, "{}", r.head);
    // RFC 6455 §1.3's worked example.
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn handshake_without_or_with_bad_key_is_400() {
    let server = serve();
    let no_key = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(http_head(server.http(), no_key).status, 400);
    for bad in [
        "",
        "not base64!!",
        "dGhlIHNhbXBsZQ==",
        "dGhlIHNhbXBsZSBub25jZSBsb25nZXI=",
    ] {
        let req = no_key.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Key: {bad}\r\n\r\n"));
        assert_eq!(http_head(server.http(), &req).status, 400, "key {bad:?}");
    }
}

#[test]
fn handshake_version_12_is_426_naming_13() {
    let server = serve();
    let req = upgrade_request("/echo", "").replace("Version: 13", "Version: 12");
    let r = http_head(server.http(), &req);
    assert_eq!(r.status, 426, "{}", r.head);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn plain_get_of_ws_is_426() {
    let server = serve();
    for path in ["/ws", "/echo"] {
        let r = http_head(
            server.http(),
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(r.status, 426, "{}", r.head);
    }
}

#[test]
fn allowed_origin_is_enforced() {
    let server = Server::http_only(&["--ws-ping", "0", "--allowed-origin", "http://a.example"]);
    let other = upgrade_request("/ws", "Origin: http://evil.example\r\n");
    assert_eq!(http_head(server.http(), &other).status, 403);
    let none = upgrade_request("/ws", "");
    assert_eq!(http_head(server.http(), &none).status, 403);
    let good = upgrade_request("/ws", "Origin: http://a.example\r\n");
    assert_eq!(http_head(server.http(), &good).status, 101);
}

/// `--ws-ping 1`: a client that never answers is pinged, then dropped (1001) within ~3 s.
#[test]
fn ping_timeout_drops_a_silent_client() {
    let server = Server::http_only(&["--ws-ping", "1"]);
    let mut c = RawClient::connect(server.http(), "/echo");
    let start = Instant::now();
    let mut pinged = false;
    let code = loop {
        let f = c.read_frame().expect("EOF before the close");
        match f.opcode {
            0x9 => pinged = true,
            0x8 => break f.close_code(),
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert!(pinged, "closed without pinging first");
    assert_eq!(code, Some(1001));
    assert!(c.at_eof());
    let took = start.elapsed();
    assert!(took < Duration::from_millis(3500), "dropped after {took:?}");
}

/// `--ws-ping 1`: tungstenite answers pings while reading, so it stays connected.
#[test]
fn ping_answered_keeps_the_client() {
    let server = Server::http_only(&["--ws-ping", "1"]);
    let mut ws = connect(&server, "/echo");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + Duration::from_millis(3500);
    let mut pings = 0;
    while Instant::now() < end {
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(m) => panic!("unexpected {m:?}"),
            Err(tungstenite::Error::Io(e)) if timed_out(&e) => {}
            Err(e) => panic!("dropped after {pings} pings: {e}"),
        }
    }
    assert!(pings >= 2, "only {pings} pings in 3.5 s");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(next_data(&mut ws), Message::text("still here"));
}

/// `/ws` takes text only; binary is refused with 1003 (unsupported data).
#[test]
fn binary_on_ws_gets_1003() {
    expect_failure(
        "/ws",
        &RawClient::masked(true, 0x2, b"\x00\x01"),
        Some(1003),
    );
}

/// Two tungstenite clients on /ws: a message from one reaches both, formatted.
#[test]
fn broadcast_reaches_sender_and_others() {
    let server = serve();
    let mut a = connect(&server, "/ws");
    let mut b = connect(&server, "/ws");
    a.send(Message::text("안녕")).unwrap();
    for ws in [&mut a, &mut b] {
        assert_eq!(next_data(ws), Message::text("📢 새로운 알림: 안녕"));
    }
    let custom = Server::http_only(&["--ws-ping", "0", "--broadcast-format", "<{}>"]);
    let mut c = connect(&custom, "/ws");
    c.send(Message::text("hi")).unwrap();
    assert_eq!(next_data(&mut c), Message::text("<hi>"));
}

/// A burst of broadcast bigger than `--ws-max-pending`, read by the server in one go, is not
/// a slow consumer: it has not been offered to anyone's socket yet. Every client, the sender
/// included, gets all of it (regression: everyone was cut off with 1008).
#[test]
fn broadcast_burst_over_max_pending_cuts_off_nobody() {
    let server = Server::http_only(&["--ws-ping", "0", "--ws-max-pending", "65536"]);
    let mut clients: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(server.http(), "/ws"))
        .collect();
    let body = "b".repeat(1000);
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend(RawClient::masked(
            true,
            0x1,
            format!("{i:03}{body}").as_bytes(),
        ));
    }
    clients[0].send_raw(&burst);
    for (c, client) in clients.iter_mut().enumerate() {
        for i in 0..200 {
            let f = client.read_frame().expect("connection ended");
            assert_eq!(
                f.opcode,
                0x1,
                "client {c} message {i}: {:?}",
                f.close_code()
            );
            let want = format!("📢 새로운 알림: {i:03}{body}");
            assert!(
                f.payload == want.as_bytes(),
                "client {c} message {i} differs"
            );
        }
    }
}

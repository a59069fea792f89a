//! permessage-deflate (RFC 7692) against the real `readyloop` binary, with the raw client of
//! tests/support: the negotiation answers, compressed echo and broadcast (compressed and plain
//! recipients side by side), fragmented compressed messages, and every bad input — corrupt
//! data, a decompression bomb, RSV1 where it may not be — each closing only its own
//! connection with the right code while another client keeps being served.
//!
//! Test payloads are compressed here with miniz_oxide's one-shot API (the server uses its
//! low-level streaming core through its own code); Python's zlib checks the same server
//! independently in tests/interop/ws_interop.py.

#![cfg(all(feature = "cli", feature = "ws-deflate"))]

mod support;

use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_to_vec;
use support::{connect, serve_refused, upgrade_request, RawClient, Server};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUE: u8 = 0x0;
const PING: u8 = 0x9;
const RSV1: u8 = 0x40;

fn serve(extra: &[&str]) -> Server {
    let mut args = vec!["--ws-ping", "0"];
    args.extend_from_slice(extra);
    Server::http_only(&args)
}

/// A raw client on `path` that sent `headers` with its upgrade.
fn client(server: &Server, path: &str, headers: &str) -> RawClient {
    RawClient::handshake(
        connect(server.http()),
        upgrade_request(path, headers).as_bytes(),
    )
}

/// The `Sec-WebSocket-Extensions` value of the `101`, if any.
fn extensions(c: &RawClient) -> Option<String> {
    c.response_head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    })
}

/// §7.2.1: raw deflate, sync-flush trailer removed. miniz_oxide's one-shot API ends the
/// stream with a final block instead, which §7.2.3.4 allows; both forms are sent below.
fn deflate(payload: &[u8]) -> Vec<u8> {
    compress_to_vec(payload, 6)
}

/// §7.2.2: the trailer put back, then inflated. An empty final stored block (`01 00 00 ff
/// ff`) after it ends the stream, so the one-shot inflater knows the message is whole.
fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut stream = compressed.to_vec();
    stream.extend_from_slice(&[0, 0, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff]);
    decompress_to_vec(&stream).expect("the server's deflate stream inflates")
}

/// `got == want` without printing megabytes when they differ.
#[track_caller]
fn same(got: &[u8], want: &[u8]) {
    let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{} bytes, want {}; first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
}

/// A masked compressed frame (RSV1 set) of one whole message.
fn compressed_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    RawClient::encode(0x80 | RSV1 | opcode, &deflate(payload), Some([1, 2, 3, 4]))
}

/// A JSON-like chat message of about `len` bytes.
fn chat(len: usize) -> String {
    let one = r#"{"user":"ana","room":"general","text":"see you at nine","ts":1733100000123},"#;
    one.repeat(len / one.len() + 1)[..len].to_owned()
}

/// Another client is still served: an echo round trip on a fresh connection.
fn others_still_served(server: &Server) {
    let mut other = client(server, "/echo", "");
    other.send(true, TEXT, b"still here");
    let f = other.read_frame().expect("an echo");
    assert_eq!(
        (f.opcode, f.rsv, &f.payload[..]),
        (TEXT, 0, &b"still here"[..])
    );
}

#[test]
fn rfc7692_7_negotiation_answers() {
    let server = serve(&[]);
    // A browser's offer is accepted with no context takeover imposed both ways.
    assert_eq!(
        extensions(&client(&server, "/echo", OFFER)).as_deref(),
        Some(ANSWER)
    );
    // §7.1.2.1: an offer naming server_max_window_bits=15 gets it back.
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15\r\n";
    let answer = extensions(&client(&server, "/ws", offer)).unwrap();
    assert_eq!(answer, format!("{ANSWER}; server_max_window_bits=15"));
    // A window we cannot honour: declined, never a failed handshake...
    let small = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
    assert_eq!(extensions(&client(&server, "/echo", small)), None);
    // ...unless a later offer (in the same field or another one) can be honoured.
    let two = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, \
               permessage-deflate\r\n";
    assert_eq!(
        extensions(&client(&server, "/echo", two)).as_deref(),
        Some(ANSWER)
    );
    let fields = "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\
                  Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n\
                  Sec-WebSocket-Extensions: permessage-deflate\r\n";
    assert_eq!(
        extensions(&client(&server, "/echo", fields)).as_deref(),
        Some(ANSWER)
    );
    // No offer, no extension.
    assert_eq!(extensions(&client(&server, "/echo", "")), None);

    let off = serve(&["--ws-deflate", "off"]);
    let mut c = client(&off, "/echo", OFFER);
    assert_eq!(extensions(&c), None);
    // Not negotiated: RSV1 is a protocol error (RFC 6455 §5.2).
    c.send_raw(&compressed_frame(TEXT, b"hello"));
    assert_eq!(c.expect_close(), Some(1002));
    assert!(c.at_eof());
}

#[test]
fn rfc7692_compressed_echo_text_binary_and_fragmented() {
    let server = serve(&[]);
    let mut c = client(&server, "/echo", OFFER);
    // A compressed message in, a compressed message out (1 KiB is over --ws-deflate-min).
    let text = chat(1024);
    c.send_raw(&compressed_frame(TEXT, text.as_bytes()));
    let f = c.read_frame().unwrap();
    assert_eq!((f.fin, f.opcode, f.rsv), (true, TEXT, 0b100));
    assert!(
        f.payload.len() < 300,
        "1 KiB of chat deflates to {} bytes",
        f.payload.len()
    );
    same(&inflate(&f.payload), text.as_bytes());

    let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    c.send_raw(&compressed_frame(BINARY, &binary));
    let f = c.read_frame().unwrap();
    assert_eq!((f.opcode, f.rsv), (BINARY, 0b100));
    same(&inflate(&f.payload), &binary);

    // Plain messages are fine on a deflate connection; short ones come back plain.
    c.send(true, TEXT, b"short");
    let f = c.read_frame().unwrap();
    assert_eq!((f.opcode, f.rsv, &f.payload[..]), (TEXT, 0, &b"short"[..]));

    // A fragmented compressed message (RSV1 on the first frame only), with a ping between
    // its fragments, in the sync-flush form of §7.2.1.
    let mut stream = Vec::new();
    let mut deflater = miniz_oxide::deflate::core::CompressorOxide::new(
        miniz_oxide::deflate::core::create_comp_flags_from_zip_params(6, -15, 0),
    );
    miniz_oxide::deflate::core::compress_to_output(
        &mut deflater,
        text.as_bytes(),
        miniz_oxide::deflate::core::TDEFLFlush::Sync,
        |chunk| {
            stream.extend_from_slice(chunk);
            true
        },
    );
    assert!(stream.ends_with(&[0, 0, 0xff, 0xff]));
    stream.truncate(stream.len() - 4);
    let third = stream.len() / 3;
    let key = Some([9, 8, 7, 6]);
    c.send_raw(&RawClient::encode(RSV1 | TEXT, &stream[..third], key));
    c.send(true, PING, b"p");
    c.send_raw(&RawClient::encode(CONTINUE, &stream[third..2 * third], key));
    c.send_raw(&RawClient::encode(
        0x80 | CONTINUE,
        &stream[2 * third..],
        key,
    ));
    let pong = c.read_frame().unwrap();
    assert_eq!(
        (pong.opcode, pong.rsv, &pong.payload[..]),
        (0xA, 0, &b"p"[..])
    );
    let f = c.read_frame().unwrap();
    assert_eq!((f.opcode, f.rsv), (TEXT, 0b100));
    same(&inflate(&f.payload), text.as_bytes());
}

#[test]
fn rfc7692_broadcast_goes_compressed_and_plain() {
    let server = serve(&[]);
    let mut deflating = client(&server, "/ws", OFFER);
    let mut plain = client(&server, "/ws", "");
    assert_eq!(extensions(&plain), None);
    let text = chat(1000);
    plain.send(true, TEXT, text.as_bytes());
    let want = format!("📢 새로운 알림: {text}");
    let f = deflating.read_frame().unwrap();
    assert_eq!((f.opcode, f.rsv), (TEXT, 0b100));
    same(&inflate(&f.payload), want.as_bytes());
    let f = plain.read_frame().unwrap();
    assert_eq!((f.opcode, f.rsv), (TEXT, 0));
    assert_eq!(f.payload, want.as_bytes());
    // A short message goes out plain to both.
    deflating.send_raw(&compressed_frame(TEXT, b"hi"));
    for c in [&mut deflating, &mut plain] {
        let f = c.read_frame().unwrap();
        assert_eq!(
            (f.rsv, f.payload),
            (0, "📢 새로운 알림: hi".as_bytes().to_vec())
        );
    }
}

/// Each bad input closes its own connection with `code`; the server serves the next client.
fn refused(server: &Server, wire: &[u8], code: u16) {
    let mut c = client(server, "/echo", OFFER);
    assert_eq!(extensions(&c).as_deref(), Some(ANSWER));
    c.send_raw(wire);
    assert_eq!(
        c.expect_close(),
        Some(code),
        "for {:02x?}",
        &wire[..wire.len().min(16)]
    );
    assert!(c.at_eof());
    others_still_served(server);
}

#[test]
fn rfc7692_bad_input_is_refused_with_the_right_code() {
    let server = serve(&["--max-message", "262144"]);
    let key = Some([5, 6, 7, 8]);
    // A corrupt deflate stream (BTYPE 11 is reserved): 1007.
    refused(
        &server,
        &RawClient::encode(0x80 | RSV1 | TEXT, &[0xff; 8], key),
        1007,
    );
    // Compressed text that inflates to bad UTF-8: 1007.
    refused(&server, &compressed_frame(TEXT, &[b'a', 0xc3, 0x28]), 1007);
    // A bomb: about 1 KiB that inflates to 1 MiB, past --max-message: 1009.
    let bomb = deflate(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 2048, "bomb is {} bytes", bomb.len());
    refused(&server, &RawClient::encode(0x82 | RSV1, &bomb, key), 1009);
    // RSV1 on a continuation frame: 1002 (RFC 7692 §6.1).
    let wire = [
        RawClient::masked(false, TEXT, b"a"),
        RawClient::encode(0x80 | RSV1, b"b", key),
    ]
    .concat();
    refused(&server, &wire, 1002);
    // A compressed control frame: 1002.
    refused(
        &server,
        &RawClient::encode(0x80 | RSV1 | PING, b"", key),
        1002,
    );
    // RSV2 stays reserved: 1002.
    refused(
        &server,
        &RawClient::encode(0x80 | 0x20 | TEXT, b"x", key),
        1002,
    );
    // A compressed message within the limit still works after all that.
    let mut c = client(&server, "/echo", OFFER);
    let text = chat(200_000);
    c.send_raw(&compressed_frame(TEXT, text.as_bytes()));
    let f = c.read_frame().unwrap();
    same(&inflate(&f.payload), text.as_bytes());
}

#[test]
fn ws_deflate_flag_values_are_checked_before_listening() {
    for (args, want) in [
        (&["--ws-deflate", "maybe"][..], "is not on or off"),
        (&["--ws-deflate-min", "-1"][..], "--ws-deflate-min"),
    ] {
        serve_refused(args, want);
    }
}

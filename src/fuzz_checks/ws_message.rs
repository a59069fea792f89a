//! Fuzz properties of the WebSocket message layer (`codec::ws::message` with `utf8` and
//! `close`): fragment reassembly, masking direction, UTF-8 of text, Close payloads, the size
//! limit.
//!
//! The first byte picks the role (server: peer frames must be masked; client: must not be)
//! and a piece size; the rest is the peer's byte stream, decoded whole and in pieces into a
//! buffer that keeps its unconsumed tail, as the loop does. Checked: consumed counts within
//! the input; both runs give the same messages and the same close code; no message is over
//! the limit and no control payload over 125 bytes; a Close carries a code allowed on the
//! wire; the fragments held stay bounded; and every message, encoded again by our own frame
//! writers, decodes to the same message. The input is also checked as text: the incremental
//! UTF-8 validator, fed in pieces, agrees with `std::str::from_utf8` at every piece, and as a
//! Close payload, which round-trips through `close_payload`.

use super::{parameter, split_point};
use crate::codec::ws::close::{close_frame, close_payload, parse_close_payload, MAX_REASON_LEN};
use crate::codec::ws::frame::{frame, masked_frame, OpCode, MAX_CONTROL_PAYLOAD};
use crate::codec::ws::message::{DecodeError, Message, MessageDecoder, Role};
use crate::codec::ws::utf8::Utf8Validator;
use crate::codec::ws::CloseCode;

/// A small limit so the 1009 paths are reached with small inputs.
const MAX_MESSAGE: usize = 1 << 12;

/// The masking key our re-encoded client frames use.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An owned message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(CloseCode, String)>),
}

impl Msg {
    fn of(message: Message<'_>) -> Msg {
        match message {
            Message::Text(t) => Msg::Text(t.to_owned()),
            Message::Binary(b) => Msg::Binary(b.to_vec()),
            Message::Ping(b) => Msg::Ping(b.to_vec()),
            Message::Pong(b) => Msg::Pong(b.to_vec()),
            Message::Close(c) => Msg::Close(c.map(|(code, r)| (code, r.to_owned()))),
            // These decoders negotiated no extension: RSV1 is 1002, never a compressed message
            // (fuzz_checks::ws_inflate covers a decoder with permessage-deflate).
            Message::Compressed(..) => panic!("a compressed message without permessage-deflate"),
        }
    }

    /// The message as one frame from a peer of `role`'s other side.
    fn encode(&self, role: Role) -> Vec<u8> {
        let key = (role == Role::Server).then_some(KEY);
        let (opcode, payload) = match self {
            Msg::Text(t) => (OpCode::Text, t.as_bytes()),
            Msg::Binary(b) => (OpCode::Binary, &b[..]),
            Msg::Ping(b) => (OpCode::Ping, &b[..]),
            Msg::Pong(b) => (OpCode::Pong, &b[..]),
            Msg::Close(c) => {
                return close_frame(
                    c.as_ref().map(|(code, _)| *code),
                    c.as_ref().map_or("", |(_, r)| r),
                    key,
                )
            }
        };
        match key {
            Some(key) => masked_frame(opcode, payload, key),
            None => frame(opcode, payload),
        }
    }

    fn check_limits(&self) {
        match self {
            Msg::Text(t) => assert!(t.len() <= MAX_MESSAGE),
            Msg::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
            Msg::Ping(b) | Msg::Pong(b) => assert!(b.len() <= MAX_CONTROL_PAYLOAD),
            Msg::Close(None) => {}
            Msg::Close(Some((code, reason))) => {
                assert!(code.is_valid_on_wire(), "close code {code}");
                assert!(reason.len() <= MAX_REASON_LEN);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Msg>,
    error: Option<DecodeError>,
}

/// Decodes from the front of `buf` until the decoder wants more or fails.
fn drain(decoder: &mut MessageDecoder, buf: &mut Vec<u8>, out: &mut Outcome) -> bool {
    loop {
        let len = buf.len();
        let (consumed, message) = match decoder.decode(buf) {
            Ok((consumed, message)) => (consumed, message.map(Msg::of)),
            Err(e) => {
                out.error = Some(e);
                return false;
            }
        };
        assert!(consumed <= len, "consumed {consumed} of {len}");
        assert!(
            consumed > 0 || message.is_none(),
            "a message must consume its frame"
        );
        assert!(
            decoder.buffered() <= 2 * MAX_MESSAGE,
            "{} bytes held",
            decoder.buffered()
        );
        if let Some(m) = message {
            m.check_limits();
            out.messages.push(m);
        }
        if consumed == 0 {
            return true;
        }
        buf.drain(..consumed);
    }
}

fn run(role: Role, stream: &[u8], piece: usize) -> Outcome {
    let mut decoder = MessageDecoder::with_max_message(role, MAX_MESSAGE);
    let mut out = Outcome {
        messages: Vec::new(),
        error: None,
    };
    let mut buf = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        if !drain(&mut decoder, &mut buf, &mut out) {
            let again = decoder.decode(&mut buf).err();
            assert_eq!(again, out.error, "errors are sticky");
            break;
        }
    }
    out
}

/// The incremental validator agrees with the standard library on every prefix it is fed.
fn check_utf8(p: u8, text: &[u8]) {
    let mut validator = Utf8Validator::new();
    let piece = usize::from(p % 7) + 1;
    let mut fed = 0;
    for chunk in text.chunks(piece) {
        let verdict = validator.feed(chunk);
        fed += chunk.len();
        // A prefix is fine while it is UTF-8 or ends inside a character that may still finish.
        let ok = match std::str::from_utf8(&text[..fed]) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        };
        assert_eq!(verdict.is_ok(), ok, "after {fed} bytes");
        if !ok {
            return;
        }
    }
    assert_eq!(
        validator.finish().is_ok(),
        std::str::from_utf8(text).is_ok()
    );
}

fn check_close_payload(payload: &[u8]) {
    match parse_close_payload(payload) {
        Ok(None) => assert!(payload.is_empty()),
        Ok(Some((code, reason))) => {
            assert!(code.is_valid_on_wire());
            if reason.len() <= MAX_REASON_LEN {
                assert_eq!(close_payload(code, reason), payload);
            }
        }
        Err(code) => assert!(
            code == CloseCode::PROTOCOL_ERROR || code == CloseCode::INVALID_PAYLOAD,
            "{code}"
        ),
    }
}

/// The message layer's properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, stream) = parameter(data);
    let role = if p & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let whole = run(role, stream, stream.len());
    let pieces = run(role, stream, usize::from(p >> 1) + 1);
    assert_eq!(
        whole,
        pieces,
        "whole and in pieces of {} differ",
        (p >> 1) + 1
    );
    for message in &whole.messages {
        let mut again = message.encode(role);
        let mut decoder = MessageDecoder::with_max_message(role, MAX_MESSAGE);
        let got = decoder.decode(&mut again).map(|(n, m)| (n, m.map(Msg::of)));
        let len = again.len();
        assert_eq!(
            got,
            Ok((len, Some(message.clone()))),
            "re-encoded {message:?}"
        );
    }
    check_utf8(p, stream);
    let cut = split_point(p, stream.len()).min(MAX_CONTROL_PAYLOAD);
    check_close_payload(&stream[..cut]);
}

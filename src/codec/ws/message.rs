//! The receiving state machine: frames in, messages out, every RFC 6455 rule enforced.
//!
//! [`MessageDecoder::decode`] looks at the front of a byte slice and either finds a whole
//! frame there or asks for more bytes. It owns the rules about *sequences* of frames —
//! fragmentation (§5.4), control frames (§5.5), masking direction (§5.1, §5.3), UTF-8 of
//! text (§8.1), close payloads (§5.5.1) and the message size limit (§10.4) — while
//! `frame.rs` owns the header bytes.
//!
//! Design choices, each with its reason:
//! - **In place, zero copy.** The input is `&mut [u8]` so the payload is unmasked where it
//!   lies, and an unfragmented message (the common case) is returned as a borrow of the
//!   input. Only fragmented messages are copied, into one `Vec` owned by the decoder.
//! - **Whole frames only, but checks at once.** A frame is returned only when all of it is
//!   in the input; until then `decode` consumes nothing. But every check that the header
//!   allows (size limit, masking, opcodes, fragmentation) is done as soon as the header is
//!   readable, before the caller buffers a byte of payload; and the payload of a text frame
//!   is unmasked and UTF-8-checked as it arrives, so a bad byte fails the connection at
//!   once, mid-frame (Autobahn's strict "fail fast", cases 6.4.x).
//! - **Caller contract.** Because of that, bytes left unconsumed have already been partly
//!   unmasked in place: the caller must present them again, as `decode` left them, at the
//!   start of the next input (which is what a read buffer that keeps its unconsumed tail
//!   does anyway). The decoder remembers how far it got (`progress`).
//! - **One error ends it.** An error carries the close code to send; the decoder then
//!   stays failed and returns the same error on every call.
//! - **Compressed messages pass through.** With permessage-deflate negotiated
//!   ([`Compression::PerMessageDeflate`]), RSV1 on the first frame of a data message marks it
//!   compressed (RFC 7692 §6.1); RSV1 anywhere else (a continuation, a control frame) or
//!   without the extension is 1002. Such a message is returned whole, still compressed, as
//!   [`Message::Compressed`]: inflating it (and checking its UTF-8) is `deflate.rs`' job, with
//!   one context per loop, so the decoder — one per connection — holds no compressor.

use std::fmt;

use log::{debug, trace};

use super::close::{parse_close_payload, CloseCode};
pub use super::extensions::Compression;
use super::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Largest message accepted by default: 16 MiB. Big enough for any chat or echo payload
/// a browser sends, small enough that a handful of hostile connections cannot exhaust
/// memory; an unfragmented message must fit whole in the caller's receive buffer.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

const LOG_TARGET: &str = "readyloop::ws";

/// Which end of the connection we are: it decides which way masking must go (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server: every received frame MUST be masked.
    Server,
    /// We are the client (the load generator): no received frame may be masked.
    Client,
}

/// A complete message or control frame, borrowed from the input or from the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, checked to be UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// Answer with a Pong carrying the same payload (§5.5.2).
    Ping(&'a [u8]),
    /// A Pong; nothing to answer.
    Pong(&'a [u8]),
    /// The peer's Close: `None` when it gave no code. Answer with a Close, then close the
    /// connection once that is flushed (§5.5.1). The decoder does not stop by itself after
    /// a Close; the connection must stop feeding it.
    Close(Option<(CloseCode, &'a str)>),
    /// A whole permessage-deflate message (its frames' payloads, still compressed; only with
    /// [`Compression::PerMessageDeflate`]). Inflate it with `deflate::Inflater::message`.
    Compressed(DataKind, &'a [u8]),
}

/// Why the connection must be failed: the code to put in our Close frame and a short
/// reason for the log (and, if wanted, the Close frame's reason text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The close code to send (1002, 1007, 1009...).
    pub code: CloseCode,
    /// A short, fixed explanation.
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for DecodeError {}

/// The kind of a data message, fixed by its first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// Opcode `0x1`: UTF-8 text.
    Text,
    /// Opcode `0x2`: bytes.
    Binary,
}

/// How a data message's payload is carried, fixed by RSV1 of its first frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    /// As sent.
    Plain,
    /// permessage-deflate (RFC 7692 §6): inflated only once the message is whole.
    Deflated,
}

/// Where the decoder stands between frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No fragmented message is open: the next data frame must be Text or Binary.
    Idle,
    /// A Text or Binary frame with FIN=0 was received; its payload (and that of the
    /// continuations so far) is in `assembled`. The next data frame must be a Continue.
    Fragmented(DataKind, Encoding),
    /// A rule was broken; every further call returns this error.
    Failed(DecodeError),
}

/// Capacity of the fragment buffer kept after a message is delivered: 64 KiB; more is freed.
const KEEP_ASSEMBLED: usize = 64 * 1024;

/// Decodes the frames one peer sends; one per connection.
#[derive(Debug)]
pub struct MessageDecoder {
    role: Role,
    max_message: usize,
    /// Whether RSV1 may mark a message compressed (permessage-deflate negotiated).
    compression: Compression,
    state: State,
    /// Payload bytes of the (incomplete) data frame at the front of the input that were
    /// already unmasked in place and UTF-8-checked by earlier calls.
    progress: usize,
    /// UTF-8 state of the text message in progress (across fragments and reads).
    utf8: Utf8Validator,
    /// The fragments of the open fragmented message, or the message last returned from it.
    assembled: Vec<u8>,
    /// `assembled` holds a message that was returned; clear it on the next call.
    delivered: bool,
}

/// The largest compressed message taken in for a `max_message` limit on the inflated one:
/// incompressible data grows under deflate (5 bytes per stored block, and a sender with a
/// small memory level, like Python websockets' `memLevel=5`, makes 2 KiB blocks: +0.25%), so
/// a message at the limit must still fit. zlib's `deflateBound` for any settings is under
/// 4.5% plus 7 bytes: allow 1/16 (6.25%) more, plus 64 bytes. Inflating enforces the limit
/// on the message itself.
pub fn compressed_bound(max_message: usize) -> usize {
    max_message
        .saturating_add(max_message >> 4)
        .saturating_add(64)
}

/// Records the failure in `state` and builds the error. A free function over the one
/// field, so it can be called while other fields of the decoder are borrowed.
fn fail(state: &mut State, code: CloseCode, reason: &'static str) -> DecodeError {
    let err = DecodeError { code, reason };
    debug!(target: LOG_TARGET, "failing the connection: {err}");
    *state = State::Failed(err);
    err
}

impl MessageDecoder {
    /// A decoder with the default 16 MiB message limit.
    pub fn new(role: Role) -> Self {
        Self::with_max_message(role, DEFAULT_MAX_MESSAGE)
    }

    /// A decoder refusing messages (and so frames) longer than `max_message` bytes.
    pub fn with_max_message(role: Role, max_message: usize) -> Self {
        MessageDecoder {
            role,
            max_message,
            compression: Compression::Off,
            state: State::Idle,
            progress: 0,
            utf8: Utf8Validator::new(),
            assembled: Vec::new(),
            delivered: false,
        }
    }

    /// The same decoder, reading the frames of a connection that negotiated `compression`.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Whether this decoder takes compressed messages (permessage-deflate negotiated).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Which side of the connection this decoder reads for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The largest message, in bytes, this decoder assembles.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Bytes this decoder holds for a message in progress (the capacity of its fragments),
    /// for the server's count of buffered input.
    pub fn buffered(&self) -> usize {
        self.assembled.capacity()
    }

    /// Frees the fragments of a message in progress (the connection is being closed: its
    /// memory goes back at once, not when the connection is reaped). Nothing more is decoded.
    pub fn discard(&mut self) {
        self.assembled = Vec::new();
        self.delivered = false;
        self.state = State::Failed(DecodeError {
            code: CloseCode::GOING_AWAY,
            reason: "the connection is closing",
        });
    }

    /// True while a fragmented message is open (some fragments received, not the last).
    pub fn in_message(&self) -> bool {
        matches!(self.state, State::Fragmented(..))
    }

    /// Decodes at most one frame from the front of `input`.
    ///
    /// - `Ok((0, None))`: the frame at the front is incomplete; read more and call again
    ///   with the same bytes (as left by this call) followed by the new ones.
    /// - `Ok((n, None))`: a non-final fragment was taken in; drop `input[..n]`, call again.
    /// - `Ok((n, Some(message)))`: drop `input[..n]` once done with `message`.
    /// - `Err(e)`: fail the connection with Close code `e.code` (§7.1.7).
    ///
    /// So: loop while the result consumes bytes or fails. `n` never exceeds `input.len()`.
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<(usize, Option<Message<'a>>), DecodeError> {
        if let State::Failed(err) = self.state {
            return Err(err);
        }
        if self.delivered {
            self.assembled.clear();
            // A connection that once sent a large fragmented message should not hold its
            // capacity while idle: keep at most 64 KiB for the next one.
            if self.assembled.capacity() > KEEP_ASSEMBLED {
                self.assembled = Vec::new();
            }
            self.delivered = false;
        }

        let (header, header_len) = match FrameHeader::parse(input) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok((0, None)),
            Err(e) => return Err(fail(&mut self.state, CloseCode::PROTOCOL_ERROR, e.as_str())),
        };
        let kind = self.check_header(&header)?;
        // check_header bounded the length by `max_message`, a `usize`.
        let Ok(len) = usize::try_from(header.len) else {
            return Err(fail(
                &mut self.state,
                CloseCode::TOO_BIG,
                "frame longer than the address space",
            ));
        };
        let Some((_, body)) = input.split_at_mut_checked(header_len) else {
            return Ok((0, None)); // unreachable: parse only returns lengths it has seen
        };
        let available = body.len().min(len);

        if let Some((kind, encoding)) = kind {
            // A data frame: unmask and check what arrived since the last call (compressed
            // text is checked once inflated).
            let check_utf8 = kind == DataKind::Text && encoding == Encoding::Plain;
            if available < self.progress {
                return Err(fail(
                    &mut self.state,
                    CloseCode::INTERNAL_ERROR,
                    "input does not continue the frame seen by the previous call",
                ));
            }
            if header.opcode == OpCode::Text && self.progress == 0 {
                self.utf8.reset(); // a new text message starts here
            }
            if let Some(fresh) = body.get_mut(self.progress..available) {
                if let Some(key) = header.mask {
                    apply_mask(fresh, key, self.progress);
                }
                if check_utf8 && self.utf8.feed(fresh).is_err() {
                    return Err(fail(
                        &mut self.state,
                        CloseCode::INVALID_PAYLOAD,
                        "text is not valid UTF-8",
                    ));
                }
            }
            self.progress = available;
            if available < len {
                trace!(target: LOG_TARGET, "frame {:?} has {available} of {len} bytes", header.opcode);
                return Ok((0, None));
            }
            self.progress = 0;
        } else if self.progress != 0 {
            return Err(fail(
                &mut self.state,
                CloseCode::INTERNAL_ERROR,
                "input does not continue the frame seen by the previous call",
            ));
        } else if available < len {
            return Ok((0, None)); // control frames are at most 125 bytes: just wait
        }

        let consumed = header_len + len;
        let Some(payload) = body.get_mut(..len) else {
            return Ok((0, None)); // unreachable: `available == len`
        };
        trace!(target: LOG_TARGET, "frame {:?} fin={} len={len}", header.opcode, header.fin);

        match (kind, header.opcode) {
            (None, opcode) => {
                if let Some(key) = header.mask {
                    apply_mask(payload, key, 0);
                }
                let message = match opcode {
                    OpCode::Ping => Message::Ping(payload),
                    OpCode::Pong => Message::Pong(payload),
                    _ => match parse_close_payload(payload) {
                        Ok(close) => Message::Close(close),
                        Err(code) => {
                            let reason = if code == CloseCode::INVALID_PAYLOAD {
                                "close reason is not valid UTF-8"
                            } else {
                                "invalid close code or payload"
                            };
                            return Err(fail(&mut self.state, code, reason));
                        }
                    },
                };
                Ok((consumed, Some(message)))
            }
            // An unfragmented compressed message: the input itself, still compressed.
            (Some((kind, Encoding::Deflated)), OpCode::Text | OpCode::Binary) if header.fin => {
                Ok((consumed, Some(Message::Compressed(kind, payload))))
            }
            // An unfragmented message: hand out the input itself.
            (Some((kind, _)), OpCode::Text | OpCode::Binary) if header.fin => match kind {
                DataKind::Binary => Ok((consumed, Some(Message::Binary(payload)))),
                DataKind::Text => {
                    if self.utf8.finish().is_err() {
                        return Err(fail(
                            &mut self.state,
                            CloseCode::INVALID_PAYLOAD,
                            "text ends inside a character",
                        ));
                    }
                    // Already validated; checked again (cheaply) to get a `&str` without `unsafe`.
                    match std::str::from_utf8(payload) {
                        Ok(text) => Ok((consumed, Some(Message::Text(text)))),
                        Err(_) => Err(fail(
                            &mut self.state,
                            CloseCode::INVALID_PAYLOAD,
                            "text is not valid UTF-8",
                        )),
                    }
                }
            },
            // The first fragment, then the continuations.
            (Some((kind, encoding)), _) => {
                if header.opcode != OpCode::Continue {
                    self.assembled.clear();
                }
                self.assembled.extend_from_slice(payload);
                if !header.fin {
                    self.state = State::Fragmented(kind, encoding);
                    return Ok((consumed, None));
                }
                self.delivered = true;
                let MessageDecoder {
                    state,
                    utf8,
                    assembled,
                    ..
                } = self;
                *state = State::Idle;
                if encoding == Encoding::Deflated {
                    return Ok((consumed, Some(Message::Compressed(kind, assembled))));
                }
                match kind {
                    DataKind::Binary => Ok((consumed, Some(Message::Binary(assembled)))),
                    DataKind::Text => {
                        if utf8.finish().is_err() {
                            return Err(fail(
                                state,
                                CloseCode::INVALID_PAYLOAD,
                                "text ends inside a character",
                            ));
                        }
                        match std::str::from_utf8(assembled) {
                            Ok(text) => Ok((consumed, Some(Message::Text(text)))),
                            Err(_) => Err(fail(
                                state,
                                CloseCode::INVALID_PAYLOAD,
                                "text is not valid UTF-8",
                            )),
                        }
                    }
                }
            }
        }
    }

    /// Every rule that the header alone decides. Returns the kind of data message the
    /// frame belongs to and how it is encoded, or `None` for a control frame.
    fn check_header(
        &mut self,
        h: &FrameHeader,
    ) -> Result<Option<(DataKind, Encoding)>, DecodeError> {
        let violation = |reason| {
            Err(DecodeError {
                code: CloseCode::PROTOCOL_ERROR,
                reason,
            })
        };
        let rsv1 = h.rsv & 0b100 != 0;
        let deflate = self.compression == Compression::PerMessageDeflate;
        let encoding = if rsv1 {
            Encoding::Deflated
        } else {
            Encoding::Plain
        };
        let verdict = if h.rsv != 0 && !deflate {
            // §5.2: "MUST be 0 unless an extension is negotiated"; none was.
            violation("RSV bits set without a negotiated extension")
        } else if h.rsv & 0b011 != 0 {
            // permessage-deflate defines RSV1 only.
            violation("RSV2 or RSV3 set")
        } else if rsv1 && h.opcode.is_control() {
            // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of
            // control frames".
            violation("RSV1 set on a control frame")
        } else if rsv1 && h.opcode == OpCode::Continue {
            // RFC 7692 §6.1: the bit is set "on the first frame of the message" only.
            violation("RSV1 set on a continuation frame")
        } else if h.mask.is_none() && self.role == Role::Server {
            // §5.1: "a client MUST mask all frames that it sends to the server".
            violation("client frame is not masked")
        } else if h.mask.is_some() && self.role == Role::Client {
            // §5.1: "A server MUST NOT mask any frames that it sends to the client".
            violation("server frame is masked")
        } else {
            match (h.opcode, self.state) {
                // §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail_".
                (OpCode::Reserved(_), _) => violation("reserved opcode"),
                // §5.5: "Control frames themselves MUST NOT be fragmented".
                (OpCode::Close | OpCode::Ping | OpCode::Pong, _) if !h.fin => {
                    violation("fragmented control frame")
                }
                // §5.5: "All control frames MUST have a payload length of 125 bytes or less".
                (OpCode::Close | OpCode::Ping | OpCode::Pong, _)
                    if h.len > MAX_CONTROL_PAYLOAD as u64 =>
                {
                    violation("control frame payload longer than 125 bytes")
                }
                (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => Ok(None),
                // §5.4: a continuation only continues a message that was started.
                (OpCode::Continue, State::Idle) => {
                    violation("continuation frame without a message to continue")
                }
                // §5.4: fragments of one message are not interleaved with another message.
                (OpCode::Text | OpCode::Binary, State::Fragmented(..)) => {
                    violation("new data frame while a fragmented message is open")
                }
                (OpCode::Continue, State::Fragmented(kind, open)) => {
                    self.check_size(h.len, (kind, open))
                }
                (OpCode::Text, _) => self.check_size(h.len, (DataKind::Text, encoding)),
                (OpCode::Binary, _) => self.check_size(h.len, (DataKind::Binary, encoding)),
                (_, State::Failed(err)) => Err(err),
            }
        };
        verdict.map_err(|e| fail(&mut self.state, e.code, e.reason))
    }

    /// §10.4: refuse, from the header alone, a frame that would take the message past the
    /// limit — before a byte of it is buffered.
    /// A compressed message is bounded by the same limit before it is inflated (and its
    /// inflated size again while inflating).
    fn check_size(
        &self,
        len: u64,
        kind: (DataKind, Encoding),
    ) -> Result<Option<(DataKind, Encoding)>, DecodeError> {
        let so_far = if matches!(self.state, State::Fragmented(..)) {
            self.assembled.len()
        } else {
            0
        };
        let limit = match kind.1 {
            Encoding::Plain => self.max_message,
            Encoding::Deflated => compressed_bound(self.max_message),
        };
        let room = limit.saturating_sub(so_far) as u64;
        if len > room {
            Err(DecodeError {
                code: CloseCode::TOO_BIG,
                reason: "message longer than the limit",
            })
        } else {
            Ok(Some(kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::close::close_payload;
    use super::super::frame::{encode_header, frame, masked_frame};
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// An owned copy of a message, so tests can collect them.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
        Compressed(DataKind, Vec<u8>),
    }

    impl From<Message<'_>> for Owned {
        fn from(m: Message<'_>) -> Owned {
            match m {
                Message::Text(t) => Owned::Text(t.to_owned()),
                Message::Binary(b) => Owned::Binary(b.to_vec()),
                Message::Ping(b) => Owned::Ping(b.to_vec()),
                Message::Pong(b) => Owned::Pong(b.to_vec()),
                Message::Close(c) => Owned::Close(c.map(|(code, r)| (code.0, r.to_owned()))),
                Message::Compressed(kind, b) => Owned::Compressed(kind, b.to_vec()),
            }
        }
    }

    /// A masked client frame with explicit FIN and first-byte extras (RSV bits).
    fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = masked_frame(opcode, payload, KEY);
        if !fin {
            f[0] &= 0x7f;
        }
        f
    }

    /// Decodes `wire` as one buffer until it fails or stops; returns messages and outcome.
    fn decode_all(
        dec: &mut MessageDecoder,
        wire: &[u8],
    ) -> (Vec<Owned>, Result<usize, DecodeError>) {
        let mut buf = wire.to_vec();
        let mut out = Vec::new();
        loop {
            let len = buf.len();
            match dec.decode(&mut buf) {
                Ok((0, None)) => return (out, Ok(len)),
                Ok((n, msg)) => {
                    assert!(n <= len);
                    out.extend(msg.map(Owned::from));
                    buf.drain(..n);
                }
                Err(e) => return (out, Err(e)),
            }
        }
    }

    fn server_decode(wire: &[u8]) -> (Vec<Owned>, Result<usize, DecodeError>) {
        decode_all(&mut MessageDecoder::new(Role::Server), wire)
    }

    fn error_code(wire: &[u8]) -> Option<u16> {
        server_decode(wire).1.err().map(|e| e.code.0)
    }

    macro_rules! violations {
        ($($name:ident: $wire:expr => $code:expr;)*) => {$(
            #[test]
            fn $name() {
                let wire: Vec<u8> = $wire;
                assert_eq!(error_code(&wire), Some($code));
            }
        )*};
    }

    fn with_rsv(bits: u8) -> Vec<u8> {
        let mut f = client_frame(true, OpCode::Text, b"x");
        f[0] |= bits << 4;
        f
    }

    fn reserved_opcode(bits: u8) -> Vec<u8> {
        client_frame(true, OpCode::Reserved(bits), b"")
    }

    violations! {
        rfc6455_5_1_unmasked_client_frame: frame(OpCode::Text, b"hi") => 1002;
        rfc6455_5_2_rsv1_without_extension: with_rsv(0b100) => 1002;
        rfc6455_5_2_rsv2_without_extension: with_rsv(0b010) => 1002;
        rfc6455_5_2_rsv3_without_extension: with_rsv(0b001) => 1002;
        rfc6455_5_2_reserved_data_opcode_3: reserved_opcode(3) => 1002;
        rfc6455_5_2_reserved_data_opcode_7: reserved_opcode(7) => 1002;
        rfc6455_5_2_reserved_control_opcode_11: reserved_opcode(11) => 1002;
        rfc6455_5_2_reserved_control_opcode_15: reserved_opcode(15) => 1002;
        rfc6455_5_2_non_minimal_length: vec![0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4] => 1002;
        rfc6455_5_2_length_msb_set: vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0] => 1002;
        rfc6455_5_5_fragmented_ping: client_frame(false, OpCode::Ping, b"p") => 1002;
        rfc6455_5_5_fragmented_close: client_frame(false, OpCode::Close, b"") => 1002;
        rfc6455_5_5_ping_payload_126: client_frame(true, OpCode::Ping, &[0; 126]) => 1002;
        rfc6455_5_5_close_payload_126: client_frame(true, OpCode::Close, &[0x03; 126]) => 1002;
        rfc6455_5_4_continuation_without_start: client_frame(true, OpCode::Continue, b"x") => 1002;
        rfc6455_5_4_unfinished_continuation_without_start: client_frame(false, OpCode::Continue, b"x") => 1002;
        rfc6455_5_4_text_inside_fragmented_message: [
            client_frame(false, OpCode::Text, b"a"),
            client_frame(true, OpCode::Text, b"b"),
        ].concat() => 1002;
        rfc6455_5_4_binary_inside_fragmented_message: [
            client_frame(false, OpCode::Binary, b"a"),
            client_frame(false, OpCode::Binary, b"b"),
        ].concat() => 1002;
        rfc6455_5_5_1_close_one_byte: client_frame(true, OpCode::Close, &[0x03]) => 1002;
        rfc6455_7_4_close_code_1005: client_frame(true, OpCode::Close, &1005u16.to_be_bytes()) => 1002;
        rfc6455_7_4_close_code_999: client_frame(true, OpCode::Close, &999u16.to_be_bytes()) => 1002;
        rfc6455_8_1_close_reason_not_utf8: client_frame(true, OpCode::Close, &[0x03, 0xe8, 0xff]) => 1007;
        rfc6455_8_1_text_not_utf8: client_frame(true, OpCode::Text, &[b'a', 0xc0, 0x80]) => 1007;
        rfc6455_8_1_text_surrogate: client_frame(true, OpCode::Text, &[0xed, 0xa0, 0x80]) => 1007;
        rfc6455_8_1_text_ends_mid_character: client_frame(true, OpCode::Text, &[0xe2, 0x82]) => 1007;
        rfc6455_8_1_fragmented_text_ends_mid_character: [
            client_frame(false, OpCode::Text, b"ok"),
            client_frame(true, OpCode::Continue, &[0xf0, 0x9d]),
        ].concat() => 1007;
    }

    /// A masked client frame with RSV1 set.
    fn rsv1_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = client_frame(fin, opcode, payload);
        f[0] |= 0x40;
        f
    }

    fn deflate_decode(wire: &[u8]) -> (Vec<Owned>, Result<usize, DecodeError>) {
        let mut dec =
            MessageDecoder::new(Role::Server).with_compression(Compression::PerMessageDeflate);
        decode_all(&mut dec, wire)
    }

    #[test]
    fn rfc7692_6_1_rsv1_marks_a_whole_message_compressed() {
        let wire = [
            rsv1_frame(true, OpCode::Text, b"\xf2\x48"),
            rsv1_frame(false, OpCode::Binary, b"ab"),
            client_frame(true, OpCode::Ping, b"p"),
            client_frame(false, OpCode::Continue, b"cd"),
            client_frame(true, OpCode::Continue, b"e"),
            client_frame(true, OpCode::Text, "plain é".as_bytes()),
        ]
        .concat();
        let (msgs, end) = deflate_decode(&wire);
        assert_eq!(
            msgs,
            [
                // Not UTF-8, but compressed text is only checked once inflated.
                Owned::Compressed(DataKind::Text, b"\xf2\x48".to_vec()),
                Owned::Ping(b"p".to_vec()),
                Owned::Compressed(DataKind::Binary, b"abcde".to_vec()),
                Owned::Text("plain é".into()),
            ]
        );
        assert_eq!(end, Ok(0));
    }

    macro_rules! deflate_violations {
        ($($name:ident: $wire:expr => $code:expr;)*) => {$(
            #[test]
            fn $name() {
                let wire: Vec<u8> = $wire;
                assert_eq!(deflate_decode(&wire).1.err().map(|e| e.code.0), Some($code));
            }
        )*};
    }

    deflate_violations! {
        rfc7692_6_1_rsv1_on_a_continuation: [
            client_frame(false, OpCode::Text, b"a"),
            rsv1_frame(true, OpCode::Continue, b"b"),
        ].concat() => 1002;
        rfc7692_6_1_rsv1_on_a_continuation_of_a_compressed_message: [
            rsv1_frame(false, OpCode::Text, b"a"),
            rsv1_frame(true, OpCode::Continue, b"b"),
        ].concat() => 1002;
        rfc7692_6_1_rsv1_on_ping: rsv1_frame(true, OpCode::Ping, b"") => 1002;
        rfc7692_6_1_rsv1_on_close: rsv1_frame(true, OpCode::Close, b"") => 1002;
        rfc7692_6_rsv2_still_refused: {
            let mut f = client_frame(true, OpCode::Text, b"a");
            f[0] |= 0x20;
            f
        } => 1002;
        rfc7692_compressed_message_bounded_before_inflating: {
            let mut head = Vec::new();
            let len = compressed_bound(DEFAULT_MAX_MESSAGE) + 1;
            encode_header(true, OpCode::Binary, len as u64, Some(KEY), &mut head);
            head[0] |= 0x40;
            head
        } => 1009;
    }

    #[test]
    fn rfc6455_5_2_rsv1_without_the_extension_is_1002() {
        assert_eq!(
            error_code(&rsv1_frame(true, OpCode::Text, b"a")),
            Some(1002)
        );
    }

    #[test]
    fn rfc6455_5_1_client_role_rejects_masked_server_frame() {
        let mut dec = MessageDecoder::new(Role::Client);
        let err = decode_all(&mut dec, &masked_frame(OpCode::Text, b"hi", KEY)).1;
        assert_eq!(err.unwrap_err().code, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn client_role_decodes_server_frames() {
        let mut dec = MessageDecoder::new(Role::Client);
        let wire = [
            frame(OpCode::Text, "héllo".as_bytes()),
            frame(OpCode::Binary, &[1, 2, 3]),
        ]
        .concat();
        let (msgs, end) = decode_all(&mut dec, &wire);
        assert_eq!(
            msgs,
            [Owned::Text("héllo".into()), Owned::Binary(vec![1, 2, 3])]
        );
        assert_eq!(end, Ok(0));
    }

    #[test]
    fn rfc6455_5_7_single_frame_text_is_borrowed_from_the_input() {
        let mut dec = MessageDecoder::new(Role::Server);
        let mut wire = masked_frame(OpCode::Text, b"Hello", KEY);
        let range = wire.as_ptr_range();
        let (n, msg) = dec.decode(&mut wire).unwrap();
        assert_eq!(n, 11);
        let Some(Message::Text(text)) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(text, "Hello");
        assert!(
            range.contains(&text.as_ptr()),
            "zero copy: the text points into the input"
        );
    }

    #[test]
    fn rfc6455_5_4_fragments_with_interleaved_control_frames() {
        let wire = [
            client_frame(false, OpCode::Text, b"Hel"),
            client_frame(true, OpCode::Ping, b"p1"),
            client_frame(false, OpCode::Continue, "lo wör".as_bytes()),
            client_frame(true, OpCode::Pong, b""),
            client_frame(true, OpCode::Continue, b"ld"),
            client_frame(false, OpCode::Binary, &[1]),
            client_frame(true, OpCode::Continue, &[2]),
            client_frame(
                true,
                OpCode::Close,
                &close_payload(CloseCode::NORMAL, "bye"),
            ),
        ]
        .concat();
        let (msgs, end) = server_decode(&wire);
        assert_eq!(
            msgs,
            [
                Owned::Ping(b"p1".to_vec()),
                Owned::Pong(vec![]),
                Owned::Text("Hello wörld".into()),
                Owned::Binary(vec![1, 2]),
                Owned::Close(Some((1000, "bye".into()))),
            ]
        );
        assert_eq!(end, Ok(0));
    }

    #[test]
    fn rfc6455_5_4_character_split_across_fragments() {
        let euro = "€".as_bytes();
        let wire = [
            client_frame(false, OpCode::Text, &euro[..1]),
            client_frame(false, OpCode::Continue, &euro[1..2]),
            client_frame(true, OpCode::Ping, b""),
            client_frame(true, OpCode::Continue, &euro[2..]),
        ]
        .concat();
        let (msgs, end) = server_decode(&wire);
        assert_eq!(msgs, [Owned::Ping(vec![]), Owned::Text("€".into())]);
        assert_eq!(end, Ok(0));
    }

    #[test]
    fn rfc6455_5_4_empty_fragments() {
        let wire = [
            client_frame(false, OpCode::Text, b""),
            client_frame(false, OpCode::Continue, b""),
            client_frame(true, OpCode::Continue, b""),
        ]
        .concat();
        assert_eq!(
            server_decode(&wire),
            (vec![Owned::Text(String::new())], Ok(0))
        );
    }

    #[test]
    fn rfc6455_5_5_1_close_payloads() {
        let wire = [
            client_frame(true, OpCode::Close, b""),
            client_frame(true, OpCode::Close, &[0x0f, 0xa0]),
        ]
        .concat();
        let (msgs, _) = server_decode(&wire);
        assert_eq!(
            msgs,
            [
                Owned::Close(None),
                Owned::Close(Some((4000, String::new())))
            ]
        );
    }

    #[test]
    fn rfc6455_5_5_control_payload_125_is_fine() {
        let (msgs, _) = server_decode(&client_frame(true, OpCode::Ping, &[7; 125]));
        assert_eq!(msgs, [Owned::Ping(vec![7; 125])]);
    }

    /// Feeds the wire one byte at a time into a buffer that keeps its unconsumed tail, as
    /// the event loop does; checks that a frame is consumed exactly when its last byte
    /// arrives, and nothing before.
    #[test]
    fn byte_at_a_time_consumes_only_complete_frames() {
        let frames = [
            client_frame(false, OpCode::Text, "fragmented €".as_bytes()),
            client_frame(true, OpCode::Ping, b"ping"),
            client_frame(true, OpCode::Continue, " text".as_bytes()),
            client_frame(true, OpCode::Binary, &[0xab; 300]),
            client_frame(true, OpCode::Text, "κόσμε".as_bytes()),
            client_frame(
                true,
                OpCode::Close,
                &close_payload(CloseCode::GOING_AWAY, ""),
            ),
        ];
        let mut ends = Vec::new();
        for f in &frames {
            ends.push(ends.last().copied().unwrap_or(0) + f.len());
        }
        let wire = frames.concat();
        let mut dec = MessageDecoder::new(Role::Server);
        let mut buf = Vec::new();
        let mut msgs = Vec::new();
        let mut consumed_at = Vec::new();
        for (i, &byte) in wire.iter().enumerate() {
            buf.push(byte);
            loop {
                let (n, msg) = dec.decode(&mut buf).unwrap();
                if n == 0 {
                    assert!(msg.is_none());
                    break;
                }
                msgs.extend(msg.map(Owned::from));
                buf.drain(..n);
                consumed_at.push(i + 1);
            }
        }
        assert_eq!(consumed_at, ends);
        assert_eq!(
            msgs,
            [
                Owned::Ping(b"ping".to_vec()),
                Owned::Text("fragmented € text".into()),
                Owned::Binary(vec![0xab; 300]),
                Owned::Text("κόσμε".into()),
                Owned::Close(Some((1001, String::new()))),
            ]
        );
    }

    /// Every strict prefix of a frame, given to a fresh decoder, is "partial, nothing
    /// consumed".
    #[test]
    fn every_strict_prefix_is_partial() {
        for f in [
            client_frame(true, OpCode::Text, "abc€".as_bytes()),
            client_frame(true, OpCode::Binary, &[1; 200]),
            client_frame(true, OpCode::Close, &close_payload(CloseCode::NORMAL, "x")),
        ] {
            for cut in 0..f.len() {
                let mut prefix = f[..cut].to_vec();
                assert_eq!(
                    MessageDecoder::new(Role::Server).decode(&mut prefix),
                    Ok((0, None)),
                    "cut {cut}"
                );
            }
        }
    }

    /// Autobahn 6.4.3/6.4.4: invalid UTF-8 fails the connection when it arrives, even in
    /// the middle of a frame whose end has not been received.
    #[test]
    fn rfc6455_8_1_fail_fast_mid_frame() {
        let payload = [
            b"valid ".as_slice(),
            &[0xf4, 0x90, 0x80, 0x80],
            b" never seen",
        ]
        .concat();
        let wire = client_frame(true, OpCode::Text, &payload);
        let header_len = 6;
        let mut dec = MessageDecoder::new(Role::Server);
        let mut buf = wire[..header_len + 6].to_vec();
        assert_eq!(dec.decode(&mut buf), Ok((0, None)));
        buf.extend_from_slice(&wire[header_len + 6..header_len + 8]); // "valid " + F4 90
        let err = dec.decode(&mut buf).unwrap_err();
        assert_eq!(err.code, CloseCode::INVALID_PAYLOAD);
        assert_eq!(dec.decode(&mut buf).unwrap_err(), err, "stays failed");
    }

    /// Autobahn 6.4.1: the second fragment is bad; fail before the third arrives.
    #[test]
    fn rfc6455_8_1_fail_fast_in_a_middle_fragment() {
        let wire = [
            client_frame(false, OpCode::Text, "κόσμε".as_bytes()),
            client_frame(false, OpCode::Continue, &[0xf4, 0x90, 0x80, 0x80]),
        ]
        .concat();
        assert_eq!(error_code(&wire), Some(1007));
    }

    #[test]
    fn rfc6455_10_4_oversized_frame_refused_from_its_header() {
        let mut head = Vec::new();
        encode_header(true, OpCode::Binary, 1025, Some(KEY), &mut head);
        let mut dec = MessageDecoder::with_max_message(Role::Server, 1024);
        let err = dec.decode(&mut head).unwrap_err(); // no payload byte has arrived
        assert_eq!(err.code, CloseCode::TOO_BIG);
        // The default limit, with a header announcing 2^63 - 1 bytes.
        let mut huge = vec![
            0x82,
            0x80 | 127,
            0x7f,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            1,
            2,
            3,
            4,
        ];
        assert_eq!(
            MessageDecoder::new(Role::Server)
                .decode(&mut huge)
                .unwrap_err()
                .code,
            CloseCode::TOO_BIG
        );
    }

    #[test]
    fn rfc6455_10_4_limit_is_inclusive() {
        let mut dec = MessageDecoder::with_max_message(Role::Server, 1024);
        let (msgs, end) = decode_all(&mut dec, &client_frame(true, OpCode::Binary, &[0; 1024]));
        assert_eq!((msgs.len(), end), (1, Ok(0)));
    }

    #[test]
    fn rfc6455_10_4_oversized_fragmented_message_refused_on_the_fragment_that_overflows() {
        let mut dec = MessageDecoder::with_max_message(Role::Server, 10);
        let wire = [
            client_frame(false, OpCode::Text, b"12345"),
            client_frame(false, OpCode::Continue, b"67890"),
            client_frame(true, OpCode::Continue, b"x"),
        ]
        .concat();
        let (msgs, end) = decode_all(&mut dec, &wire);
        assert!(msgs.is_empty());
        assert_eq!(end.unwrap_err().code, CloseCode::TOO_BIG);
        // Exactly at the limit is fine, and the next message starts from zero.
        let mut dec = MessageDecoder::with_max_message(Role::Server, 10);
        let one = [
            client_frame(false, OpCode::Binary, b"12345"),
            client_frame(true, OpCode::Continue, b"67890"),
        ]
        .concat();
        let (msgs, end) = decode_all(&mut dec, &[one.clone(), one].concat());
        assert_eq!(
            msgs,
            [
                Owned::Binary(b"1234567890".to_vec()),
                Owned::Binary(b"1234567890".to_vec())
            ]
        );
        assert_eq!(end, Ok(0));
    }

    #[test]
    fn length_encodings_round_trip_through_the_decoder() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wire = masked_frame(OpCode::Binary, &payload, KEY);
            let mut buf = wire.clone();
            let mut dec = MessageDecoder::new(Role::Server);
            let (n, msg) = dec.decode(&mut buf).unwrap();
            assert_eq!(n, wire.len(), "len {len}");
            assert_eq!(msg, Some(Message::Binary(&payload)), "len {len}");
            // And server → client through the client role.
            let mut buf = frame(OpCode::Binary, &payload);
            let mut dec = MessageDecoder::new(Role::Client);
            let (n, msg) = dec.decode(&mut buf).unwrap();
            assert_eq!((n, msg), (wire.len() - 4, Some(Message::Binary(&payload))));
        }
    }

    #[test]
    fn broken_caller_contract_is_an_error_not_a_panic() {
        let wire = client_frame(true, OpCode::Binary, &[5; 50]);
        let mut dec = MessageDecoder::new(Role::Server);
        assert_eq!(dec.decode(&mut wire[..40].to_vec()), Ok((0, None)));
        // The same frame again, but shorter than what was already unmasked.
        assert_eq!(
            dec.decode(&mut wire[..20].to_vec()).unwrap_err().code,
            CloseCode::INTERNAL_ERROR
        );
    }

    /// Tiny deterministic generator for the randomized test below.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    /// Random valid frame sequences arriving in random pieces decode to the same messages
    /// as when they arrive whole; random garbage never panics.
    #[test]
    fn random_chunking_and_garbage() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..300 {
            let mut wire = Vec::new();
            let mut open = false;
            for _ in 0..rng.below(8) + 1 {
                let len = [0, 1, 125, 126, 300, 70000][rng.below(6)];
                let payload: Vec<u8> = (0..len).map(|i| b"ab\xc3\xa9"[i % 4]).collect();
                let payload = &payload[..len - len % 4];
                let f = match (rng.below(4), open) {
                    (0, _) => client_frame(true, OpCode::Ping, &payload[..payload.len().min(124)]),
                    (1, false) => client_frame(false, OpCode::Text, payload),
                    (_, true) => client_frame(rng.below(2) == 0, OpCode::Continue, payload),
                    (_, false) => client_frame(true, OpCode::Binary, payload),
                };
                match f[0] {
                    0x01 => open = true,  // a first fragment
                    0x80 => open = false, // a final continuation
                    _ => {}
                }
                wire.extend_from_slice(&f);
            }
            let whole = server_decode(&wire);
            let mut dec = MessageDecoder::new(Role::Server);
            let mut buf = Vec::new();
            let mut msgs = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let step = (rng.below(2000) + 1).min(wire.len() - at);
                buf.extend_from_slice(&wire[at..at + step]);
                at += step;
                loop {
                    let len = buf.len();
                    let (n, msg) = dec.decode(&mut buf).unwrap();
                    assert!(n <= len);
                    if n == 0 {
                        break;
                    }
                    msgs.extend(msg.map(Owned::from));
                    buf.drain(..n);
                }
            }
            assert_eq!(msgs, whole.0);
            assert_eq!(whole.1, Ok(buf.len()));

            let garbage: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            let _ = server_decode(&garbage);
            let _ = decode_all(&mut MessageDecoder::new(Role::Client), &garbage);
        }
    }
}

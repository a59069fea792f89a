//! The frame header: its wire layout (RFC 6455 §5.2), the strict parser and the encoders.
//!
//! This file knows the bytes of a header and nothing about messages: it does not care
//! whether a control frame is fragmented or whether a continuation is expected; those are
//! rules about the *sequence* of frames and live in `message.rs`. What it does enforce are
//! the rules about the header's own encoding: the length must use the minimal form, and a
//! 64-bit length must have its most significant bit clear.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use std::fmt;

use super::mask::apply_mask;

/// The longest header: 2 fixed bytes + 8 bytes of length + 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The 4-bit opcode (RFC 6455 §5.2, §11.8). Values with bit 3 set are control frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: the next fragment of the data message in progress.
    Continue,
    /// `0x1`: the first (or only) frame of a text message; the payload is UTF-8.
    Text,
    /// `0x2`: the first (or only) frame of a binary message.
    Binary,
    /// `0x8`: the peer starts or answers the closing handshake (§5.5.1).
    Close,
    /// `0x9`: must be answered with a Pong carrying the same payload (§5.5.2).
    Ping,
    /// `0xA`: an answer to a Ping, or an unsolicited heartbeat (§5.5.3).
    Pong,
    /// `0x3`-`0x7` (reserved data opcodes) and `0xB`-`0xF` (reserved control opcodes).
    /// They exist only for extensions; we negotiate none, so receiving one is an error.
    Reserved(u8),
}

impl OpCode {
    /// Decodes the low 4 bits of `bits`; every 4-bit value has an `OpCode`.
    pub fn from_bits(bits: u8) -> OpCode {
        match bits & 0x0f {
            0x0 => OpCode::Continue,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => OpCode::Reserved(other),
        }
    }

    /// The wire value (4 bits).
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continue => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
            OpCode::Reserved(bits) => bits & 0x0f,
        }
    }

    /// Control frames are the opcodes with the high bit set (`0x8`-`0xF`, §5.5).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// Errors in the encoding of the header itself. Both fail the connection with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// §5.2: "the minimal number of bytes MUST be used to encode the length".
    NonMinimalLength,
    /// §5.2: for the 64-bit form "the most significant bit MUST be 0".
    LengthMsbSet,
}

impl ProtocolError {
    /// A short, static description, suitable for a log line or a close reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolError::NonMinimalLength => "payload length not minimally encoded",
            ProtocolError::LengthMsbSet => "64-bit payload length has its top bit set",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ProtocolError {}

/// One parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (`0b100` is RSV1). Must be 0 without extensions.
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, present on every client → server frame and on no other.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes, as announced; at most `2^63 - 1`.
    pub len: u64,
}

/// `N` bytes of `buf` starting at `at`, or `None` when they have not all arrived.
fn bytes_at<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// - `Ok(None)`: `buf` holds only part of a header; nothing is consumed, call again
    ///   with more bytes.
    /// - `Ok(Some((header, n)))`: the header occupies `buf[..n]`; the payload follows.
    /// - `Err(_)`: the length is encoded in a forbidden way. This is reported as soon as
    ///   the length bytes are in, even when the masking key has not arrived yet.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let Some([b0, b1]) = bytes_at::<2>(buf, 0) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let opcode = OpCode::from_bits(b0);
        let masked = b1 & 0x80 != 0;

        let (len, mut at) = match b1 & 0x7f {
            126 => {
                let Some(ext) = bytes_at::<2>(buf, 2) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes(ext);
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (u64::from(len), 4)
            }
            127 => {
                let Some(ext) = bytes_at::<8>(buf, 2) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(ext);
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if len <= 0xffff {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };

        let mask = if masked {
            let Some(key) = bytes_at::<4>(buf, at) else {
                return Ok(None);
            };
            at += 4;
            Some(key)
        } else {
            None
        };

        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            len,
        };
        Ok(Some((header, at)))
    }
}

/// Appends a header with RSV bits clear, using the minimal length encoding.
pub fn encode_header(
    fin: bool,
    opcode: OpCode,
    len: u64,
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    debug_assert!(
        len >> 63 == 0,
        "frame length {len} does not fit the wire format"
    );
    let b0 = if fin { 0x80 } else { 0x00 } | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0x00 };
    out.push(b0);
    if len < 126 {
        // Checked just above: `len` fits in 7 bits.
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends a complete, unmasked, final frame (server → client) to `out`.
///
/// This is the form for an output queue: no allocation beyond the queue's own growth.
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(MAX_HEADER_LEN + payload.len());
    encode_header(true, opcode, payload.len() as u64, None, out);
    out.extend_from_slice(payload);
}

/// RSV1 in the first header byte: permessage-deflate's "Per-Message Compressed" bit
/// (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// Appends a complete, unmasked, final frame with RSV1 set: a whole permessage-deflate
/// message whose `compressed` payload came from `deflate::Deflater::compress`.
pub fn write_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, compressed: &[u8]) {
    let start = out.len();
    write_frame(out, opcode, compressed);
    if let Some(b0) = out.get_mut(start) {
        *b0 |= RSV1;
    }
}

/// A complete, unmasked, final frame (server → client).
pub fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, payload);
    out
}

/// A complete, masked, final frame (client → server): for the load generator and tests.
pub fn masked_frame(opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    encode_header(true, opcode, payload.len() as u64, Some(mask), &mut out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(body) = out.get_mut(start..) {
        apply_mask(body, mask, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_round_trips_all_16_values() {
        for bits in 0..16u8 {
            let op = OpCode::from_bits(bits);
            assert_eq!(op.bits(), bits);
            assert_eq!(op.is_control(), bits >= 8);
            let reserved = matches!(bits, 3..=7 | 11..=15);
            assert_eq!(op == OpCode::Reserved(bits), reserved, "opcode {bits}");
        }
    }

    #[test]
    fn rfc6455_5_7_examples_parse() {
        // §5.7: a single-frame unmasked text message "Hello".
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = FrameHeader::parse(&unmasked).unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // §5.7: the same, masked.
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::parse(&masked).unwrap().unwrap();
        assert_eq!((h.mask, h.len, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6));
        assert_eq!(
            masked_frame(OpCode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
            masked
        );
        assert_eq!(frame(OpCode::Text, b"Hello"), unmasked);
        // §5.7: 256 bytes binary in a single unmasked frame: 0x82 0x7E 0x0100.
        assert_eq!(
            frame(OpCode::Binary, &[0; 256])[..4],
            [0x82, 0x7e, 0x01, 0x00]
        );
        // §5.7: 64 KiB: 0x82 0x7F 0x0000000000010000.
        let big = frame(OpCode::Binary, &[0; 65536]);
        assert_eq!(big[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn rsv_bits_are_reported_not_rejected() {
        let (h, _) = FrameHeader::parse(&[0x80 | 0x70 | 0x1, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!(h.rsv, 0b111);
        let (h, _) = FrameHeader::parse(&[0x80 | 0x40 | 0x1, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!(h.rsv, 0b100);
    }

    #[test]
    fn every_strict_prefix_of_a_header_is_partial() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut head = Vec::new();
                encode_header(true, OpCode::Binary, len as u64, mask, &mut head);
                for cut in 0..head.len() {
                    assert_eq!(
                        FrameHeader::parse(&head[..cut]),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
                let (h, n) = FrameHeader::parse(&head).unwrap().unwrap();
                assert_eq!((h.len, h.mask, n), (len as u64, mask, head.len()));
            }
        }
    }

    macro_rules! header_cases {
        ($($name:ident: $bytes:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(FrameHeader::parse(&$bytes).map(|r| r.map(|(h, n)| (h.len, n))), $want);
            }
        )*};
    }

    header_cases! {
        // §5.2: "the minimal number of bytes MUST be used to encode the length".
        rfc6455_5_2_len16_for_0: [0x82, 126, 0, 0] => Err(ProtocolError::NonMinimalLength);
        rfc6455_5_2_len16_for_125: [0x82, 126, 0, 125] => Err(ProtocolError::NonMinimalLength);
        rfc6455_5_2_len16_min_ok: [0x82, 126, 0, 126] => Ok(Some((126, 4)));
        rfc6455_5_2_len64_for_0: [0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0] => Err(ProtocolError::NonMinimalLength);
        rfc6455_5_2_len64_for_65535: [0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff] => Err(ProtocolError::NonMinimalLength);
        rfc6455_5_2_len64_min_ok: [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0] => Ok(Some((65536, 10)));
        // §5.2: "the most significant bit MUST be 0".
        rfc6455_5_2_len64_msb: [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0] => Err(ProtocolError::LengthMsbSet);
        rfc6455_5_2_len64_max_ok: [0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff] => Ok(Some((u64::MAX >> 1, 10)));
        // The length error is found before the masking key arrives.
        non_minimal_found_before_mask: [0x82, 0x80 | 126, 0, 1] => Err(ProtocolError::NonMinimalLength);
        empty_is_partial: [] => Ok(None);
        one_byte_is_partial: [0x81] => Ok(None);
    }

    #[test]
    fn length_encodings_round_trip() {
        for (len, head_len) in [
            (0usize, 2),
            (1, 2),
            (125, 2),
            (126, 4),
            (127, 4),
            (65535, 4),
            (65536, 10),
            (70000, 10),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = frame(OpCode::Binary, &payload);
            let (h, n) = FrameHeader::parse(&f).unwrap().unwrap();
            assert_eq!((h.len, n, h.mask), (len as u64, head_len, None));
            assert_eq!(&f[n..], &payload[..]);
            let m = masked_frame(OpCode::Binary, &payload, [9, 8, 7, 6]);
            let (h, n) = FrameHeader::parse(&m).unwrap().unwrap();
            assert_eq!((h.len, n), (len as u64, head_len + 4));
        }
    }
}

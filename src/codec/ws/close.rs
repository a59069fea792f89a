//! Close codes (RFC 6455 §7.4) and the payload of a Close frame (§5.5.1).
//!
//! A Close payload is either empty or a 2-byte big-endian status code followed by a UTF-8
//! reason; the whole payload is at most 125 bytes like any control frame's. This file
//! decides which received codes are acceptable and builds the payload we send.
//!
//! A reason that is not UTF-8 fails the connection with **1007** (invalid frame payload
//! data). RFC 6455 §8.1 only says such a connection MUST be failed, not with which code;
//! 1007 is the code §7.4.1 defines for data "not consistent with the type of the message",
//! and it is what the Autobahn test suite (case 7.5.1) expects.

use std::fmt;

use super::frame::{frame, masked_frame, OpCode, MAX_CONTROL_PAYLOAD};

/// A close status code. Any `u16` can be held; the constants are the ones RFC 6455 and the
/// IANA registry define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint goes away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot accept (e.g. binary for a text-only app).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1004: reserved, never sent.
    pub const RESERVED: CloseCode = CloseCode(1004);
    /// 1005: "no code was present" — for APIs only, never on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: "closed without a Close frame" — for APIs only, never on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (non-UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy was violated (generic).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (client) the server did not negotiate a required extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: (server) an unexpected condition prevented fulfilling the request.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: "TLS handshake failed" — for APIs only, never on the wire.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// May this code appear in a Close frame received from the peer?
    ///
    /// Yes for 1000-1003, 1007-1014 and 3000-4999 (registered and private use). No for
    /// 0-999 (unused), 1004 (reserved), 1005/1006/1015 (API-only), 1016-2999 (reserved for
    /// future revisions of the protocol and extensions; we know none) and 5000 and above.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Validates a received Close payload (§5.5.1, §7.4).
///
/// - `Ok(None)`: empty payload, no code given.
/// - `Ok(Some((code, reason)))`: a valid code and a UTF-8 reason (possibly empty).
/// - `Err(code)`: the code to fail the connection with: 1002 for a 1-byte payload or a
///   code not allowed on the wire, 1007 for a reason that is not UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, CloseCode> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [hi, lo, reason @ ..] => (CloseCode(u16::from_be_bytes([*hi, *lo])), reason),
        [_] => return Err(CloseCode::PROTOCOL_ERROR),
    };
    if !code.is_valid_on_wire() {
        return Err(CloseCode::PROTOCOL_ERROR);
    }
    match std::str::from_utf8(reason) {
        Ok(reason) => Ok(Some((code, reason))),
        Err(_) => Err(CloseCode::INVALID_PAYLOAD),
    }
}

/// The longest reason that fits a control frame next to the 2-byte code.
pub const MAX_REASON_LEN: usize = MAX_CONTROL_PAYLOAD - 2;

/// Appends a Close payload: the code, then `reason` cut to at most 123 bytes on a
/// character boundary (a longer payload would be an invalid control frame).
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(reason.get(..end).unwrap_or_default().as_bytes());
}

/// A Close payload as a `Vec`; see [`encode_close_payload`].
pub fn close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + reason.len().min(MAX_REASON_LEN));
    encode_close_payload(code, reason, &mut out);
    out
}

/// A complete Close frame: `code` and `reason`, or an empty payload for `None` (the answer to
/// a close that carried no code, §5.5.1). Masked with `mask` when a client sends it.
pub fn close_frame(code: Option<CloseCode>, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let payload = code.map_or_else(Vec::new, |c| close_payload(c, reason));
    match mask {
        None => frame(OpCode::Close, &payload),
        Some(key) => masked_frame(OpCode::Close, &payload, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! close_payloads {
        ($($name:ident: $payload:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let payload: Vec<u8> = $payload;
                assert_eq!(parse_close_payload(&payload), $want);
            }
        )*};
    }

    fn code_only(code: u16) -> Vec<u8> {
        code.to_be_bytes().to_vec()
    }

    close_payloads! {
        // §5.5.1: the body is optional.
        rfc6455_5_5_1_empty_ok: vec![] => Ok(None);
        // §5.5.1: if there is a body, its first two bytes are the code: 1 byte is malformed.
        rfc6455_5_5_1_one_byte: vec![0x03] => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_1_normal: code_only(1000) => Ok(Some((CloseCode::NORMAL, "")));
        rfc6455_7_4_1_with_reason: [code_only(1001), b"bye".to_vec()].concat() => Ok(Some((CloseCode::GOING_AWAY, "bye")));
        rfc6455_7_4_1_1003: code_only(1003) => Ok(Some((CloseCode(1003), "")));
        rfc6455_7_4_1_1004_reserved: code_only(1004) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_1_1005_api_only: code_only(1005) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_1_1006_api_only: code_only(1006) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_1_1007: code_only(1007) => Ok(Some((CloseCode(1007), "")));
        rfc6455_7_4_1_1011: code_only(1011) => Ok(Some((CloseCode(1011), "")));
        iana_1012_to_1014_accepted: code_only(1014) => Ok(Some((CloseCode(1014), "")));
        rfc6455_7_4_1_1015_api_only: code_only(1015) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_2_unassigned_1016: code_only(1016) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_2_unassigned_2999: code_only(2999) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_2_unused_0: code_only(0) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_2_unused_999: code_only(999) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_2_registered_3000: code_only(3000) => Ok(Some((CloseCode(3000), "")));
        rfc6455_7_4_2_private_4999: code_only(4999) => Ok(Some((CloseCode(4999), "")));
        rfc6455_7_4_2_above_5000: code_only(5000) => Err(CloseCode::PROTOCOL_ERROR);
        rfc6455_7_4_2_max: code_only(65535) => Err(CloseCode::PROTOCOL_ERROR);
        // §8.1 + §7.4.1: a reason that is not UTF-8 → 1007 (what Autobahn 7.5.1 expects).
        rfc6455_8_1_reason_not_utf8: [code_only(1000), vec![0xce, 0xba, 0xed, 0xa0, 0x80]].concat() => Err(CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn every_code_matches_the_table() {
        for code in 0..=u16::MAX {
            let ok = parse_close_payload(&code_only(code)).is_ok();
            let want = (1000..=1003).contains(&code)
                || (1007..=1014).contains(&code)
                || (3000..=4999).contains(&code);
            assert_eq!(ok, want, "code {code}");
        }
    }

    #[test]
    fn encode_round_trips_and_truncates_on_a_char_boundary() {
        let p = close_payload(CloseCode::NORMAL, "done");
        assert_eq!(p, b"\x03\xe8done");
        assert_eq!(
            parse_close_payload(&p),
            Ok(Some((CloseCode::NORMAL, "done")))
        );
        let long = "é".repeat(100); // 200 bytes, 2 per char
        let p = close_payload(CloseCode::GOING_AWAY, &long);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(p.len(), 2 + 122); // 123 would split a character
        assert!(parse_close_payload(&p).is_ok());
        assert_eq!(
            close_frame(Some(CloseCode::TOO_BIG), "", None),
            [0x88, 0x02, 0x03, 0xf1]
        );
        assert_eq!(close_frame(None, "ignored", None), [0x88, 0x00]);
        let masked = close_frame(Some(CloseCode::NORMAL), "", Some([1, 2, 3, 4]));
        assert_eq!(masked, [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]);
    }
}

//! Fuzz properties of the WebSocket frame layer (`codec::ws::frame`, `codec::ws::mask`): the
//! header bytes and the payload mask every frame a peer sends goes through first.
//!
//! Checked on the input as the front of a frame: a header that parses uses at most the bytes
//! given and one of the six header sizes; it is strict, so encoding it again gives exactly the
//! bytes it came from (RSV bits aside, which our encoder never sets); every shorter prefix of
//! it is incomplete, never an error nor another header; an error stays the same with more
//! bytes after it. On the input as a payload: masking in pieces at any offset equals masking
//! whole, masking twice gives the payload back, and the frames our encoders build (masked or
//! not) parse back to their opcode, length, key and payload.

use super::{parameter, split_point};
use crate::codec::ws::frame::{encode_header, frame, masked_frame, FrameHeader, OpCode};
use crate::codec::ws::mask::apply_mask;

fn check_header(data: &[u8]) {
    let parsed = FrameHeader::parse(data);
    match parsed {
        Ok(Some((header, n))) => {
            assert!(n <= data.len(), "header of {n} from {}", data.len());
            let base = n - if header.mask.is_some() { 4 } else { 0 };
            assert!(matches!(base, 2 | 4 | 10), "header of {n} bytes");
            let mut again = Vec::new();
            encode_header(
                header.fin,
                header.opcode,
                header.len,
                header.mask,
                &mut again,
            );
            again[0] |= header.rsv << 4;
            assert_eq!(again, data[..n], "{header:?} encodes differently");
            for short in 0..n {
                assert_eq!(
                    FrameHeader::parse(&data[..short]),
                    Ok(None),
                    "prefix of {short}"
                );
            }
        }
        Ok(None) => assert!(data.len() < 14, "no header in {} bytes", data.len()),
        Err(e) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0xff; 14]);
            assert_eq!(
                FrameHeader::parse(&longer),
                Err(e),
                "error changed with more bytes"
            );
        }
    }
}

fn check_payload(p: u8, payload: &[u8]) {
    let key = [p, p.wrapping_mul(31), p ^ 0x5a, 0xa5];
    let mut whole = payload.to_vec();
    apply_mask(&mut whole, key, 0);
    let mut pieces = payload.to_vec();
    let cut = split_point(p, pieces.len());
    let (a, b) = pieces.split_at_mut(cut);
    apply_mask(a, key, 0);
    apply_mask(b, key, cut);
    assert_eq!(whole, pieces, "masking in two pieces at {cut} differs");
    for (i, (&m, &o)) in whole.iter().zip(payload).enumerate() {
        assert_eq!(m, o ^ key[i % 4], "byte {i}");
    }
    apply_mask(&mut whole, key, 0);
    assert_eq!(whole, payload, "masking twice is not the identity");

    let opcode = OpCode::from_bits(p);
    for (bytes, mask) in [
        (frame(opcode, payload), None),
        (masked_frame(opcode, payload, key), Some(key)),
    ] {
        let Ok(Some((header, n))) = FrameHeader::parse(&bytes) else {
            panic!("our frame does not parse");
        };
        let want = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            len: payload.len() as u64,
        };
        assert_eq!(header, want);
        let mut body = bytes[n..].to_vec();
        if let Some(key) = mask {
            apply_mask(&mut body, key, 0);
        }
        assert_eq!(body, payload, "payload of our frame");
    }
}

/// The frame layer's properties for one fuzz input.
pub fn check(data: &[u8]) {
    check_header(data);
    let (p, payload) = parameter(data);
    check_payload(p, payload);
}

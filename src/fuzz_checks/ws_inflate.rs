//! Fuzz properties of permessage-deflate input (`codec::ws::deflate` and the RSV1 rules of
//! `codec::ws::message`).
//!
//! The first byte is a parameter (the inflated-size limit, 0..=16 KiB in 64-byte steps); the
//! rest is used twice. As one compressed message: inflating never panics, never returns more
//! than the limit and never keeps more than the limit plus one output step; what does
//! inflate, compressed again by our [`Deflater`] and inflated again, gives the same bytes. As
//! the frames a peer sends on a connection that negotiated deflate: every compressed message
//! the decoder yields is inflated the way the WebSocket service does, within the same limit.

use super::parameter;
use crate::codec::ws::deflate::{Deflater, Inflater};
use crate::codec::ws::message::{Message, MessageDecoder, Role};
use crate::codec::ws::Compression;

/// Room the inflater may use past the limit: one byte to see "more", or its first 4 KiB step.
const SLACK: usize = 4096 + 1;

/// Checks the properties above for one input.
pub fn check(data: &[u8]) {
    let (p, data) = parameter(data);
    let limit = usize::from(p) * 64;
    let mut inflater = Inflater::new();
    if let Ok(out) = inflater.inflate(data, limit) {
        assert!(
            out.len() <= limit,
            "inflated {} bytes past {limit}",
            out.len()
        );
        let out = out.to_vec();
        let mut again = Vec::new();
        assert!(
            Deflater::new().compress(&out, &mut again),
            "compress failed"
        );
        let round = inflater.inflate(&again, limit).map(<[u8]>::to_vec);
        assert_eq!(
            round.as_deref(),
            Ok(&out[..]),
            "round trip changed the message"
        );
    }
    assert!(
        inflater.capacity() <= limit + SLACK,
        "kept {}",
        inflater.capacity()
    );

    let mut decoder = MessageDecoder::with_max_message(Role::Server, limit)
        .with_compression(Compression::PerMessageDeflate);
    let mut buf = data.to_vec();
    loop {
        let len = buf.len();
        let consumed = match decoder.decode(&mut buf) {
            Ok((consumed, message)) => {
                assert!(consumed <= len, "consumed {consumed} of {len}");
                if let Some(Message::Compressed(kind, compressed)) = message {
                    match inflater.message(kind, compressed, limit) {
                        Ok(Message::Text(t)) => assert!(t.len() <= limit),
                        Ok(Message::Binary(b)) => assert!(b.len() <= limit),
                        Ok(other) => panic!("inflated into {other:?}"),
                        Err(_) => {}
                    }
                }
                consumed
            }
            Err(_) => break,
        };
        if consumed == 0 {
            break;
        }
        buf.drain(..consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn seeds_pass() {
        let mut hello = vec![1u8]; // limit 64
        hello.extend_from_slice(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        check(&hello);
        check(&[]);
        check(&[0, 0xff, 0xff]);
        // A masked RSV1 text frame carrying the same "Hello".
        let key = [1, 2, 3, 4];
        let payload = [0xf2u8, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut frame = vec![4, 0xc1, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        check(&frame);
    }
}

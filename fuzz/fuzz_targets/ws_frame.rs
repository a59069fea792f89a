//! Fuzz target for `MessageDecoder` (server role): arbitrary peer bytes must never make it
//! panic, and it must never claim to consume more than it was given.
//!
//! The input is used twice: all at once, and arriving in pieces (sizes drawn from the input
//! itself) into a buffer that keeps its unconsumed tail — the way the event loop calls the
//! decoder, and the only way that reaches its "frame arrives across reads" paths.

#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::codec::ws::message::{MessageDecoder, Role};

/// Decodes from the front of `buf` until it asks for more or fails; drops what it consumes.
/// Returns false once the decoder has failed.
fn drain(decoder: &mut MessageDecoder, buf: &mut Vec<u8>) -> bool {
    loop {
        let len = buf.len();
        let consumed = match decoder.decode(buf) {
            Ok((consumed, message)) => {
                assert!(consumed <= len, "consumed {consumed} of {len}");
                assert!(
                    consumed > 0 || message.is_none(),
                    "a message must consume its frame"
                );
                consumed
            }
            Err(_) => return false,
        };
        if consumed == 0 {
            return true;
        }
        buf.drain(..consumed);
    }
}

fuzz_target!(|data: &[u8]| {
    // A small limit so the 1009 paths are reached with small inputs.
    let max_message = 1 << 12;

    // 1. Everything at once.
    let mut decoder = MessageDecoder::with_max_message(Role::Server, max_message);
    let mut buf = data.to_vec();
    drain(&mut decoder, &mut buf);

    // 2. In pieces: the first byte picks the piece size (1..=256 bytes).
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first) + 1;
    let mut decoder = MessageDecoder::with_max_message(Role::Server, max_message);
    let mut buf = Vec::new();
    for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        if !drain(&mut decoder, &mut buf) {
            break;
        }
    }
});

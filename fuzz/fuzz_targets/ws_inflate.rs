//! Fuzz target for permessage-deflate input: `Inflater` on arbitrary compressed bytes must
//! never panic, never return more than its limit, and never hold much more than the limit;
//! and a `MessageDecoder` with deflate negotiated, fed arbitrary frames, hands every
//! compressed message it yields to the inflater the way the WebSocket service does.
//! (Needs `readyloop` with its default `ws-deflate` feature.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::codec::ws::deflate::Inflater;
use readyloop::codec::ws::message::{Message, MessageDecoder, Role};
use readyloop::codec::ws::Compression;

fuzz_target!(|data: &[u8]| {
    // A small limit so the 1009 path (a bomb) is reached with small inputs.
    let limit = 1 << 14;
    let mut inflater = Inflater::new();
    if let Ok(out) = inflater.inflate(data, limit) {
        assert!(out.len() <= limit, "inflated {} past {limit}", out.len());
    }

    // The same bytes as frames on a connection that negotiated deflate.
    let mut decoder = MessageDecoder::with_max_message(Role::Server, limit)
        .with_compression(Compression::PerMessageDeflate);
    let mut buf = data.to_vec();
    loop {
        let len = buf.len();
        let consumed = match decoder.decode(&mut buf) {
            Ok((consumed, message)) => {
                assert!(consumed <= len);
                if let Some(Message::Compressed(kind, compressed)) = message {
                    if let Ok(Message::Text(t)) = inflater.message(kind, compressed, limit) {
                        assert!(t.len() <= limit);
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
});

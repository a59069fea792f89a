//! Fuzz target for the HTTP response parser (the client side, `readyloop load http`).
//!
//! The first input byte chooses where the rest is split in two and whether the responses
//! answer HEAD requests, so the fuzzer explores arbitrary bytes, delivery boundaries and both
//! framing rules. Properties: no panic, `consumed <= input.len()`, body events are non-empty,
//! errors are sticky, and `finish` at EOF never panics.
//!
//! Run with `cargo fuzz run http_response` from the crate root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::codec::http::response_parser::{ResponseEvent, ResponseLimits, ResponseParser};

/// Small limits so the fuzzer reaches the limit checks quickly.
const LIMITS: ResponseLimits = ResponseLimits {
    max_head: 512,
    max_headers: 8,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(first >> 1) * rest.len() / 128;
    let mut parser = ResponseParser::new(LIMITS);
    parser.set_head_request(first & 1 == 1);
    let mut buf: Vec<u8> = Vec::new();
    for piece in [&rest[..split], &rest[split..]] {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            let input = &buf[pos..];
            match parser.parse(input) {
                Err(e) => {
                    assert_eq!(parser.parse(b"HTTP/1.1 200 OK\r\n\r\n"), Err(e));
                    return;
                }
                Ok((n, event)) => {
                    assert!(n <= input.len(), "consumed {n} of {}", input.len());
                    if let Some(ResponseEvent::Body(b)) = &event {
                        assert!(!b.is_empty() && b.len() <= n);
                    }
                    pos += n;
                    if event.is_none() {
                        break;
                    }
                }
            }
        }
        buf.drain(..pos);
    }
    let _ = parser.finish(buf.len());
});

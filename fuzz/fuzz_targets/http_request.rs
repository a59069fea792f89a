//! Fuzz target for the HTTP codec's two streaming entry points.
//!
//! The first input byte chooses where the rest is split in two, so the fuzzer
//! explores arbitrary bytes *and* arbitrary delivery boundaries. The same
//! bytes go to `RequestParser` (as a connection's growing buffer would) and to
//! `MultipartParser` (as the request parser's body slices would). Properties:
//! no panic, `consumed <= input.len()`, and the multipart parser always takes
//! all of its input before asking for more.
//!
//! Run with `cargo fuzz run http_request` from the crate root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::codec::http::multipart::{MultipartEvent, MultipartParser};
use readyloop::codec::http::request::{Event, Limits, RequestParser};

/// Small limits so the fuzzer reaches the limit checks quickly.
const LIMITS: Limits = Limits {
    max_head: 512,
    max_headers: 8,
    max_body: 4096,
    require_host: false,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split_byte, body)) = data.split_first() else {
        return;
    };
    let split = usize::from(split_byte) * body.len() / 256;
    let (first, second) = body.split_at(split);
    fuzz_request(first, second);
    fuzz_multipart(first, second);
});

/// Feeds the pieces into a buffer the way the loop does: append, parse until
/// the parser wants more, drop what it consumed.
fn fuzz_request(first: &[u8], second: &[u8]) {
    let mut parser = RequestParser::new(LIMITS);
    let mut buf: Vec<u8> = Vec::new();
    for piece in [first, second] {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match parser.parse(rest) {
                Err(e) => {
                    assert!(matches!(e.status, 400 | 413 | 417 | 431 | 501 | 505));
                    // Errors are sticky.
                    assert_eq!(parser.parse(b"GET / HTTP/1.1\r\n\r\n"), Err(e));
                    return;
                }
                Ok((n, event)) => {
                    assert!(n <= rest.len(), "consumed {n} of {}", rest.len());
                    if let Some(Event::Body(b)) = &event {
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
}

fn fuzz_multipart(first: &[u8], second: &[u8]) {
    let Ok(mut parser) = MultipartParser::new("fuzz-b") else {
        return;
    };
    for piece in [first, second] {
        let mut pos = 0;
        loop {
            let rest = &piece[pos..];
            match parser.feed(rest) {
                Err(_) => return,
                Ok((n, event)) => {
                    assert!(n <= rest.len(), "consumed {n} of {}", rest.len());
                    if let Some(MultipartEvent::Data(d)) = &event {
                        assert!(!d.is_empty());
                    }
                    pos += n;
                    if event.is_none() {
                        assert_eq!(pos, piece.len(), "None before all input was taken");
                        break;
                    }
                }
            }
        }
    }
    let _ = parser.finish();
}

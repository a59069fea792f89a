//! Fuzz properties of the HTTP response parser (`codec::http::response_parser`), which
//! `readyloop load http` runs on every byte a server sends back.
//!
//! The first byte picks a split point and whether the responses answer HEAD requests; the
//! rest is the server's byte stream, fed whole, split in two and a byte at a time. Checked:
//! consumed counts within the input, body events non-empty, errors sticky, `finish` at EOF
//! never panicking; the three runs agree on every event and verdict. And our own writer's
//! responses (`codec::http::response::ResponseWriter`), built from the input's bytes, parse
//! back to their status, persistence and body.

use super::{parameter, split_point};
use crate::codec::http::response::{has_no_body, ResponseWriter};
use crate::codec::http::response_parser::{
    ResponseError, ResponseEvent, ResponseFraming, ResponseHead, ResponseLimits, ResponseParser,
};

/// Small limits so the fuzzer reaches the limit checks with small inputs.
const LIMITS: ResponseLimits = ResponseLimits {
    max_head: 512,
    max_headers: 8,
};

/// An owned event, with consecutive body slices merged.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Informational(u16),
    Head(ResponseHead),
    Body(Vec<u8>),
    End,
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Ev>,
    /// The verdict at EOF (`finish`), or the error that came first.
    end: Result<(), ResponseError>,
}

fn push(events: &mut Vec<Ev>, event: ResponseEvent<'_>) {
    match event {
        ResponseEvent::Informational(s) => events.push(Ev::Informational(s)),
        ResponseEvent::Head(h) => events.push(Ev::Head(h)),
        ResponseEvent::Body(b) => match events.last_mut() {
            Some(Ev::Body(all)) => all.extend_from_slice(b),
            _ => events.push(Ev::Body(b.to_vec())),
        },
        ResponseEvent::End => events.push(Ev::End),
    }
}

fn run<'p>(
    limits: ResponseLimits,
    head_request: bool,
    pieces: impl IntoIterator<Item = &'p [u8]>,
) -> Outcome {
    let mut parser = ResponseParser::new(limits);
    parser.set_head_request(head_request);
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            let input = &buf[pos..];
            let (n, event) = match parser.parse(input) {
                Ok(step) => step,
                Err(e) => {
                    assert_eq!(
                        parser.parse(b"HTTP/1.1 200 OK\r\n\r\n"),
                        Err(e),
                        "not sticky"
                    );
                    return Outcome {
                        events,
                        end: Err(e),
                    };
                }
            };
            assert!(n <= input.len(), "consumed {n} of {}", input.len());
            if let Some(ResponseEvent::Body(b)) = &event {
                assert!(!b.is_empty() && b.len() <= n);
            }
            pos += n;
            let Some(event) = event else {
                break;
            };
            push(&mut events, event);
        }
        buf.drain(..pos);
    }
    let end = parser.finish(buf.len()).map(|last| {
        if let Some(event) = last {
            push(&mut events, event);
        }
    });
    Outcome { events, end }
}

/// A response our writer builds from the input parses back to what it says.
fn check_writer(p: u8, bytes: &[u8]) {
    let status = 100 + u16::from_le_bytes([bytes.first().copied().unwrap_or(0), p]) % 500;
    if status == 101 {
        return; // a 101 is written with `finish`, and ends HTTP on the connection
    }
    let body = if has_no_body(status) { &[][..] } else { bytes };
    let close = p & 2 != 0;
    let head_only = p & 4 != 0;
    let mut out = Vec::new();
    ResponseWriter::new(&mut out, status)
        .content_type("application/octet-stream")
        .close(close)
        .head_only(head_only)
        .body(body);
    let roomy = ResponseLimits::default();
    let got = run(roomy, head_only, [&out[..]]);
    let mut expected = Vec::new();
    if (100..200).contains(&status) {
        expected.push(Ev::Informational(status));
        assert_eq!(
            got,
            Outcome {
                events: expected,
                end: Ok(())
            },
            "{status}"
        );
        return;
    }
    let Some(Ev::Head(head)) = got.events.first() else {
        panic!("{status}: {got:?}");
    };
    assert_eq!(head.status, status);
    assert_eq!(head.keep_alive, !close);
    assert_eq!(
        head.head_len + if head_only { 0 } else { body.len() },
        out.len()
    );
    let framing = if head_only || body.is_empty() {
        ResponseFraming::Empty
    } else {
        ResponseFraming::Length(body.len() as u64)
    };
    assert_eq!(head.framing, framing);
    expected.push(Ev::Head(*head));
    if !head_only && !body.is_empty() {
        expected.push(Ev::Body(body.to_vec()));
    }
    expected.push(Ev::End);
    assert_eq!(
        got,
        Outcome {
            events: expected,
            end: Ok(())
        },
        "{status}"
    );
}

/// The response parser's properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, stream) = parameter(data);
    let head_request = p & 1 == 1;
    let whole = run(LIMITS, head_request, [stream]);
    let cut = split_point(p, stream.len());
    let split = run(LIMITS, head_request, [&stream[..cut], &stream[cut..]]);
    assert_eq!(whole, split, "whole and split at {cut} differ");
    if stream.len() <= 2048 {
        let bytewise = run(LIMITS, head_request, stream.chunks(1));
        assert_eq!(whole, bytewise, "whole and byte at a time differ");
    }
    check_writer(p, stream);
}

//! Fuzz properties of the HTTP/1.1 request parser (`codec::http::request`), the first thing
//! every byte on the `--http` listener meets.
//!
//! The first byte picks a split point and whether `Host` is required; the rest is the
//! connection's byte stream, fed the way the loop feeds it (append to a buffer, parse until
//! the parser wants more, drop what it consumed): whole, split in two, and a byte at a time.
//! Checked: consumed counts within the input, body events non-empty and inside what was
//! consumed, errors with a status we answer and sticky; the three runs agree on every head,
//! body and verdict; a body never exceeds `max_body`; and every head that parses round-trips:
//! written back out as a request (a canonical one, by [`write_request`]), it parses to the
//! same head.

use super::{parameter, split_point};
use crate::codec::http::request::{
    BodyFraming, Event, HttpError, Limits, RequestHead, RequestParser,
};

/// Small limits so the fuzzer reaches the limit checks with small inputs.
fn limits(require_host: bool) -> Limits {
    Limits {
        max_head: 512,
        max_headers: 8,
        max_body: 4096,
        require_host,
    }
}

/// An owned event, with the body slices of one request merged, so runs that split the input
/// differently compare equal.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Head(Box<RequestHead>),
    Body(Vec<u8>),
    End,
}

/// The events of a stream and how it ended: an error, or the bytes left unconsumed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Ev>,
    end: Result<usize, HttpError>,
}

fn run<'p>(limits: Limits, pieces: impl IntoIterator<Item = &'p [u8]>) -> Outcome {
    let mut parser = RequestParser::new(limits);
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut body_len = 0u64;
    for piece in pieces {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let (n, event) = match parser.parse(rest) {
                Ok(step) => step,
                Err(e) => {
                    assert!(matches!(e.status, 400 | 413 | 417 | 431 | 501 | 505), "{e}");
                    assert_eq!(
                        parser.parse(b"GET / HTTP/1.1\r\n\r\n"),
                        Err(e),
                        "not sticky"
                    );
                    return Outcome {
                        events,
                        end: Err(e),
                    };
                }
            };
            assert!(n <= rest.len(), "consumed {n} of {}", rest.len());
            pos += n;
            let Some(event) = event else {
                break;
            };
            match event {
                Event::Head(head) => {
                    body_len = 0;
                    events.push(Ev::Head(head));
                }
                Event::Body(b) => {
                    assert!(!b.is_empty() && b.len() <= n, "body of {} in {n}", b.len());
                    body_len += b.len() as u64;
                    assert!(body_len <= limits.max_body, "body over max_body");
                    match events.last_mut() {
                        Some(Ev::Body(all)) => all.extend_from_slice(b),
                        _ => events.push(Ev::Body(b.to_vec())),
                    }
                }
                Event::End => events.push(Ev::End),
            }
        }
        buf.drain(..pos);
    }
    Outcome {
        events,
        end: Ok(buf.len()),
    }
}

/// A canonical request with the head's meaning: request line, then one field per thing the
/// head records, then the empty line.
pub fn write_request(head: &RequestHead) -> Vec<u8> {
    let mut out = format!("{} {}", head.method, head.path);
    if let Some(q) = &head.query {
        out.push('?');
        out.push_str(q);
    }
    out.push_str(&format!(" HTTP/1.{}\r\n", head.version_minor));
    let mut field = |name: &str, value: &str| out.push_str(&format!("{name}: {value}\r\n"));
    if let Some(host) = &head.host {
        field("Host", host);
    }
    let mut connection = Vec::new();
    match (head.version_minor, head.keep_alive) {
        (0, true) => connection.push("keep-alive"),
        (1, false) => connection.push("close"),
        (0, false) | (1, true) => {}
        (v, _) => unreachable!("HTTP/1.{v} parsed"),
    }
    if head.connection_upgrade {
        connection.push("upgrade");
    }
    if !connection.is_empty() {
        field("Connection", &connection.join(", "));
    }
    if head.upgrade_websocket {
        field("Upgrade", "websocket");
    }
    match head.body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => field("Content-Length", &n.to_string()),
        BodyFraming::Chunked => field("Transfer-Encoding", "chunked"),
    }
    if head.expect_continue {
        field("Expect", "100-continue");
    }
    for (name, value) in [
        ("Content-Type", &head.content_type),
        ("Sec-WebSocket-Key", &head.ws_key),
        ("Sec-WebSocket-Version", &head.ws_version),
        ("Origin", &head.origin),
    ] {
        if let Some(value) = value {
            field(name, value);
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A parsed head, written back out and parsed again, is the same head.
fn check_round_trip(head: &RequestHead, limits: Limits) {
    let written = write_request(head);
    let roomy = Limits {
        max_head: 64 * 1024,
        max_headers: 64,
        ..limits
    };
    let mut parser = RequestParser::new(roomy);
    match parser.parse(&written) {
        Ok((n, Some(Event::Head(again)))) => {
            assert_eq!(n, written.len());
            assert_eq!(*again, *head, "{:?}", String::from_utf8_lossy(&written));
        }
        other => panic!(
            "{:?} parsed to {other:?}",
            String::from_utf8_lossy(&written)
        ),
    }
}

/// The request parser's properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, stream) = parameter(data);
    let limits = limits(p & 1 == 1);
    let whole = run(limits, [stream]);
    let cut = split_point(p, stream.len());
    let split = run(limits, [&stream[..cut], &stream[cut..]]);
    assert_eq!(whole, split, "whole and split at {cut} differ");
    if stream.len() <= 2048 {
        let bytewise = run(limits, stream.chunks(1));
        assert_eq!(whole, bytewise, "whole and byte at a time differ");
    }
    for event in &whole.events {
        if let Ev::Head(head) = event {
            check_round_trip(head, limits);
        }
    }
}

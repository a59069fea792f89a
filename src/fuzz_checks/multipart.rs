//! Fuzz properties of the `multipart/form-data` parser (`codec::http::multipart`), which every
//! upload goes through.
//!
//! The input's first line is the request's `Content-Type` (its boundary; `b` when it has
//! none usable), the rest the body. The body is fed whole, a byte at a time, and split in two
//! at a point the input chooses, the way request-body slices arrive. Checked: the three runs
//! agree on every part, its data and the verdict; the parser always takes all it is given
//! before asking for more; events come in order (data only inside a part, nothing after the
//! end, `finish` agreeing with the end); no part yields more data than the body holds, and no
//! part's data holds the delimiter; a boundary taken from a Content-Type is a valid one; and
//! every part's file name sanitises to a name that stays in the upload directory.

use super::filename::check_sanitized;
use super::split_point;
use crate::codec::http::multipart::{
    boundary_from_content_type, MultipartError, MultipartEvent, MultipartParser, Part, MAX_BOUNDARY,
};

/// One part as the events gave it.
#[derive(Debug, PartialEq, Eq)]
struct Got {
    part: Part,
    data: Vec<u8>,
    ended: bool,
}

/// What a body came to: the parts, whether `End` came, and the verdict (of a `feed`, or of
/// `finish`).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    parts: Vec<Got>,
    ended: bool,
    verdict: Result<(), MultipartError>,
}

fn run<'p>(boundary: &str, pieces: impl IntoIterator<Item = &'p [u8]>) -> Outcome {
    let mut parser = MultipartParser::new(boundary).expect("boundary checked by the caller");
    let mut parts: Vec<Got> = Vec::new();
    let mut ended = false;
    for piece in pieces {
        let mut pos = 0;
        loop {
            let rest = &piece[pos..];
            let (n, event) = match parser.feed(rest) {
                Ok(step) => step,
                Err(e) => {
                    assert_eq!(parser.feed(b"\r\n").err(), Some(e), "errors are sticky");
                    return Outcome {
                        parts,
                        ended,
                        verdict: Err(e),
                    };
                }
            };
            assert!(n <= rest.len(), "used {n} of {}", rest.len());
            pos += n;
            let Some(event) = event else {
                assert_eq!(pos, piece.len(), "asked for more before taking all");
                break;
            };
            assert!(!ended, "{event:?} after End");
            let open = parts.last_mut().filter(|g| !g.ended);
            match (event, open) {
                (MultipartEvent::PartStart(part), None) => parts.push(Got {
                    part,
                    data: Vec::new(),
                    ended: false,
                }),
                (MultipartEvent::Data(d), Some(got)) => {
                    assert!(!d.is_empty(), "empty data event");
                    got.data.extend_from_slice(d);
                }
                (MultipartEvent::PartEnd, Some(got)) => got.ended = true,
                (MultipartEvent::End, None) => ended = true,
                (event, open) => panic!("{event:?} with a part open: {}", open.is_some()),
            }
        }
    }
    let verdict = parser.finish();
    assert_eq!(verdict.is_ok(), ended, "finish disagrees with End");
    assert_eq!(parser.is_done(), ended);
    Outcome {
        parts,
        ended,
        verdict,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The multipart properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (&data[..nl], &data[nl + 1..]),
        None => (&b""[..], data),
    };
    let content_type = String::from_utf8_lossy(content_type);
    let boundary = match boundary_from_content_type(&content_type) {
        Ok(b) => {
            assert!(!b.is_empty() && b.len() <= MAX_BOUNDARY, "boundary {b:?}");
            assert!(b.bytes().all(|c| (b' '..=b'~').contains(&c)) && !b.ends_with(' '));
            assert!(MultipartParser::from_content_type(&content_type).is_ok());
            b
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 415));
            "b".to_owned()
        }
    };

    let whole = run(&boundary, [body]);
    let bytewise = run(&boundary, body.chunks(1));
    assert_eq!(whole, bytewise, "whole and byte at a time differ");
    let cut = split_point(data.first().copied().unwrap_or(0), body.len());
    let split = run(&boundary, [&body[..cut], &body[cut..]]);
    assert_eq!(whole, split, "whole and split at {cut} differ");

    let delimiter = format!("\r\n--{boundary}");
    let data_bytes: usize = whole.parts.iter().map(|g| g.data.len()).sum();
    assert!(
        data_bytes <= body.len(),
        "{data_bytes} data bytes from {}",
        body.len()
    );
    for got in &whole.parts {
        assert!(
            !contains(&got.data, delimiter.as_bytes()),
            "delimiter inside part data"
        );
        if let Some(name) = &got.part.filename {
            check_sanitized(name);
        }
    }
}

//! Streaming `multipart/form-data` (RFC 7578 on RFC 2046 §5.1): body bytes in,
//! parts out, without holding a whole upload in memory.
//!
//! [`MultipartParser`] is fed the request body in pieces of any size, the
//! pieces [`super::request::RequestParser`] hands out, which are not contiguous
//! in memory once chunked framing is removed. So unlike the request parser it
//! always takes all the bytes it is given, and keeps a small carry buffer of
//! its own, only for:
//! - the bytes at the end of a piece that might be the start of a delimiter
//!   (`CRLF--boundary`, at most 75 bytes), and
//! - the header section of a part (at most [`MAX_PART_HEADERS`] bytes).
//!
//! Part data is otherwise handed out as slices of the input (zero-copy), as
//! soon as it is known not to be part of a delimiter.
//!
//! The wire format, for boundary `B`:
//! ```text
//! preamble CRLF? --B [blanks] CRLF  headers CRLF  data  CRLF --B [blanks] CRLF  headers ...
//!                                                       CRLF --B -- epilogue
//! ```
//! The scanner looks for `CRLF--B` only; a body that starts with `--B` is
//! handled by starting the scan as if a CRLF came before the body.

use std::fmt;

/// Bytes of one part's header section, blank line included: 8 KiB. Browsers
/// send two or three short fields; more is refused rather than buffered.
pub const MAX_PART_HEADERS: usize = 8 * 1024;

/// Header fields in one part: 16 (Content-Disposition, Content-Type, and
/// room for a few a client may add).
const MAX_PART_FIELDS: usize = 16;

/// Longest boundary RFC 2046 allows: 70 characters.
pub const MAX_BOUNDARY: usize = 70;

/// Why a multipart body was refused. The whole request is answered with
/// [`MultipartError::status`] and the upload is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// The Content-Type is not `multipart/form-data`.
    NotMultipart,
    /// No `boundary` parameter, or one longer than 70 bytes, empty, ending in a
    /// blank, or holding bytes other than printable ASCII and space.
    BadBoundary,
    /// A part's header section is over [`MAX_PART_HEADERS`].
    HeadersTooLarge,
    /// A part's header section is malformed or has too many fields.
    BadHeaders,
    /// A part without `Content-Disposition: form-data; name=...`.
    BadDisposition,
    /// A delimiter followed by something other than `--` or blanks and CRLF.
    BadDelimiter,
    /// The body ended before the closing delimiter `--B--`.
    Truncated,
}

impl MultipartError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            MultipartError::NotMultipart => 415,
            _ => 400,
        }
    }

    /// A short, fixed explanation, safe to send back and to log.
    pub fn reason(&self) -> &'static str {
        match self {
            MultipartError::NotMultipart => "not multipart/form-data",
            MultipartError::BadBoundary => "missing or invalid multipart boundary",
            MultipartError::HeadersTooLarge => "multipart part headers too large",
            MultipartError::BadHeaders => "malformed multipart part headers",
            MultipartError::BadDisposition => "multipart part without a form-data name",
            MultipartError::BadDelimiter => "malformed multipart delimiter",
            MultipartError::Truncated => "multipart body ends before its final boundary",
        }
    }
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for MultipartError {}

/// What the headers of one part say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field name (`name=` of Content-Disposition).
    pub name: String,
    /// `filename=` as sent: untrusted, pass it through `filename::sanitize`.
    pub filename: Option<String>,
    /// The part's Content-Type, if it has one.
    pub content_type: Option<String>,
}

/// What one call to [`MultipartParser::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum MultipartEvent<'a> {
    /// A new part begins; its data follows.
    PartStart(Part),
    /// Data of the current part, borrowed from the input or from the carry buffer.
    Data(&'a [u8]),
    /// The current part is complete.
    PartEnd,
    /// The closing delimiter: the form is complete. Later bytes (the epilogue)
    /// are ignored.
    End,
}

/// Where the parser is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter: bytes are discarded.
    Preamble,
    /// Just after `CRLF--B`: `--` closes, blanks or CRLF open a part.
    AfterDelimiter,
    /// After `CRLF--B` and blanks: more blanks or CRLF.
    Padding,
    /// After `CRLF--B-`: the second `-` of the close delimiter.
    CloseDash,
    /// After `CRLF--B ... CR`: the LF.
    DelimiterLf,
    /// Collecting a part's header section in the carry buffer.
    Headers,
    /// Inside a part's data.
    Data,
    /// After the close delimiter: everything is discarded.
    Epilogue,
}

/// What one step produced; turned into a [`MultipartEvent`] by `feed`, which
/// is where the borrow of the input or of the carry buffer is taken.
enum Step {
    /// All input used, nothing to report.
    Need,
    /// `input[start..end]` is part data; `end` bytes were used.
    Data {
        start: usize,
        end: usize,
    },
    /// The carry buffer turned out to be part data; `used` bytes of input were used.
    CarryData {
        used: usize,
    },
    PartStart {
        used: usize,
        part: Part,
    },
    PartEnd {
        used: usize,
    },
    End {
        used: usize,
    },
}

/// A streaming `multipart/form-data` parser for one request body.
#[derive(Debug, Clone)]
pub struct MultipartParser {
    /// `CRLF--boundary`: what ends a part.
    delimiter: Vec<u8>,
    state: State,
    /// A proper prefix of `delimiter` (in `Preamble`/`Data`), or the part
    /// headers so far (in `Headers`).
    carry: Vec<u8>,
    /// `carry` was handed out as data by the last call; clear it on the next.
    carry_handed_out: bool,
    failed: Option<MultipartError>,
}

impl MultipartParser {
    /// A parser for bodies delimited by `boundary` (without the leading `--`).
    pub fn new(boundary: &str) -> Result<Self, MultipartError> {
        check_boundary(boundary)?;
        let mut delimiter = Vec::with_capacity(boundary.len() + 4);
        delimiter.extend_from_slice(b"\r\n--");
        delimiter.extend_from_slice(boundary.as_bytes());
        Ok(MultipartParser {
            delimiter,
            state: State::Preamble,
            // A body may open with "--B" without a CRLF before it: pretend
            // the CRLF was there, and scan for "CRLF--B" everywhere.
            carry: b"\r\n".to_vec(),
            carry_handed_out: false,
            failed: None,
        })
    }

    /// A parser for a request whose `Content-Type` is `content_type`.
    pub fn from_content_type(content_type: &str) -> Result<Self, MultipartError> {
        MultipartParser::new(&boundary_from_content_type(content_type)?)
    }

    /// Takes bytes of the body. Returns how many were used, and an event:
    ///
    /// - `(n, Some(event))`: handle the event, call again with `input[n..]`
    ///   (even if that is empty: a carried-over piece of data may be next).
    /// - `(n, None)`: `n == input.len()`; feed the next piece of the body.
    ///
    /// Errors are final; the same error is returned on every later call.
    pub fn feed<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<MultipartEvent<'a>>), MultipartError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.carry_handed_out {
            self.carry.clear();
            self.carry_handed_out = false;
        }
        let step = match self.step(input) {
            Ok(step) => step,
            Err(e) => {
                log::debug!(target: "readyloop::http", "multipart rejected: {e}");
                self.failed = Some(e);
                return Err(e);
            }
        };
        Ok(match step {
            Step::Need => (input.len(), None),
            Step::Data { start, end } => (end, input.get(start..end).map(MultipartEvent::Data)),
            Step::CarryData { used } => (used, Some(MultipartEvent::Data(&self.carry))),
            Step::PartStart { used, part } => (used, Some(MultipartEvent::PartStart(part))),
            Step::PartEnd { used } => (used, Some(MultipartEvent::PartEnd)),
            Step::End { used } => (used, Some(MultipartEvent::End)),
        })
    }

    /// Call when the request body is complete: an error unless the closing
    /// delimiter was seen.
    pub fn finish(&self) -> Result<(), MultipartError> {
        match (self.failed, self.state) {
            (Some(e), _) => Err(e),
            (None, State::Epilogue) => Ok(()),
            (None, _) => Err(MultipartError::Truncated),
        }
    }

    /// True once the closing delimiter has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Epilogue
    }

    fn step(&mut self, input: &[u8]) -> Result<Step, MultipartError> {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            match self.state {
                State::Preamble | State::Data => {
                    let in_data = self.state == State::Data;
                    if !self.carry.is_empty() {
                        let need = self.delimiter.get(self.carry.len()..).unwrap_or_default();
                        let matched = common_prefix(rest, need);
                        if matched == need.len() {
                            self.carry.clear();
                            pos += matched;
                            self.state = State::AfterDelimiter;
                            if in_data {
                                return Ok(Step::PartEnd { used: pos });
                            }
                            continue;
                        }
                        if matched == rest.len() {
                            self.carry.extend_from_slice(rest);
                            return Ok(Step::Need);
                        }
                        // Not a delimiter after all. The delimiter has its only
                        // CR at the front, so no later byte of the carry can start
                        // one: all of it is data (or preamble).
                        if in_data {
                            self.carry_handed_out = true;
                            return Ok(Step::CarryData { used: pos });
                        }
                        self.carry.clear();
                    }
                    match find_delimiter(rest, &self.delimiter) {
                        Found::Full(0) => {
                            pos += self.delimiter.len();
                            self.state = State::AfterDelimiter;
                            if in_data {
                                return Ok(Step::PartEnd { used: pos });
                            }
                        }
                        Found::Full(i) | Found::Partial(i) if in_data && i > 0 => {
                            return Ok(Step::Data {
                                start: pos,
                                end: pos + i,
                            });
                        }
                        Found::Full(i) => {
                            pos += i + self.delimiter.len();
                            self.state = State::AfterDelimiter;
                        }
                        Found::Partial(i) => {
                            self.carry
                                .extend_from_slice(rest.get(i..).unwrap_or_default());
                            return Ok(Step::Need);
                        }
                        Found::None if in_data && !rest.is_empty() => {
                            return Ok(Step::Data {
                                start: pos,
                                end: input.len(),
                            });
                        }
                        Found::None => return Ok(Step::Need),
                    }
                }
                State::AfterDelimiter | State::Padding => {
                    let Some(&b) = rest.first() else {
                        return Ok(Step::Need);
                    };
                    pos += 1;
                    self.state = match b {
                        b'-' if self.state == State::AfterDelimiter => State::CloseDash,
                        b' ' | b'\t' => State::Padding,
                        b'\r' => State::DelimiterLf,
                        _ => return Err(MultipartError::BadDelimiter),
                    };
                }
                State::CloseDash => {
                    let Some(&b) = rest.first() else {
                        return Ok(Step::Need);
                    };
                    if b != b'-' {
                        return Err(MultipartError::BadDelimiter);
                    }
                    self.state = State::Epilogue;
                    return Ok(Step::End { used: pos + 1 });
                }
                State::DelimiterLf => {
                    let Some(&b) = rest.first() else {
                        return Ok(Step::Need);
                    };
                    if b != b'\n' {
                        return Err(MultipartError::BadDelimiter);
                    }
                    pos += 1;
                    self.carry.clear();
                    self.state = State::Headers;
                }
                State::Headers => {
                    let old = self.carry.len();
                    let take = rest.len().min(MAX_PART_HEADERS - old);
                    self.carry
                        .extend_from_slice(rest.get(..take).unwrap_or_default());
                    let Some(end) = headers_end(&self.carry, old) else {
                        if self.carry.len() >= MAX_PART_HEADERS {
                            return Err(MultipartError::HeadersTooLarge);
                        }
                        return Ok(Step::Need);
                    };
                    let part = parse_part_headers(self.carry.get(..end).unwrap_or_default())?;
                    log::debug!(
                        target: "readyloop::http",
                        "multipart part {:?} (file {:?}, type {:?})",
                        part.name,
                        part.filename,
                        part.content_type
                    );
                    self.carry.clear();
                    self.state = State::Data;
                    return Ok(Step::PartStart {
                        used: pos + end.saturating_sub(old),
                        part,
                    });
                }
                State::Epilogue => return Ok(Step::Need),
            }
        }
    }
}

/// Where a delimiter is in a slice.
enum Found {
    /// A whole delimiter starts at this index.
    Full(usize),
    /// The slice ends with a proper prefix of the delimiter, starting here.
    Partial(usize),
    None,
}

/// Finds the first place where `delim` starts in `hay`, or where `hay` ends in
/// a prefix of it. `delim` starts with its only CR, so after a mismatch the
/// search resumes at the next CR, past the bytes just compared: linear time.
fn find_delimiter(hay: &[u8], delim: &[u8]) -> Found {
    let mut from = 0;
    while let Some(offset) = hay
        .get(from..)
        .and_then(|h| h.iter().position(|&b| b == b'\r'))
    {
        let at = from + offset;
        let tail = hay.get(at..).unwrap_or_default();
        let matched = common_prefix(tail, delim);
        if matched == delim.len() {
            return Found::Full(at);
        }
        if matched == tail.len() {
            return Found::Partial(at);
        }
        from = at + 1;
    }
    Found::None
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The end of a header section (just past its blank line) in `buf`, searching
/// only around the `old` bytes already searched.
fn headers_end(buf: &[u8], old: usize) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    let from = old.saturating_sub(3);
    let window = buf.get(from..)?;
    window
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

fn parse_part_headers(section: &[u8]) -> Result<Part, MultipartError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_PART_FIELDS];
    let fields = match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        Ok(httparse::Status::Partial) | Err(_) => return Err(MultipartError::BadHeaders),
    };
    let mut part = None;
    let mut content_type = None;
    for field in fields.iter() {
        let value = String::from_utf8_lossy(field.value);
        if field.name.eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = split_params(&value);
            if !kind.eq_ignore_ascii_case("form-data") || part.is_some() {
                return Err(MultipartError::BadDisposition);
            }
            let param = |key: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.clone())
            };
            let name = param("name").ok_or(MultipartError::BadDisposition)?;
            // RFC 7578 §4.2: senders must not use `filename*`; it is ignored.
            part = Some((name, param("filename")));
        } else if field.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned());
        }
    }
    let (name, filename) = part.ok_or(MultipartError::BadDisposition)?;
    Ok(Part {
        name,
        filename,
        content_type,
    })
}

/// Splits a field value like `form-data; name="a;b"; filename=x` into the
/// leading value and its `(name, value)` parameters (RFC 9110 §5.6.6).
///
/// Quoted strings: `\"` and `\\` are unescaped; any other backslash is kept
/// as it is, because browsers do not escape backslashes in file names (the
/// HTML standard percent-encodes `"` instead), and `C:\dir\f.txt` from an old
/// browser should survive to `filename::sanitize`. An unterminated quote runs
/// to the end of the value.
fn split_params(value: &str) -> (&str, Vec<(String, String)>) {
    let (kind, mut rest) = value.split_once(';').unwrap_or((value, ""));
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([';', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_end);
        let name = name.trim().to_owned();
        let Some(after) = after.strip_prefix('=') else {
            rest = after;
            continue;
        };
        let after = after.trim_start_matches([' ', '\t']);
        if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => match quoted.get(i + 1..).and_then(|s| s.chars().next()) {
                        Some(q @ ('"' | '\\')) => {
                            value.push(q);
                            chars.next();
                        }
                        _ => value.push('\\'),
                    },
                    c => value.push(c),
                }
            }
            params.push((name, value));
            rest = quoted.get(end..).unwrap_or_default();
        } else {
            let end = after.find(';').unwrap_or(after.len());
            let (token, tail) = after.split_at(end);
            params.push((name, token.trim().to_owned()));
            rest = tail;
        }
    }
    (kind.trim(), params)
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type, quoted or not.
pub fn boundary_from_content_type(content_type: &str) -> Result<String, MultipartError> {
    let (kind, params) = split_params(content_type);
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    let boundary = params
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .ok_or(MultipartError::BadBoundary)?;
    check_boundary(&boundary)?;
    Ok(boundary)
}

/// RFC 2046 §5.1.1: 1 to 70 characters, not ending in a space. We accept any
/// printable ASCII and space rather than only `bchars`: what the scanner relies
/// on is that the boundary holds no CR or LF.
fn check_boundary(boundary: &str) -> Result<(), MultipartError> {
    let ok = !boundary.is_empty()
        && boundary.len() <= MAX_BOUNDARY
        && !boundary.ends_with(' ')
        && boundary.bytes().all(|b| (b' '..=b'~').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(MultipartError::BadBoundary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned part as a test sees it: headers and all of its data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Got {
        part: Part,
        data: Vec<u8>,
        ended: bool,
    }

    /// Feeds `pieces` in order; returns the parts, whether `End` came, and
    /// `finish()`'s verdict. Checks the event order on the way.
    fn run_pieces<'p>(
        boundary: &str,
        pieces: impl IntoIterator<Item = &'p [u8]>,
    ) -> Result<(Vec<Got>, bool), MultipartError> {
        let mut p = MultipartParser::new(boundary)?;
        let mut parts: Vec<Got> = Vec::new();
        let mut ended = false;
        for piece in pieces {
            let mut pos = 0;
            loop {
                let (n, ev) = p.feed(&piece[pos..])?;
                assert!(n <= piece.len() - pos, "used more than given");
                pos += n;
                let Some(ev) = ev else {
                    assert_eq!(pos, piece.len(), "None before all input was used");
                    break;
                };
                assert!(!ended, "event after End: {ev:?}");
                match ev {
                    MultipartEvent::PartStart(part) => {
                        assert!(
                            parts.last().map_or(true, |g| g.ended),
                            "PartStart inside a part"
                        );
                        parts.push(Got {
                            part,
                            data: Vec::new(),
                            ended: false,
                        });
                    }
                    MultipartEvent::Data(d) => {
                        assert!(!d.is_empty(), "empty data event");
                        let cur = parts.last_mut().expect("data outside a part");
                        assert!(!cur.ended);
                        cur.data.extend_from_slice(d);
                    }
                    MultipartEvent::PartEnd => {
                        let cur = parts.last_mut().expect("PartEnd outside a part");
                        assert!(!cur.ended);
                        cur.ended = true;
                    }
                    MultipartEvent::End => {
                        assert!(parts.last().map_or(true, |g| g.ended), "End inside a part");
                        ended = true;
                    }
                }
            }
        }
        p.finish()?;
        Ok((parts, ended))
    }

    fn run_whole(boundary: &str, body: &[u8]) -> Result<(Vec<Got>, bool), MultipartError> {
        run_pieces(boundary, [body])
    }

    fn run_bytewise(boundary: &str, body: &[u8]) -> Result<(Vec<Got>, bool), MultipartError> {
        run_pieces(boundary, body.chunks(1))
    }

    /// A tiny deterministic xorshift64, so split tests need no rand crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_pieces(body: &[u8], rng: &mut XorShift, max_piece: usize) -> Vec<Vec<u8>> {
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < body.len() {
            let n = (1 + rng.below(max_piece)).min(body.len() - pos);
            pieces.push(body[pos..pos + n].to_vec());
            pos += n;
        }
        pieces
    }

    const B: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

    /// Data that keeps almost matching the delimiter.
    fn tricky_data() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(b"\r\n--");
        d.extend_from_slice(&B.as_bytes()[..B.len() - 1]);
        d.extend_from_slice(b"X\r\r\n\r\n-\r\n--\r\n--");
        d.extend_from_slice(&B.as_bytes()[..10]);
        d.extend_from_slice(b"\r");
        d.extend((0..=255u8).cycle().take(700));
        d.extend_from_slice(b"\r\n-");
        d
    }

    fn sample_body() -> (Vec<u8>, Vec<Got>) {
        let file = tricky_data();
        let mut body = Vec::new();
        body.extend_from_slice(b"preamble to ignore\r\n");
        body.extend_from_slice(format!("--{B}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"title\"\r\n\r\n");
        body.extend_from_slice(b"hello world");
        body.extend_from_slice(format!("\r\n--{B}  \r\n").as_bytes());
        body.extend_from_slice(
            b"Content-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".bin\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n",
        );
        body.extend_from_slice(&file);
        body.extend_from_slice(format!("\r\n--{B}\r\n").as_bytes());
        body.extend_from_slice(b"content-disposition: form-data; name=empty\r\n\r\n");
        body.extend_from_slice(format!("\r\n--{B}--\r\nepilogue --{B}\r\n").as_bytes());
        let expected = vec![
            Got {
                part: Part {
                    name: "title".into(),
                    filename: None,
                    content_type: None,
                },
                data: b"hello world".to_vec(),
                ended: true,
            },
            Got {
                part: Part {
                    name: "file".into(),
                    filename: Some("a \"b\".bin".into()),
                    content_type: Some("application/octet-stream".into()),
                },
                data: file,
                ended: true,
            },
            Got {
                part: Part {
                    name: "empty".into(),
                    filename: None,
                    content_type: None,
                },
                data: Vec::new(),
                ended: true,
            },
        ];
        (body, expected)
    }

    #[test]
    fn whole_body() {
        let (body, expected) = sample_body();
        assert_eq!(run_whole(B, &body), Ok((expected, true)));
    }

    #[test]
    fn byte_at_a_time() {
        let (body, expected) = sample_body();
        assert_eq!(run_bytewise(B, &body), Ok((expected, true)));
    }

    #[test]
    fn random_splits() {
        let (body, expected) = sample_body();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let max_piece = [2, 3, 7, 40, 100, 1000][round % 6];
            let pieces = random_pieces(&body, &mut rng, max_piece);
            let got = run_pieces(B, pieces.iter().map(Vec::as_slice));
            assert_eq!(got, Ok((expected.clone(), true)), "round {round}");
        }
    }

    #[test]
    fn every_two_way_split() {
        let (body, expected) = sample_body();
        for cut in 0..=body.len() {
            let got = run_pieces(B, [&body[..cut], &body[cut..]]);
            assert_eq!(got, Ok((expected.clone(), true)), "cut at {cut}");
        }
    }

    /// Small mutations of a valid body: never a panic, and whole and byte at a
    /// time always agree, whatever the outcome.
    #[test]
    fn mutated_bodies_agree() {
        let (body, _) = sample_body();
        let alphabet = b"\r\n-\"; =:\\\0x";
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for round in 0..400 {
            let mut input = body.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(input.len());
                let byte = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ => {
                        input.remove(at);
                    }
                }
            }
            let whole = run_whole(B, &input);
            assert_eq!(whole, run_bytewise(B, &input), "round {round}");
        }
    }

    #[test]
    fn data_is_zero_copy_when_it_can_be() {
        let body = b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n0123456789\r\n--x--";
        let mut p = MultipartParser::new("x").unwrap();
        let (n, ev) = p.feed(body).unwrap();
        assert!(matches!(ev, Some(MultipartEvent::PartStart(_))));
        let rest = &body[n..];
        let (n, ev) = p.feed(rest).unwrap();
        let Some(MultipartEvent::Data(d)) = ev else {
            panic!("expected data, got {ev:?}");
        };
        assert_eq!(d, b"0123456789");
        assert_eq!(d.as_ptr(), rest.as_ptr(), "data borrowed from the input");
        assert_eq!(n, 10);
    }

    #[test]
    fn body_starting_with_boundary_and_transport_padding() {
        let body = b"--b\t \r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nv\r\n--b--";
        let (parts, ended) = run_bytewise("b", body).unwrap();
        assert!(ended);
        assert_eq!(parts[0].part.name, "n");
        assert_eq!(parts[0].data, b"v");
    }

    #[test]
    fn no_parts_at_all() {
        assert_eq!(run_bytewise("b", b"--b--\r\n"), Ok((vec![], true)));
    }

    /// `fails!(name: boundary, body => error;)`: whole and byte at a time.
    macro_rules! fails {
        ($($name:ident: $boundary:expr, $body:expr => $err:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(run_whole($boundary, $body), Err($err), "whole");
                assert_eq!(run_bytewise($boundary, $body), Err($err), "byte at a time");
            }
        )*};
    }

    fails! {
        empty_body: "b", b"" => MultipartError::Truncated;
        only_preamble: "b", b"hello" => MultipartError::Truncated;
        no_final_boundary: "b", b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata" => MultipartError::Truncated;
        ends_after_part: "b", b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--b\r\n" => MultipartError::Truncated;
        ends_in_delimiter: "b", b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata\r\n--b-" => MultipartError::Truncated;
        garbage_after_boundary: "b", b"--bx\r\n" => MultipartError::BadDelimiter;
        single_dash_close: "b", b"--b-x" => MultipartError::BadDelimiter;
        bare_lf_after_boundary: "b", b"--b\n" => MultipartError::BadDelimiter;
        no_disposition: "b", b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--" => MultipartError::BadDisposition;
        no_name: "b", b"--b\r\nContent-Disposition: form-data; filename=a\r\n\r\nx\r\n--b--" => MultipartError::BadDisposition;
        not_form_data: "b", b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--" => MultipartError::BadDisposition;
        two_dispositions: "b", b"--b\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=b\r\n\r\nx\r\n--b--" => MultipartError::BadDisposition;
        bad_header_line: "b", b"--b\r\nContent-Disposition form-data\r\n\r\nx\r\n--b--" => MultipartError::BadHeaders;
        nul_in_header: "b", b"--b\r\nContent-Disposition: form-data; name=a\0\r\n\r\nx\r\n--b--" => MultipartError::BadHeaders;
    }

    #[test]
    fn headers_too_large() {
        let mut body = b"--b\r\nContent-Disposition: form-data; name=a\r\nX: ".to_vec();
        body.resize(body.len() + MAX_PART_HEADERS, b'a');
        body.extend_from_slice(b"\r\n\r\nx\r\n--b--");
        assert_eq!(run_whole("b", &body), Err(MultipartError::HeadersTooLarge));
        assert_eq!(
            run_bytewise("b", &body),
            Err(MultipartError::HeadersTooLarge)
        );
    }

    #[test]
    fn too_many_part_fields() {
        let mut body = b"--b\r\nContent-Disposition: form-data; name=a\r\n".to_vec();
        for _ in 0..MAX_PART_FIELDS {
            body.extend_from_slice(b"X: y\r\n");
        }
        body.extend_from_slice(b"\r\nx\r\n--b--");
        assert_eq!(run_whole("b", &body), Err(MultipartError::BadHeaders));
    }

    #[test]
    fn errors_are_sticky() {
        let mut p = MultipartParser::new("b").unwrap();
        assert_eq!(p.feed(b"--bX").unwrap_err(), MultipartError::BadDelimiter);
        assert_eq!(p.feed(b"\r\n").unwrap_err(), MultipartError::BadDelimiter);
        assert_eq!(p.finish(), Err(MultipartError::BadDelimiter));
    }

    #[test]
    fn boundaries_from_content_type() {
        for (ct, expected) in [
            ("multipart/form-data; boundary=abc", Ok("abc")),
            ("Multipart/Form-Data;boundary=abc;charset=utf-8", Ok("abc")),
            (
                "multipart/form-data; charset=utf-8; BOUNDARY=\"a b:c\"",
                Ok("a b:c"),
            ),
            ("multipart/form-data; boundary=\"x;y\"", Ok("x;y")),
            ("multipart/form-data", Err(MultipartError::BadBoundary)),
            (
                "multipart/form-data; boundary=",
                Err(MultipartError::BadBoundary),
            ),
            (
                "multipart/form-data; boundary=\"\"",
                Err(MultipartError::BadBoundary),
            ),
            (
                "multipart/form-data; boundary=\"ends in space \"",
                Err(MultipartError::BadBoundary),
            ),
            (
                "multipart/mixed; boundary=abc",
                Err(MultipartError::NotMultipart),
            ),
            ("text/plain", Err(MultipartError::NotMultipart)),
        ] {
            assert_eq!(
                boundary_from_content_type(ct).as_deref(),
                expected.as_deref(),
                "{ct}"
            );
        }
        let long = format!("multipart/form-data; boundary={}", "a".repeat(71));
        assert_eq!(
            boundary_from_content_type(&long),
            Err(MultipartError::BadBoundary)
        );
        assert_eq!(
            MultipartParser::new("a\rb").unwrap_err(),
            MultipartError::BadBoundary
        );
        assert_eq!(MultipartError::NotMultipart.status(), 415);
    }

    #[test]
    fn disposition_params() {
        for (value, expected) in [
            ("form-data; name=\"a\"", ("form-data", vec![("name", "a")])),
            (
                "form-data;name=a;filename=b.txt",
                ("form-data", vec![("name", "a"), ("filename", "b.txt")]),
            ),
            (
                "form-data; name=\"x;y\"; filename=\"C:\\dir\\f.txt\"",
                (
                    "form-data",
                    vec![("name", "x;y"), ("filename", "C:\\dir\\f.txt")],
                ),
            ),
            (
                "form-data; name=\"q\\\"\\\\\"",
                ("form-data", vec![("name", "q\"\\")]),
            ),
            (
                "form-data; name=\"unterminated",
                ("form-data", vec![("name", "unterminated")]),
            ),
            (
                "form-data; flag; name = a ",
                ("form-data", vec![("name", "a")]),
            ),
            (
                "form-data; name=f; filename*=UTF-8''%E2%82%AC.txt",
                (
                    "form-data",
                    vec![("name", "f"), ("filename*", "UTF-8''%E2%82%AC.txt")],
                ),
            ),
        ] {
            let (kind, params) = split_params(value);
            let params: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!((kind, params), expected, "{value}");
        }
    }

    #[test]
    fn utf8_filename_survives() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"새 파일.txt\"\r\n\r\nx\r\n--b--";
        let (parts, _) = run_bytewise("b", body.as_bytes()).unwrap();
        assert_eq!(parts[0].part.filename.as_deref(), Some("새 파일.txt"));
    }
}

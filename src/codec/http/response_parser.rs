//! Response parsing, the client side of HTTP/1.1: bytes in, response heads and body slices out.
//!
//! [`ResponseParser`] owns the framing of one connection's response stream, as
//! [`super::request::RequestParser`] does for requests: it knows whether the next bytes are a
//! status line and fields, `Content-Length` body bytes, part of a chunked body, or a body that
//! runs until the server closes, and it resets itself after each response so pipelined
//! responses come out one after another. It is sans-IO in the httparse style:
//! [`ResponseParser::parse`] takes the unconsumed bytes and returns how many of them it used and
//! at most one [`ResponseEvent`]; incomplete input is never an error, an incomplete head
//! consumes nothing, and body bytes are handed out zero-copy as they arrive. `readyloop load
//! http` checks every response with it.
//!
//! The head is parsed by httparse; this file adds the message body length rules a client
//! needs (RFC 9112 §6.3): no body for `HEAD` requests and for 1xx, 204 and 304; a chunked
//! `Transfer-Encoding` wins over `Content-Length`; any other transfer coding, or neither field,
//! means the body ends when the connection does (see [`ResponseParser::finish`]); and the
//! keep-alive rules (§9.3). Interim 1xx responses are reported and skipped; `101 Switching
//! Protocols` ends HTTP on the connection.
//!
//! Every parse error is final: after a malformed response the bytes cannot be trusted to start
//! another, so the caller drops the connection. The parser keeps returning the same error.

use super::fields::{chunk_size_line, list_elements, take_body, trim_ows, MAX_HEADER_SLOTS};
use std::fmt;
use std::mem::MaybeUninit;

/// What a server may make the parser accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Bytes of status line, header fields and the empty line: 64 KiB by default, well above
    /// what servers send (large cookies included) and small enough that a server that never
    /// ends its head cannot make a client buffer without bound. Also bounds a chunked body's
    /// trailer section.
    pub max_head: usize,
    /// Header fields per response: 100 by default, capped at [`MAX_HEADER_SLOTS`].
    pub max_headers: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            max_head: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to `HEAD`, a 1xx, 204 or 304, or `Content-Length: 0`.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: ..., chunked`.
    Chunked,
    /// Neither field (or a transfer coding other than chunked last): the body is everything
    /// until the server closes the connection.
    UntilClose,
}

/// A checked response head, small and `Copy`: a load generator parses one per response and
/// keeps nothing of it but the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100 to 999 (httparse checks the three digits).
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Whether the connection may carry another response after this one: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`, and never when the body
    /// runs until the close.
    pub keep_alive: bool,
    /// How the body is delimited.
    pub framing: ResponseFraming,
    /// Bytes of the head, status line to empty line.
    pub head_len: usize,
}

/// A response the parser refuses. The connection is out of sync afterwards: drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseError {
    /// A short, fixed explanation, safe to log and to use as a counter's name.
    pub reason: &'static str,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ResponseError {}

const fn bad(reason: &'static str) -> ResponseError {
    ResponseError { reason }
}

/// What one call to [`ResponseParser::parse`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseEvent<'a> {
    /// An interim 1xx response (100 Continue, 103 Early Hints): its head was consumed; the
    /// final response follows.
    Informational(u16),
    /// A complete final head.
    Head(ResponseHead),
    /// Body bytes, decoded from chunked framing if need be, borrowed from the input.
    Body(&'a [u8]),
    /// The response is complete; the parser expects the next response head.
    End,
}

/// Where the parser is in the response stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete response head.
    Head,
    /// A `Content-Length` body with `remaining` bytes to come (0 → `End` next).
    Length { remaining: u64 },
    /// Chunked: waiting for a complete chunk-size line.
    ChunkSize,
    /// Chunked: inside a chunk's data.
    ChunkData { remaining: u64 },
    /// Chunked: the CRLF that must follow a chunk's data.
    ChunkDataEnd,
    /// Chunked: after the last chunk, discarding trailer lines until the empty line; `seen`
    /// bytes of trailer section so far.
    Trailers { seen: usize },
    /// The body runs until the connection closes (`finish` ends it).
    UntilClose,
    /// A `101 Switching Protocols` head was parsed: `End` comes next.
    Switching,
    /// After a 101: what follows is not HTTP (an error if any byte comes).
    Switched,
    /// A parse error; it is returned again on every call.
    Failed(ResponseError),
}

/// The response-side state machine of one client connection.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    limits: ResponseLimits,
    state: State,
    /// The responses awaited answer `HEAD` requests: no body, whatever the fields say.
    head_request: bool,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser::new(ResponseLimits::default())
    }
}

impl ResponseParser {
    /// A parser waiting for a response head, enforcing `limits`.
    pub fn new(limits: ResponseLimits) -> Self {
        ResponseParser {
            limits,
            state: State::Head,
            head_request: false,
        }
    }

    /// Declares whether the responses from now on answer `HEAD` requests (RFC 9112 §6.3 rule 1:
    /// such a response has no body even when it carries `Content-Length`). A client that
    /// pipelines one method sets it once.
    pub fn set_head_request(&mut self, head: bool) {
        self.head_request = head;
    }

    /// True between responses (nothing of the next one consumed yet): an EOF here is a clean
    /// end of the connection.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    /// Parses as much of `input` (the bytes not consumed so far) as makes one event. Returns
    /// the number of bytes to advance and the event:
    ///
    /// - `(n, Some(event))`: advance by `n`, handle the event, call again with the rest (even
    ///   if empty: `End` needs no bytes).
    /// - `(n, None)`: advance by `n` (0 for a partial head), then wait for more bytes. `n` is
    ///   never more than `input.len()`.
    pub fn parse<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<ResponseEvent<'a>>), ResponseError> {
        match self.parse_inner(input) {
            Ok(step) => Ok(step),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    /// The connection reached EOF with `leftover` bytes still unconsumed. A body that runs
    /// until the close ends here (`Some(End)`); EOF between responses is clean (`None`); EOF
    /// inside a head or a delimited body is a truncated response.
    pub fn finish(
        &mut self,
        leftover: usize,
    ) -> Result<Option<ResponseEvent<'static>>, ResponseError> {
        let result = match self.state {
            State::Failed(e) => Err(e),
            State::Head if leftover == 0 => Ok(None),
            State::Head => Err(bad("connection closed inside a response head")),
            State::UntilClose => Ok(Some(ResponseEvent::End)),
            State::Switching => Ok(Some(ResponseEvent::End)),
            State::Switched => Ok(None),
            State::Length { .. }
            | State::ChunkSize
            | State::ChunkData { .. }
            | State::ChunkDataEnd
            | State::Trailers { .. } => Err(bad("connection closed inside a response body")),
        };
        self.state = match result {
            Err(e) => State::Failed(e),
            Ok(_) => State::Head,
        };
        result
    }

    fn parse_inner<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<ResponseEvent<'a>>), ResponseError> {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            match self.state {
                State::Failed(e) => return Err(e),
                State::Switching => {
                    self.state = State::Switched;
                    return Ok((pos, Some(ResponseEvent::End)));
                }
                State::Switched if rest.is_empty() => return Ok((pos, None)),
                State::Switched => return Err(bad("bytes after 101 Switching Protocols")),
                State::Head => {
                    return match self.parse_head(rest)? {
                        None => Ok((pos, None)),
                        Some((n, event)) => Ok((pos + n, Some(event))),
                    };
                }
                State::Length { remaining: 0 } => {
                    self.state = State::Head;
                    return Ok((pos, Some(ResponseEvent::End)));
                }
                State::Length { remaining } => {
                    let Some((data, left)) = take_body(rest, remaining) else {
                        return Ok((pos, None));
                    };
                    self.state = State::Length { remaining: left };
                    return Ok((pos + data.len(), Some(ResponseEvent::Body(data))));
                }
                State::UntilClose => {
                    if rest.is_empty() {
                        return Ok((pos, None));
                    }
                    return Ok((pos + rest.len(), Some(ResponseEvent::Body(rest))));
                }
                State::ChunkSize => match chunk_size_line(rest).map_err(bad)? {
                    None => return Ok((pos, None)),
                    Some((n, 0)) => {
                        pos += n;
                        self.state = State::Trailers { seen: 0 };
                    }
                    Some((n, size)) => {
                        pos += n;
                        self.state = State::ChunkData { remaining: size };
                    }
                },
                State::ChunkData { remaining: 0 } => self.state = State::ChunkDataEnd,
                State::ChunkData { remaining } => {
                    let Some((data, left)) = take_body(rest, remaining) else {
                        return Ok((pos, None));
                    };
                    self.state = State::ChunkData { remaining: left };
                    return Ok((pos + data.len(), Some(ResponseEvent::Body(data))));
                }
                State::ChunkDataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok((pos, None)),
                    _ => return Err(bad("missing CRLF after chunk data")),
                },
                State::Trailers { seen } => {
                    let room = self.limits.max_head.saturating_sub(seen);
                    let Some(lf) = rest.iter().take(room).position(|&b| b == b'\n') else {
                        if rest.len() >= room {
                            return Err(bad("trailer section too large"));
                        }
                        return Ok((pos, None));
                    };
                    let line = rest.get(..lf).unwrap_or_default();
                    let Some(line) = line.strip_suffix(b"\r") else {
                        return Err(bad("trailer line not ended by CRLF"));
                    };
                    pos += lf + 1;
                    if line.is_empty() {
                        self.state = State::Head;
                        return Ok((pos, Some(ResponseEvent::End)));
                    }
                    if line.first().is_some_and(|&b| b == b' ' || b == b'\t')
                        || !line.contains(&b':')
                    {
                        return Err(bad("invalid trailer field"));
                    }
                    self.state = State::Trailers {
                        seen: seen + lf + 1,
                    };
                }
            }
        }
    }

    /// Parses a complete head, or says it is not complete yet.
    fn parse_head<'a>(
        &mut self,
        input: &[u8],
    ) -> Result<Option<(usize, ResponseEvent<'a>)>, ResponseError> {
        let max_head = self.limits.max_head;
        // Never look past max_head: a complete head must fit in it, and an incomplete one that
        // has already outgrown it is refused before the caller buffers more of it.
        let window = input.get(..max_head).unwrap_or(input);
        // Uninitialised slots: a client parses one head per response, and zeroing 4 KiB of
        // slots each time showed in profiles; httparse writes only those it fills.
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADER_SLOTS];
        let n_slots = self.limits.max_headers.min(MAX_HEADER_SLOTS);
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            window,
            slots.get_mut(..n_slots).unwrap_or_default(),
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() > max_head => {
                return Err(bad("response head too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(map_httparse_error(e)),
        };
        let status = resp.code.unwrap_or(0);
        let version_minor = resp.version.unwrap_or(1);
        if (100..200).contains(&status) && status != 101 {
            // Interim: no body, and the final response follows on the same connection.
            return Ok(Some((len, ResponseEvent::Informational(status))));
        }
        let fields = Fields::scan(resp.headers)?;
        let keep_alive = if version_minor == 0 {
            fields.keep_alive_token
        } else {
            !fields.close_token
        };
        let framing = if self.head_request || status == 101 || status == 204 || status == 304 {
            ResponseFraming::Empty
        } else if let Some(chunked) = fields.chunked_last {
            if chunked {
                ResponseFraming::Chunked
            } else {
                ResponseFraming::UntilClose
            }
        } else {
            match fields.content_length {
                Some(0) => ResponseFraming::Empty,
                Some(n) => ResponseFraming::Length(n),
                None => ResponseFraming::UntilClose,
            }
        };
        let head = ResponseHead {
            status,
            version_minor,
            keep_alive: keep_alive && framing != ResponseFraming::UntilClose && status != 101,
            framing,
            head_len: len,
        };
        self.state = match (status, framing) {
            (101, _) => State::Switching,
            (_, ResponseFraming::Empty) => State::Length { remaining: 0 },
            (_, ResponseFraming::Length(n)) => State::Length { remaining: n },
            (_, ResponseFraming::Chunked) => State::ChunkSize,
            (_, ResponseFraming::UntilClose) => State::UntilClose,
        };
        Ok(Some((len, ResponseEvent::Head(head))))
    }
}

/// What the framing and keep-alive rules need from the header fields.
struct Fields {
    content_length: Option<u64>,
    /// `Some(true)` when `Transfer-Encoding` is present and its last coding is `chunked`.
    chunked_last: Option<bool>,
    close_token: bool,
    keep_alive_token: bool,
}

impl Fields {
    fn scan(headers: &[httparse::Header<'_>]) -> Result<Fields, ResponseError> {
        let mut f = Fields {
            content_length: None,
            chunked_last: None,
            close_token: false,
            keep_alive_token: false,
        };
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                // RFC 9110 §8.6: a list of identical values (`42, 42`, or the field twice) is
                // one length; anything else is an error.
                for element in h.value.split(|&b| b == b',') {
                    let n = parse_length(trim_ows(element))?;
                    if f.content_length.is_some_and(|m| m != n) {
                        return Err(bad("conflicting Content-Length"));
                    }
                    f.content_length = Some(n);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The codings apply in order; only the last one says how the body ends.
                if let Some(last) = list_elements(h.value).last() {
                    f.chunked_last = Some(last.eq_ignore_ascii_case(b"chunked"));
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in list_elements(h.value) {
                    f.close_token |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        Ok(f)
    }
}

/// `Content-Length`: 1 to 19 decimal digits (19 always fit in a `u64`).
fn parse_length(s: &[u8]) -> Result<u64, ResponseError> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    Ok(s.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn map_httparse_error(e: httparse::Error) -> ResponseError {
    match e {
        httparse::Error::HeaderName => bad("invalid header name"),
        httparse::Error::HeaderValue => bad("invalid header value"),
        httparse::Error::NewLine => bad("invalid line ending"),
        httparse::Error::Status => bad("invalid status code"),
        httparse::Error::Token => bad("invalid status line"),
        httparse::Error::TooManyHeaders => bad("too many header fields"),
        httparse::Error::Version => bad("not an HTTP/1.x response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of an event, consecutive body slices merged, so any split of the input
    /// compares equal.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Info(u16),
        Head(u16, bool, ResponseFraming),
        Body(Vec<u8>),
        End,
    }

    fn push(events: &mut Vec<Ev>, ev: ResponseEvent<'_>) {
        match ev {
            ResponseEvent::Informational(s) => events.push(Ev::Info(s)),
            ResponseEvent::Head(h) => events.push(Ev::Head(h.status, h.keep_alive, h.framing)),
            ResponseEvent::End => events.push(Ev::End),
            ResponseEvent::Body(b) => {
                assert!(!b.is_empty(), "empty body event");
                if let Some(Ev::Body(prev)) = events.last_mut() {
                    prev.extend_from_slice(b);
                } else {
                    events.push(Ev::Body(b.to_vec()));
                }
            }
        }
    }

    /// Feeds `input` whole, then EOF when `eof`. Returns the events (or the error).
    fn run_whole(
        p: &mut ResponseParser,
        input: &[u8],
        eof: bool,
    ) -> Result<Vec<Ev>, ResponseError> {
        let mut events = Vec::new();
        let mut pos = 0;
        loop {
            let (n, ev) = p.parse(&input[pos..])?;
            assert!(n <= input.len() - pos, "consumed more than given");
            pos += n;
            match ev {
                Some(ev) => push(&mut events, ev),
                None => break,
            }
        }
        if eof {
            if let Some(ev) = p.finish(input.len() - pos)? {
                push(&mut events, ev);
            }
        }
        Ok(events)
    }

    /// Feeds `input` one byte at a time into a growing buffer, as a connection would; checks
    /// that a partial head consumes nothing.
    fn run_bytewise(
        p: &mut ResponseParser,
        input: &[u8],
        eof: bool,
    ) -> Result<Vec<Ev>, ResponseError> {
        let mut events = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for &byte in input {
            buf.push(byte);
            loop {
                let idle = p.is_idle();
                let (n, ev) = p.parse(&buf)?;
                assert!(n <= buf.len());
                if idle && ev.is_none() {
                    assert_eq!(n, 0, "a partial head consumed bytes");
                }
                let done = ev.is_none();
                if let Some(ev) = ev {
                    push(&mut events, ev);
                }
                buf.drain(..n);
                if done {
                    break;
                }
            }
        }
        if eof {
            if let Some(ev) = p.finish(buf.len())? {
                push(&mut events, ev);
            }
        }
        Ok(events)
    }

    /// Both ways of feeding agree; returns their result.
    fn parse_all(input: &[u8], head_request: bool, eof: bool) -> Result<Vec<Ev>, ResponseError> {
        let mut a = ResponseParser::default();
        a.set_head_request(head_request);
        let mut b = a.clone();
        let whole = run_whole(&mut a, input, eof);
        let bytewise = run_bytewise(&mut b, input, eof);
        assert_eq!(whole, bytewise, "whole and byte-at-a-time differ");
        whole
    }

    use ResponseFraming::{Chunked, Empty, Length, UntilClose};

    /// `name: input (head_request, eof) => events`.
    macro_rules! parses {
        ($($name:ident: $input:expr, $head_req:expr, $eof:expr => [$($ev:expr),* $(,)?];)*) => {$(
            #[test]
            fn $name() {
                let got = parse_all($input, $head_req, $eof).unwrap();
                assert_eq!(got, vec![$($ev),*]);
            }
        )*};
    }

    fn body(b: &[u8]) -> Ev {
        Ev::Body(b.to_vec())
    }

    parses! {
        content_length: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false
            => [Ev::Head(200, true, Length(2)), body(b"ok"), Ev::End];
        pipelined_two: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false, false
            => [Ev::Head(200, true, Length(2)), body(b"ok"), Ev::End, Ev::Head(404, true, Empty), Ev::End];
        chunked: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nTrailer: 1\r\n\r\n", false, false
            => [Ev::Head(200, true, Chunked), body(b"abcd"), Ev::End];
        chunked_wins_over_length: b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", false, false
            => [Ev::Head(200, true, Chunked), Ev::End];
        other_coding_runs_until_close: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", false, true
            => [Ev::Head(200, false, UntilClose), body(b"xyz"), Ev::End];
        no_length_runs_until_close: b"HTTP/1.0 200 OK\r\n\r\nall of it", false, true
            => [Ev::Head(200, false, UntilClose), body(b"all of it"), Ev::End];
        head_request_has_no_body: b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true, false
            => [Ev::Head(200, true, Empty), Ev::End];
        no_content_and_not_modified: b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n", false, false
            => [Ev::Head(204, true, Empty), Ev::End, Ev::Head(304, true, Empty), Ev::End];
        interim_then_final: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", false, false
            => [Ev::Info(100), Ev::Info(103), Ev::Head(201, true, Empty), Ev::End];
        close_token: b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 1\r\n\r\nx", false, false
            => [Ev::Head(200, false, Length(1)), body(b"x"), Ev::End];
        http10_keep_alive: b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", false, false
            => [Ev::Head(200, true, Length(1)), body(b"x"), Ev::End];
        http10_default_close: b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, false
            => [Ev::Head(200, false, Length(1)), body(b"x"), Ev::End];
        repeated_equal_lengths: b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\nContent-Length: 1\r\n\r\nx", false, false
            => [Ev::Head(200, true, Length(1)), body(b"x"), Ev::End];
        switching_protocols: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, true
            => [Ev::Head(101, false, Empty), Ev::End];
        clean_eof_between: b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, true
            => [Ev::Head(200, true, Empty), Ev::End];
    }

    /// `name: input (eof) => reason`.
    macro_rules! rejects {
        ($($name:ident: $input:expr, $eof:expr => $reason:expr;)*) => {$(
            #[test]
            fn $name() {
                let err = parse_all($input, false, $eof).unwrap_err();
                assert_eq!(err.reason, $reason);
            }
        )*};
    }

    rejects! {
        not_http: b"SSH-2.0-OpenSSH\r\n\r\n", false => "not an HTTP/1.x response";
        bad_status: b"HTTP/1.1 2x0 OK\r\n\r\n", false => "invalid status code";
        bad_length: b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false => "invalid Content-Length";
        conflicting_lengths: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false => "conflicting Content-Length";
        bad_chunk_size: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false => "missing chunk size";
        chunk_without_crlf: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab", false => "missing CRLF after chunk data";
        truncated_body: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", true => "connection closed inside a response body";
        truncated_head: b"HTTP/1.1 200 OK\r\nContent-", true => "connection closed inside a response head";
        after_switching: b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00", false => "bytes after 101 Switching Protocols";
    }

    #[test]
    fn head_over_the_limit_is_refused_before_it_completes() {
        let mut p = ResponseParser::new(ResponseLimits {
            max_head: 64,
            max_headers: 8,
        });
        let mut input = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        input.resize(65, b'a');
        assert_eq!(p.parse(&input[..64]), Ok((0, None)));
        assert_eq!(
            p.parse(&input).unwrap_err().reason,
            "response head too large"
        );
        // Sticky.
        assert!(p.parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn too_many_fields() {
        let mut p = ResponseParser::new(ResponseLimits {
            max_head: 1024,
            max_headers: 2,
        });
        let r = p.parse(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(r.unwrap_err().reason, "too many header fields");
    }

    #[test]
    fn head_reports_its_length_and_version() {
        let mut p = ResponseParser::default();
        let input = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (n, ev) = p.parse(input).unwrap();
        assert_eq!(n, input.len());
        let Some(ResponseEvent::Head(h)) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!((h.head_len, h.version_minor), (input.len(), 0));
    }

    #[test]
    fn body_slices_are_zero_copy_and_bounded_by_the_length() {
        let mut p = ResponseParser::default();
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP";
        let (n, _) = p.parse(input).unwrap();
        let (m, ev) = p.parse(&input[n..]).unwrap();
        assert_eq!(m, 3);
        let Some(ResponseEvent::Body(b)) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(b.as_ptr(), input[n..].as_ptr());
        assert_eq!(
            p.parse(&input[n + m..]).unwrap(),
            (0, Some(ResponseEvent::End))
        );
        assert!(p.is_idle());
    }
}

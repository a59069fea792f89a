//! Request parsing: bytes in, request heads and body slices out.
//!
//! [`RequestParser`] owns the framing of one connection's request stream: it
//! knows whether the next bytes are a request head, `Content-Length` body
//! bytes, or part of a chunked body, and it resets itself after each request so
//! pipelined requests come out one after another. It is sans-IO in the
//! httparse style: [`RequestParser::parse`] takes the unconsumed bytes, returns
//! how many of them it used and at most one [`Event`]. Incomplete input is not
//! an error: the head is consumed only once it is complete, and body bytes are
//! handed out zero-copy, as much as is there, without waiting for a whole chunk.
//!
//! The head itself is parsed by httparse; this file adds what RFC 9112 asks of
//! a server on top: message body framing (§6), chunked decoding (§7), the
//! keep-alive rules (§9.3), `Expect: 100-continue` (RFC 9110 §10.1.1), the
//! `Host` rule (§3.2), absolute-form targets (§3.2.2) and the fields a
//! WebSocket handshake needs (RFC 6455 §4.2.1).
//!
//! Every parse error is final: the bytes after a malformed message cannot be
//! trusted to start a new one, so the caller answers with the error's status
//! (see `response::write_error`) and closes the connection once that is flushed.
//! The parser keeps returning the same error if it is called again.

use super::body::{BodyDecoder, BodyError, BodyEvent, BodyLimits};
use super::fields::{has_token, list_elements, trim_ows, MAX_HEADER_SLOTS};
use crate::codec::escape::escaped;
use std::borrow::Cow;
use std::fmt;

/// Log target for protocol-level messages: `RUST_LOG=readyloop::http=debug` shows just these.
const LOG: &str = "readyloop::http";

/// What a peer may make the parser accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of request line plus header fields plus the empty line: 16 KiB by
    /// default. Checked before buffering more: once a connection holds more than
    /// this without a complete head → 431. Also bounds the trailer section of a
    /// chunked body.
    pub max_head: usize,
    /// Header fields per request: 64 by default, capped at [`MAX_HEADER_SLOTS`].
    /// More → 431.
    pub max_headers: usize,
    /// Body bytes per request: 64 MiB by default. A larger `Content-Length` → 413
    /// at the head, before any body byte is read; a chunked body → 413 as soon as
    /// a chunk size would take the running total past it.
    pub max_body: u64,
    /// Answer an HTTP/1.1 request without a `Host` field with 400, as RFC 9112
    /// §3.2 requires (a request with two `Host` fields gets 400 regardless).
    /// On by default; turn off for hand-typed test requests.
    pub require_host: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024 * 1024,
            require_host: true,
        }
    }
}

/// The request method. Methods are case-sensitive (RFC 9110 §9.1), so `get`
/// is `Other("get")`, not `Get`; the router answers unknown methods (501 or 405).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// Any other token, as sent.
    Other(String),
}

impl Method {
    /// Maps a method token (already validated by httparse) to a variant.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Neither `Content-Length` nor `Transfer-Encoding`: no body.
    None,
    /// `Content-Length: n` (already checked against [`Limits::max_body`]).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// An owned, checked request head: everything the router and the WebSocket
/// handshake need, so the receive buffer can be reused right away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method.
    pub method: Method,
    /// The request target up to `?`, as sent (not percent-decoded). For an
    /// absolute-form target (`http://host/p`) this is the path after the
    /// authority (`/p`; `/` when there is none).
    pub path: String,
    /// What follows the first `?`, if there is one.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Whether the connection may stay open after the response: HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// How the body, if any, is delimited.
    pub body: BodyFraming,
    /// `Expect: 100-continue` on an HTTP/1.1 request (HTTP/1.0 ones are ignored,
    /// RFC 9110 §10.1.1). Send `response::CONTINUE` before reading the body, or
    /// answer right away and close.
    pub expect_continue: bool,
    /// `Content-Type`, trimmed.
    pub content_type: Option<String>,
    /// `Host`, trimmed; for an absolute-form target, its authority instead
    /// (RFC 9112 §3.2.2: the server uses it and ignores the `Host` field).
    pub host: Option<String>,
    /// `Upgrade` lists the token `websocket` (case-insensitive).
    pub upgrade_websocket: bool,
    /// `Connection` lists the token `upgrade` (case-insensitive).
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`, trimmed.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`, trimmed.
    pub ws_version: Option<String>,
    /// `Origin`, trimmed (checked against `--allowed-origin` on upgrades).
    pub origin: Option<String>,
    /// The `Sec-WebSocket-Extensions` fields, trimmed, in the order they came (the field may
    /// be repeated, RFC 6455 §9.1; the head's size limit bounds them).
    pub ws_extensions: Vec<String>,
}

impl RequestHead {
    /// A head with nothing in it, for `build_head` to fill.
    const EMPTY: RequestHead = RequestHead {
        method: Method::Get,
        path: String::new(),
        query: None,
        version_minor: 1,
        keep_alive: false,
        body: BodyFraming::None,
        expect_continue: false,
        content_type: None,
        host: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        ws_key: None,
        ws_version: None,
        origin: None,
        ws_extensions: Vec::new(),
    };

    /// Whether the client asks to switch to WebSocket. The handshake still has
    /// to check the method, `ws_key` and `ws_version` (RFC 6455 §4.2.1).
    pub fn wants_websocket(&self) -> bool {
        self.upgrade_websocket && self.connection_upgrade
    }
}

/// A request the parser refuses. The connection is out of sync afterwards:
/// answer with `status` and close once the answer is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// The status to answer with (400, 413, 417, 431, 501 or 505).
    pub status: u16,
    /// A short, fixed explanation, safe to send back and to log.
    pub reason: &'static str,
}

impl HttpError {
    /// An error answered with `status` and logged as `reason`.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

const fn bad(reason: &'static str) -> HttpError {
    HttpError::new(400, reason)
}

/// What one call to [`RequestParser::parse`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete head. Boxed: it is large, and body events are frequent.
    Head(Box<RequestHead>),
    /// Body bytes, decoded from chunked framing if need be, borrowed from the input.
    Body(&'a [u8]),
    /// The request is complete; the parser expects the next request head.
    End,
}

/// Where the parser is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a complete request head.
    Head,
    /// Inside the body (possibly empty) of the request whose head came last.
    Body(BodyDecoder),
    /// A parse error; it is returned again on every call.
    Failed(HttpError),
}

/// A recycled head's path and host are kept for the next head only up to this capacity each
/// (256 bytes): enough for the usual request, and a long target is not held on to.
const RECYCLE_LIMIT: usize = 256;

/// The request-side state machine of one connection.
#[derive(Debug, Clone)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// A head handed back with [`RequestParser::recycle`]: the next head is built in its box
    /// and its path and host strings, so a request costs no `malloc` for them.
    spare: Option<Box<RequestHead>>,
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser::new(Limits::default())
    }
}

impl RequestParser {
    /// A parser waiting for a request head, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Head,
            spare: None,
        }
    }

    /// Hands back a head the caller is done with, for the next head to be built in (its box
    /// and its path and host strings, when they are short: see `RECYCLE_LIMIT`).
    pub fn recycle(&mut self, head: Box<RequestHead>) {
        let host = head.host.as_ref().map_or(0, String::capacity);
        if self.spare.is_none() && head.path.capacity() <= RECYCLE_LIMIT && host <= RECYCLE_LIMIT {
            self.spare = Some(head);
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True between requests (nothing of the next request consumed yet): an
    /// EOF or an idle timeout here is a clean end, not a truncated request.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    /// Parses as much of `input` (the bytes not consumed so far) as makes one
    /// event. Returns the number of bytes to advance and the event:
    ///
    /// - `(n, Some(event))`: advance by `n`, handle the event, call again with
    ///   the rest (even if empty: `End` needs no bytes).
    /// - `(n, None)`: advance by `n` (possibly 0, e.g. a partial head), then
    ///   wait for more bytes. `n` is never more than `input.len()`.
    ///
    /// Structural units (chunk-size lines, the CRLF after chunk data, trailer
    /// lines) are consumed as soon as each is complete, so a caller never has
    /// to keep more than one such unit, or one head, buffered.
    pub fn parse<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), HttpError> {
        match self.parse_inner(input) {
            Ok(step) => Ok(step),
            Err(e) => {
                if self.state != State::Failed(e) {
                    log::debug!(target: LOG, "request rejected: {} {}", e.status, e.reason);
                }
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    fn parse_inner<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), HttpError> {
        match self.state {
            State::Failed(e) => Err(e),
            State::Head => match self.parse_head(input)? {
                None => Ok((0, None)),
                Some((n, head)) => Ok((n, Some(Event::Head(head)))),
            },
            State::Body(mut body) => {
                let limits = BodyLimits {
                    max_chunked: self.limits.max_body,
                    max_trailers: self.limits.max_head,
                };
                let (n, event) = body.decode(input, &limits).map_err(|e| match e {
                    BodyError::Bad(reason) => bad(reason),
                    BodyError::TooLarge => HttpError::new(413, "chunked body too large"),
                    BodyError::TrailersTooLarge => HttpError::new(431, "trailer section too large"),
                })?;
                let event = event.map(|event| match event {
                    BodyEvent::Data(data) => Event::Body(data),
                    BodyEvent::End => Event::End,
                });
                self.state = match event {
                    Some(Event::End) => State::Head,
                    _ => State::Body(body),
                };
                Ok((n, event))
            }
        }
    }

    /// Parses a complete head, or says it is not complete yet.
    fn parse_head(&mut self, input: &[u8]) -> Result<Option<(usize, Box<RequestHead>)>, HttpError> {
        let max_head = self.limits.max_head;
        // Never look past max_head: a complete head must fit in it, and an
        // incomplete one that has already outgrown it is refused right here,
        // before the caller buffers any more of it.
        let window = input.get(..max_head).unwrap_or(input);
        // Uninitialised slots: httparse writes only the ones it fills. Zeroing all of them
        // (4 KiB) was the largest part of this parser's CPU per request (perf, at_floor http).
        let mut slots = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADER_SLOTS];
        let n_slots = self.limits.max_headers.min(MAX_HEADER_SLOTS);
        let mut req = httparse::Request::new(&mut []);
        let parsed =
            req.parse_with_uninit_headers(window, slots.get_mut(..n_slots).unwrap_or_default());
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() > max_head => {
                return Err(HttpError::new(431, "request head too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(map_httparse_error(e, window)),
        };
        let head = build_head(&req, &self.limits, self.spare.take())?;
        log::debug!(
            target: LOG,
            "request {} {} HTTP/1.{} ({len} byte head, body {:?}, keep-alive {})",
            head.method,
            escaped(&head.path),
            head.version_minor,
            head.body,
            head.keep_alive
        );
        self.state = State::Body(match head.body {
            BodyFraming::None => BodyDecoder::Length { remaining: 0 },
            BodyFraming::Length(n) => BodyDecoder::Length { remaining: n },
            BodyFraming::Chunked => BodyDecoder::chunked(),
        });
        Ok(Some((len, head)))
    }
}

fn map_httparse_error(e: httparse::Error, window: &[u8]) -> HttpError {
    match e {
        httparse::Error::HeaderName => bad("invalid header name"),
        httparse::Error::HeaderValue => bad("invalid header value"),
        httparse::Error::NewLine => bad("invalid line ending"),
        httparse::Error::Token => bad("invalid method or request target"),
        httparse::Error::TooManyHeaders => HttpError::new(431, "too many header fields"),
        httparse::Error::Version if is_other_http_version(window) => {
            HttpError::new(505, "HTTP version not supported")
        }
        httparse::Error::Version => bad("invalid HTTP version"),
        httparse::Error::Status => bad("invalid request line"),
    }
}

/// httparse accepts only `HTTP/1.0` and `HTTP/1.1`, and reports `Version` at
/// the first byte that differs from both. If everything up to and including
/// that byte is still shaped like `HTTP/<digit>[<digits and dots>]` (HTTP/2.0,
/// HTTP/1.2, HTTP/3) the client speaks a version we do not: 505 (RFC 9110
/// §15.6.6). Otherwise the request line is malformed: 400.
///
/// Only bytes up to that first differing byte are looked at, so the answer is
/// the same however the request was split across reads.
fn is_other_http_version(window: &[u8]) -> bool {
    let start = window
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let line = window.get(start..).unwrap_or_default();
    // method SP target SP version: httparse allows exactly one space each.
    let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default();
    let same = common_prefix_len(version, b"HTTP/1.");
    let Some(seen) = version.get(..=same) else {
        return false;
    };
    let Some(number) = seen.get(5..) else {
        return false;
    };
    number.first().is_some_and(u8::is_ascii_digit)
        && number.iter().all(|&b| b.is_ascii_digit() || b == b'.')
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Stores a field that may appear once; a second copy is ambiguous → 400.
fn set_once(
    slot: &mut Option<String>,
    value: &[u8],
    duplicate: &'static str,
) -> Result<(), HttpError> {
    set_once_in(slot, value, duplicate, String::new())
}

/// `set_once`, writing the value into `buf` (a recycled head's string) instead of a new one.
fn set_once_in(
    slot: &mut Option<String>,
    value: &[u8],
    duplicate: &'static str,
    buf: String,
) -> Result<(), HttpError> {
    if slot.is_some() {
        return Err(bad(duplicate));
    }
    *slot = Some(refill(buf, trim_ows(value)));
    Ok(())
}

/// Parses one `Content-Length` field value: a list of decimal numbers that must
/// all be equal (RFC 9112 §6.3 point 5), merged into `length`.
fn merge_content_length(length: &mut Option<u64>, value: &[u8]) -> Result<(), HttpError> {
    for element in value.split(|&b| b == b',').map(trim_ows) {
        if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
            return Err(bad("invalid Content-Length"));
        }
        let mut n: u64 = 0;
        for &d in element {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(bad("Content-Length overflows"))?;
        }
        match *length {
            Some(prev) if prev != n => return Err(bad("conflicting Content-Length")),
            _ => *length = Some(n),
        }
    }
    Ok(())
}

/// What the `Transfer-Encoding` fields of one request list, in order.
#[derive(Default)]
struct TransferCodings {
    seen: bool,
    count: usize,
    last_is_chunked: bool,
    chunked_not_last: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        self.seen = true;
        for coding in list_elements(value) {
            // A coding may carry parameters ("gzip;q=1"): only its name matters here.
            let name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or_default());
            if self.last_is_chunked {
                self.chunked_not_last = true;
            }
            self.last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            self.count += 1;
        }
    }
}

/// Splits an absolute-form target (RFC 9112 §3.2.2), `http://host:port/p?q`
/// or `https://…` with the scheme in any case, into its authority and the rest
/// (`/p?q`, or `/` when nothing follows the authority). Any other target comes
/// back unchanged, without an authority. An `http` URI must name a host (RFC
/// 9110 §4.2.1), and userinfo (`user@host`) in one is an error (§4.2.4): 400.
fn split_absolute_form(target: &str) -> Result<(Option<&str>, Cow<'_, str>), HttpError> {
    let after_scheme = ["http://", "https://"].iter().find_map(|scheme| {
        let prefix = target.get(..scheme.len())?;
        prefix
            .eq_ignore_ascii_case(scheme)
            .then(|| target.get(scheme.len()..))
            .flatten()
    });
    let Some(rest) = after_scheme else {
        return Ok((None, Cow::Borrowed(target)));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("invalid authority in the request target"));
    }
    let path = if path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("/{path}"))
    };
    Ok((Some(authority), path))
}

/// Replaces `buf`'s text with `bytes` (invalid UTF-8 replaced), keeping its allocation.
fn refill(mut buf: String, bytes: &[u8]) -> String {
    buf.clear();
    match std::str::from_utf8(bytes) {
        Ok(text) => buf.push_str(text),
        Err(_) => buf.push_str(&String::from_utf8_lossy(bytes)),
    }
    buf
}

/// The checked head of `req`, built in `spare` (a recycled head) when there is one.
fn build_head(
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
    spare: Option<Box<RequestHead>>,
) -> Result<Box<RequestHead>, HttpError> {
    let method = Method::from_token(req.method.unwrap_or_default());
    let (authority, target) = split_absolute_form(req.path.unwrap_or_default())?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (&*target, None),
    };
    let (mut head, path_buf, mut host_buf) = match spare {
        Some(mut h) => {
            let path = std::mem::take(&mut h.path);
            let host = h.host.take().unwrap_or_default();
            (h, path, host)
        }
        None => (Box::new(RequestHead::EMPTY), String::new(), String::new()),
    };
    let path = {
        let mut buf = path_buf;
        buf.clear();
        buf.push_str(path);
        buf
    };
    let version_minor = req.version.unwrap_or(1);
    *head = RequestHead {
        method,
        path,
        query,
        version_minor,
        ..RequestHead::EMPTY
    };
    let mut content_length = None;
    let mut codings = TransferCodings::default();
    let (mut conn_close, mut conn_keep_alive) = (false, false);
    for field in req.headers.iter() {
        let (name, value) = (field.name, field.value);
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-length") {
            merge_content_length(&mut content_length, value)?;
        } else if is("transfer-encoding") {
            codings.add(value);
        } else if is("connection") {
            conn_close |= has_token(value, "close");
            conn_keep_alive |= has_token(value, "keep-alive");
            head.connection_upgrade |= has_token(value, "upgrade");
        } else if is("upgrade") {
            head.upgrade_websocket |= has_token(value, "websocket");
        } else if is("expect") {
            if !trim_ows(value).eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::new(417, "unsupported expectation"));
            }
            head.expect_continue = version_minor >= 1;
        } else if is("host") {
            let buf = std::mem::take(&mut host_buf);
            set_once_in(&mut head.host, value, "duplicate Host", buf)?;
        } else if is("content-type") {
            set_once(&mut head.content_type, value, "duplicate Content-Type")?;
        } else if is("sec-websocket-key") {
            set_once(&mut head.ws_key, value, "duplicate Sec-WebSocket-Key")?;
        } else if is("sec-websocket-version") {
            set_once(
                &mut head.ws_version,
                value,
                "duplicate Sec-WebSocket-Version",
            )?;
        } else if is("origin") {
            set_once(&mut head.origin, value, "duplicate Origin")?;
        } else if is("sec-websocket-extensions") {
            let value = String::from_utf8_lossy(trim_ows(value)).into_owned();
            head.ws_extensions.push(value);
        }
    }
    if version_minor >= 1 && limits.require_host && head.host.is_none() {
        // Required even with an absolute-form target (RFC 9112 §3.2).
        return Err(bad("missing Host"));
    }
    if let Some(authority) = authority {
        head.host = Some(authority.to_owned());
    }
    head.keep_alive = !conn_close && (version_minor >= 1 || conn_keep_alive);
    head.body = body_framing(&codings, content_length, version_minor, limits)?;
    Ok(head)
}

/// RFC 9112 §6.1 and §6.3, the server side.
fn body_framing(
    codings: &TransferCodings,
    content_length: Option<u64>,
    version_minor: u8,
    limits: &Limits,
) -> Result<BodyFraming, HttpError> {
    if codings.seen {
        if content_length.is_some() {
            // Both present is the classic request-smuggling setup (§6.3 point 3):
            // refuse rather than guess which one an upstream proxy believed.
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        if version_minor == 0 {
            // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if codings.count == 0 || !codings.last_is_chunked {
            // §6.3 point 4: without chunked last the length is unknowable: 400.
            return Err(bad("chunked is not the final transfer coding"));
        }
        if codings.chunked_not_last {
            // §7.1: chunked must not be applied more than once.
            return Err(bad("chunked applied more than once"));
        }
        if codings.count > 1 {
            // §6.1: a coding we do not implement (gzip, chunked): 501.
            return Err(HttpError::new(501, "unsupported transfer coding"));
        }
        return Ok(BodyFraming::Chunked);
    }
    match content_length {
        Some(n) if n > limits.max_body => Err(HttpError::new(413, "body too large")),
        Some(n) => Ok(BodyFraming::Length(n)),
        None => Ok(BodyFraming::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of an event, with consecutive body slices merged, so the
    /// result of any split of the input compares equal.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Head(Box<RequestHead>),
        Body(Vec<u8>),
        End,
    }

    fn push(events: &mut Vec<Ev>, ev: Event<'_>) {
        match ev {
            Event::Head(h) => events.push(Ev::Head(h)),
            Event::End => events.push(Ev::End),
            Event::Body(b) => {
                assert!(!b.is_empty(), "empty body event");
                if let Some(Ev::Body(prev)) = events.last_mut() {
                    prev.extend_from_slice(b);
                } else {
                    events.push(Ev::Body(b.to_vec()));
                }
            }
        }
    }

    fn test_limits() -> Limits {
        Limits {
            require_host: false,
            ..Limits::default()
        }
    }

    /// Feeds all of `input` at once; returns the events and the unconsumed tail.
    fn run_with(limits: Limits, input: &[u8]) -> (Result<Vec<Ev>, HttpError>, usize) {
        let mut p = RequestParser::new(limits);
        let mut events = Vec::new();
        let mut pos = 0;
        loop {
            match p.parse(&input[pos..]) {
                Err(e) => return (Err(e), input.len() - pos),
                Ok((n, ev)) => {
                    assert!(n <= input.len() - pos, "consumed more than given");
                    pos += n;
                    match ev {
                        Some(ev) => push(&mut events, ev),
                        None => return (Ok(events), input.len() - pos),
                    }
                }
            }
        }
    }

    /// Feeds `input` one byte at a time into a growing buffer, as a connection
    /// would. Checks that an incomplete head consumes nothing.
    fn run_bytewise(limits: Limits, input: &[u8]) -> (Result<Vec<Ev>, HttpError>, usize) {
        let mut p = RequestParser::new(limits);
        let mut events = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for &byte in input {
            buf.push(byte);
            loop {
                let idle = p.is_idle();
                match p.parse(&buf) {
                    Err(e) => return (Err(e), buf.len()),
                    Ok((n, ev)) => {
                        assert!(n <= buf.len());
                        if idle && ev.is_none() {
                            assert_eq!(n, 0, "partial head consumed bytes");
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
            }
        }
        (Ok(events), buf.len())
    }

    /// Runs both ways and insists they agree.
    fn run(input: &[u8]) -> Result<Vec<Ev>, HttpError> {
        run_limits(test_limits(), input)
    }

    fn run_limits(limits: Limits, input: &[u8]) -> Result<Vec<Ev>, HttpError> {
        let (whole, left_whole) = run_with(limits, input);
        let (bytewise, left_bytewise) = run_bytewise(limits, input);
        assert_eq!(whole, bytewise, "whole vs byte-at-a-time");
        if whole.is_ok() {
            assert_eq!(left_whole, left_bytewise);
        }
        whole
    }

    fn heads(events: &[Ev]) -> Vec<&RequestHead> {
        events
            .iter()
            .filter_map(|e| match e {
                Ev::Head(h) => Some(&**h),
                _ => None,
            })
            .collect()
    }

    fn single_head(input: &[u8]) -> RequestHead {
        let events = run(input).expect("request should parse");
        heads(&events)[0].clone()
    }

    /// `rejects!(name: input => status;)`: each malformed request gets its status,
    /// fed whole and byte at a time.
    macro_rules! rejects {
        ($($name:ident: $input:expr => $status:expr;)*) => {$(
            #[test]
            fn $name() {
                match run($input) {
                    Err(e) => assert_eq!(e.status, $status, "{}: {}", stringify!($name), e.reason),
                    Ok(ev) => panic!("{} accepted: {:?}", stringify!($name), ev),
                }
            }
        )*};
    }

    rejects! {
        bad_request_line_no_version: b"GET /\r\n\r\n" => 400;
        bad_request_line_extra_space: b"GET  / HTTP/1.1\r\n\r\n" => 400;
        bad_request_line_trailing_space: b"GET / HTTP/1.1 \r\n\r\n" => 400;
        bad_method_token: b"GE(T / HTTP/1.1\r\n\r\n" => 400;
        bad_target_control_byte: b"GET /a\x01b HTTP/1.1\r\n\r\n" => 400;
        lowercase_version: b"GET / http/1.1\r\n\r\n" => 400;
        garbage_version: b"GET / HTTX/1.1\r\n\r\n" => 400;
        http2_version: b"GET / HTTP/2.0\r\n\r\n" => 505;
        http12_version: b"GET / HTTP/1.2\r\n\r\n" => 505;
        http3_version: b"GET / HTTP/3\r\n\r\n" => 505;
        http2_then_garbage: b"GET / HTTP/2x\r\n\r\n" => 505;
        http1_garbage_minor: b"GET / HTTP/1.x\r\n\r\n" => 400;
        http1_garbage_major: b"GET / HTTP/1x\r\n\r\n" => 400;
        http_no_digit: b"GET / HTTP/x\r\n\r\n" => 400;
        nul_in_header_value: b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n" => 400;
        nul_in_header_name: b"GET / HTTP/1.1\r\nX\0Y: a\r\n\r\n" => 400;
        control_in_header_value: b"GET / HTTP/1.1\r\nX: a\x1bb\r\n\r\n" => 400;
        space_before_colon: b"GET / HTTP/1.1\r\nX : a\r\n\r\n" => 400;
        header_without_colon: b"GET / HTTP/1.1\r\nXY\r\n\r\n" => 400;
        obs_fold: b"GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n" => 400;
        bare_cr: b"GET / HTTP/1.1\rX: a\r\n\r\n" => 400;
        conflicting_content_length: b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n" => 400;
        conflicting_content_length_list: b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n" => 400;
        negative_content_length: b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n" => 400;
        plus_content_length: b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n" => 400;
        empty_content_length: b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n" => 400;
        empty_list_content_length: b"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n" => 400;
        hex_content_length: b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n" => 400;
        overflowing_content_length: b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n" => 400;
        too_large_content_length: b"POST / HTTP/1.1\r\nContent-Length: 67108865\r\n\r\n" => 413;
        te_and_cl: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" => 400;
        unknown_te: b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" => 400;
        identity_te: b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n" => 400;
        empty_te: b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n" => 400;
        chunked_not_last: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" => 400;
        chunked_twice: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" => 400;
        gzip_then_chunked: b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" => 501;
        te_in_http10: b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" => 400;
        expect_other: b"POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n" => 417;
        duplicate_host: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => 400;
        absolute_form_without_host: b"GET http:///healthz HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
        absolute_form_with_userinfo: b"GET http://me@a/healthz HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
        absolute_form_authority_only_empty: b"GET https:// HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
        duplicate_ws_key: b"GET / HTTP/1.1\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n\r\n" => 400;
        chunk_size_empty: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n" => 400;
        chunk_size_not_hex: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n" => 400;
        chunk_size_0x: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n" => 400;
        chunk_size_negative: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n" => 400;
        chunk_size_17_digits: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n" => 400;
        chunk_size_overflow_16_digits: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n" => 413;
        chunk_size_trailing_blank: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n" => 400;
        chunk_size_bare_lf: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" => 400;
        chunk_ext_control: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00b\r\nhello\r\n0\r\n\r\n" => 400;
        chunk_missing_crlf: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n" => 400;
        chunk_missing_lf: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n" => 400;
        chunk_too_long_data: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n" => 400;
        trailer_obs_fold: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n" => 400;
        trailer_no_colon: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nXY\r\n\r\n" => 400;
        trailer_bare_lf: b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n" => 400;
    }

    #[test]
    fn lowercase_method_is_a_token_not_an_error() {
        // Methods are case-sensitive tokens: "get" is valid syntax, the router
        // decides (501 Not Implemented for methods it does not know).
        let head = single_head(b"get / HTTP/1.1\r\n\r\n");
        assert_eq!(head.method, Method::Other("get".into()));
    }

    #[test]
    fn missing_host_is_400_when_required() {
        let input = b"GET / HTTP/1.1\r\n\r\n";
        let err = run_limits(Limits::default(), input).unwrap_err();
        assert_eq!(err.status, 400);
        // HTTP/1.0 has no Host requirement.
        assert!(run_limits(Limits::default(), b"GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(run_limits(Limits::default(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
    }

    #[test]
    fn head_too_large_is_431_before_it_completes() {
        let limits = Limits {
            max_head: 64,
            ..test_limits()
        };
        // No end of head in sight, 65 bytes buffered: refused now.
        let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
        input.resize(65, b'a');
        assert_eq!(run_limits(limits, &input).unwrap_err().status, 431);
        // 64 bytes without an end: still waiting.
        input.truncate(64);
        assert_eq!(run_limits(limits, &input), Ok(vec![]));
        // A complete head that is one byte too long.
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(61, b'a');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(long.len(), 65);
        assert_eq!(run_limits(limits, &long).unwrap_err().status, 431);
        long.remove(20);
        assert!(run_limits(limits, &long).is_ok());
    }

    #[test]
    fn empty_lines_flood_is_431() {
        let limits = Limits {
            max_head: 64,
            ..test_limits()
        };
        assert_eq!(run_limits(limits, &[b'\n'; 100]).unwrap_err().status, 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits {
            max_headers: 3,
            ..test_limits()
        };
        let ok = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(run_limits(limits, ok).is_ok());
        let too_many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(run_limits(limits, too_many).unwrap_err().status, 431);
    }

    #[test]
    fn trailers_too_large_is_431() {
        let limits = Limits {
            max_head: 64,
            ..test_limits()
        };
        let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for _ in 0..10 {
            input.extend_from_slice(b"X-Trailer: value\r\n");
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(run_limits(limits, &input).unwrap_err().status, 431);
    }

    #[test]
    fn chunk_line_too_long_is_400() {
        let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;".to_vec();
        input.resize(input.len() + super::super::fields::MAX_CHUNK_LINE, b'a');
        assert_eq!(run(&input).unwrap_err().status, 400);
    }

    #[test]
    fn chunked_total_over_max_body_is_413() {
        let limits = Limits {
            max_body: 8,
            ..test_limits()
        };
        let ok = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
        assert!(run_limits(limits, ok).is_ok());
        let too_big = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n5\r\nefghi\r\n0\r\n\r\n";
        let (result, _) = run_with(limits, too_big);
        assert_eq!(result.unwrap_err().status, 413);
    }

    #[test]
    fn errors_are_sticky() {
        let mut p = RequestParser::new(test_limits());
        let e = p.parse(b"GET / HTTP/9.9\r\n\r\n").unwrap_err();
        assert_eq!(p.parse(b"GET / HTTP/1.1\r\n\r\n"), Err(e));
    }

    #[test]
    fn simple_get() {
        let events = run(b"GET /healthz?x=1&y HTTP/1.1\r\nHost: example\r\n\r\n").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1], Ev::End);
        let h = heads(&events)[0];
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/healthz");
        assert_eq!(h.query.as_deref(), Some("x=1&y"));
        assert_eq!(h.version_minor, 1);
        assert!(h.keep_alive);
        assert_eq!(h.body, BodyFraming::None);
        assert_eq!(h.host.as_deref(), Some("example"));
        assert!(!h.expect_continue);
    }

    #[test]
    fn absolute_form_targets() {
        // (target, path, query, host): the authority wins over the Host field.
        for (target, path, query, host) in [
            (
                "http://example.com/healthz?x=1",
                "/healthz",
                Some("x=1"),
                "example.com",
            ),
            (
                "HTTP://127.0.0.1:8000/tasks/7",
                "/tasks/7",
                None,
                "127.0.0.1:8000",
            ),
            ("https://[::1]:8443/", "/", None, "[::1]:8443"),
            ("http://h", "/", None, "h"),
            ("http://h?q", "/", Some("q"), "h"),
            ("/plain?http://x", "/plain", Some("http://x"), "other"),
            ("httpx://h/p", "httpx://h/p", None, "other"),
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: other\r\n\r\n");
            let head = single_head(req.as_bytes());
            assert_eq!(
                (
                    head.path.as_str(),
                    head.query.as_deref(),
                    head.host.as_deref()
                ),
                (path, query, Some(host)),
                "{target}"
            );
        }
        // Host is still required in HTTP/1.1, and optional in 1.0.
        let no_host = b"GET http://h/ HTTP/1.1\r\n\r\n";
        assert_eq!(
            run_limits(Limits::default(), no_host).unwrap_err().status,
            400
        );
        let head = single_head(b"GET http://h/x HTTP/1.0\r\n\r\n");
        assert_eq!(
            (head.path.as_str(), head.host.as_deref()),
            ("/x", Some("h"))
        );
    }

    #[test]
    fn methods() {
        for (token, method) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Other("PATCH".into())),
        ] {
            let req = format!("{token} / HTTP/1.1\r\n\r\n");
            let head = single_head(req.as_bytes());
            assert_eq!(head.method, method);
            assert_eq!(head.method.as_str(), token);
        }
    }

    #[test]
    fn head_request_has_no_body() {
        let events = run(b"HEAD /stats HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(heads(&events)[0].method, Method::Head);
        assert_eq!(events.last(), Some(&Ev::End));
    }

    /// `keep_alive!(name: request-line-version, connection-field => expected;)`
    macro_rules! keep_alive {
        ($($name:ident: $version:expr, $connection:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let mut req = format!("GET / {}\r\n", $version);
                if let Some(c) = $connection {
                    req.push_str(&format!("Connection: {}\r\n", c));
                }
                req.push_str("\r\n");
                assert_eq!(single_head(req.as_bytes()).keep_alive, $expected);
            }
        )*};
    }

    keep_alive! {
        ka_11_default: "HTTP/1.1", None::<&str> => true;
        ka_11_close: "HTTP/1.1", Some("close") => false;
        ka_11_close_mixed_case: "HTTP/1.1", Some("Upgrade, CLOSE") => false;
        ka_11_keep_alive: "HTTP/1.1", Some("keep-alive") => true;
        ka_10_default: "HTTP/1.0", None::<&str> => false;
        ka_10_keep_alive: "HTTP/1.0", Some("Keep-Alive") => true;
        ka_10_keep_alive_in_list: "HTTP/1.0", Some("foo , keep-alive") => true;
        ka_10_both: "HTTP/1.0", Some("keep-alive, close") => false;
        ka_11_not_a_token: "HTTP/1.1", Some("closed") => true;
    }

    #[test]
    fn connection_tokens_across_fields() {
        let h =
            single_head(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
        assert!(!h.keep_alive);
    }

    #[test]
    fn content_length_body_and_pipelining() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n\
                      POST /c HTTP/1.0\r\nContent-Length: 0\r\n\r\nGET /d HTTP/1.1\r\n";
        let (events, left) = run_with(test_limits(), input);
        let events = events.unwrap();
        let paths: Vec<_> = heads(&events).iter().map(|h| h.path.clone()).collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(events[1], Ev::Body(b"hello".to_vec()));
        assert_eq!(events[2], Ev::End);
        assert_eq!(events.iter().filter(|e| **e == Ev::End).count(), 3);
        assert_eq!(
            left,
            b"GET /d HTTP/1.1\r\n".len(),
            "partial head left unconsumed"
        );
        assert_eq!(run(input).unwrap(), events);
    }

    #[test]
    fn body_is_handed_out_as_it_comes() {
        let mut p = RequestParser::new(test_limits());
        let head = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        let (n, ev) = p.parse(head).unwrap();
        assert_eq!(n, head.len());
        assert!(matches!(ev, Some(Event::Head(_))));
        assert_eq!(p.parse(b"").unwrap(), (0, None));
        assert_eq!(p.parse(b"abc").unwrap(), (3, Some(Event::Body(b"abc"))));
        assert_eq!(
            p.parse(b"defghijXYZ").unwrap(),
            (7, Some(Event::Body(b"defghij")))
        );
        assert_eq!(p.parse(b"XYZ").unwrap(), (0, Some(Event::End)));
        assert!(p.is_idle());
    }

    #[test]
    fn identical_duplicate_content_length_is_accepted() {
        let h = single_head(
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 005\r\n\r\nhello",
        );
        assert_eq!(h.body, BodyFraming::Length(5));
    }

    #[test]
    fn content_length_at_max_body_is_accepted() {
        let h = single_head(b"POST / HTTP/1.1\r\nContent-Length: 67108864\r\n\r\n");
        assert_eq!(h.body, BodyFraming::Length(64 * 1024 * 1024));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"POST /up HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
                      5;name=value\r\nhello\r\n\
                      6 ; a=\"b;c\" ; d\r\n world\r\n\
                      A\r\n0123456789\r\n\
                      0;last\r\nX-Checksum: abc\r\nX-Other:\tz\r\n\r\n\
                      GET /next HTTP/1.1\r\n\r\n";
        let events = run(input).unwrap();
        assert_eq!(heads(&events)[0].body, BodyFraming::Chunked);
        assert_eq!(events[1], Ev::Body(b"hello world0123456789".to_vec()));
        assert_eq!(events[2], Ev::End);
        assert_eq!(heads(&events)[1].path, "/next");
        assert_eq!(events.len(), 5);
    }

    #[test]
    fn chunked_data_is_not_held_back_for_the_whole_chunk() {
        let mut p = RequestParser::new(test_limits());
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(p.parse(head).unwrap().0, head.len());
        // The size line is consumed, then the two data bytes we have.
        assert_eq!(p.parse(b"a\r\nxy").unwrap(), (5, Some(Event::Body(b"xy"))));
        assert_eq!(p.parse(b"").unwrap(), (0, None));
        assert_eq!(
            p.parse(b"01234567\r").unwrap(),
            (8, Some(Event::Body(b"01234567")))
        );
        assert_eq!(p.parse(b"\r").unwrap(), (0, None));
        assert_eq!(p.parse(b"\r\n0\r\n").unwrap(), (5, None));
        assert_eq!(p.parse(b"\r\n").unwrap(), (2, Some(Event::End)));
        assert!(p.is_idle());
    }

    #[test]
    fn chunked_sizes_in_any_case() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                      000000000000000F\r\n0123456789abcde\r\n0\r\n\r\n";
        let events = run(input).unwrap();
        assert_eq!(events[1], Ev::Body(b"0123456789abcde".to_vec()));
    }

    #[test]
    fn expect_continue() {
        let h =
            single_head(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.expect_continue);
        // Ignored in HTTP/1.0 (RFC 9110 10.1.1).
        let h =
            single_head(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn websocket_handshake_fields() {
        let h = single_head(
            b"GET /ws HTTP/1.1\r\nHost: localhost:8000\r\nUpgrade: WebSocket\r\n\
              Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ== \r\n\
              Sec-WebSocket-Version: 13\r\nOrigin: http://localhost:8000\r\n\r\n",
        );
        assert!(h.upgrade_websocket && h.connection_upgrade && h.wants_websocket());
        assert_eq!(h.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(h.ws_version.as_deref(), Some("13"));
        assert_eq!(h.origin.as_deref(), Some("http://localhost:8000"));
        assert_eq!(h.host.as_deref(), Some("localhost:8000"));
        let plain = single_head(b"GET /ws HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
        assert!(!plain.wants_websocket());
    }

    #[test]
    fn content_type_is_kept() {
        let h = single_head(
            b"POST / HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n",
        );
        assert_eq!(
            h.content_type.as_deref(),
            Some("multipart/form-data; boundary=x")
        );
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        // RFC 9112 2.2: a server SHOULD ignore an empty line before the request line.
        let h = single_head(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(h.path, "/");
    }

    /// Small mutations of valid requests: never a panic, and whole input and
    /// byte-at-a-time input always agree (the fuzz target's property, run here
    /// deterministically with a tiny xorshift).
    #[test]
    fn mutated_requests_agree_and_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"POST /up?x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nbodyHEAD / HTTP/1.1\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n",
        ];
        let alphabet = b"\r\n :;,-0123456789aAfF\t\0\x7f\xff";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let limits = Limits {
            max_head: 96,
            max_headers: 4,
            max_body: 16,
            require_host: false,
        };
        for round in 0..3000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(input.len());
                let byte = alphabet[next(alphabet.len())];
                match next(3) {
                    0 => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ => {
                        input.remove(at);
                    }
                }
            }
            let _ = run_limits(limits, &input);
        }
    }

    #[test]
    fn partial_head_consumes_nothing() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..req.len() {
            let mut p = RequestParser::new(test_limits());
            assert_eq!(p.parse(&req[..cut]).unwrap(), (0, None), "cut at {cut}");
        }
    }

    /// Heads built in a recycled head are the heads a fresh parser gives, whatever the head
    /// before held (a query, a longer path, a host, a content type, an absolute-form target).
    #[test]
    fn recycled_heads_equal_fresh_ones() {
        let requests: [&[u8]; 5] = [
            b"POST /upload-file?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://other:81/p?q HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: \xff\r\n\r\n",
        ];
        let mut recycling = RequestParser::new(test_limits());
        for request in requests {
            let fresh = single_head(request);
            let mut input = request;
            loop {
                let (n, event) = recycling.parse(input).unwrap();
                input = &input[n..];
                match event {
                    Some(Event::Head(head)) => {
                        assert_eq!(*head, fresh);
                        recycling.recycle(head);
                    }
                    Some(Event::Body(_)) => {}
                    Some(Event::End) => break,
                    None => panic!("incomplete"),
                }
            }
        }
    }
}

//! Response writing: status line, header fields and body, appended to a `Vec<u8>`.
//!
//! The loop owns the connection's output queue; this file only knows the wire
//! format, so a handler writes a whole response with one call chain and the
//! loop flushes it later. [`ResponseWriter`] writes as it goes (no allocation
//! of its own) and adds the fields every response needs: `Content-Length`
//! (except where RFC 9110 forbids it), the `Connection` field that [`Persist`]
//! asks for, and the blank line. [`Response`] is a whole response prepared before it is written
//! (at the head of a request, answered once its body has been read).

use super::request::HttpError;
use std::borrow::Cow;

/// The interim answer to `Expect: 100-continue` (RFC 9110 §15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The reason phrase for a status code; empty for codes this server never
/// sends (RFC 9112 §4 allows an empty phrase).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// What a response says about its connection (RFC 9112 §9.3, §9.6, §C.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Nothing: an HTTP/1.1 connection persists unless told otherwise.
    Default,
    /// `Connection: keep-alive`: an HTTP/1.0 request that asked to keep the connection is told
    /// it may. A 1.0 client assumes the server closes unless it says so, and would not reuse
    /// the connection.
    KeepAlive,
    /// `Connection: close`: the server closes once this response is flushed.
    Close,
}

impl From<bool> for Persist {
    /// `true` (close) is `Close`, `false` is `Default`.
    fn from(close: bool) -> Persist {
        if close {
            Persist::Close
        } else {
            Persist::Default
        }
    }
}

/// Whether a response with this status never has a body: 1xx, 204 and 304
/// (RFC 9110 §6.4.1). Such responses also get no `Content-Length`.
pub fn has_no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Writes one response into `out`, field by field:
///
/// ```
/// # use readyloop::codec::http::response::ResponseWriter;
/// let mut out = Vec::new();
/// ResponseWriter::new(&mut out, 405)
///     .header("Allow", "GET, HEAD")
///     .content_type("text/plain; charset=utf-8")
///     .close(true)
///     .body(b"method not allowed\n");
/// assert!(out.starts_with(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"));
/// ```
#[must_use = "a response is complete only after body() or finish()"]
pub struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
    status: u16,
    head_only: bool,
}

impl<'o> ResponseWriter<'o> {
    /// Appends the status line `HTTP/1.1 <status> <reason>`.
    pub fn new(out: &'o mut Vec<u8>, status: u16) -> Self {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        ResponseWriter {
            out,
            status,
            head_only: false,
        }
    }

    /// Appends `name: value`. CR, LF and NUL would end the field early and let
    /// a value smuggle in fields of its own, so they are written as spaces.
    pub fn header(self, name: &str, value: &str) -> Self {
        push_field_text(self.out, name);
        self.out.extend_from_slice(b": ");
        push_field_text(self.out, value);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Appends `Content-Type: value`.
    pub fn content_type(self, value: &str) -> Self {
        self.header("Content-Type", value)
    }

    /// Adds `Connection: close` when `close` is true: the caller closes the
    /// connection once this response is flushed.
    pub fn close(self, close: bool) -> Self {
        self.persist(close.into())
    }

    /// Adds the `Connection` field `persist` asks for, if any.
    pub fn persist(self, persist: Persist) -> Self {
        match persist {
            Persist::Default => self,
            Persist::KeepAlive => self.header("Connection", "keep-alive"),
            Persist::Close => self.header("Connection", "close"),
        }
    }

    /// The answer to a `HEAD` request: every field, `Content-Length` included,
    /// as for `GET`, but no body bytes (RFC 9110 §9.3.2).
    pub fn head_only(mut self, head_only: bool) -> Self {
        self.head_only = head_only;
        self
    }

    /// Adds `Content-Length`, ends the head and appends `body` (unless this is
    /// a HEAD answer, or a status that has no body, which drops `body`).
    pub fn body(self, body: &[u8]) {
        let no_body = has_no_body(self.status);
        debug_assert!(
            !no_body || body.is_empty(),
            "status {} has no body",
            self.status
        );
        if !no_body {
            self.out.extend_from_slice(b"Content-Length: ");
            push_decimal(self.out, body.len() as u64);
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        if !no_body && !self.head_only {
            self.out.extend_from_slice(body);
        }
    }

    /// Ends the head with no `Content-Length`: for `101 Switching Protocols`,
    /// after which the bytes belong to another protocol.
    pub fn finish(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// A response decided before it can be written: a request is routed at its head,
/// and answered once its body (if any) has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body: borrowed for a fixed one (`Response::fixed`, no copy per request).
    pub body: Cow<'static, [u8]>,
    /// Further header fields.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Response {
    /// A response with `body` of type `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: Cow::Owned(body.into()),
            headers: Vec::new(),
        }
    }

    /// A response with a fixed `body` of type `content_type`, not copied.
    pub fn fixed(status: u16, content_type: &'static str, body: &'static [u8]) -> Response {
        Response {
            status,
            content_type,
            body: Cow::Borrowed(body),
            headers: Vec::new(),
        }
    }

    /// A one-line text response (a newline is added).
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    /// A JSON response.
    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, "application/json", body)
    }

    /// Adds a header field.
    pub fn header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers.push((name, value));
        self
    }

    /// Adds header fields.
    pub fn headers(mut self, fields: &[(&'static str, &'static str)]) -> Response {
        self.headers.extend_from_slice(fields);
        self
    }

    /// Appends the response to `out`, with `Connection: close` when `close`, and without
    /// its body for a `HEAD` request.
    pub fn write(&self, out: &mut Vec<u8>, close: bool, head_only: bool) {
        self.write_to(out, close.into(), head_only);
    }

    /// Appends the response to `out` with the `Connection` field `persist` asks for, and
    /// without its body for a `HEAD` request.
    pub fn write_to(&self, out: &mut Vec<u8>, persist: Persist, head_only: bool) {
        let mut w = ResponseWriter::new(out, self.status).content_type(self.content_type);
        for (name, value) in &self.headers {
            w = w.header(name, value);
        }
        w.persist(persist).head_only(head_only).body(&self.body);
    }
}

/// A complete response in one call.
pub fn write_simple(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
    head_only: bool,
) {
    ResponseWriter::new(out, status)
        .content_type(content_type)
        .close(close)
        .head_only(head_only)
        .body(body);
}

/// The answer to a request the parser refused: `<status> <phrase>: <reason>`
/// as text, and `Connection: close`, since the stream is out of sync.
pub fn write_error(out: &mut Vec<u8>, err: &HttpError) {
    let mut body = Vec::with_capacity(64);
    push_decimal(&mut body, u64::from(err.status));
    body.push(b' ');
    body.extend_from_slice(reason_phrase(err.status).as_bytes());
    body.extend_from_slice(b": ");
    body.extend_from_slice(err.reason.as_bytes());
    body.push(b'\n');
    write_simple(
        out,
        err.status,
        "text/plain; charset=utf-8",
        &body,
        true,
        false,
    );
}

fn push_field_text(out: &mut Vec<u8>, text: &str) {
    let unsafe_byte = |b: &u8| matches!(b, b'\r' | b'\n' | 0);
    if !text.as_bytes().iter().any(unsafe_byte) {
        // The usual case: one copy, not a byte at a time.
        out.extend_from_slice(text.as_bytes());
        return;
    }
    out.extend(text.bytes().map(|b| if unsafe_byte(&b) { b' ' } else { b }));
}

/// Appends `n` in decimal without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// An IMF-fixdate for the `Date` field (RFC 9110 §5.6.7), e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`, from seconds since the Unix epoch. The
/// loop can compute it once per second and reuse it.
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), after Howard
/// Hinnant's `civil_from_days`, restricted to dates after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn every_status_we_send_has_a_phrase() {
        for status in [
            100, 101, 200, 202, 204, 400, 403, 404, 405, 408, 411, 413, 417, 426, 431, 500, 501,
            503, 505,
        ] {
            assert!(!reason_phrase(status).is_empty(), "{status}");
        }
        assert_eq!(reason_phrase(599), "");
    }

    /// `responses!(name: |out| writes => "expected wire text";)`
    macro_rules! responses {
        ($($name:ident: |$out:ident| $write:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let mut $out = Vec::new();
                $write;
                assert_eq!(text(&$out), $expected);
            }
        )*};
    }

    responses! {
        ok_json: |out| write_simple(&mut out, 200, "application/json", b"{}", false, false)
            => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        head_keeps_length_drops_body: |out| write_simple(&mut out, 200, "text/plain", b"ok", false, true)
            => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n";
        close: |out| ResponseWriter::new(&mut out, 404).close(true).body(b"")
            => "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        keep_alive_for_http_1_0: |out| Response::text(200, "ok").write_to(&mut out, Persist::KeepAlive, false)
            => "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: keep-alive\r\n\
                Content-Length: 3\r\n\r\nok\n";
        persist_default_says_nothing: |out| Response::text(200, "ok").write_to(&mut out, Persist::Default, true)
            => "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\n";
        no_content_has_no_length: |out| ResponseWriter::new(&mut out, 204).body(b"")
            => "HTTP/1.1 204 No Content\r\n\r\n";
        switching_protocols: |out| ResponseWriter::new(&mut out, 101)
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                .finish()
            => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        upgrade_required: |out| ResponseWriter::new(&mut out, 426)
                .header("Sec-WebSocket-Version", "13")
                .body(b"")
            => "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
        header_injection_is_defused: |out| ResponseWriter::new(&mut out, 200)
                .header("X-Name", "a\r\nSet-Cookie: x")
                .body(b"")
            => "HTTP/1.1 200 OK\r\nX-Name: a  Set-Cookie: x\r\nContent-Length: 0\r\n\r\n";
        unknown_status: |out| ResponseWriter::new(&mut out, 599).body(b"")
            => "HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n";
        error_response: |out| write_error(&mut out, &HttpError::new(431, "too many header fields"))
            => "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n\
                Connection: close\r\nContent-Length: 60\r\n\r\n\
                431 Request Header Fields Too Large: too many header fields\n";
    }

    #[test]
    fn continue_is_a_complete_interim_response() {
        let mut out = Vec::new();
        ResponseWriter::new(&mut out, 100).finish();
        assert_eq!(out, CONTINUE);
    }

    #[test]
    fn large_length() {
        let mut out = Vec::new();
        push_decimal(&mut out, u64::MAX);
        assert_eq!(text(&out), u64::MAX.to_string());
        out.clear();
        push_decimal(&mut out, 0);
        assert_eq!(text(&out), "0");
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}

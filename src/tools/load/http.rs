//! `load http`: the request, built once, and what one connection knows of its responses.
//!
//! The request bytes are written once at start-up and shared by every send (copied into the
//! connection's output when small, queued as one shared chunk when a `--body-file` makes them
//! large). Responses are checked by the sans-IO [`ResponseParser`], never by string matching:
//! a malformed response is a failed check, and so is a status outside 2xx/3xx (wrk's "non-2xx
//! or 3xx responses"); every status is counted. `--close` sends `Connection: close` and opens a
//! connection per request.

use super::opts::HttpOpts;
use crate::codec::http::response_parser::{
    ResponseError, ResponseEvent, ResponseLimits, ResponseParser,
};
use crate::runtime::Chunk;
use std::rc::Rc;

/// Requests up to this size are copied into the connection's output buffer (coalesced with
/// others, one `writev`); larger ones are queued as one shared chunk, never copied: 4 KiB, the
/// output queue's own coalescing limit.
const COPY_LIMIT: usize = 4096;

/// The request every connection sends.
pub struct Request {
    bytes: Rc<[u8]>,
    /// `--method HEAD`: responses have no body.
    pub head: bool,
}

impl Request {
    /// Writes the request of `opts`: request line, `Host` (unless a `--header` gives one),
    /// `Connection: close` under `--close`, the `--header`s, `Content-Length` for a body.
    pub fn new(opts: &HttpOpts) -> Request {
        let has = |name: &str| {
            opts.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut out = format!("{} {} HTTP/1.1\r\n", opts.method, opts.path);
        if !has("host") {
            out.push_str(&format!("Host: {}\r\n", opts.host));
        }
        if opts.close && !has("connection") {
            out.push_str("Connection: close\r\n");
        }
        for (name, value) in &opts.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !opts.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
            out.push_str(&format!("Content-Length: {}\r\n", opts.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&opts.body);
        Request {
            bytes: bytes.into(),
            head: opts.method == "HEAD",
        }
    }

    /// The bytes, as the output queue takes them best.
    pub fn chunk(&self) -> Result<&[u8], Chunk> {
        if self.bytes.len() <= COPY_LIMIT {
            Ok(&self.bytes)
        } else {
            Err(Chunk::Shared(self.bytes.clone()))
        }
    }
}

/// What one connection's responses came to, as the client sees each.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A complete response with this status; `keep_alive` false when the server will close.
    Done { status: u16, keep_alive: bool },
    /// Not a valid response: drop the connection.
    Malformed(ResponseError),
}

/// The HTTP side of one connection.
pub struct HttpConn {
    parser: ResponseParser,
    /// Status and keep-alive of the response being read.
    status: u16,
    keep_alive: bool,
    /// Bytes the last `feed` left unconsumed (a partial head): the loop keeps them for us.
    tail: usize,
}

impl HttpConn {
    /// A connection whose responses answer `request`.
    pub fn new(request: &Request) -> HttpConn {
        let mut parser = ResponseParser::new(ResponseLimits::default());
        parser.set_head_request(request.head);
        HttpConn {
            parser,
            status: 0,
            keep_alive: true,
            tail: 0,
        }
    }

    /// Feeds the bytes that arrived; calls `answer` for each complete (or malformed) response
    /// and returns the bytes used. Stops after a malformed one, or when `answer` returns false
    /// (the caller is done with the connection).
    pub fn feed(&mut self, data: &[u8], mut answer: impl FnMut(Answer) -> bool) -> usize {
        let mut used = 0;
        loop {
            match self.parser.parse(&data[used..]) {
                Err(e) => {
                    answer(Answer::Malformed(e));
                    self.tail = 0;
                    return data.len();
                }
                Ok((n, event)) => {
                    used += n;
                    match event {
                        None => {
                            self.tail = data.len() - used;
                            return used;
                        }
                        Some(ResponseEvent::Head(h)) => {
                            self.status = h.status;
                            self.keep_alive = h.keep_alive;
                        }
                        Some(ResponseEvent::Body(_) | ResponseEvent::Informational(_)) => {}
                        Some(ResponseEvent::End) => {
                            let done = Answer::Done {
                                status: self.status,
                                keep_alive: self.keep_alive,
                            };
                            if !answer(done) {
                                self.tail = 0;
                                return data.len();
                            }
                        }
                    }
                }
            }
        }
    }

    /// The server closed: a body that runs until the close ends here, or the response was cut
    /// short (`None`: the close came between responses).
    pub fn eof(&mut self) -> Option<Answer> {
        match self.parser.finish(self.tail) {
            Ok(Some(_)) => Some(Answer::Done {
                status: self.status,
                keep_alive: false,
            }),
            Ok(None) => None,
            Err(e) => Some(Answer::Malformed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> HttpOpts {
        HttpOpts {
            method: "GET".into(),
            path: "/healthz".into(),
            host: "example:8000".into(),
            headers: vec![],
            body_file: None,
            body: vec![],
            close: false,
        }
    }

    #[test]
    fn request_has_host_headers_and_body() {
        let r = Request::new(&opts());
        assert_eq!(
            r.chunk().unwrap(),
            b"GET /healthz HTTP/1.1\r\nHost: example:8000\r\n\r\n"
        );
        let mut o = opts();
        o.method = "POST".into();
        o.headers = vec![("X-A".into(), "1".into()), ("host".into(), "other".into())];
        o.body = b"hello".to_vec();
        o.close = true;
        let r = Request::new(&o);
        assert_eq!(
            r.chunk().unwrap(),
            b"POST /healthz HTTP/1.1\r\nConnection: close\r\nX-A: 1\r\nhost: other\r\n\
              Content-Length: 5\r\n\r\nhello"
                .as_slice()
        );
        o.body = vec![b'x'; COPY_LIMIT];
        assert!(matches!(Request::new(&o).chunk(), Err(Chunk::Shared(_))));
    }

    #[test]
    fn answers_come_per_response_and_across_reads() {
        let r = Request::new(&opts());
        let mut c = HttpConn::new(&r);
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let mut got = Vec::new();
        // Split mid-head of the second response: the first is answered, the rest kept.
        let n = c.feed(&wire[..50], |a| {
            got.push(a);
            true
        });
        assert_eq!(n, 40);
        let m = c.feed(&wire[n..], |a| {
            got.push(a);
            true
        });
        assert_eq!(n + m, wire.len());
        assert_eq!(
            got,
            [
                Answer::Done {
                    status: 200,
                    keep_alive: true
                },
                Answer::Done {
                    status: 503,
                    keep_alive: false
                }
            ]
        );
        assert_eq!(c.eof(), None);
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let r = Request::new(&opts());
        let mut c = HttpConn::new(&r);
        let mut got = Vec::new();
        c.feed(b"SSH-2.0-x\r\n\r\n", |a| {
            got.push(a);
            true
        });
        assert!(matches!(got[0], Answer::Malformed(_)));
        let mut c = HttpConn::new(&r);
        c.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", |_| true);
        assert!(matches!(c.eof(), Some(Answer::Malformed(_))));
        let mut c = HttpConn::new(&r);
        c.feed(b"HTTP/1.0 200 OK\r\n\r\nuntil close", |_| true);
        assert_eq!(
            c.eof(),
            Some(Answer::Done {
                status: 200,
                keep_alive: false
            })
        );
    }
}

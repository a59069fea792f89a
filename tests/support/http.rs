//! The one HTTP/1.1 client of the tests: `Client` writes raw bytes and reads responses into
//! `Response` (status, headers, body, and the head as it came, for messages), keeping what it
//! read past a response, so pipelining works and a WebSocket client can take the connection
//! over after a `101` (tests/support/ws.rs). This is the only place that reads an HTTP head.
//! Also the HTTP side of `Server` (a client for it, `GET`, waiting for an upload task, its
//! `uploads.jsonl`), the fields tests read out of JSON answers and reports, and upload helpers.

use super::{connect, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The head as received, up to and including the empty line that ends it.
    pub head: String,
    pub status: u16,
    /// Lower-cased names, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw HTTP/1.1 client connection with a buffer for what was read past a response.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// A new connection (`connect`: timeouts of `IO_TIMEOUT`) with TCP_NODELAY.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = connect(addr);
        stream.set_nodelay(true).unwrap();
        Client::over(stream)
    }

    /// A client on `stream` as it is (its timeouts and options untouched).
    pub fn over(stream: TcpStream) -> Client {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sets the socket's read timeout.
    pub fn with_read_timeout(self, limit: Duration) -> Client {
        self.stream.set_read_timeout(Some(limit)).unwrap();
        self
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// `GET path` with `Connection: close`; the answer.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        self.response()
    }

    /// Reads more bytes into the buffer; false on EOF (or a reset).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read from server: {e} (have {:?})", self.buffered()),
        }
    }

    /// Waits up to `wait` for bytes (or EOF) from the server: true if any came.
    pub fn poll_read(&mut self, wait: Duration) -> bool {
        let before = self.stream.read_timeout().unwrap();
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        let got = match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if super::timed_out(&e) => false,
            Err(_) => true,
        };
        self.stream.set_read_timeout(before).unwrap();
        got
    }

    /// What was read and not yet taken.
    pub fn unread(&self) -> &[u8] {
        &self.buf
    }

    pub fn buffered(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The next `n` bytes, from the buffer first; `None` at EOF (or a reset) before the first
    /// of them, a panic at EOF inside.
    pub fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                if self.buf.is_empty() {
                    return None;
                }
                panic!("EOF after {} of {n} bytes", self.buf.len());
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads one response (a `100 Continue` counts as one); panics on EOF first.
    pub fn response(&mut self) -> Response {
        self.try_response(false)
            .unwrap_or_else(|| panic!("EOF before a response (have {:?})", self.buffered()))
    }

    /// Reads one response to a `HEAD` request (`Content-Length` describes a body not sent), or
    /// just the head of any response, leaving what follows it unread.
    pub fn head_response(&mut self) -> Response {
        self.try_response(true)
            .unwrap_or_else(|| panic!("EOF before a response (have {:?})", self.buffered()))
    }

    /// One response, or `None` on a clean EOF before any byte of it.
    pub fn try_response(&mut self, head_only: bool) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                if self.buf.is_empty() {
                    return None;
                }
                panic!("EOF inside a response head: {:?}", self.buffered());
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("UTF-8 head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = if head_only || (100..200).contains(&status) {
            0
        } else {
            headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap())
        };
        while self.buf.len() < head_end + len {
            assert!(self.fill(), "EOF inside a response body");
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Some(Response {
            head,
            status,
            headers,
            body,
        })
    }

    /// Asserts that the server closes the connection (EOF or reset) without sending more.
    pub fn expect_closed(&mut self) {
        let start = Instant::now();
        let more = self.fill();
        assert!(
            !more && self.buf.is_empty(),
            "expected the server to close, got {:?} after {:?}",
            self.buffered(),
            start.elapsed()
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` on a fresh connection (read timeout 5 s) and reads the head of the answer.
pub fn http_head(addr: SocketAddr, request: &str) -> Response {
    let mut c = Client::connect(addr).with_read_timeout(Duration::from_secs(5));
    c.send(request.as_bytes());
    c.head_response()
}

/// The HTTP side of a `Server` (its `http` listener; `uploads` for an `http_only` one).
impl Server {
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http())
    }

    /// A new connection to the HTTP listener.
    pub fn http_client(&self) -> Client {
        Client::connect(self.http())
    }

    /// `GET path` on a new connection; the answer.
    pub fn get(&self, path: &str) -> Response {
        self.http_client().get(path)
    }

    /// `GET /tasks/ID` until its status is `done` or `failed` (10 s at most); the JSON.
    pub fn wait_task(&self, task: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(&format!("/tasks/{task}"));
            assert_eq!(r.status, 200, "task {task}: {}", r.text());
            let body = r.text();
            if body.contains("\"status\": \"done\"") || body.contains("\"status\": \"failed\"") {
                return body;
            }
            assert!(Instant::now() < deadline, "task {task} never ended: {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines of `uploads.jsonl` in the upload dir.
    pub fn uploads_jsonl(&self) -> Vec<String> {
        std::fs::read_to_string(self.uploads().join("uploads.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The value of member `key` in a JSON text, as written: the first `"key"` followed by a
/// colon (`"key": v` or `"key":v`, at any depth), then a string with its quotes (no
/// unescaping) or a scalar up to the next `,`, `}`, `]` or white space.
pub fn json_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    let mut from = 0;
    while let Some(i) = text[from..].find(&quoted) {
        from += i + quoted.len();
        let Some(rest) = text[from..].trim_start().strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim_start();
        let end = match rest.strip_prefix('"') {
            Some(s) => s.find('"')? + 2,
            None => rest
                .find(|c: char| matches!(c, ',' | '}' | ']') || c.is_whitespace())
                .unwrap_or(rest.len()),
        };
        return Some(&rest[..end]);
    }
    None
}

/// The leading digits of field `key` as a number (`"key": 12` or `"key":12`).
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let digits: String = json_value(text, key)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A string field, without unescaping (test names need none).
pub fn json_str(text: &str, key: &str) -> Option<String> {
    let v = json_value(text, key)?;
    Some(v.strip_prefix('"')?.strip_suffix('"')?.to_owned())
}

/// The `"task": N` of a 202 answer.
pub fn task_id(r: &Response) -> u64 {
    let text = r.text();
    assert_eq!(r.status, 202, "expected 202, got {} {text}", r.status);
    json_u64(&text, "task").unwrap_or_else(|| panic!("no task id in {text}"))
}

#[cfg(feature = "http")]
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic, incompressible-looking test bytes (xorshift64*).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The head of a raw upload of `len` bytes stored as `name`.
pub fn raw_upload_head(name: &str, len: usize) -> Vec<u8> {
    format!(
        "POST /upload-file?name={name} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes()
}

/// Whether curl is installed (the curl tests are skipped, loudly, without it).
pub fn have_curl() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: curl is not installed");
    }
    ok
}

//! Shared by the HTTP integration tests: start the real `readyloop` binary (through
//! `tests/common`) on a free loopback port with a fresh upload dir, talk raw HTTP/1.1 to it
//! with bounded socket timeouts, and read what it wrote to disk. Every wait in here has a
//! deadline, so a hung server fails a test instead of hanging it.
#![allow(dead_code)] // each test file uses its own subset

#[path = "../common/mod.rs"]
pub mod shared;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Socket read/write timeout of every test connection: generous for a loaded CI machine, short
/// enough that a wrong expectation fails within seconds.
pub use shared::IO_TIMEOUT;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "readyloop-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `readyloop serve` with only the HTTP listener; killed on drop.
pub struct Server {
    /// The process (declared before `root`, so it is killed before its directory goes).
    pub process: shared::Server,
    pub addr: SocketAddr,
    /// Holds the upload dir (`root/uploads`) and the server's stderr log (`root/stderr.log`).
    pub root: TempDir,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(TempDir::new("http"), extra)
    }

    /// Starts with `root/uploads` as the upload dir (which may already hold files).
    pub fn start_in(root: TempDir, extra: &[&str]) -> Server {
        let uploads = root.path().join("uploads");
        let mut args = vec!["--http", "127.0.0.1:0", "--line", "off", "--hello", "off"];
        args.extend(["--upload-dir", uploads.to_str().expect("UTF-8 temp dir")]);
        args.extend_from_slice(extra);
        let process = shared::Server::serve(
            &args,
            shared::Options {
                rust_log: Some("readyloop=info".into()),
                stderr_file: Some(root.path().join("stderr.log")),
                ..shared::Options::default()
            },
        );
        let addr = process.http.expect("listening http");
        Server {
            process,
            addr,
            root,
        }
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.path().join("uploads")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Resident set size in bytes, from `/proc/PID/statm`.
    pub fn rss(&self) -> u64 {
        self.process.rss()
    }

    /// The server's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        self.process.stderr_text()
    }

    /// `GET path` on a new connection; the answer.
    pub fn get(&self, path: &str) -> Response {
        let mut c = self.connect();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
        c.response()
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

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.process.signal(libc::SIGTERM);
        self.wait_exit(within)
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        self.process
            .wait_exit(within)
            .unwrap_or_else(|| panic!("server did not exit within {within:?}\n{}", self.log()))
    }

    /// The lines of `uploads.jsonl`.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.uploads().join("uploads.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
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
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Reads more bytes into the buffer; false on EOF.
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
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 16 * 1024];
        let got = match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(_) => true,
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        got
    }

    pub fn buffered(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads one response (a `100 Continue` counts as one); panics on EOF first.
    pub fn response(&mut self) -> Response {
        self.try_response(false)
            .unwrap_or_else(|| panic!("EOF before a response (have {:?})", self.buffered()))
    }

    /// Reads one response to a `HEAD` request: `Content-Length` describes a body not sent.
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

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `"task": N` of a 202 answer.
pub fn task_id(r: &Response) -> u64 {
    let text = r.text();
    assert_eq!(r.status, 202, "expected 202, got {} {text}", r.status);
    json_u64(&text, "task").unwrap_or_else(|| panic!("no task id in {text}"))
}

/// A number field of a flat JSON text (`"key": 12` or `"key":12`).
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A string field of a flat JSON text, without unescaping (test names need none).
pub fn json_str(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

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

//! Shared by the integration tests: run the real `readyloop` binary on port 0 (through
//! `tests/common`), and a raw WebSocket client that writes frames byte by byte as a test wants
//! them (independent of the crate's own codec, so a codec bug cannot hide itself).
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod shared;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A `readyloop serve` process with only its HTTP listener, killed (and its upload dir
/// removed) on drop. Its stderr (the log) is collected for tests that check log lines.
pub struct Server {
    process: shared::Server,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "readyloop-wstest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["--http", "127.0.0.1:0", "--line", "off", "--hello", "off"];
        args.extend(["--upload-dir", dir.to_str().expect("UTF-8 temp dir")]);
        args.extend_from_slice(extra);
        let process = shared::Server::serve(
            &args,
            shared::Options {
                rust_log: Some("readyloop=info".into()),
                ..shared::Options::default()
            },
        );
        let addr = process.http.expect("listening http");
        Server { process, addr, dir }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.process.stderr_text()
    }

    /// Waits up to `within` for `needle` to appear in the log.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(4000).collect();
            eprintln!("--- server log (last 40 lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            if let Ok(Some(status)) = self.process.child.try_wait() {
                eprintln!("--- server exited: {status}");
            }
        }
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `request` on a fresh connection and returns the status code and the response head.
pub fn http_head(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut s);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, head)
}

/// Reads up to and including the blank line that ends an HTTP head, one byte at a time so
/// nothing after it is consumed.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => panic!(
                "EOF inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(b[0]),
            Err(e) => panic!("reading the response head: {e}"),
        }
    }
    String::from_utf8(head).unwrap()
}

/// The RFC 6455 §1.3 sample key; any 16-byte nonce in base64 would do.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a Close frame (`None` when it has none).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A WebSocket client on a plain blocking socket that builds every frame itself.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects and completes the handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(upgrade_request(path, "").as_bytes())
            .unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawClient { stream }
    }

    /// A frame with explicit first byte (FIN, RSV, opcode) and optional mask.
    pub fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![first];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// A masked frame: `fin`, `opcode`, payload.
    pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        Self::encode(
            if fin { 0x80 } else { 0 } | opcode,
            payload,
            Some([0x12, 0x34, 0x56, 0x78]),
        )
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&Self::masked(fin, opcode, payload));
    }

    /// Reads one server frame; `None` at EOF (or a reset) before a frame starts.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let mut h = [0u8; 2];
        if !read_exact_or_eof(&mut self.stream, &mut h) {
            return None;
        }
        assert_eq!(h[1] & 0x80, 0, "the server masked a frame");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).unwrap();
        Some(Frame {
            fin: h[0] & 0x80 != 0,
            opcode: h[0] & 0x0f,
            payload,
        })
    }

    /// True when the server has closed the TCP connection (EOF or reset) within the read
    /// timeout, with nothing more to read.
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected byte {:#x} after the close", b[0]),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    /// Reads frames until a Close; returns its code. Panics on EOF first.
    pub fn expect_close(&mut self) -> Option<u16> {
        loop {
            let f = self.read_frame().expect("EOF before a close frame");
            if f.opcode == 0x8 {
                return f.close_code();
            }
        }
    }
}

/// `read_exact`, but `false` on EOF or reset before the first byte.
fn read_exact_or_eof(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return false,
            Ok(0) => panic!("EOF inside a frame header"),
            Ok(n) => got += n,
            Err(e) if got == 0 && e.kind() == std::io::ErrorKind::ConnectionReset => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
    true
}

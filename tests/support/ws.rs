//! WebSocket clients. `RawClient` is the one raw client: it writes every frame byte by byte as
//! a test wants it (masked or not, reserved bits, bad opcodes) and reads frames the same way,
//! independent of the crate's own codec, so a codec bug cannot hide itself; it upgrades through
//! the HTTP `Client` (tests/support/http.rs) and keeps whatever came after the `101`. For the
//! happy paths, `tungstenite_client` is a second implementation's client. Also the upgrade
//! request and the WebSocket side of `Server`.

use super::{connect, Client, Server};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

/// The RFC 6455 §1.3 sample key; any 16-byte nonce in base64 would do.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// The WebSocket side of a `Server` (its `http` listener).
impl Server {
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.http(), path)
    }
}

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (`0b100`: RSV1, permessage-deflate's compressed bit).
    pub rsv: u8,
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
    conn: Client,
    /// The head of the server's `101` response (to check `Sec-WebSocket-Extensions`).
    pub response_head: String,
}

impl RawClient {
    /// Connects (`connect`: timeouts of `IO_TIMEOUT`) and completes the handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        RawClient::handshake(connect(addr), upgrade_request(path, "").as_bytes())
    }

    /// Writes `wire` (an upgrade request, perhaps followed by frames) on `stream` as it is, in
    /// one write, and expects `101`; what follows the response's head is kept for
    /// `read_frame`.
    pub fn handshake(stream: TcpStream, wire: &[u8]) -> RawClient {
        let mut conn = Client::over(stream);
        conn.send(wire);
        let head = conn.head_response().head;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawClient {
            conn,
            response_head: head,
        }
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
        self.conn.send(bytes);
    }

    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&Self::masked(fin, opcode, payload));
    }

    /// Exactly `N` bytes of a frame that has begun.
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let got = self.conn.take(N).expect("EOF inside a frame");
        got.try_into().unwrap()
    }

    /// Reads one server frame; `None` at EOF (or a reset) before a frame starts.
    pub fn read_frame(&mut self) -> Option<Frame> {
        let h: [u8; 2] = self.conn.take(2)?.try_into().unwrap();
        assert_eq!(h[1] & 0x80, 0, "the server masked a frame");
        let len = match h[1] & 0x7f {
            126 => u16::from_be_bytes(self.bytes()) as usize,
            127 => u64::from_be_bytes(self.bytes()) as usize,
            n => n as usize,
        };
        let payload = self.conn.take(len).expect("EOF inside a frame");
        Some(Frame {
            fin: h[0] & 0x80 != 0,
            rsv: (h[0] >> 4) & 0x07,
            opcode: h[0] & 0x0f,
            payload,
        })
    }

    /// True when the server has closed the TCP connection (EOF or reset) within the read
    /// timeout, with nothing more to read.
    pub fn at_eof(&mut self) -> bool {
        if let Some(b) = self.conn.unread().first() {
            panic!("unexpected byte {b:#x} after the close");
        }
        let mut b = [0u8; 1];
        match self.conn.stream.read(&mut b) {
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

/// A `tungstenite` client of `ws://ADDR/PATH` on a blocking socket with read timeout
/// `read_timeout`, and no size limits of its own (a server's limit is what tests check).
pub fn tungstenite_client(
    addr: SocketAddr,
    path: &str,
    read_timeout: Duration,
) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(read_timeout)).unwrap();
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, response) =
        tungstenite::client::client_with_config(format!("ws://{addr}{path}"), stream, Some(config))
            .unwrap_or_else(|e| panic!("handshake on {path}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

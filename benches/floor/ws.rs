//! The WebSocket floor: the upgrade (request head to `101`, once per connection, outside the
//! measured window), then frames: each client frame is unmasked while it is copied into the
//! answer, and
//! - on `/echo` sent back as it came (all answers for one read in one `write`);
//! - on `/ws` (text) prefixed with the broadcast text readyloop uses, framed once, and that
//!   one frame written to every `/ws` socket with one `write` each.
//!
//! Pings get pongs and a close gets a close; nothing else is checked (no UTF-8, no limits,
//! no fragmentation: every frame is taken as a whole message).

use super::{Conns, Floor};
use std::os::fd::RawFd;

/// What a connection is doing.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the upgrade request head.
    Handshake,
    /// Upgraded on `/echo`.
    Echo,
    /// Upgraded on `/ws`.
    Broadcast,
}

pub struct WsFloor {
    prefix: Vec<u8>,
    phase: Vec<Phase>,
    subscribers: Vec<RawFd>,
    out: Vec<u8>,
    shared: Vec<u8>,
}

impl WsFloor {
    /// A floor whose `/ws` broadcasts are `prefix` followed by the message.
    pub fn new(prefix: &str) -> WsFloor {
        WsFloor {
            prefix: prefix.as_bytes().to_vec(),
            phase: Vec::new(),
            subscribers: Vec::new(),
            out: Vec::new(),
            shared: Vec::new(),
        }
    }
}

/// A whole frame at the start of `input`: (opcode, payload start, payload length, mask).
fn frame(input: &[u8]) -> Option<(u8, usize, usize, [u8; 4])> {
    let b1 = *input.get(1)?;
    let (mut at, len) = match b1 & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(input.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(input.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    let mut mask = [0u8; 4];
    if b1 & 0x80 != 0 {
        mask.copy_from_slice(input.get(at..at + 4)?);
        at += 4;
    }
    if input.len() - at < len {
        return None;
    }
    Some((input[0] & 0x0f, at, len, mask))
}

/// Appends an unmasked server frame header for `len` bytes of `opcode` (FIN set).
fn header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends `payload` unmasked with `mask`.
fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    let from = out.len();
    out.extend_from_slice(payload);
    let word = u32::from_ne_bytes(mask);
    let tail = &mut out[from..];
    let mut chunks = tail.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// The `101` for a request head, and whether it asked for `/ws`.
fn upgrade(head: &[u8]) -> Option<(Vec<u8>, bool)> {
    let text = std::str::from_utf8(head).ok()?;
    let path = text.split(' ').nth(1)?;
    let key = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim())
    })?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    Some((response.into_bytes(), path == "/ws"))
}

impl Floor for WsFloor {
    fn on_open(&mut self, _: &mut Conns, fd: RawFd) {
        let i = fd as usize;
        if self.phase.len() <= i {
            self.phase.resize(i + 1, Phase::Handshake);
        }
        self.phase[i] = Phase::Handshake;
    }

    fn on_input(&mut self, conns: &mut Conns, fd: RawFd, input: &[u8]) -> usize {
        let mut used = 0;
        if self.phase[fd as usize] == Phase::Handshake {
            let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                return 0;
            };
            used = end + 4;
            match upgrade(&input[..used]) {
                Some((response, broadcast)) => {
                    conns.send(fd, &response);
                    if broadcast {
                        self.phase[fd as usize] = Phase::Broadcast;
                        self.subscribers.push(fd);
                    } else {
                        self.phase[fd as usize] = Phase::Echo;
                    }
                }
                None => {
                    conns.close_when_sent(fd);
                    return input.len();
                }
            }
        }
        let broadcast = self.phase[fd as usize] == Phase::Broadcast;
        while let Some((opcode, at, len, mask)) = frame(&input[used..]) {
            let payload = &input[used + at..used + at + len];
            used += at + len;
            match opcode {
                0x8 => {
                    header(&mut self.out, 0x8, len);
                    unmask_into(&mut self.out, payload, mask);
                    conns.send(fd, &self.out);
                    self.out.clear();
                    conns.close_when_sent(fd);
                    return input.len();
                }
                0x9 => {
                    header(&mut self.out, 0xA, len);
                    unmask_into(&mut self.out, payload, mask);
                }
                0xA => {}
                _ if broadcast => {
                    self.shared.clear();
                    header(&mut self.shared, 0x1, self.prefix.len() + len);
                    self.shared.extend_from_slice(&self.prefix);
                    unmask_into(&mut self.shared, payload, mask);
                    for &to in &self.subscribers {
                        conns.send(to, &self.shared);
                    }
                }
                _ => {
                    header(&mut self.out, opcode, len);
                    unmask_into(&mut self.out, payload, mask);
                }
            }
        }
        if !self.out.is_empty() {
            conns.send(fd, &self.out);
            self.out.clear();
        }
        used
    }

    fn on_close(&mut self, fd: RawFd) {
        if self.phase.get(fd as usize) == Some(&Phase::Broadcast) {
            self.subscribers.retain(|&s| s != fd);
        }
    }
}

//! `LoadClient`: the load generator's `Handler`, one state machine per connection slot.
//!
//! Every connection goes down the same stages (`Stage`), whatever the mode:
//! `Connecting` → (`Handshaking`, for WebSocket) → `Ready` → `Done` (or `Finished`, for a hello
//! conversation that ended well). What happens once `Ready` is the mode's business:
//! - **idle**: nothing; hold the connection (a WebSocket answers pings and counts messages).
//! - **hello**: read the greeting until EOF; it must be non-empty and end with `\n`. The slot
//!   connects again (`reopen`), at once after a good greeting, after `RETRY_DELAY` after a failure.
//! - **echo** / **ws-echo**: keep `--pipeline` messages in flight; each echo must equal the
//!   payload sent (regenerated from slot and sequence number, so nothing is stored but the send
//!   times); latency is send → matching echo.
//! - **ws-broadcast**: the first `--senders` slots send (the driver calls `broadcast_tick`);
//!   every connection checks each sender's sequence numbers arrive once and in order.
//!
//! Errors are counted only while measuring (`stopping` is false): the close-down at the end
//! makes no errors. Connections that fail are not reopened, except in hello mode.

use super::report::Report;
use super::Mode;
use crate::codec::line::next_line;
use crate::codec::ws::close::close_frame;
use crate::codec::ws::{frame, handshake, CloseCode, Message, MessageDecoder, OpCode, Role};
use crate::runtime::{Addr, CloseReason, ConnId, ContextOf, Handler, ListenerId};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;

/// Wait before a hello slot connects again after a failure, so a refusing server does not make
/// us spin (10 retries per second per slot).
pub const RETRY_DELAY_US: u64 = 100_000;
/// ws-broadcast: sender ids are `proc_index * SENDERS_PER_PROC + sender`, unique across `--procs`.
const SENDERS_PER_PROC: u32 = 1 << 16;
/// ws-broadcast: at most this many messages per driver tick, so a stall is not followed by a
/// burst that measures our own backlog.
const MAX_BURST: u64 = 10_000;

/// Microseconds on CLOCK_MONOTONIC, which all processes on the machine share (ws-broadcast
/// send timestamps travel between `--procs` children).
pub fn mono_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `connect` in progress.
    Connecting,
    /// WebSocket upgrade request sent, waiting for the 101.
    Handshaking,
    /// Doing the mode's work; counted in `LoadClient::open`.
    Ready,
    /// A hello conversation that ended well; the slot connects again.
    Finished,
    /// Failed (error counted) or being closed.
    Done,
}

/// WebSocket state of a connection.
pub struct WsConn {
    /// The `Sec-WebSocket-Key` we sent (until the 101 arrives).
    key: String,
    decoder: MessageDecoder,
    /// ws-broadcast: the next sequence number expected from each sender.
    next_from: HashMap<u32, u64>,
}

/// Per-connection state.
pub struct Conn {
    slot: u32,
    stage: Stage,
    /// The first connection of its slot (ramp statistics).
    first: bool,
    /// When the connect started.
    started_us: u64,
    /// Next sequence number to send / expected back.
    next_seq: u64,
    expect_seq: u64,
    /// Send times of messages awaiting their echo, oldest first.
    inflight: VecDeque<u64>,
    /// hello: greeting bytes so far and the last of them.
    got: usize,
    last: u8,
    ws: Option<Box<WsConn>>,
}

impl Conn {
    pub fn new(slot: u32, first: bool) -> Conn {
        Conn {
            slot,
            stage: Stage::Connecting,
            first,
            started_us: mono_us(),
            next_seq: 0,
            expect_seq: 0,
            inflight: VecDeque::new(),
            got: 0,
            last: 0,
            ws: None,
        }
    }
}

/// The `Context` of the load generator's callbacks.
pub type Cx<'a> = ContextOf<'a, LoadClient>;

/// The load generator's handler.
pub struct LoadClient {
    pub mode: Mode,
    pub size: usize,
    pub pipeline: usize,
    /// Upgrade to WebSocket on this path before the mode's work.
    pub ws_path: Option<String>,
    pub text: bool,
    host: String,
    pub report: Report,
    /// Measuring is over: no more errors, sends or reopens.
    pub stopping: bool,
    /// Connections `Ready` now.
    pub open: u64,
    /// Hello slots to connect again, with the time (µs) from which they may.
    pub reopen: Vec<(u32, u64)>,
    pub first_started_us: u64,
    pub last_first_open_us: u64,
    rng: u64,
    scratch: Vec<u8>,
    // ws-broadcast
    pub proc_index: u32,
    pub senders: usize,
    pub msg_rate: f64,
    sender_ids: Vec<Option<ConnId>>,
    /// Messages sent per local sender.
    pub sent: Vec<u64>,
    send_started_us: Option<u64>,
}

impl LoadClient {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Mode,
        addr: SocketAddr,
        conns: u64,
        size: usize,
        pipeline: usize,
        ws_path: Option<String>,
        text: bool,
        proc_index: u32,
        senders: usize,
        msg_rate: f64,
    ) -> LoadClient {
        let senders = senders.min(conns as usize);
        LoadClient {
            mode,
            size,
            pipeline: pipeline.max(1),
            ws_path,
            text,
            host: addr.to_string(),
            report: Report::new(mode.name(), &addr.to_string(), conns),
            stopping: false,
            open: 0,
            reopen: Vec::new(),
            first_started_us: 0,
            last_first_open_us: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ mono_us() ^ ((std::process::id() as u64) << 32),
            scratch: Vec::new(),
            proc_index,
            senders,
            msg_rate,
            sender_ids: vec![None; senders],
            sent: vec![0; senders],
            send_started_us: None,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: masks and nonces need to vary, not to be secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.random() as u32).to_le_bytes()
    }

    fn error(&mut self, kind: &str) {
        if !self.stopping {
            self.report.error(kind);
        }
    }

    /// Leaves `Ready` (or any stage) for `stage`, keeping `open` right.
    fn leave(&mut self, st: &mut Conn, stage: Stage) {
        if st.stage == Stage::Ready {
            self.open -= 1;
        }
        st.stage = stage;
    }

    /// Counts an error of `kind` and drops the connection.
    fn fail(&mut self, cx: &mut Cx<'_>, st: &mut Conn, kind: &str) {
        self.error(kind);
        self.leave(st, Stage::Done);
        let id = cx.id();
        cx.abort(id);
    }

    /// The connection (and its upgrade) is up: start the mode's work.
    fn ready(&mut self, cx: &mut Cx<'_>, st: &mut Conn) {
        let id = cx.id();
        st.stage = Stage::Ready;
        let slot = st.slot as usize;
        self.open += 1;
        self.report.conns_peak = self.report.conns_peak.max(self.open);
        match self.mode {
            Mode::Echo | Mode::WsEcho => {
                for _ in 0..self.pipeline {
                    self.send_next(cx, st);
                }
            }
            Mode::WsBroadcast if slot < self.senders => self.sender_ids[slot] = Some(id),
            _ => {}
        }
    }

    /// echo / ws-echo: sends the connection's next message.
    fn send_next(&mut self, cx: &mut Cx<'_>, st: &mut Conn) {
        if self.stopping {
            return;
        }
        let id = cx.id();
        let (slot, seq) = (st.slot, st.next_seq);
        st.next_seq += 1;
        st.inflight.push_back(mono_us());
        payload(&mut self.scratch, slot, seq, self.size);
        self.report.msgs_sent += 1;
        if self.mode == Mode::WsEcho {
            let op = if self.text {
                OpCode::Text
            } else {
                OpCode::Binary
            };
            let mask = self.mask();
            cx.send(id, frame::masked_frame(op, &self.scratch, mask));
        } else {
            self.scratch.push(b'\n');
            cx.send_copy(id, &self.scratch);
        }
    }

    /// Records a verified message that took `from_us` → now.
    fn got_message(&mut self, from_us: Option<u64>) {
        if self.stopping {
            return;
        }
        self.report.msgs += 1;
        if let Some(t) = from_us {
            self.report
                .latency
                .saturating_record(mono_us().saturating_sub(t).max(1));
        }
    }

    fn echo_lines(&mut self, cx: &mut Cx<'_>, st: &mut Conn, data: &[u8]) -> usize {
        let mut used = 0;
        // The payload is at least as long as its "slot:seq:" prefix (~30 bytes).
        let max = self.size + 64;
        loop {
            match next_line(&data[used..], max) {
                Ok(Some((line, n))) => {
                    used += n;
                    payload(&mut self.scratch, st.slot, st.expect_seq, self.size);
                    if line != self.scratch.as_slice() {
                        self.fail(cx, st, "echo: payload mismatch");
                        return data.len();
                    }
                    st.expect_seq += 1;
                    let sent = st.inflight.pop_front();
                    self.got_message(sent);
                    self.send_next(cx, st);
                }
                Ok(None) => return used,
                Err(_) => {
                    self.fail(cx, st, "echo: line too long");
                    return data.len();
                }
            }
        }
    }

    fn ws_data(&mut self, cx: &mut Cx<'_>, st: &mut Conn, data: &mut [u8]) -> usize {
        let id = cx.id();
        let mut used = 0;
        loop {
            let Some(ws) = st.ws.as_deref_mut() else {
                return data.len();
            };
            let (n, msg) = match ws.decoder.decode(&mut data[used..]) {
                Ok((0, None)) => return used,
                Ok(step) => step,
                Err(e) => {
                    let kind = format!("ws: protocol error: {}", e.reason);
                    self.fail(cx, st, &kind);
                    return data.len();
                }
            };
            used += n;
            let checked = match msg {
                None | Some(Message::Pong(_)) => continue,
                Some(Message::Ping(p)) => {
                    let mask = self.mask();
                    cx.send(id, frame::masked_frame(OpCode::Pong, p, mask));
                    continue;
                }
                Some(Message::Close(_)) => {
                    self.error("ws: closed by server");
                    let mask = self.mask();
                    cx.send(id, close_frame(Some(CloseCode::NORMAL), "", Some(mask)));
                    self.leave(st, Stage::Done);
                    cx.close(id);
                    return data.len();
                }
                Some(Message::Text(t)) => self.check_ws_payload(
                    t.as_bytes(),
                    true,
                    st.slot,
                    &mut st.expect_seq,
                    &mut st.inflight,
                    &mut ws.next_from,
                ),
                Some(Message::Binary(b)) => self.check_ws_payload(
                    b,
                    false,
                    st.slot,
                    &mut st.expect_seq,
                    &mut st.inflight,
                    &mut ws.next_from,
                ),
            };
            match checked {
                Err(kind) => {
                    self.fail(cx, st, kind);
                    return data.len();
                }
                Ok(()) if self.mode == Mode::WsEcho => self.send_next(cx, st),
                Ok(()) => {}
            }
        }
    }

    /// Checks one WebSocket data message against the mode's expectations.
    fn check_ws_payload(
        &mut self,
        bytes: &[u8],
        is_text: bool,
        slot: u32,
        expect_seq: &mut u64,
        inflight: &mut VecDeque<u64>,
        next_from: &mut HashMap<u32, u64>,
    ) -> Result<(), &'static str> {
        match self.mode {
            Mode::WsEcho => {
                payload(&mut self.scratch, slot, *expect_seq, self.size);
                if bytes != self.scratch.as_slice() || is_text != self.text {
                    return Err("ws-echo: payload mismatch");
                }
                *expect_seq += 1;
                let sent = inflight.pop_front();
                self.got_message(sent);
            }
            Mode::WsBroadcast => {
                let Some((sender, seq, sent_us)) = parse_broadcast(bytes) else {
                    return Err("ws-broadcast: foreign message");
                };
                let local = sender / SENDERS_PER_PROC == self.proc_index;
                // A local sender starts only when every local connection is ready, so seq 0
                // is owed to each of them; a sender in another process may have started
                // earlier, so its first message seen sets the start.
                let expected = *next_from
                    .get(&sender)
                    .unwrap_or(&if local { 0 } else { seq });
                if seq < expected {
                    self.error("ws-broadcast: duplicate or out of order");
                    return Ok(());
                }
                if seq > expected && !self.stopping {
                    *self
                        .report
                        .errors
                        .entry("ws-broadcast: missing".into())
                        .or_insert(0) += seq - expected;
                }
                next_from.insert(sender, seq + 1);
                self.got_message(Some(sent_us));
            }
            // idle on a WebSocket: count what the server pushes.
            _ => self.got_message(None),
        }
        Ok(())
    }

    /// ws-broadcast: sends what the `--msg-rate` schedule owes by now. Sending starts once every
    /// local slot is upgraded or failed to connect (or `start_anyway`), so every receiver sees
    /// seq 0.
    pub fn broadcast_tick(&mut self, cx: &mut Cx<'_>, start_anyway: bool) {
        if self.stopping || self.senders == 0 || self.msg_rate <= 0.0 {
            return;
        }
        let now = mono_us();
        let t0 = match self.send_started_us {
            Some(t) => t,
            None if self.open + self.report.conns_failed >= self.report.conns || start_anyway => {
                self.send_started_us = Some(now);
                now
            }
            None => return,
        };
        let owed = ((now - t0) as f64 * self.msg_rate / 1e6) as u64 + 1;
        let total: u64 = self.sent.iter().sum();
        for i in 0..owed.saturating_sub(total).min(MAX_BURST) {
            let s = ((total + i) % self.senders as u64) as usize;
            let Some(id) = self.sender_ids[s] else {
                continue;
            };
            let gid = self.proc_index * SENDERS_PER_PROC + s as u32;
            self.scratch.clear();
            let _ = write!(self.scratch, "lb {gid} {} {} ", self.sent[s], mono_us());
            while self.scratch.len() < self.size {
                self.scratch.push(b'x');
            }
            let mask = self.mask();
            if cx.send(id, frame::masked_frame(OpCode::Text, &self.scratch, mask)) {
                self.sent[s] += 1;
                self.report.msgs_sent += 1;
            } else {
                self.sender_ids[s] = None;
            }
        }
    }

    /// ws-broadcast: true once every ready connection got every message local senders sent.
    pub fn broadcast_caught_up(&mut self, cx: &mut Cx<'_>) -> bool {
        self.missing_now(cx) == 0
    }

    /// ws-broadcast: messages from local senders that ready connections have not received.
    pub fn missing_now(&mut self, cx: &mut Cx<'_>) -> u64 {
        let mut missing = 0;
        for id in cx.ids() {
            let Some(st) = cx.state_of(id) else { continue };
            let (Stage::Ready, Some(ws)) = (st.stage, st.ws.as_deref()) else {
                continue;
            };
            for (s, &sent) in self.sent.iter().enumerate() {
                let gid = self.proc_index * SENDERS_PER_PROC + s as u32;
                missing += sent.saturating_sub(*ws.next_from.get(&gid).unwrap_or(&0));
            }
        }
        missing
    }

    /// Ends measuring: close every connection (WebSocket ones with a Close frame). Connects or
    /// upgrades still unfinished count as failed, except in hello mode where they are routine.
    pub fn close_all(&mut self, cx: &mut Cx<'_>) {
        for id in cx.ids() {
            let Some(st) = cx.state_of(id) else { continue };
            let stage = st.stage;
            let is_ws = st.ws.is_some();
            st.stage = Stage::Done;
            match stage {
                Stage::Connecting | Stage::Handshaking => {
                    if self.mode != Mode::Hello {
                        self.report.error(if stage == Stage::Connecting {
                            "connect: not finished at end"
                        } else {
                            "ws: upgrade not finished at end"
                        });
                        if stage == Stage::Connecting {
                            self.report.conns_failed += 1;
                        }
                    }
                    cx.abort(id);
                }
                Stage::Ready => {
                    if is_ws {
                        let mask = self.mask();
                        cx.send(id, close_frame(Some(CloseCode::NORMAL), "", Some(mask)));
                    }
                    cx.close(id);
                }
                Stage::Finished | Stage::Done => {}
            }
        }
        self.stopping = true;
    }
}

/// The echo payload of message `seq` on `slot`: `slot:seq:` then `abc…` up to `size` bytes
/// (never shorter than the prefix). Regenerated to verify, so it is never stored.
fn payload(out: &mut Vec<u8>, slot: u32, seq: u64, size: usize) {
    out.clear();
    let _ = write!(out, "{slot}:{seq}:");
    while out.len() < size {
        out.push(b'a' + (out.len() % 26) as u8);
    }
}

/// Finds `lb SENDER SEQ SENT_US ` in a broadcast text, wherever the server's template put it.
fn parse_broadcast(bytes: &[u8]) -> Option<(u32, u64, u64)> {
    let at = bytes.windows(3).position(|w| w == b"lb ")?;
    let text = std::str::from_utf8(&bytes[at + 3..]).ok()?;
    let mut it = text.split(' ');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

impl Handler for LoadClient {
    type Conn = Conn;
    type Message = ();

    fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<Conn> {
        None // no listeners
    }

    fn on_open(&mut self, cx: &mut Cx<'_>, st: &mut Conn) {
        let id = cx.id();
        self.report.conns_ok += 1;
        if st.first {
            self.last_first_open_us = mono_us();
        }
        if let Some(path) = self.ws_path.clone() {
            let mut nonce = [0u8; 16];
            nonce[..8].copy_from_slice(&self.random().to_le_bytes());
            nonce[8..].copy_from_slice(&self.random().to_le_bytes());
            let key = handshake::key_from_nonce(nonce);
            let request = handshake::request(&self.host, &path, &key);
            st.stage = Stage::Handshaking;
            st.ws = Some(Box::new(WsConn {
                key,
                decoder: MessageDecoder::new(Role::Client),
                next_from: HashMap::new(),
            }));
            cx.send(id, request);
        } else {
            self.ready(cx, st);
        }
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, st: &mut Conn, data: &mut [u8]) -> usize {
        match st.stage {
            Stage::Handshaking => {
                let key = st.ws.as_ref().map(|w| w.key.as_str()).unwrap_or_default();
                match handshake::check_response(data, key) {
                    Ok(None) => 0,
                    Ok(Some(n)) => {
                        if let Some(ws) = st.ws.as_deref_mut() {
                            ws.key = String::new();
                        }
                        self.ready(cx, st);
                        n + self.ws_data(cx, st, &mut data[n..])
                    }
                    Err(e) => {
                        self.fail(cx, st, &format!("ws: upgrade refused: {e:?}"));
                        data.len()
                    }
                }
            }
            Stage::Ready if st.ws.is_some() => self.ws_data(cx, st, data),
            Stage::Ready => match self.mode {
                Mode::Hello => {
                    st.got += data.len();
                    st.last = data.last().copied().unwrap_or(st.last);
                    data.len()
                }
                Mode::Echo => self.echo_lines(cx, st, data),
                _ => {
                    self.got_message(None);
                    data.len()
                }
            },
            _ => data.len(),
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>, st: &mut Conn) {
        let id = cx.id();
        if self.mode == Mode::Hello && st.stage == Stage::Ready {
            let ok = st.got > 0 && st.last == b'\n';
            let started = st.started_us;
            st.stage = Stage::Finished;
            self.open -= 1;
            if ok {
                self.got_message(Some(started));
            } else {
                self.error("hello: bad greeting");
            }
        } else if matches!(st.stage, Stage::Ready | Stage::Handshaking) {
            self.leave(st, Stage::Done);
            self.error("closed by server");
        }
        cx.close(id);
    }

    fn on_close(&mut self, _cx: &mut Cx<'_>, _id: ConnId, mut st: Conn, why: CloseReason) {
        let stage = st.stage;
        self.leave(&mut st, Stage::Done);
        match why {
            CloseReason::ConnectFailed(kind) if !self.stopping => {
                self.report.conns_failed += 1;
                self.report.error(&format!("connect: {kind:?}"));
            }
            CloseReason::Done | CloseReason::Aborted => {}
            why if matches!(stage, Stage::Ready | Stage::Handshaking) => {
                let kind = match why {
                    CloseReason::PeerGone(kind) => format!("io: {kind:?}"),
                    other => format!("closed: {other:?}"),
                };
                self.error(&kind);
            }
            _ => {}
        }
        if self.mode == Mode::Hello && !self.stopping {
            let delay = if stage == Stage::Finished {
                0
            } else {
                RETRY_DELAY_US
            };
            self.reopen.push((st.slot, mono_us() + delay));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_prefix_and_size() {
        let mut v = Vec::new();
        payload(&mut v, 7, 42, 16);
        assert_eq!(v, b"7:42:fghijklmnop");
        payload(&mut v, 123456, 1 << 40, 4);
        assert_eq!(v, format!("123456:{}:", 1u64 << 40).as_bytes());
    }

    #[test]
    fn broadcast_payload_is_found_inside_the_template() {
        let text = "📢 새로운 알림: lb 65537 12 999 xxxx".as_bytes();
        assert_eq!(parse_broadcast(text), Some((65537, 12, 999)));
        assert_eq!(parse_broadcast(b"hello"), None);
    }
}

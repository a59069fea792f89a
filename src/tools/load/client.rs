//! `LoadClient`: the load generator's `Handler`, one state machine per connection slot.
//!
//! Every connection goes down the same stages (`Stage`), whatever the mode:
//! `Connecting` → (`Handshaking`, for WebSocket) → `Ready` → `Done` (or `Finished`, for a
//! conversation that ended well and whose slot connects again). What happens once `Ready` is
//! the mode's business:
//! - **idle**: nothing; hold the connection (a WebSocket answers pings and counts messages).
//! - **hello**: read the greeting until EOF; it must be non-empty and end with `\n`. The slot
//!   connects again, at once after a good greeting, after `RETRY_DELAY_US` after a failure.
//! - **echo** / **ws-echo**: each echo must equal the payload sent (regenerated from slot and
//!   sequence number, so nothing is stored but the send times).
//! - **http**: each response is parsed (`http.rs`) and its status counted; `--close` sends one
//!   request per connection and the slot connects again for the next.
//! - **ws-broadcast**: the first `--senders` slots send (the driver calls `broadcast_tick`);
//!   every connection checks each sender's sequence numbers arrive once and in order.
//!
//! **When requests go out** (echo, ws-echo, http). Closed model (no `--rate`): each connection
//! keeps `--pipeline` requests in flight, sending the next when an answer comes, so latency is
//! answer time minus send time. Open model (`--rate`, see `schedule.rs`): sends follow the
//! timetable whatever the answers do. Capacity waits in `OpenModel::free` (a connection with a
//! free `--pipeline` place, or an idle `--close` slot); a due send takes the first free place;
//! when none is free the send waits, goes out late when an answer frees one, and its latency
//! still counts from its intended time. Each send records both times (`Sent`), so the
//! corrected and the uncorrected latency come from the same sample.
//!
//! Errors are counted only while measuring (`stopping` is false): the close-down at the end
//! makes no errors. Connections that fail are not reopened, except in the modes whose slots
//! connect again (hello, http).

use super::http::{Answer, HttpConn, Request};
use super::opts::{Mode, Opts};
use super::report::{Report, LATE_AFTER_US};
use super::schedule::Schedule;
use crate::codec::line::next_line;
use crate::codec::ws::close::close_frame;
use crate::codec::ws::{frame, handshake, CloseCode, Message, MessageDecoder, OpCode, Role};
use crate::runtime::{Addr, CloseReason, ConnId, ContextOf, Handler, ListenerId};
use hdrhistogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::IpAddr;

/// Wait before a slot connects again after a failure, so a refusing server does not make us
/// spin (10 retries per second per slot).
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
    /// A conversation that ended well (hello, http `--close`); the slot connects again.
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

/// The protocol a connection speaks once connected.
pub enum Proto {
    /// Bytes as they come (idle, hello, echo).
    Plain,
    /// WebSocket, after the upgrade.
    Ws(Box<WsConn>),
    /// HTTP/1.1 responses.
    Http(Box<HttpConn>),
}

/// One request or message on its way (µs, `mono_us` time): when the timetable meant it to go
/// (`intended_us`), when a connection was free to take it (`ready_us`, never before
/// `intended_us`), and when it went (`sent_us`).
///
/// Its corrected latency is `answer - intended_us` less the generator's own lateness
/// `sent_us - ready_us`: the time it waited for a connection the server had not freed yet is
/// the server's doing and counts (that is the whole point of wrk2's correction); the time our
/// own timer or CPU took to send it once a connection was free does not, since it says nothing
/// about the server (it is reported as the send lag). wrk2 counts both, and so adds its timer's
/// ~0.5 ms rounding to every sample; on the machine this was written on, sleeping timers wake
/// ~50 µs late, more than a loopback answer takes.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    intended_us: u64,
    ready_us: u64,
    sent_us: u64,
}

impl Sent {
    /// A send made at once, with no timetable (closed model).
    fn now() -> Sent {
        let now = mono_us();
        Sent::at(now)
    }

    fn at(t: u64) -> Sent {
        Sent {
            intended_us: t,
            ready_us: t,
            sent_us: t,
        }
    }
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
    /// Requests or messages awaiting their answer, oldest first.
    inflight: VecDeque<Sent>,
    /// hello: greeting bytes so far and the last of them.
    got: usize,
    last: u8,
    proto: Proto,
}

impl Conn {
    fn new(slot: u32, first: bool) -> Conn {
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
            proto: Proto::Plain,
        }
    }
}

/// Capacity for one send, waiting in the open model's queue.
#[derive(Debug, Clone, Copy)]
enum Free {
    /// A free `--pipeline` place on this connection (stale once it closed: skipped), free
    /// since the time given (µs).
    Conn(ConnId, u64),
    /// An idle `--close` slot, idle since the time given: the send opens a connection.
    Slot(u32, u64),
}

/// The open model (`--rate`): the timetable and the capacity waiting for its sends.
pub struct OpenModel {
    schedule: Schedule,
    /// `mono_us` time at which the timetable starts; `None` while connections open.
    pub t0_us: Option<u64>,
    /// Sends made so far: the index of the next one in the timetable.
    next: u64,
    free: VecDeque<Free>,
}

impl OpenModel {
    /// The schedule, for the pacer.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Sends due by `now_us`.
    pub fn due(&self, now_us: u64) -> u64 {
        self.t0_us
            .map_or(0, |t0| self.schedule.due_by(now_us.saturating_sub(t0)))
    }
}

/// The `Context` of the load generator's callbacks.
pub type Cx<'a> = ContextOf<'a, LoadClient>;

/// Counters at the end of the last full second, for the timeline's differences.
#[derive(Default)]
struct Mark {
    msgs: u64,
    errors: u64,
    sent: u64,
    late: u64,
}

/// The load generator's handler.
pub struct LoadClient {
    pub mode: Mode,
    addr: Addr,
    /// `--tls`: the client configuration and the server's name.
    #[cfg(feature = "tls")]
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    src_ips: Vec<IpAddr>,
    next_src: usize,
    size: usize,
    pipeline: usize,
    /// Upgrade to WebSocket on this path before the mode's work.
    ws_path: Option<String>,
    text: bool,
    /// `Host` of WebSocket upgrades: the server as the user named it.
    host: String,
    /// `load http`: the request, and whether each one gets a connection of its own.
    request: Option<Request>,
    close_each: bool,
    pub report: Report,
    /// Measuring is over: no more errors, sends or reopens.
    pub stopping: bool,
    /// Connections `Ready` now.
    pub open: u64,
    /// Slots to connect again, with the time (µs) from which they may.
    reopen: Vec<(u32, u64)>,
    pub first_started_us: u64,
    pub last_first_open_us: u64,
    /// `--rate`: the open model.
    pub open_model: Option<OpenModel>,
    /// Latencies of the current second, for the timeline.
    second: Histogram<u64>,
    mark: Mark,
    rng: u64,
    scratch: Vec<u8>,
    // ws-broadcast
    proc_index: u32,
    senders: usize,
    msg_rate: f64,
    sender_ids: Vec<Option<ConnId>>,
    /// Messages sent per local sender.
    sent: Vec<u64>,
    send_started_us: Option<u64>,
}

impl LoadClient {
    /// The handler for `opts` (one process's share of it).
    pub fn new(opts: &Opts) -> LoadClient {
        let conns = opts.conns as u64;
        let senders = opts.senders.min(opts.conns);
        let open_model = opts
            .rate
            .filter(|_| opts.mode.has_open_model())
            .map(|rate| OpenModel {
                schedule: Schedule::new(rate, opts.ramp.map_or(0.0, |r| r.as_secs_f64())),
                t0_us: None,
                next: 0,
                free: if opts.closes() {
                    (0..opts.conns as u32).map(|s| Free::Slot(s, 0)).collect()
                } else {
                    VecDeque::new()
                },
            });
        let mut report = Report::new(opts.mode.name(), &opts.addr.to_string(), conns);
        report.rate = open_model.as_ref().and(opts.rate);
        LoadClient {
            mode: opts.mode,
            addr: opts.addr.clone(),
            #[cfg(feature = "tls")]
            tls: opts
                .tls
                .as_ref()
                .map(|t| (t.config.clone(), t.name.clone())),
            src_ips: opts.src_ips.clone(),
            next_src: opts.child.unwrap_or(0),
            size: opts.size,
            pipeline: opts.pipeline.max(1),
            ws_path: opts.ws_path(),
            text: opts.text,
            host: opts.http.host.clone(),
            request: (opts.mode == Mode::Http).then(|| Request::new(&opts.http)),
            close_each: opts.closes(),
            report,
            stopping: false,
            open: 0,
            reopen: Vec::new(),
            first_started_us: 0,
            last_first_open_us: 0,
            open_model,
            second: super::report::new_histogram(),
            mark: Mark::default(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ mono_us() ^ ((std::process::id() as u64) << 32),
            scratch: Vec::new(),
            proc_index: opts.child.unwrap_or(0) as u32,
            senders,
            msg_rate: opts.msg_rate,
            sender_ids: vec![None; senders],
            sent: vec![0; senders],
            send_started_us: None,
        }
    }

    /// Whether slots connect again after their connection ends (hello, http).
    pub fn reconnects(&self) -> bool {
        matches!(self.mode, Mode::Hello | Mode::Http)
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

    fn check_failed(&mut self, kind: &str) {
        if !self.stopping {
            self.report.check_failed(kind);
        }
    }

    /// Leaves `Ready` (or any stage) for `stage`, keeping `open` right.
    fn leave(&mut self, st: &mut Conn, stage: Stage) {
        if st.stage == Stage::Ready {
            self.open -= 1;
        }
        st.stage = stage;
    }

    /// Counts a failed check of `kind` and drops the connection.
    fn fail(&mut self, cx: &mut Cx<'_>, st: &mut Conn, kind: &str) {
        self.check_failed(kind);
        self.leave(st, Stage::Done);
        let id = cx.id();
        cx.abort(id);
    }

    /// The ramp reached `slot`: its first connection (none yet for `--close` under `--rate`,
    /// whose slots wait for the schedule).
    pub fn start_slot(&mut self, cx: &mut Cx<'_>, slot: u32) {
        if !self.close_each {
            self.open_slot(cx, slot, true, None);
        } else if self.open_model.is_none() {
            self.open_slot(cx, slot, true, Some(Sent::now()));
        }
    }

    /// Starts a connection for `slot` from the next `--src-ips` address. `sent`: the request
    /// this connection is for (`--close`), whose clock starts now.
    fn open_slot(&mut self, cx: &mut Cx<'_>, slot: u32, first: bool, sent: Option<Sent>) {
        let src = if self.src_ips.is_empty() {
            None
        } else {
            self.next_src = (self.next_src + 1) % self.src_ips.len();
            Some(self.src_ips[self.next_src])
        };
        let mut conn = Conn::new(slot, first);
        conn.inflight.extend(sent);
        // With --tls the handshake runs on the loop once the connect completes, and `on_open`
        // comes first as for plaintext: what a mode queues there is sealed once it is done.
        #[cfg(feature = "tls")]
        let started = match &self.tls {
            Some((config, name)) => {
                cx.connect_tls(self.addr.clone(), src, config.clone(), name.clone(), conn)
            }
            None => cx.connect_from(self.addr.clone(), src, conn),
        };
        #[cfg(not(feature = "tls"))]
        let started = cx.connect_from(self.addr.clone(), src, conn);
        if let Err(e) = started {
            self.report.conns_failed += 1;
            self.error(&format!("connect: {:?}", e.kind()));
            if self.reconnects() {
                self.reopen.push((slot, mono_us() + RETRY_DELAY_US));
            }
        }
    }

    /// Connects the slots whose retry time has come.
    pub fn reopen_due(&mut self, cx: &mut Cx<'_>) {
        if self.reopen.is_empty() {
            return;
        }
        let now = mono_us();
        let mut due = Vec::new();
        self.reopen.retain(|&(slot, at)| {
            let ready = at <= now;
            if ready {
                due.push(slot);
            }
            !ready
        });
        for slot in due {
            self.slot_free(cx, slot);
        }
    }

    /// A slot whose connection ended is free: connect it again (closed model), or offer it to
    /// the schedule (`--close` under `--rate`).
    fn slot_free(&mut self, cx: &mut Cx<'_>, slot: u32) {
        if self.stopping {
            return;
        }
        if self.close_each {
            let now = mono_us();
            if let Some(sent) = self.take_due_send(now) {
                self.open_slot(cx, slot, false, Some(sent));
            } else if let Some(om) = self.open_model.as_mut() {
                om.free.push_back(Free::Slot(slot, now));
            } else {
                self.open_slot(cx, slot, false, Some(Sent::now()));
            }
        } else {
            self.open_slot(cx, slot, false, None);
        }
    }

    /// Open model: if a send is due and not made yet, takes it for a place free since
    /// `free_since` (its times; its lateness recorded). A place queued earlier than that
    /// (another connection's, still in `free`) could have taken it first: the send waited for
    /// a connection only from the earlier of the two.
    fn take_due_send(&mut self, free_since: u64) -> Option<Sent> {
        let om = self.open_model.as_mut()?;
        let t0 = om.t0_us?;
        let now = mono_us();
        if om.next >= om.schedule.due_by(now.saturating_sub(t0)) {
            return None;
        }
        let intended_us = t0 + om.schedule.offset_us(om.next);
        om.next += 1;
        let oldest_free = match om.free.front() {
            Some(Free::Conn(_, since) | Free::Slot(_, since)) => *since,
            None => u64::MAX,
        };
        let free_since = free_since.min(oldest_free);
        let sent = Sent {
            intended_us,
            ready_us: free_since.clamp(intended_us, now.max(intended_us)),
            sent_us: now,
        };
        let r = &mut self.report;
        r.send_lag
            .saturating_record(now.saturating_sub(intended_us));
        if now.saturating_sub(intended_us) > LATE_AFTER_US {
            r.sends_late += 1;
        }
        if sent.ready_us - intended_us > LATE_AFTER_US {
            r.sends_waited += 1;
        }
        let own = now.saturating_sub(sent.ready_us);
        if own > LATE_AFTER_US {
            r.sends_own_late += 1;
        }
        r.own_lag_max_us = r.own_lag_max_us.max(own);
        Some(sent)
    }

    /// Open model, outside any connection's callback (a pacer tick, the driver): makes every
    /// due send that has a free place.
    pub fn dispatch(&mut self, cx: &mut Cx<'_>) {
        loop {
            let Some(om) = self.open_model.as_mut() else {
                return;
            };
            if om.t0_us.is_none() || om.next >= om.due(mono_us()) {
                return;
            }
            let Some(free) = om.free.pop_front() else {
                return; // every place is taken: the send waits, and will be late
            };
            match free {
                Free::Slot(slot, since) => {
                    let sent = self.take_due_send(since);
                    self.open_slot(cx, slot, false, sent);
                }
                Free::Conn(id, since) => {
                    cx.with_state(id, |cx, st| {
                        if st.stage == Stage::Ready && !self.stopping {
                            if let Some(sent) = self.take_due_send(since) {
                                self.send_one(cx, id, st, sent);
                            }
                        }
                    });
                }
            }
        }
    }

    /// The connection `st` has `places` free places for requests: fill them (closed model),
    /// or send what the schedule owes and queue the rest of the places (open model).
    fn offer(&mut self, cx: &mut Cx<'_>, st: &mut Conn, places: usize) {
        if self.stopping {
            return;
        }
        let id = cx.id();
        let now = mono_us();
        for _ in 0..places {
            if self.open_model.is_none() {
                self.send_one(cx, id, st, Sent::now());
            } else if let Some(sent) = self.take_due_send(now) {
                self.send_one(cx, id, st, sent);
            } else if let Some(om) = self.open_model.as_mut() {
                om.free.push_back(Free::Conn(id, now));
            }
        }
    }

    /// The connection (and its upgrade) is up: start the mode's work.
    fn ready(&mut self, cx: &mut Cx<'_>, st: &mut Conn) {
        let id = cx.id();
        st.stage = Stage::Ready;
        let slot = st.slot as usize;
        self.open += 1;
        self.report.conns_peak = self.report.conns_peak.max(self.open);
        match self.mode {
            Mode::Http if self.close_each => {
                // The request this connection was opened for.
                if let Some(sent) = st.inflight.pop_front() {
                    self.send_one(cx, id, st, sent);
                }
            }
            Mode::Echo | Mode::WsEcho | Mode::Http => self.offer(cx, st, self.pipeline),
            Mode::WsBroadcast if slot < self.senders => self.sender_ids[slot] = Some(id),
            _ => {}
        }
    }

    /// Sends one request or message on `st` (echo, ws-echo, http), remembering its times.
    fn send_one(&mut self, cx: &mut Cx<'_>, id: ConnId, st: &mut Conn, sent: Sent) {
        st.inflight.push_back(sent);
        self.report.msgs_sent += 1;
        match self.mode {
            Mode::Http => {
                let Some(req) = &self.request else { return };
                match req.chunk() {
                    Ok(bytes) => cx.send_copy(id, bytes),
                    Err(shared) => cx.send(id, shared),
                };
            }
            Mode::WsEcho => {
                payload(&mut self.scratch, st.slot, st.next_seq, self.size);
                st.next_seq += 1;
                let op = if self.text {
                    OpCode::Text
                } else {
                    OpCode::Binary
                };
                let mask = self.mask();
                cx.send(id, frame::masked_frame(op, &self.scratch, mask));
            }
            _ => {
                payload(&mut self.scratch, st.slot, st.next_seq, self.size);
                st.next_seq += 1;
                self.scratch.push(b'\n');
                cx.send_copy(id, &self.scratch);
            }
        }
    }

    /// Records a verified answer to `sent` (None: nothing to time it by).
    fn got_answer(&mut self, sent: Option<Sent>) {
        if self.stopping {
            return;
        }
        self.report.msgs += 1;
        let Some(sent) = sent else { return };
        let now = mono_us();
        let uncorrected = now.saturating_sub(sent.sent_us).max(1);
        let corrected = uncorrected + (sent.ready_us - sent.intended_us);
        self.report.latency.saturating_record(corrected);
        self.second.saturating_record(corrected);
        if self.open_model.is_some() {
            self.report
                .latency_uncorrected
                .saturating_record(uncorrected);
        }
    }

    /// The timeline's entry for the second that just ended.
    pub fn take_second(&mut self) -> super::report::Second {
        let r = &self.report;
        let errors = r.error_count();
        let sec = super::report::Second {
            msgs: r.msgs - self.mark.msgs,
            errors: errors.saturating_sub(self.mark.errors),
            sent: r.msgs_sent - self.mark.sent,
            late: r.sends_waited - self.mark.late,
            conns: self.open,
            p99_us: if self.second.is_empty() {
                0
            } else {
                self.second.value_at_quantile(0.99)
            },
            max_us: self.second.max(),
        };
        self.mark = Mark {
            msgs: r.msgs,
            errors,
            sent: r.msgs_sent,
            late: r.sends_waited,
        };
        self.second.reset();
        sec
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
                    self.got_answer(sent);
                    self.offer(cx, st, 1);
                }
                Ok(None) => return used,
                Err(_) => {
                    self.fail(cx, st, "echo: line too long");
                    return data.len();
                }
            }
        }
    }

    fn http_data(&mut self, cx: &mut Cx<'_>, st: &mut Conn, data: &mut [u8]) -> usize {
        // The HTTP state leaves the connection for the parse, so the answers can use `st`.
        let Proto::Http(mut http) = std::mem::replace(&mut st.proto, Proto::Plain) else {
            return data.len();
        };
        let used = http.feed(data, |answer| self.http_answer(cx, st, answer));
        st.proto = Proto::Http(http);
        used
    }

    /// One response came (or a malformed one). Returns whether to go on reading this
    /// connection's responses.
    fn http_answer(&mut self, cx: &mut Cx<'_>, st: &mut Conn, answer: Answer) -> bool {
        let id = cx.id();
        match answer {
            Answer::Malformed(e) => {
                self.fail(cx, st, &format!("http: {e}"));
                false
            }
            Answer::Done { status, keep_alive } => {
                if !self.stopping {
                    *self.report.status.entry(status).or_insert(0) += 1;
                    if !(200..400).contains(&status) {
                        self.report.check_failed(&format!("http: status {status}"));
                    }
                }
                let sent = st.inflight.pop_front();
                self.got_answer(sent);
                if self.close_each || !keep_alive {
                    // Done with this connection; its slot connects again (`on_close`).
                    if !st.inflight.is_empty() {
                        self.error("http: requests unanswered when the server closed");
                    }
                    self.leave(st, Stage::Finished);
                    cx.close(id);
                    false
                } else {
                    self.offer(cx, st, 1);
                    true
                }
            }
        }
    }

    fn ws_data(&mut self, cx: &mut Cx<'_>, st: &mut Conn, data: &mut [u8]) -> usize {
        let id = cx.id();
        let mut used = 0;
        loop {
            let Proto::Ws(ws) = &mut st.proto else {
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
                // The load generator offers no extension, so its decoder never yields one.
                Some(Message::Compressed(..)) => Err("ws: compressed message not negotiated"),
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
                Ok(()) if self.mode == Mode::WsEcho => self.offer(cx, st, 1),
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
        inflight: &mut VecDeque<Sent>,
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
                self.got_answer(sent);
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
                    self.check_failed("ws-broadcast: duplicate or out of order");
                    return Ok(());
                }
                if seq > expected && !self.stopping {
                    self.count_missing(seq - expected);
                }
                next_from.insert(sender, seq + 1);
                self.got_answer(Some(Sent::at(sent_us)));
            }
            // idle on a WebSocket: count what the server pushes.
            _ => self.got_answer(None),
        }
        Ok(())
    }

    /// ws-broadcast: `n` messages that never arrived (failed checks, one per message).
    pub fn count_missing(&mut self, n: u64) {
        *self
            .report
            .errors
            .entry("ws-broadcast: missing".into())
            .or_insert(0) += n;
        self.report.checks_failed += n;
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
            let (Stage::Ready, Proto::Ws(ws)) = (st.stage, &st.proto) else {
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
    /// upgrades still unfinished count as failed, except where slots connect again (hello,
    /// http), for which a connect in progress at the end is routine.
    pub fn close_all(&mut self, cx: &mut Cx<'_>) {
        let routine = self.reconnects();
        for id in cx.ids() {
            let Some(st) = cx.state_of(id) else { continue };
            let stage = st.stage;
            let is_ws = matches!(st.proto, Proto::Ws(_));
            st.stage = Stage::Done;
            match stage {
                Stage::Connecting | Stage::Handshaking => {
                    if !routine {
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
    /// A pacer tick: sends may be due.
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
            st.proto = Proto::Ws(Box::new(WsConn {
                key,
                decoder: MessageDecoder::new(Role::Client),
                next_from: HashMap::new(),
            }));
            cx.send(id, request);
        } else {
            if let Some(req) = &self.request {
                st.proto = Proto::Http(Box::new(HttpConn::new(req)));
            }
            self.ready(cx, st);
        }
    }

    fn on_data(&mut self, cx: &mut Cx<'_>, st: &mut Conn, data: &mut [u8]) -> usize {
        match (st.stage, &st.proto) {
            (Stage::Handshaking, Proto::Ws(ws)) => match handshake::check_response(data, &ws.key) {
                Ok(None) => 0,
                Ok(Some(n)) => {
                    if let Proto::Ws(ws) = &mut st.proto {
                        ws.key = String::new();
                    }
                    self.ready(cx, st);
                    n + self.ws_data(cx, st, &mut data[n..])
                }
                Err(e) => {
                    self.fail(cx, st, &format!("ws: upgrade refused: {e:?}"));
                    data.len()
                }
            },
            (Stage::Ready, Proto::Ws(_)) => self.ws_data(cx, st, data),
            (Stage::Ready, Proto::Http(_)) => self.http_data(cx, st, data),
            (Stage::Ready, Proto::Plain) => match self.mode {
                Mode::Hello => {
                    st.got += data.len();
                    st.last = data.last().copied().unwrap_or(st.last);
                    data.len()
                }
                Mode::Echo => self.echo_lines(cx, st, data),
                _ => {
                    self.got_answer(None);
                    data.len()
                }
            },
            _ => data.len(),
        }
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>, st: &mut Conn) {
        let id = cx.id();
        if st.stage == Stage::Ready {
            match (&mut st.proto, self.mode) {
                (Proto::Plain, Mode::Hello) => {
                    let ok = st.got > 0 && st.last == b'\n';
                    let started = st.started_us;
                    self.leave(st, Stage::Finished);
                    if ok {
                        self.got_answer(Some(Sent::at(started)));
                    } else {
                        self.check_failed("hello: bad greeting");
                    }
                }
                (Proto::Http(http), _) => {
                    let answer = http.eof();
                    match answer {
                        Some(a) => {
                            self.http_answer(cx, st, a);
                        }
                        None if st.inflight.is_empty() => self.leave(st, Stage::Finished),
                        None => {
                            self.leave(st, Stage::Done);
                            self.error("closed by server");
                        }
                    }
                }
                _ => {
                    self.leave(st, Stage::Done);
                    self.error("closed by server");
                }
            }
        } else if st.stage == Stage::Handshaking {
            self.leave(st, Stage::Done);
            self.error("closed by server");
        }
        cx.close(id);
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, _id: ConnId, mut st: Conn, why: CloseReason) {
        let stage = st.stage;
        self.leave(&mut st, Stage::Done);
        match why {
            CloseReason::ConnectFailed(kind) if !self.stopping => {
                self.report.conns_failed += 1;
                self.report.error(&format!("connect: {kind:?}"));
            }
            // The handshake (or a record) failed: the certificate, the versions, an alert.
            // The handshake is part of connecting: a connection whose session failed counts
            // as failed, not as made.
            CloseReason::TlsFailed if !self.stopping => {
                self.report.conns_ok = self.report.conns_ok.saturating_sub(1);
                self.report.conns_failed += 1;
                self.report
                    .error("tls: failed (RUST_LOG=readyloop::tls=debug says why)");
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
        if self.reconnects() && !self.stopping {
            if stage == Stage::Finished {
                self.slot_free(cx, st.slot);
            } else {
                self.reopen.push((st.slot, mono_us() + RETRY_DELAY_US));
            }
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, _tick: ()) {
        self.dispatch(cx);
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

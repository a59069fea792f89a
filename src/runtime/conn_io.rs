//! `ConnIo`: filling and flushing one connection. Read until the socket is drained and hand the
//! bytes to the handler; `writev` the queue, arm WRITABLE when the kernel pushes back, drop it
//! when the queue drains; apply backpressure; finish an outgoing connect.
//!
//! This is where the syscalls on connected sockets happen, one trace line each (target
//! `readyloop::io`). It borrows what one event needs from the `EventLoop` (the handler, the
//! `Core`, the states and the loop's one read buffer) for the length of that event.

use super::connection::{flags, Ending, Phase};
use super::core::{Core, Who, IO, SPARE_INBUF};
use super::handler::{with_conn, ContextOf, Handler};
use super::id::CloseReason;
use super::out_queue::MAX_IOVECS;
use super::states::States;
#[cfg(feature = "tls")]
use super::tls::{TlsPhase, LOG as TLS};
use log::{debug, trace, warn};
use std::fmt;
use std::io::{self, IoSlice};
use std::ops::ControlFlow;

/// How a flush handed its bytes to the kernel, for the trace line of each write.
#[derive(Clone, Copy)]
enum Via {
    /// Plaintext: one `writev` of this many queue pieces.
    Pieces(usize),
    /// TLS: the sealed ciphertext, one buffer.
    #[cfg(feature = "tls")]
    Tls,
}

impl Via {
    /// What ends a `WouldBlock` line: nothing for plaintext, " (TLS)".
    fn suffix(self) -> &'static str {
        match self {
            Via::Pieces(_) => "",
            #[cfg(feature = "tls")]
            Via::Tls => " (TLS)",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Pieces(count) => write!(f, " in {count} pieces"),
            #[cfg(feature = "tls")]
            Via::Tls => f.write_str(" (TLS)"),
        }
    }
}

/// Read at most this many times per connection per readiness event (16 × 64 KiB = 1 MiB)
/// before moving on to other connections; the connection is read again next iteration.
pub(crate) const READS_PER_EVENT: usize = 16;
/// Write at most this many bytes per connection per flush (redis uses 64 KiB per event; we
/// write whole `writev`s, so the cap is looser) before giving other connections their turn.
const WRITE_BUDGET: usize = 1 << 20;

/// What one connection event borrows from the loop.
pub(crate) struct ConnIo<'a, H: Handler> {
    pub(crate) handler: &'a mut H,
    pub(crate) core: &'a mut Core<H::Message>,
    pub(crate) states: &'a mut States<H::Conn>,
    /// The one read buffer of the loop (uSockets): every `read` lands here, and only the
    /// unconsumed tail of an incomplete message is copied into the connection's own `inbuf`.
    /// Taken out for the length of a read (so the bytes read can be lent to `deliver` while
    /// the rest of `self` is borrowed) and put back.
    pub(crate) scratch: &'a mut Vec<u8>,
    /// TLS only: where a record's plaintext is handed to the handler (it may transform it in
    /// place), and where small plaintext pieces are gathered into one record when sealing.
    #[cfg(feature = "tls")]
    pub(crate) plain: &'a mut Vec<u8>,
}

impl<H: Handler> ConnIo<'_, H> {
    /// Runs a callback about slot `key`'s connection with its state.
    fn call<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut ContextOf<'_, H>, &mut H::Conn) -> R,
    ) -> Option<R> {
        let id = self.core.id_of(key);
        with_conn(self.handler, self.core, self.states, id, f)
    }

    /// A readiness event for slot `key`. It may be stale: the connection may have been closed
    /// earlier in this batch (its slot is freed only in the reap phase), and is then ignored.
    pub(crate) fn ready(&mut self, key: usize, readable: bool, writable: bool, hup: bool) {
        let Some(c) = self.core.conns.get(key) else {
            trace!(target: IO, "conn {key} stale event: slot empty");
            return;
        };
        match c.phase {
            Phase::Closed => {
                trace!(target: IO, "conn {key} stale event: closed earlier in this batch");
            }
            Phase::Connecting => {
                if writable || readable {
                    self.finish_connect(key);
                }
            }
            _ => {
                if writable {
                    self.flush_outbuf(key);
                }
                if readable {
                    self.read_ready(key, hup);
                }
            }
        }
    }

    fn finish_connect(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        let result = match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => c.stream.check_connected(),
        };
        match result {
            Ok(()) => {
                c.phase = Phase::Open;
                trace!(target: IO, "conn {key} connected");
                if self.core.config.nodelay {
                    let _ = self.core.conns[key].stream.set_nodelay();
                }
                self.core.update_interest(key);
                self.call(key, |h, cx, conn| h.on_open(cx, conn));
                // Output queued while connecting (flushes skip connecting sockets) goes now.
                if self.core.conns.get(key).is_some_and(|c| c.pending() > 0) {
                    self.core.schedule_flush(key);
                }
                self.read_ready(key, true);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                trace!(target: IO, "conn {key} connect still in progress");
            }
            Err(e) => {
                debug!("conn {key} connect failed: {e}");
                self.core
                    .close_now(key, None, CloseReason::ConnectFailed(e.kind()));
            }
        }
    }

    /// Reads until the socket is drained, EOF, an error, a pause, or the per-event budget.
    ///
    /// Edge-triggered readiness means a read we skip is an event we never get again, so the
    /// socket must be drained. A *short* read (fewer bytes than asked) already drained it: TCP
    /// copies until the buffer is full or the queue is empty, and data arriving later raises a
    /// new edge. So we stop there and save the `read` that would only say `WouldBlock` (a third
    /// of the syscalls of a ping-pong). The exception is `until_would_block`: when the event
    /// said the peer closed (the FIN raises no further edge of its own), or when there was no
    /// event at all (deferred reads), we read on until `WouldBlock` or EOF.
    pub(crate) fn read_ready(&mut self, key: usize, until_would_block: bool) {
        let mut scratch = std::mem::take(self.scratch);
        self.read_into(key, until_would_block, &mut scratch);
        *self.scratch = scratch;
    }

    fn read_into(&mut self, key: usize, until_would_block: bool, scratch: &mut [u8]) {
        let mut budget = READS_PER_EVENT;
        // Bytes left unconsumed while the handler had reading paused are offered first.
        if self
            .core
            .conns
            .get(key)
            .is_some_and(|c| c.phase == Phase::Open && !c.paused() && c.inbuf_len() > 0)
        {
            self.deliver(key, &mut []);
        }
        loop {
            let Some(c) = self.core.conns.get_mut(key) else {
                return;
            };
            let discarding = matches!(c.phase, Phase::Closing(_) | Phase::Lingering);
            if c.phase == Phase::Closed || c.has(flags::EOF) || (c.paused() && !discarding) {
                return;
            }
            if budget == 0 {
                self.core.schedule_read(key);
                return;
            }
            budget -= 1;
            let asked = scratch.len();
            let tls = c.has(flags::TLS);
            match c.stream.read(scratch) {
                Ok(0) => {
                    trace!(target: IO, "{} read EOF", self.core.who(key));
                    #[cfg(feature = "tls")]
                    if tls && !discarding {
                        self.note_tls_eof(key);
                    }
                    self.on_peer_eof(key);
                    return;
                }
                Ok(n) => {
                    self.core.stats.bytes_read += n as u64;
                    trace!(target: IO, "{} read {n} of {asked} (inbuf {})",
                        self.core.who(key), self.core.conns[key].inbuf_len() + n);
                    if discarding {
                        trace!(target: IO, "{} discarded {n} bytes (closing)", self.core.who(key));
                        if n < asked && !until_would_block {
                            return;
                        }
                        continue;
                    }
                    if tls {
                        self.receive_tls(key, &mut scratch[..n]);
                    } else {
                        self.deliver(key, &mut scratch[..n]);
                    }
                    self.apply_backpressure(key);
                    if n < asked && !until_would_block {
                        trace!(target: IO, "{} short read: socket drained", self.core.who(key));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace!(target: IO, "{} read WouldBlock", self.core.who(key));
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("{} read failed: {e}", self.core.who(key));
                    self.core
                        .close_now(key, None, CloseReason::PeerGone(e.kind()));
                    return;
                }
            }
        }
    }

    fn on_peer_eof(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        c.flags |= flags::EOF;
        match c.phase {
            Phase::Lingering => self.core.close_now(key, None, CloseReason::Done),
            Phase::Open => {
                self.call(key, |h, cx, conn| h.on_eof(cx, conn));
            }
            _ => {}
        }
    }

    /// Hands `data` (fresh plaintext, after any kept tail) to the handler, and keeps what it
    /// did not consume.
    fn deliver(&mut self, key: usize, data: &mut [u8]) {
        let id = self.core.id_of(key);
        let n = data.len();
        let kept = match self.core.conns[key].bufs.as_mut() {
            Some(b) if !b.inbuf.is_empty() => std::mem::take(&mut b.inbuf),
            _ => {
                // Fast path: the handler reads straight from the loop's buffer; nothing is
                // copied unless it leaves an incomplete message behind.
                let used = with_conn(self.handler, self.core, self.states, id, |h, cx, conn| {
                    h.on_data(cx, conn, data)
                })
                .unwrap_or(n)
                .min(n);
                if used < n {
                    self.keep_tail(key, &data[used..]);
                }
                self.check_budget();
                return;
            }
        };
        let mut buf = kept;
        if buf.len() + n > self.core.config.max_inbuf {
            warn!(
                "{}: incomplete message over {} bytes, closing",
                self.core.who(key),
                self.core.config.max_inbuf
            );
            self.core.close_now(key, None, CloseReason::Aborted);
            return;
        }
        buf.extend_from_slice(data);
        let used = self
            .call(key, |h, cx, conn| h.on_data(cx, conn, &mut buf))
            .unwrap_or(buf.len())
            .min(buf.len());
        buf.drain(..used);
        if self.core.conns[key].phase != Phase::Open {
            return;
        }
        if buf.capacity() > 4 * buf.len() && buf.capacity() > SPARE_INBUF {
            buf.shrink_to(buf.len().max(SPARE_INBUF));
        }
        // Put the buffer back even when empty, so its capacity goes to the pool with the rest.
        self.core.buffers(key).inbuf = buf;
        self.core.release_buffers(key);
        self.core.note_inbuf(key);
        self.check_budget();
    }

    /// TLS: feeds the ciphertext just read to the session and delivers each record's
    /// plaintext. The session is taken out of the connection meanwhile (the handler may touch
    /// the connection), and put back unless the connection closed.
    #[cfg(feature = "tls")]
    fn receive_tls(&mut self, key: usize, fresh: &mut [u8]) {
        let Some(mut tls) = self.core.conns[key]
            .bufs
            .as_mut()
            .and_then(|b| b.tls.take())
        else {
            return;
        };
        let mut plain = std::mem::take(self.plain);
        let outcome = tls.receive(fresh, &mut |record| {
            self.deliver_record(key, record, &mut plain)
        });
        *self.plain = plain;
        let open = self
            .core
            .conns
            .get(key)
            .is_some_and(|c| c.phase != Phase::Closed);
        if !open {
            return;
        }
        let has_output = tls.pending() > 0;
        self.core.buffers(key).tls = Some(tls);
        self.core.note_inbuf(key);
        self.check_budget();
        if self.core.conns[key].phase == Phase::Closed {
            return;
        }
        match outcome {
            Ok(received) => {
                if received.established {
                    self.core.handshake_done(key);
                }
                if received.established || has_output {
                    // Handshake records to send, or plaintext queued before the handshake
                    // completed that can now be sealed.
                    self.core.schedule_flush(key);
                }
                if received.peer_closed {
                    let unfinished = self.core.conns[key].inbuf_len();
                    if unfinished > 0 {
                        // The peer says it is done, and a message it began is not.
                        debug!(target: TLS, "{} TLS close_notify in the middle of a message ({unfinished} bytes unfinished)",
                            self.core.who(key));
                    } else {
                        trace!(target: IO, "{} TLS close_notify from the peer", self.core.who(key));
                    }
                    self.on_peer_eof(key);
                }
            }
            Err(_) => {
                // The session failed (it logged why at debug): send the alert rustls queued,
                // and close without a close_notify.
                if let Some(tls) = self.core.buffers(key).tls.as_mut() {
                    tls.fail();
                }
                let id = self.core.id_of(key);
                // A broken handshake or record: the peer may well be sending more.
                self.core.close_gracefully(id, Ending::Linger);
            }
        }
    }

    /// TLS: an EOF inside a record is a truncation (said once, at debug); an EOF without
    /// close_notify between records is how many clients end, and is traced only.
    #[cfg(feature = "tls")]
    fn note_tls_eof(&mut self, key: usize) {
        let partial = self.core.conns[key]
            .bufs
            .as_ref()
            .and_then(|b| b.tls.as_ref())
            .map_or(0, |t| t.partial_input());
        if partial > 0 {
            debug!(target: TLS, "{} EOF inside a TLS record ({partial} bytes of it): truncated",
                self.core.who(key));
        } else {
            trace!(target: IO, "{} EOF without close_notify", self.core.who(key));
        }
    }

    /// TLS: one record's plaintext. Delivered from the loop's plaintext buffer (the handler may
    /// rewrite it in place); kept for later while the handler has reading paused.
    #[cfg(feature = "tls")]
    fn deliver_record(&mut self, key: usize, record: &[u8], plain: &mut Vec<u8>) {
        let Some(c) = self.core.conns.get(key) else {
            return;
        };
        if c.phase != Phase::Open {
            return;
        }
        if c.paused() {
            self.keep_tail(key, record);
            return;
        }
        plain.clear();
        plain.extend_from_slice(record);
        self.deliver(key, plain);
    }

    #[cfg(not(feature = "tls"))]
    fn receive_tls(&mut self, key: usize, fresh: &mut [u8]) {
        self.deliver(key, fresh);
    }

    /// Past the input budget, closes the connections holding the most until it is kept.
    fn check_budget(&mut self) {
        while self.core.budget.over() {
            let Some((key, held)) = self.core.budget.largest() else {
                return;
            };
            warn!(
                "{}: holds {held} bytes of unfinished input, and all connections {} bytes, over the {} byte budget (--max-buffered): closing it",
                self.core.who(key),
                self.core.budget.total(),
                self.core.config.max_buffered_input
            );
            self.core.stats.closed_over_budget += 1;
            // Out of the count first, so it is not chosen again whatever the handler does.
            self.core.budget.release(key);
            if self.core.conns[key].phase == Phase::Open {
                self.call(key, |h, cx, conn| h.on_input_over_budget(cx, conn, held));
            }
            if self.core.conns[key].phase == Phase::Open {
                self.core.close_now(key, None, CloseReason::Aborted);
            }
        }
    }

    fn keep_tail(&mut self, key: usize, tail: &[u8]) {
        let max = self.core.config.max_inbuf;
        if self.core.conns[key].phase != Phase::Open {
            return;
        }
        if self.core.conns[key].inbuf_len() + tail.len() > max {
            self.core.close_now(key, None, CloseReason::Aborted);
            return;
        }
        self.core.buffers(key).inbuf.extend_from_slice(tail);
        self.core.note_inbuf(key);
        trace!(target: IO, "{} kept {} byte tail", self.core.who(key), tail.len());
    }

    /// Rule: pending output over the high watermark stops reading until it drains below the
    /// low watermark, so a peer that sends without reading cannot grow our memory.
    fn apply_backpressure(&mut self, key: usize) {
        let high = self.core.config.high_watermark;
        let Some(c) = self.core.conns.get(key).filter(|c| c.pending() > high) else {
            return;
        };
        if !c.has(flags::WRITE_BLOCKED) {
            self.flush_outbuf(key);
        }
        let Some(c) = self.core.conns.get_mut(key) else {
            return;
        };
        if c.phase == Phase::Open && c.pending() > high && !c.has(flags::PAUSED_BY_LOOP) {
            debug!(
                "{}: {} bytes pending, pausing reads",
                Who(key, &self.core.peers),
                c.pending()
            );
            c.flags |= flags::PAUSED_BY_LOOP;
            self.core.update_interest(key);
        }
    }

    /// Phase 6: flush every connection that queued output since the loop last slept.
    pub(crate) fn flush_all(&mut self) {
        let keys = std::mem::take(&mut self.core.flush_list);
        for (i, &key) in keys.iter().enumerate() {
            // Past a shutdown's deadline nothing more is worth writing: stop, so the loop can
            // end on time (checked every 64 connections).
            if i % 64 == 63 && self.core.past_shutdown_deadline() {
                self.core.flush_list.extend_from_slice(&keys[i..]);
                break;
            }
            let Some(c) = self.core.conns.get_mut(key) else {
                continue;
            };
            c.flags &= !flags::IN_FLUSH_LIST;
            if c.has(flags::WRITE_BLOCKED) {
                // The socket refused bytes and has not said WRITABLE since: a `writev` now
                // could only return WouldBlock. Judge the grown queue without the syscall.
                let pending = c.pending();
                trace!(target: IO, "{} still write-blocked, {pending} pending", self.core.who(key));
                self.write_blocked(key);
            } else {
                self.flush_outbuf(key);
            }
        }
    }

    /// Writes queued output with `writev` until the queue drains, the kernel pushes back or the
    /// budget is spent. Arms WRITABLE on a short write, drops it when the queue drains, and
    /// finishes a requested close.
    fn flush_outbuf(&mut self, key: usize) {
        if self.core.conns.get(key).is_some_and(|c| c.has(flags::TLS)) {
            #[cfg(feature = "tls")]
            self.flush_tls(key);
            return;
        }
        let mut written = 0;
        loop {
            let Some(c) = self.core.conns.get_mut(key) else {
                return;
            };
            if matches!(c.phase, Phase::Closed | Phase::Connecting) {
                return;
            }
            let Some(out) = c
                .bufs
                .as_mut()
                .map(|b| &mut b.out)
                .filter(|o| !o.is_empty())
            else {
                break;
            };
            if written >= WRITE_BUDGET {
                self.core.schedule_flush(key);
                return;
            }
            let pending = out.pending();
            let (result, asked, count) = match out.only_slice() {
                // One piece: no 64-entry `IoSlice` array to fill (it showed in the profile).
                Some(bytes) => (
                    c.stream.write_vectored(&[IoSlice::new(bytes)]),
                    bytes.len(),
                    1,
                ),
                None => {
                    let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                    let count = out.io_slices(&mut iov);
                    let asked: usize = iov[..count].iter().map(|s| s.len()).sum();
                    (c.stream.write_vectored(&iov[..count]), asked, count)
                }
            };
            if let Ok(n) = result {
                out.advance(n);
                written += n;
            }
            let via = Via::Pieces(count);
            if self.wrote(key, result, asked, pending, via).is_break() {
                return;
            }
        }
        self.output_drained(key);
    }

    /// TLS: seals queued plaintext (once the handshake is done) and writes the ciphertext,
    /// under the same rules as `flush_outbuf`; on a close, seals a close_notify before the FIN.
    #[cfg(feature = "tls")]
    fn flush_tls(&mut self, key: usize) {
        /// Plaintext sealed per round: 64 KiB, then the ciphertext is written.
        const SEAL_ROUND: usize = 64 * 1024;
        let mut written = 0;
        loop {
            let Some(c) = self.core.conns.get_mut(key) else {
                return;
            };
            if matches!(c.phase, Phase::Closed | Phase::Connecting) {
                return;
            }
            let closing = matches!(c.phase, Phase::Closing(_));
            let Some(b) = c.bufs.as_mut() else {
                return;
            };
            let Some(tls) = b.tls.as_mut() else {
                return;
            };
            // Seal behind what is already sealed (handshake records, earlier rounds), so one
            // write carries it all: tickets, a reply and a close_notify go out together.
            let sealed = tls.pending();
            if tls.phase() == TlsPhase::Established && !b.out.is_empty() && sealed < SEAL_ROUND {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let count = b.out.io_slices(&mut iov);
                let taken = tls.seal(&iov[..count], SEAL_ROUND - sealed, self.plain);
                b.out.advance(taken);
                if taken == 0 {
                    // The session would not seal: it is broken; nothing can be sent.
                    self.core.close_now(key, None, CloseReason::Aborted);
                    return;
                }
            }
            if closing && b.out.is_empty() && tls.phase() != TlsPhase::Closed {
                tls.close_notify();
            }
            if tls.pending() == 0 {
                if !b.out.is_empty() {
                    if tls.phase() == TlsPhase::Handshaking {
                        // Plaintext queued during the handshake waits for it; the read side
                        // flushes again when it completes.
                        return;
                    }
                    // A failed session (its alert is out) seals nothing more: what was
                    // queued for it can never be sent, so the close goes on without it.
                    let dropped = b.out.pending();
                    b.out.clear();
                    trace!(target: IO, "{} dropped {dropped} unsendable bytes (TLS closed)", self.core.who(key));
                }
                break;
            }
            if written >= WRITE_BUDGET {
                self.core.schedule_flush(key);
                return;
            }
            let pending = tls.pending();
            let result = c.stream.write_vectored(&[IoSlice::new(tls.ciphertext())]);
            if let Ok(n) = result {
                tls.advance(n);
                written += n;
            }
            if self
                .wrote(key, result, pending, pending, Via::Tls)
                .is_break()
            {
                return;
            }
        }
        self.output_drained(key);
    }

    /// Accounts one `writev` of `asked` bytes, with `pending` queued (the caller has already
    /// advanced its queue by what was written), and says whether the flush goes on: only when
    /// the socket took everything it was offered. A short write or `WouldBlock` means the
    /// socket buffer is full; an error or a zero-byte write closes the connection.
    fn wrote(
        &mut self,
        key: usize,
        result: io::Result<usize>,
        asked: usize,
        pending: usize,
        via: Via,
    ) -> ControlFlow<()> {
        match result {
            Ok(0) => {
                self.core
                    .close_now(key, None, CloseReason::PeerGone(io::ErrorKind::WriteZero));
                ControlFlow::Break(())
            }
            Ok(n) => {
                self.core.stats.bytes_written += n as u64;
                if n < asked {
                    // A short write means the socket buffer is full: the kernel sets
                    // SOCK_NOSPACE, and will report WRITABLE when space frees up. Trying
                    // again now would only return WouldBlock.
                    trace!(target: IO, "{} write {n} of {asked}{via}: partial, {} pending",
                        self.core.who(key), pending - n);
                    self.core.stats.metrics.partial_writes_total += 1;
                    self.write_blocked(key);
                    return ControlFlow::Break(());
                }
                trace!(target: IO, "{} write {n} of {asked}{via}", self.core.who(key));
                // The socket took all it was offered: it is not blocked, whether or not the
                // queue drains in this flush (the write budget may stop us first).
                self.core.conns[key].flags &= !flags::WRITE_BLOCKED;
                ControlFlow::Continue(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                trace!(target: IO, "{} write WouldBlock, {pending} pending{}", self.core.who(key), via.suffix());
                self.core.stats.metrics.partial_writes_total += 1;
                self.write_blocked(key);
                ControlFlow::Break(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ControlFlow::Continue(()),
            Err(e) => {
                debug!("{} write failed: {e}", self.core.who(key));
                self.core
                    .close_now(key, None, CloseReason::PeerGone(e.kind()));
                ControlFlow::Break(())
            }
        }
    }

    /// A closing connection's queue is flushed: close it. A `close` while unread input sits
    /// in the socket's receive queue makes the kernel send a reset instead of a FIN, and a
    /// reset can destroy the reply still on its way to the peer (the peer's kernel drops what
    /// its application has not read yet). A close in the middle of the peer's input
    /// (`Ending::Linger`) always lingers: one read showing nothing proves nothing while the
    /// peer is still sending. A close at a boundary (`Ending::Look`) looks first: the peer's
    /// EOF already seen, or nothing waiting (one `read` says `WouldBlock`), close now, and the
    /// kernel sends what is queued, then the FIN (nginx closes at once too when nothing
    /// suggests more input); input waiting, linger.
    fn close_or_linger(&mut self, key: usize, ending: Ending) {
        let c = &self.core.conns[key];
        if !c.has(flags::EOF) {
            if ending == Ending::Linger {
                return self.linger(key);
            }
            let mut probe = [0u8; 64];
            match c.stream.read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace!(target: IO, "{} read WouldBlock: nothing unread, close without lingering",
                        self.core.who(key));
                }
                Ok(0) => trace!(target: IO, "{} read EOF", self.core.who(key)),
                Ok(n) => {
                    self.core.stats.bytes_read += n as u64;
                    trace!(target: IO, "{} discarded {n} bytes (closing)", self.core.who(key));
                    return self.linger(key);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return self.linger(key),
                Err(e) => {
                    debug!("{} read failed: {e}", self.core.who(key));
                    self.core
                        .close_now(key, None, CloseReason::PeerGone(e.kind()));
                    return;
                }
            }
        }
        self.core.close_now(key, None, CloseReason::Done);
    }

    /// The lingering close: FIN now (`shutdown(write)`), then read and discard until the
    /// peer's EOF or `linger_timeout`, so that input still coming cannot turn the close into a
    /// reset.
    fn linger(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        let _ = c.stream.shutdown_write();
        c.phase = Phase::Lingering;
        trace!(target: IO, "{} shutdown(write): FIN sent, lingering", self.core.who(key));
        let linger = self.core.config.linger_timeout;
        self.core.set_timer_raw(key, linger);
        // Registers it if it never was (see `Core::insert`): lingering waits for the EOF.
        self.core.update_interest(key);
        // More input may be waiting, with no new edge to report it.
        self.core.schedule_read(key);
    }

    /// The kernel refused part of the queue. This, not the size of a queue that no flush has
    /// offered to the socket yet, is what makes a connection slow: a burst queued for everyone
    /// in one iteration says nothing about any one reader.
    fn write_blocked(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        c.flags |= flags::WRITE_BLOCKED | flags::DRAIN_OWED;
        let pending = c.pending();
        if pending > self.core.config.max_pending {
            warn!(
                "{}: {pending} bytes the socket will not take, over the {} byte limit: closing slow consumer",
                self.core.who(key),
                self.core.config.max_pending
            );
            self.core.close_now(key, None, CloseReason::SlowConsumer);
            return;
        }
        let resume = c.has(flags::PAUSED_BY_LOOP) && pending < self.core.config.low_watermark;
        if resume {
            self.resume_after_drain(key);
        }
        self.core.update_interest(key);
        if self.core.conns[key].phase == Phase::Open {
            self.call(key, |h, cx, conn| h.on_write_blocked(cx, conn, pending));
        }
    }

    fn resume_after_drain(&mut self, key: usize) {
        let c = &mut self.core.conns[key];
        c.flags &= !flags::PAUSED_BY_LOOP;
        debug!(
            "{}: output below low watermark, resuming reads",
            self.core.who(key)
        );
        self.core.schedule_read(key);
    }

    fn output_drained(&mut self, key: usize) {
        self.core.release_buffers(key);
        let c = &mut self.core.conns[key];
        let was_blocked = c.has(flags::DRAIN_OWED);
        c.flags &= !(flags::WRITE_BLOCKED | flags::DRAIN_OWED);
        if c.has(flags::PAUSED_BY_LOOP) {
            self.resume_after_drain(key);
        }
        self.core.update_interest(key);
        let c = &mut self.core.conns[key];
        match c.phase {
            Phase::Closing(ending) => self.close_or_linger(key, ending),
            Phase::Open if was_blocked => {
                self.call(key, |h, cx, conn| h.on_drained(cx, conn));
            }
            _ => {}
        }
    }
}

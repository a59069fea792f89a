//! `TlsSession`: TLS as a layer of the loop, on rustls' unbuffered API, so that every protocol
//! gets HTTPS, WSS or TLS lines without knowing: a `Handler` keeps seeing plaintext.
//!
//! rustls never touches a socket; neither does this file. The loop reads ciphertext into its
//! one read buffer and hands it to `receive`, which gives the plaintext of each record to the
//! caller (which delivers it to the handler as it delivers plaintext today). Output is queued
//! as plaintext, as for any connection, and sealed here at flush time (`seal`): the loop then
//! writes `ciphertext()` with the same `writev`/WRITABLE/backpressure rules as plaintext, and
//! handshake records obey the same rules. The unbuffered API keeps no buffers of its own: what
//! an idle TLS connection costs is the session's keys and state (~3 KB), and the two buffers
//! here, which are freed whenever they empty.
//!
//! A record split across reads stays in `cipher_in` until the rest comes: that is the only
//! copy of incoming ciphertext, and only of the partial tail. On a fatal error rustls queues
//! an alert; `receive` seals it, so the peer learns why before the connection closes.

use log::{debug, trace};
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError, UnbufferedStatus};
use std::sync::Arc;

/// The log target of the TLS layer (`RUST_LOG=readyloop::tls=trace`), here and in conn_io.
pub(crate) const LOG: &str = "readyloop::tls";

/// Plaintext sealed into one record at most: TLS's 16 KiB.
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// Bytes a record adds to its plaintext, at most (header, content type, AEAD tag; TLS 1.2's
/// explicit nonce): reserved per record when sealing.
const RECORD_OVERHEAD: usize = 64;
/// Records taken from rustls after a fatal error, at most: what it queued before failing and
/// the alert (a ServerHello flight is five; 16 is a bound, not a count we expect to reach).
const MAX_QUEUED_AFTER_ERROR: usize = 16;

/// Which side of the handshake we are.
enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsPhase {
    /// Handshake records are exchanged; nothing can be sealed yet.
    Handshaking,
    /// Application data flows both ways.
    Established,
    /// Our close_notify is sealed: nothing more is sent.
    Closed,
}

/// What `receive` found besides plaintext.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// The handshake completed during this call.
    pub(crate) established: bool,
    /// The peer sent close_notify: it will send nothing more (an EOF).
    pub(crate) peer_closed: bool,
}

/// One connection's TLS state and its two ciphertext buffers.
pub struct TlsSession {
    side: Side,
    phase: TlsPhase,
    /// Ciphertext received and not yet discarded: the tail of a record split across reads,
    /// and the records of a handshake message split across records (rustls reassembles it
    /// in the caller's buffer and keeps offsets into it). So every `process_tls_records`
    /// call, even one that only wants a state to encrypt with, gets these bytes: an empty
    /// slice while rustls holds offsets into them panics inside rustls.
    cipher_in: Vec<u8>,
    /// Ciphertext to write: handshake records, sealed data, alerts.
    cipher_out: Vec<u8>,
    /// Bytes of `cipher_out` already written.
    written: usize,
    /// The connection's slot key, for log lines (`conn 12 TLS ...`).
    conn: usize,
    /// A fatal error ended the session.
    failed: bool,
    /// The connection's deadline is the loop's handshake deadline
    /// (`Config::tls_handshake_timeout`), not one its handler armed: it is cancelled when the
    /// handshake completes, and if it passes first the loop closes the connection itself.
    handshake_deadline: bool,
}

/// Runs `$body` with `$conn` bound to the unbuffered connection of either side (their methods
/// have the same names on two different types).
macro_rules! on_side {
    ($side:expr, $conn:ident => $body:expr) => {
        match $side {
            Side::Server($conn) => $body,
            Side::Client($conn) => $body,
        }
    };
}

impl TlsSession {
    /// A server session for connection `conn`, just accepted on a TLS listener.
    pub(crate) fn server(
        config: Arc<rustls::ServerConfig>,
        conn: usize,
    ) -> Result<TlsSession, rustls::Error> {
        trace!(target: LOG, "conn {conn} handshake begins (server)");
        Ok(TlsSession::new(
            Side::Server(UnbufferedServerConnection::new(config)?),
            conn,
        ))
    }

    /// A client session for `name`; its ClientHello is sealed at once, ready to go out as
    /// soon as the connect completes.
    pub(crate) fn client(
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        conn: usize,
    ) -> Result<TlsSession, rustls::Error> {
        trace!(target: LOG, "conn {conn} handshake begins (client, server name {:?})", name.to_str());
        let side = Side::Client(UnbufferedClientConnection::new(config, name)?);
        let mut s = TlsSession::new(side, conn);
        s.receive(&mut [], &mut |_| {})?;
        Ok(s)
    }

    fn new(side: Side, conn: usize) -> TlsSession {
        TlsSession {
            side,
            phase: TlsPhase::Handshaking,
            cipher_in: Vec::new(),
            cipher_out: Vec::new(),
            written: 0,
            conn,
            failed: false,
            handshake_deadline: false,
        }
    }

    pub(crate) fn phase(&self) -> TlsPhase {
        self.phase
    }

    /// Whether the connection's deadline is the loop's handshake deadline.
    pub(crate) fn handshake_deadline(&self) -> bool {
        self.handshake_deadline
    }

    /// Says whose the connection's deadline is: the loop's handshake deadline (`true`) or
    /// the handler's.
    pub(crate) fn set_handshake_deadline(&mut self, ours: bool) {
        self.handshake_deadline = ours;
    }

    /// Ciphertext waiting to be written.
    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.cipher_out[self.written..]
    }

    /// Bytes of ciphertext waiting to be written.
    pub(crate) fn pending(&self) -> usize {
        self.cipher_out.len() - self.written
    }

    /// Bytes of a received record kept until the rest of it arrives.
    pub(crate) fn partial_record(&self) -> usize {
        self.cipher_in.capacity()
    }

    /// rustls has records queued to hand out.
    fn wants_write(&self) -> bool {
        on_side!(&self.side, conn => conn.wants_write())
    }

    /// Bytes of a record received whose rest has not arrived (non-zero at an EOF: the peer
    /// cut a record short).
    pub(crate) fn partial_input(&self) -> usize {
        self.cipher_in.len()
    }

    /// `n` bytes of `ciphertext()` were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.written += n;
        if self.written == self.cipher_out.len() {
            self.written = 0;
            release(&mut self.cipher_out);
        }
    }

    /// Feeds `fresh` ciphertext (just read; may be empty, to make progress without input) and
    /// hands the plaintext of every application-data record to `plaintext`. Handshake records
    /// and alerts to send go into the ciphertext buffer. `Err` is a fatal TLS error: whatever
    /// alert rustls prepared is already in the ciphertext buffer; close after flushing it.
    pub(crate) fn receive(
        &mut self,
        fresh: &mut [u8],
        plaintext: &mut dyn FnMut(&[u8]),
    ) -> Result<Received, rustls::Error> {
        let mut received = Received::default();
        // Process in place when nothing is left over from an earlier read (the common case:
        // whole records per read); else behind the leftover.
        let in_place = self.cipher_in.is_empty();
        if !in_place {
            self.cipher_in.extend_from_slice(fresh);
        }
        let mut taken = std::mem::take(&mut self.cipher_in);
        let buf: &mut [u8] = if in_place { fresh } else { &mut taken };
        let mut start = 0;
        let outcome = loop {
            let step = self.step(&mut buf[start..], plaintext, &mut received);
            match step {
                Ok((discard, more)) => {
                    start += discard;
                    if !more {
                        break Ok(());
                    }
                }
                Err((discard, e)) => {
                    start += discard;
                    break Err(e);
                }
            }
        };
        // Keep what is left: the start of a record whose rest has not arrived.
        if in_place {
            self.cipher_in = buf[start..].to_vec();
        } else {
            taken.drain(..start);
            self.cipher_in = taken;
        }
        if self.cipher_in.is_empty() {
            release(&mut self.cipher_in);
        }
        if let Err(e) = outcome {
            debug!(target: LOG, "conn {} TLS error: {e}; closing after the alert", self.conn);
            // rustls queues a fatal alert for most errors: take it for the peer. It may sit
            // behind other queued records (a TLS 1.3 server fails on ALPN after its
            // ServerHello is queued, and the alert is encrypted behind it), and a call hands
            // out one record, so call while rustls has records to send, and no more: a call
            // with nothing queued would parse the kept input again (failing again, a second
            // alert), and a call with an empty slice panics while rustls holds offsets into
            // the kept bytes (see `cipher_in`). Bounded: rustls queues a handful.
            let mut kept = std::mem::take(&mut self.cipher_in);
            for _ in 0..MAX_QUEUED_AFTER_ERROR {
                if !self.wants_write() {
                    break;
                }
                match self.step(&mut kept, &mut |_| {}, &mut received) {
                    Ok((discard, _)) => {
                        kept.drain(..discard.min(kept.len()));
                    }
                    Err(_) => break,
                }
            }
            // Nothing more is read from a failed session: what it kept goes now.
            release(&mut self.cipher_in);
            return Err(e);
        }
        Ok(received)
    }

    /// One `process_tls_records` and the handling of its state. Returns the bytes to discard
    /// and whether to call again.
    fn step(
        &mut self,
        buf: &mut [u8],
        plaintext: &mut dyn FnMut(&[u8]),
        received: &mut Received,
    ) -> Result<(usize, bool), (usize, rustls::Error)> {
        let TlsSession {
            side,
            phase,
            cipher_out,
            conn: key,
            ..
        } = self;
        let key = *key;
        on_side!(side, conn => {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(buf);
            let state = match state {
                Ok(state) => state,
                Err(e) => return Err((discard, e)),
            };
            if discard > 0 {
                trace!(target: LOG, "conn {key} records in: {discard} bytes");
            }
            let more = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(|e| (discard, e))?;
                        discard += record.discard;
                        trace!(target: LOG, "conn {key} record in: {} bytes of plaintext", record.payload.len());
                        plaintext(record.payload);
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(cipher_out, key, |out| encode.encode(out)).map_err(|e| (discard, e))?;
                    true
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // Queued in `cipher_out`, in order: as good as sent for rustls.
                    transmit.done();
                    true
                }
                ConnectionState::WriteTraffic(_) => false,
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    received.peer_closed = true;
                    false
                }
                ConnectionState::BlockedHandshake => false,
                ConnectionState::ReadEarlyData(_) => {
                    // Early data is off in our configs; a peer sending it anyway is refused.
                    return Err((discard, rustls::Error::General("unexpected early data".into())));
                }
                _ => false,
            };
            // The handshake is over once rustls says so, whichever state this step ended in:
            // its last flight may arrive with data and a close_notify behind it, and then
            // `WriteTraffic` is never the state a step stops at.
            if *phase == TlsPhase::Handshaking && !conn.is_handshaking() {
                *phase = TlsPhase::Established;
                received.established = true;
                debug!(target: LOG, "conn {key} handshake done: {}, {}, ALPN {}, {}",
                    conn.protocol_version().map_or("?".into(), |v| format!("{v:?}")),
                    conn.negotiated_cipher_suite().map_or("?".into(), |s| format!("{:?}", s.suite())),
                    conn.alpn_protocol().map_or("none".into(), String::from_utf8_lossy),
                    match conn.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => "resumed",
                        _ => "full handshake",
                    });
            }
            Ok((discard, more))
        })
    }

    /// Seals up to `max` bytes of the plaintext in `bufs` (oldest first) into the ciphertext
    /// buffer, once the handshake is done; returns the plaintext bytes taken. Small pieces are
    /// gathered into records of up to 16 KiB, so a queue of small messages costs few records.
    pub(crate) fn seal(
        &mut self,
        bufs: &[std::io::IoSlice<'_>],
        max: usize,
        gather: &mut Vec<u8>,
    ) -> usize {
        if self.phase != TlsPhase::Established {
            return 0;
        }
        gather.clear();
        let mut taken = 0;
        for slice in bufs {
            let mut s: &[u8] = slice;
            while !s.is_empty() && taken < max {
                let room = MAX_RECORD_PLAINTEXT - gather.len();
                let n = room.min(s.len()).min(max - taken);
                gather.extend_from_slice(&s[..n]);
                s = &s[n..];
                taken += n;
                if gather.len() == MAX_RECORD_PLAINTEXT {
                    if self.encrypt(gather).is_err() {
                        return 0;
                    }
                    gather.clear();
                }
            }
            if taken >= max {
                break;
            }
        }
        if !gather.is_empty() {
            if self.encrypt(gather).is_err() {
                return 0;
            }
            gather.clear();
        }
        taken
    }

    /// Encrypts `data` (one record's worth) onto the ciphertext buffer.
    fn encrypt(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        let TlsSession {
            side,
            cipher_out,
            cipher_in,
            conn: key,
            ..
        } = self;
        on_side!(side, conn => {
            let UnbufferedStatus { state, discard } = conn.process_tls_records(cipher_in);
            let sealed = match state? {
                ConnectionState::WriteTraffic(mut w) => {
                    let want = data.len() + RECORD_OVERHEAD * (1 + data.len() / MAX_RECORD_PLAINTEXT);
                    match seal_onto(cipher_out, want, |room| w.encrypt(data, room)) {
                        Ok(n) => {
                            trace!(target: LOG, "conn {key} record out: {} bytes of plaintext, {n} on the wire", data.len());
                            Ok(())
                        }
                        Err(e) => Err(rustls::Error::General(format!("encrypt: {e:?}"))),
                    }
                }
                other => Err(rustls::Error::General(format!("cannot encrypt in state {other:?}"))),
            };
            cipher_in.drain(..discard);
            sealed
        })
    }

    /// After a fatal error: the connection closes without a close_notify (the alert said why),
    /// and ends in `CloseReason::TlsFailed`.
    pub(crate) fn fail(&mut self) {
        self.phase = TlsPhase::Closed;
        self.failed = true;
    }

    /// The session failed (`fail`).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Seals our close_notify (once): the peer learns the close is deliberate, not a truncation.
    pub(crate) fn close_notify(&mut self) {
        if self.phase == TlsPhase::Handshaking {
            // No keys to seal one with: a stalled handshake timed out, or the server is
            // stopping. Said once, here, for either.
            debug!(target: LOG, "conn {} closing before the TLS handshake finished", self.conn);
        }
        if self.phase != TlsPhase::Established {
            self.phase = TlsPhase::Closed;
            return;
        }
        self.phase = TlsPhase::Closed;
        let TlsSession {
            side,
            cipher_out,
            cipher_in,
            conn: key,
            ..
        } = self;
        on_side!(side, conn => {
            let UnbufferedStatus { state, discard } = conn.process_tls_records(cipher_in);
            if let Ok(ConnectionState::WriteTraffic(mut w)) = state {
                let sealed = seal_onto(cipher_out, RECORD_OVERHEAD, |room| w.queue_close_notify(room));
                if let Ok(n) = sealed {
                    trace!(target: LOG, "conn {key} close_notify sealed ({n} bytes)");
                }
            }
            cipher_in.drain(..discard);
        })
    }
}

/// Calls `encode` with room at the end of `out`, growing it to what rustls asks for.
fn encode_into(
    out: &mut Vec<u8>,
    key: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    let mut room = 4096;
    loop {
        match seal_onto(out, room, &mut encode) {
            Ok(n) => {
                trace!(target: LOG, "conn {key} handshake record out: {n} bytes");
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(e) => return Err(rustls::Error::General(format!("encode: {e:?}"))),
        }
    }
}

/// Runs `seal` on `room` zeroed bytes appended to `out` and keeps the `n` it says it wrote
/// (none on an error): every record rustls writes for us lands at the end of the ciphertext.
fn seal_onto<E>(
    out: &mut Vec<u8>,
    room: usize,
    seal: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<usize, E> {
    let at = out.len();
    out.resize(at + room, 0);
    let sealed = seal(out.get_mut(at..).unwrap_or_default());
    out.truncate(at + sealed.as_ref().map_or(0, |&n| n.min(room)));
    sealed
}

/// Empties `buf` and frees it: an idle session holds no buffer.
fn release(buf: &mut Vec<u8>) {
    *buf = Vec::new();
}

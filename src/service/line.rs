//! The line service (the blocking socket server of the third seed, on the loop): each line is
//! echoed to its sender, or pushed to every *other* line client (`--line-mode broadcast`);
//! `exit` closes; a line over `--max-line` gets `error: line too long` and a close.
//!
//! A line client needs no state of its own beyond what the loop keeps (the unfinished tail of
//! a line): echo keeps nothing at all, broadcast keeps the list of recipients here.

use super::config::LineMode;
use crate::codec::escape::escaped;
use crate::codec::line::{next_line, LineTooLong, TOO_LONG_REPLY};
use crate::runtime::{CloseReason, ConnId, Context};
use log::{debug, warn};
use slab::Slab;
use std::rc::Rc;
use std::time::Duration;

const LOG: &str = "readyloop::line";

/// The reply before closing a client closed to keep the server's input budget.
const OVER_BUDGET_REPLY: &[u8] = b"error: server input budget exceeded\n";

/// Where a line that the service broadcasts goes besides this process' clients (the Redis
/// relay, wired in by the dispatcher).
pub type Relay<'r, S, M> = &'r mut dyn FnMut(&mut Context<'_, S, M>, &[u8]);

/// A line connection's state: its key in the broadcast audience (broadcast mode only). Four
/// bytes, so the server's per-connection state does not grow for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineConn(u32);

impl LineConn {
    /// A connection that is not (yet) in the audience.
    pub const OUT: LineConn = LineConn(u32::MAX);
}

/// The line service's settings and its broadcast audience.
pub struct LineService {
    mode: LineMode,
    max_line: usize,
    idle_timeout: Option<Duration>,
    /// Open line connections (broadcast recipients; empty in echo mode, which keeps nothing
    /// per client). A slab, so a disconnect is O(1) however many clients there are.
    clients: Slab<ConnId>,
}

impl LineService {
    /// A service in `mode`, refusing lines over `max_line` bytes, closing clients idle for
    /// `idle_timeout`.
    pub fn new(mode: LineMode, max_line: usize, idle_timeout: Option<Duration>) -> LineService {
        LineService {
            mode,
            max_line,
            idle_timeout,
            clients: Slab::new(),
        }
    }

    /// Arms the idle timeout (hello and line connections).
    pub fn arm_idle<S, M>(&self, cx: &mut Context<'_, S, M>) {
        if let Some(t) = self.idle_timeout {
            let id = cx.id();
            cx.set_timer(id, t);
        }
    }

    /// A line client connected.
    pub fn on_open<S, M>(&mut self, cx: &mut Context<'_, S, M>, conn: &mut LineConn) {
        let id = cx.id();
        if self.mode == LineMode::Broadcast {
            *conn = LineConn(self.clients.insert(id) as u32);
            debug!(target: LOG, "conn {id} joined ({} line clients)", self.clients.len());
        }
        self.arm_idle(cx);
    }

    /// Consumes every complete line in `data`; a broadcast line also goes to `relay`.
    ///
    /// Echo: a run of lines that each end in a bare `\n` is, byte for byte, its own echo, so
    /// the run goes back as one copy of `data` (`echo_run`), not two small copies a line; a
    /// `\r\n` line breaks the run and is echoed with `\n`.
    pub fn on_data<S, M>(
        &mut self,
        cx: &mut Context<'_, S, M>,
        data: &[u8],
        relay: Relay<'_, S, M>,
    ) -> usize {
        let id = cx.id();
        self.arm_idle(cx);
        let mut used = 0;
        // `data[echo_run.0..echo_run.1]`: echoed lines not yet queued.
        let mut echo_run = (0, 0);
        let flush_run = |cx: &mut Context<'_, S, M>, run: &mut (usize, usize)| {
            if run.1 > run.0 {
                cx.send_copy(id, &data[run.0..run.1]);
            }
            *run = (0, 0);
        };
        loop {
            match next_line(&data[used..], self.max_line) {
                Ok(Some((line, n))) => {
                    let start = used;
                    used += n;
                    debug!(target: LOG, "conn {id} line: {}", escaped(line));
                    if line == b"exit" {
                        flush_run(cx, &mut echo_run);
                        cx.close(id);
                        return used;
                    }
                    match self.mode {
                        LineMode::Echo if n == line.len() + 1 => {
                            if echo_run.1 != start {
                                flush_run(cx, &mut echo_run);
                                echo_run.0 = start;
                            }
                            echo_run.1 = used;
                        }
                        LineMode::Echo => {
                            flush_run(cx, &mut echo_run);
                            cx.send_copy(id, line);
                            cx.send_copy(id, b"\n");
                        }
                        LineMode::Broadcast => {
                            self.deliver(cx, line, Some(id));
                            relay(cx, line);
                        }
                    }
                }
                Ok(None) => {
                    flush_run(cx, &mut echo_run);
                    return used;
                }
                Err(LineTooLong) => {
                    flush_run(cx, &mut echo_run);
                    warn!(target: LOG, "conn {id}: line over {} bytes, closing", self.max_line);
                    cx.send(id, TOO_LONG_REPLY);
                    // The rest of the line is surely still coming.
                    cx.close_mid_input(id);
                    return data.len();
                }
            }
        }
    }

    /// Pushes `line` (plus `\n`, one shared allocation) to every line client but `except`
    /// (the sender, when it is ours; a line from another process goes to all).
    pub fn deliver<S, M>(&self, cx: &mut Context<'_, S, M>, line: &[u8], except: Option<ConnId>) {
        if self.clients.is_empty() {
            return;
        }
        let mut msg = Vec::with_capacity(line.len() + 1);
        msg.extend_from_slice(line);
        msg.push(b'\n');
        let msg: Rc<[u8]> = msg.into();
        let others: Vec<ConnId> = self
            .clients
            .iter()
            .map(|(_, &c)| c)
            .filter(|&c| Some(c) != except)
            .collect();
        let n = cx.broadcast(&others, msg);
        debug!(target: LOG, "line pushed to {n} clients");
    }

    /// The server's input budget is spent and this client holds the most (a long unfinished
    /// line): an error line, and a close.
    pub fn on_input_over_budget<S, M>(&mut self, cx: &mut Context<'_, S, M>) {
        let id = cx.id();
        cx.send(id, OVER_BUDGET_REPLY);
        cx.close_mid_input(id);
    }

    /// A line client is gone.
    pub fn on_close(&mut self, id: ConnId, conn: LineConn, why: CloseReason) {
        if conn != LineConn::OUT {
            self.clients.try_remove(conn.0 as usize);
            debug!(target: LOG, "conn {id} left ({why:?}, {} line clients)", self.clients.len());
        }
    }
}

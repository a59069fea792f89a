//! The blocking socket server of our users' third program, ported to readyloop's `Handler` API.
//!
//! The Python original binds, listens, accepts *one* client, then loops on `recv(65535)`,
//! printing each message until it reads `exit`. It has two bugs a loop fixes by construction:
//! it serves one client at a time (the second waits in the backlog), and on EOF `recv` returns
//! `b''` forever, so the loop spins. Here every client gets a slab slot, messages are framed by
//! `\n` (a `recv` can return half a message or three of them; TCP has no message boundaries),
//! EOF closes the connection, and each line is also echoed back so the client sees it arrived.
//!
//! Run: `cargo run --example line_server -- 127.0.0.1:10000`, then
//! `cargo run --example line_client -- 127.0.0.1:10000` (or `nc 127.0.0.1 10000`) and type.
//! `exit` ends that client's connection; Ctrl-C (or SIGTERM) stops the server gracefully.

use readyloop::codec::line::{next_line, LineTooLong, TOO_LONG_REPLY};
use readyloop::{Addr, CloseReason, Config, ConnId, ContextOf, EventLoop, Handler, ListenerId};
use std::net::SocketAddr;

/// Longest line, in bytes: the original's `recv(65535)`.
const MAX_LINE: usize = 65535;

struct LineServer;

impl Handler for LineServer {
    type Conn = ();
    type Message = ();

    fn accept(&mut self, _: ListenerId, peer: &Addr) -> Option<()> {
        println!("accept {peer}");
        Some(())
    }

    fn on_data(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut (), data: &mut [u8]) -> usize {
        let id = cx.id();
        let mut used = 0;
        loop {
            match next_line(&data[used..], MAX_LINE) {
                Ok(Some((line, n))) => {
                    used += n;
                    println!("conn {id} received data: {}", String::from_utf8_lossy(line));
                    if line == b"exit" {
                        cx.close(id); // after the echoes queued so far are flushed
                        return data.len(); // nothing after `exit` is read
                    }
                    cx.send_copy(id, line);
                    cx.send_copy(id, b"\n");
                }
                // An incomplete line: the loop keeps the tail and offers it again with more.
                Ok(None) => return used,
                Err(LineTooLong) => {
                    cx.send(id, TOO_LONG_REPLY);
                    cx.close(id);
                    return data.len();
                }
            }
        }
    }

    fn on_close(&mut self, _: &mut ContextOf<'_, Self>, id: ConnId, _: (), why: CloseReason) {
        println!("conn {id} closed ({why:?})");
    }
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10000".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let mut ev = EventLoop::new(LineServer, Config::default())?;
    let (_, local) = ev.listen("line", addr)?;
    println!("listening line {local}");
    ev.handle_signals()?;
    ev.run()?;
    println!("stopped");
    Ok(())
}

//! The stdin client of our users' third program, ported to readyloop: the loop's client side.
//!
//! The Python original connects, then loops on `input()` and `send()`. While it blocks in
//! `input()` it cannot notice anything the server sends, which is why that program pushed
//! commands one way only. Here the connection lives on an `EventLoop` (`EventLoop::connect`,
//! non-blocking), and stdin, which cannot be made readiness-driven portably, is read by a plain
//! thread that hands each line to the loop with `Handle::send` (the `Waker` interrupts `poll`).
//! So what the server sends is printed as it arrives, whatever the user is doing.
//!
//! When stdin ends the client sends `exit` (the protocol's goodbye), prints the rest of what
//! the server sends, and stops when the server closes.
//!
//! Run: `cargo run --example line_client -- 127.0.0.1:10000` against `line_server`, or
//! `printf 'one\ntwo\n' | cargo run --example line_client -- 127.0.0.1:10000`.

use readyloop::{Addr, CloseReason, Config, ConnId, ContextOf, EventLoop, Handler, ListenerId};
use std::io::{BufRead, Write};
use std::net::SocketAddr;

/// What the stdin thread sends the loop.
enum Input {
    Line(String),
    Eof,
}

#[derive(Default)]
struct Client {
    conn: Option<ConnId>,
    failed: Option<CloseReason>,
}

impl Handler for Client {
    type Conn = ();
    type Message = Input;

    fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<()> {
        None // no listeners: this loop only makes one outgoing connection
    }

    /// The connect completed. Only now start reading stdin, so every line finds an open
    /// connection to be queued on.
    fn on_open(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut ()) {
        self.conn = Some(cx.id());
        eprintln!("connect is success");
        let handle = cx.handle();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if handle.send(Input::Line(line)).is_err() {
                    return; // the loop is gone
                }
            }
            let _ = handle.send(Input::Eof);
        });
    }

    fn on_message(&mut self, cx: &mut ContextOf<'_, Self>, msg: Input) {
        let Some(id) = self.conn else { return };
        let line = match msg {
            Input::Line(line) => line,
            Input::Eof => "exit".to_string(),
        };
        cx.send_copy(id, line.as_bytes());
        cx.send_copy(id, b"\n");
    }

    fn on_data(&mut self, _: &mut ContextOf<'_, Self>, _: &mut (), data: &mut [u8]) -> usize {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(data).and_then(|_| out.flush());
        data.len()
    }

    // The default `on_eof` closes our side once our output is flushed.

    fn on_close(&mut self, cx: &mut ContextOf<'_, Self>, _: ConnId, _: (), why: CloseReason) {
        if why != CloseReason::Done {
            self.failed = Some(why);
        }
        // The only connection is gone: stop the loop (a handler stops it through a Handle too).
        cx.handle().shutdown();
    }
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10000".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let mut ev = EventLoop::new(Client::default(), Config::default())?;
    ev.connect(addr, None, ())?;
    ev.run()?;
    match ev.handler().failed {
        Some(why) => Err(std::io::Error::other(format!("{addr}: {why:?}"))),
        None => Ok(()),
    }
}

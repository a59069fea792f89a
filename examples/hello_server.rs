//! The asyncio hello server from our users' first program, ported to readyloop's `Handler` API.
//!
//! The Python original accepts with `loop.sock_accept`, starts a task per client with
//! `create_task`, and in that task sends `Hello, World!` and closes. Here the loop accepts
//! (until `WouldBlock`), puts the client in a slab slot, and `on_open` queues the greeting and
//! asks for a close once it is flushed: no task, no stack, one slab entry per client.
//!
//! Run: `cargo run --example hello_server -- 127.0.0.1:8001`, then `nc 127.0.0.1 8001`.

use readyloop::{Addr, Config, ContextOf, EventLoop, Handler, ListenerId};
use std::net::SocketAddr;

struct Hello;

impl Handler for Hello {
    type Conn = ();
    type Message = ();

    fn accept(&mut self, _: ListenerId, peer: &Addr) -> Option<()> {
        println!("client connected: {peer}");
        Some(())
    }

    fn on_open(&mut self, cx: &mut ContextOf<'_, Self>, _: &mut ()) {
        let id = cx.id();
        cx.send(id, "Hello, World!\n");
        cx.close(id); // after the greeting is flushed
    }

    fn on_data(&mut self, _cx: &mut ContextOf<'_, Self>, _: &mut (), data: &mut [u8]) -> usize {
        data.len() // whatever the client says is read and dropped
    }
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8001".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let mut ev = EventLoop::new(Hello, Config::default())?;
    let (_, local) = ev.listen("hello", addr)?;
    println!("listening hello {local}");
    ev.handle_signals()?; // Ctrl-C stops the loop gracefully
    ev.run()
}

//! readyloop: a hand-rolled, single-threaded readiness event loop on `mio`, and the servers
//! that run on it.
//!
//! The crate is four layers, each a folder, each importing only the ones below it:
//! - [`runtime`]: the loop. One iteration of numbered phases ([`runtime::event_loop`]), what a
//!   connection costs ([`runtime::connection`]), the API a protocol sees ([`Handler`],
//!   [`Context`]). It knows no protocol.
//! - [`codec`]: sans-IO codecs (lines, HTTP/1.1, WebSocket, RESP): bytes in, events and bytes
//!   out, no sockets, unit-tested byte at a time and fuzzed.
//! - [`service`]: the protocols of `readyloop serve` as services that own their state, and
//!   [`service::Server`], the one dispatcher where they meet.
//! - [`supervisor`] (`serve --workers N`) and [`tools`] (`readyloop client`, `readyloop load`).
//!
//! Beside the layers, [`logging`] is a log sink that never blocks the thread that logs: records
//! go into a bounded queue written out by a thread of its own, and what does not fit is dropped
//! and counted (`log_dropped` in `/stats`). The binary's log goes through it; so can an
//! embedder's. It depends on `std` alone.
//!
//! # Cargo features
//!
//! All on by default. Without any (`default-features = false`) the crate is the runtime, the
//! line codec, the server with hello and line, and the client, on `mio`, `slab`, `log`, `libc`,
//! `socket2` and `signal-hook` alone.
//! - `http`: HTTP/1.1 on the `--http` listener (`codec::http`, `service::http`).
//! - `websocket` (implies `http`): WebSocket upgrades on `/ws` and `/echo` (`codec::ws`,
//!   `service::ws`).
//! - `redis`: broadcasts relayed through Redis pub/sub (`codec::resp`, `service::redis_relay`).
//! - `load` (implies `websocket`): the load generator (`tools::load`).
//! - `cli`: the `readyloop` binary's argument parsing and logging (`lexopt`, `env_logger`).
//!
//! [`service::Server::bind`] refuses an HTTP address in a build without `http`.
//!
//! # Embedding
//!
//! A server with a custom protocol and per-connection state: the loop runs on the caller's
//! thread, and another thread (here, a client checking the answers) stops it through a
//! [`Handle`]. Each callback gets the connection's own state as `conn` and can send while it
//! holds it.
//!
//! ```
//! use readyloop::{Addr, Config, Context, EventLoop, Handler, ListenerId};
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::TcpStream;
//!
//! /// Upper-cases each line and numbers it, per connection.
//! struct Shout;
//!
//! impl Handler for Shout {
//!     type Conn = u32; // per-connection state: lines answered so far
//!     type Message = (); // what other threads may send through a Handle
//!     fn accept(&mut self, _: ListenerId, _: &Addr) -> Option<u32> {
//!         Some(0)
//!     }
//!     fn on_data(&mut self, cx: &mut Context<'_, u32, ()>, lines: &mut u32, data: &mut [u8]) -> usize {
//!         let Some(end) = data.iter().rposition(|&b| b == b'\n') else {
//!             return 0; // no complete line yet: the loop keeps the bytes
//!         };
//!         for line in data[..end].split(|&b| b == b'\n') {
//!             *lines += 1;
//!             let reply = format!("{lines} {}\n", String::from_utf8_lossy(line).to_uppercase());
//!             cx.send(cx.id(), reply.into_bytes()); // queued; flushed before the loop sleeps
//!         }
//!         end + 1 // bytes consumed
//!     }
//! }
//!
//! let mut ev = EventLoop::new(Shout, Config::default())?;
//! let (_, addr) = ev.listen("shout", "127.0.0.1:0".parse().unwrap())?;
//! let handle = ev.handle(); // Send + Sync: other threads stop the loop or send it messages
//! let client = std::thread::spawn(move || {
//!     let mut s = TcpStream::connect(addr).unwrap();
//!     s.write_all(b"hello\nloop\n").unwrap();
//!     let mut reader = BufReader::new(s);
//!     let mut replies = vec![String::new(), String::new()];
//!     for r in &mut replies {
//!         reader.read_line(r).unwrap();
//!     }
//!     handle.shutdown(); // graceful: close listeners, flush, then `run` returns
//!     replies
//! });
//! ev.run()?; // serves on this thread until the shutdown
//! assert_eq!(client.join().unwrap(), ["1 HELLO\n", "2 LOOP\n"]);
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]

pub mod codec;
// The fuzz targets' property checks, shared with the regression test (`fuzz/`).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_checks;
pub mod log_capture;
pub mod logging;
pub mod runtime;
pub mod service;
pub mod supervisor;
pub mod tools;

pub use runtime::{
    Addr, Chunk, CloseReason, Config, ConnId, Context, ContextOf, EventLoop, Handle, Handler,
    ListenerId, Stats,
};

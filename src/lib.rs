//! readyloop: a hand-rolled, single-threaded readiness event loop on `mio`, and the servers
//! that run on it.
//!
//! Read it in this order: [`event_loop`] (one iteration of the loop, numbered phases),
//! [`connection`] (what each socket costs), [`handler`] (the API a protocol sees),
//! [`out_queue`] and [`timer`] (the two data structures the loop leans on), then the
//! sans-IO codecs ([`line`](mod@line)) and the [`server`] that glues them to the loop.
//!
//! # Cargo features
//!
//! All on by default. Without any (`default-features = false`) the crate is the loop, the
//! [`Handler`] API, the line codec, [`server`] with hello and line, [`client`], [`sys`] and
//! [`json`], on `mio`, `slab`, `log`, `libc`, `socket2` and `signal-hook` alone.
//! - `http`: HTTP/1.1 on the `--http` listener (`http`, `http_service`, `upload_store`).
//! - `websocket` (implies `http`): WebSocket upgrades on `/ws` and `/echo` (`ws`, `ws_service`).
//! - `redis`: broadcasts relayed through Redis pub/sub (`redis`).
//! - `load` (implies `websocket`): the load generator (`load`).
//! - `cli`: the `readyloop` binary's argument parsing and logging (`lexopt`, `env_logger`).
//!
//! [`server::Server::bind`] refuses an HTTP address in a build without `http`.
//!
//! # Embedding
//!
//! A server with a custom protocol: the loop runs on the caller's thread, and another thread
//! (here, a client checking the answer) stops it through a [`Handle`].
//!
//! ```
//! use readyloop::{Config, Context, EventLoop, Handler, ListenerId};
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::{SocketAddr, TcpStream};
//!
//! struct Shout; // upper-cases whatever it receives
//!
//! impl Handler for Shout {
//!     type Conn = (); // per-connection state, kept in the loop's slab
//!     type Message = (); // what other threads may send through a Handle
//!     fn accept(&mut self, _: ListenerId, _: SocketAddr) -> Option<()> { Some(()) }
//!     fn on_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize {
//!         data.make_ascii_uppercase();
//!         cx.send_copy(cx.id(), data); // queued; flushed before the loop next sleeps
//!         data.len() // bytes consumed
//!     }
//! }
//!
//! let mut ev = EventLoop::new(Shout, Config::default())?;
//! let (_, addr) = ev.listen("shout", "127.0.0.1:0".parse().unwrap())?;
//! let handle = ev.handle(); // Send + Sync: other threads stop the loop or send it messages
//! let client = std::thread::spawn(move || {
//!     let mut reply = String::new();
//!     let mut s = TcpStream::connect(addr).unwrap();
//!     s.write_all(b"hello\n").and_then(|_| BufReader::new(s).read_line(&mut reply)).ok();
//!     handle.shutdown(); // graceful: close listeners, flush, then `run` returns
//!     reply
//! });
//! ev.run()?; // serves on this thread until the shutdown
//! assert_eq!(client.join().unwrap(), "HELLO\n");
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]

pub mod client;
pub mod connection;
pub mod event_loop;
pub mod handler;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod http_service;
pub mod json;
pub mod line;
#[cfg(feature = "load")]
pub mod load;
pub mod out_queue;
#[cfg(feature = "redis")]
pub mod redis;
pub mod server;
pub mod sys;
pub mod timer;
#[cfg(feature = "http")]
pub mod upload_store;
pub mod workers;
#[cfg(feature = "websocket")]
pub mod ws;
#[cfg(feature = "websocket")]
pub mod ws_service;

pub use event_loop::{Config, EventLoop, Handle, ListenerId, Stats};
pub use handler::{CloseReason, ConnId, Context, Handler};
pub use out_queue::Chunk;

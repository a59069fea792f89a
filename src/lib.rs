//! readyloop: a hand-rolled, single-threaded readiness event loop on `mio`, and the servers
//! that run on it.
//!
//! Read it in this order: [`event_loop`] (one iteration of the loop, numbered phases),
//! [`connection`] (what each socket costs), [`handler`] (the API a protocol sees),
//! [`out_queue`] and [`timer`] (the two data structures the loop leans on), then the
//! sans-IO codecs ([`line`]) and the [`server`] that glues them to the loop.
//!
//! ```no_run
//! use readyloop::{Context, EventLoop, Handler, ListenerId, Config};
//! use std::net::SocketAddr;
//!
//! /// Upper-cases whatever it receives.
//! struct Shout;
//!
//! impl Handler for Shout {
//!     type Conn = ();
//!     type Message = ();
//!     fn accept(&mut self, _: ListenerId, _: SocketAddr) -> Option<()> { Some(()) }
//!     fn on_data(&mut self, cx: &mut Context<'_, Self>, data: &mut [u8]) -> usize {
//!         data.make_ascii_uppercase();
//!         let id = cx.id();
//!         cx.send_copy(id, data);
//!         data.len()
//!     }
//! }
//!
//! let mut ev = EventLoop::new(Shout, Config::default())?;
//! ev.listen("shout", "127.0.0.1:7000".parse().unwrap())?;
//! let handle = ev.handle(); // another thread may call handle.shutdown()
//! ev.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod client;
pub mod connection;
pub mod event_loop;
pub mod handler;
pub mod http;
pub mod http_service;
pub mod line;
pub mod load;
pub mod out_queue;
pub mod server;
pub mod sys;
pub mod timer;
pub mod upload_store;
pub mod workers;
pub mod ws;
pub mod ws_service;

pub use event_loop::{Config, EventLoop, Handle, ListenerId, Stats};
pub use handler::{CloseReason, ConnId, Context, Handler};
pub use out_queue::Chunk;

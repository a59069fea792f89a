//! The runtime: a single-threaded readiness event loop on `mio`, and the API a protocol sees.
//!
//! Read it in this order: [`event_loop`] (one iteration of the loop, numbered phases),
//! [`connection`] (what each socket costs), [`handler`] (the `Handler` trait and its
//! `Context`), then the files each phase leans on: `accept.rs` (listeners, EMFILE),
//! `conn_io.rs` (read until drained, `writev`, WRITABLE, backpressure), `core.rs` (the
//! connections, timers and work lists a `Context` touches), `states.rs` (where protocol state
//! lives), [`out_queue`] and [`timer`] (the two data structures), [`sys`] (what the OS gives).
//!
//! The runtime knows no protocol: it imports nothing from `codec` or `service`.

mod accept;
mod addr;
mod budget;
mod config;
mod conn_io;
pub mod connection;
mod core;
pub mod event_loop;
mod handle;
pub mod handler;
mod id;
pub mod loop_metrics;
pub mod out_queue;
mod socket;
mod states;
pub mod sys;
pub mod timer;
// `pub(crate)` for the fuzz target's checks (`fuzz_checks::tls`); the loop's own use is here.
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(feature = "tls")]
pub mod tls_config;

pub use self::addr::Addr;
pub use self::config::{Config, Stats};
pub use self::event_loop::EventLoop;
pub use self::handle::Handle;
pub use self::handler::{Context, ContextOf, Handler};
pub use self::id::{CloseReason, ConnId, ListenerId};
pub use self::loop_metrics::{Census, LoopMetrics};
pub use self::out_queue::Chunk;
pub use self::socket::Socket;

#[cfg(test)]
mod tests;

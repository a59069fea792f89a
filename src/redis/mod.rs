//! Redis pub/sub, so a broadcast reaches the clients of every process (workers on one machine,
//! or several machines behind a load balancer), spoken from our own loop.
//!
//! - [`resp`]: the sans-IO RESP2 codec.
//! - [`link`]: the two connections each process keeps to Redis (a subscriber and a publisher),
//!   as connections of the `Server` handler, with reconnects on the loop's timers.

pub mod link;
pub mod resp;

pub use link::{Group, RedisLink, RedisUrl, Role};

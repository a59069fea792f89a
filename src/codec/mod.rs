//! The codecs: sans-IO state machines and pure functions, bytes in, events and bytes out.
//!
//! Nothing here sees a socket, a clock or the loop: every parser is fed a slice, returns how
//! many bytes it used, and treats "not enough bytes yet" as a normal outcome (the httparse
//! convention), so each is unit-tested byte at a time and fuzzed (`fuzz/`). Codecs import
//! nothing above them: not the runtime, not the services.
//!
//! - [`escape`]: peer text made safe to print in a log.
//! - [`line`](mod@line): newline-framed messages.
//! - [`json`]: the one piece of JSON writing everything needs, string escaping.
//! - `http` (feature `http`): HTTP/1.1 requests, responses, multipart bodies, file names.
//! - `ws` (feature `websocket`): RFC 6455 frames, masks, UTF-8, close codes, the handshake.
//! - `resp` (feature `redis`): RESP2, the Redis protocol.
//! - [`prometheus`]: the Prometheus text exposition format (`GET /metrics`).

pub mod escape;
#[cfg(feature = "http")]
pub mod http;
pub mod json;
pub mod line;
pub mod prometheus;
#[cfg(feature = "redis")]
pub mod resp;
#[cfg(feature = "websocket")]
pub mod ws;

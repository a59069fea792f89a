//! RFC 6455 WebSocket, sans-IO: bytes in, frames and messages out, no sockets anywhere.
//!
//! The layout follows tungstenite's `protocol/frame/`: one small file per job.
//! - `frame.rs`: the header's wire format, its strict parser and the frame encoders.
//! - `mask.rs`: the client → server XOR mask, applied in place, in pieces.
//! - `utf8.rs`: incremental UTF-8 validation of text split across fragments and reads.
//! - `close.rs`: close codes and the Close frame's payload.
//! - `message.rs`: the decoder state machine that enforces the frame-sequence rules.
//! - `handshake.rs`: the HTTP/1.1 upgrade (accept key, 101 response, client request).
//! - `extensions.rs`: `Sec-WebSocket-Extensions` and the permessage-deflate negotiation.
//! - `deflate.rs` (feature `ws-deflate`): compressing and inflating whole messages (RFC 7692).
//!
//! The connection code reads into a buffer, calls [`MessageDecoder::decode`] in a loop and
//! writes replies built by [`frame::write_frame`]; it never touches a header byte itself.

pub mod close;
#[cfg(feature = "ws-deflate")]
pub mod deflate;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::CloseCode;
pub use extensions::Compression;
pub use frame::{FrameHeader, OpCode};
pub use message::{DataKind, DecodeError, Message, MessageDecoder, Role};

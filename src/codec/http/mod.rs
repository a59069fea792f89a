//! The HTTP/1.1 codec: sans-IO pieces that never see a socket.
//!
//! Each file has one job. [`request`] turns bytes into request heads and body
//! slices (httparse does the head; we do framing, chunked decoding and the
//! semantic checks RFC 9112 asks of a server). [`response_parser`] is the client
//! side: response heads and body slices out of a server's bytes (`readyloop load
//! http` checks every response with it). [`response`] writes status
//! lines, headers and bodies into a `Vec<u8>`. [`multipart`] splits a
//! `multipart/form-data` body into parts as it streams in. [`query`] decodes
//! query strings. [`filename`] turns
//! an untrusted client file name into one that is safe to create on disk.
//!
//! All parsers follow the httparse convention: they are fed a slice, return how
//! many bytes they used, and treat "not enough bytes yet" as a normal outcome,
//! never as an error. Protocol code logs at debug level under the
//! `readyloop::http` target.

pub mod body;
pub mod fields;
pub mod filename;
pub mod multipart;
pub mod query;
pub mod request;
pub mod response;
pub mod response_parser;

pub use multipart::{MultipartError, MultipartEvent, MultipartParser, Part};
pub use request::{BodyFraming, Event, HttpError, Limits, Method, RequestHead, RequestParser};
pub use response::{reason_phrase, Response, ResponseWriter, CONTINUE};

//! The loop's permessage-deflate contexts, and the frames the WebSocket service sends.
//!
//! With no context takeover negotiated in either direction (`codec::ws::extensions`), no
//! connection owns compressor state: this file holds the loop's one compressor and one
//! inflater, created on the first compressed message (so a server nobody asks for deflate
//! never allocates them), and every connection borrows them for one message at a time. An
//! idle WebSocket with deflate negotiated costs what it costs without.
//!
//! Outgoing frames are built here: [`Encoder::frame`] for one recipient, and [`Variants`]
//! for a broadcast, which encodes a message at most once per variant — one compressed frame
//! shared by every recipient that negotiated deflate, one plain frame shared by the rest —
//! never once per recipient. A message shorter than `--ws-deflate-min`, or one that deflate
//! does not shrink (judged every 64 KiB, so incompressible data is given up early:
//! `Deflater::compress`), goes out plain to everyone.
//!
//! Built without the `ws-deflate` feature, nothing is ever negotiated and this file only
//! builds plain frames.

use crate::codec::ws::frame::{frame, OpCode};
use crate::codec::ws::message::{DataKind, DecodeError, Message};
use crate::codec::ws::Compression;
use std::rc::Rc;

#[cfg(feature = "ws-deflate")]
use crate::codec::ws::deflate::{Deflater, Inflater};
#[cfg(feature = "ws-deflate")]
use crate::codec::ws::frame::write_compressed_frame;

/// Capacity of the compression scratch buffer kept between messages: 64 KiB.
#[cfg(feature = "ws-deflate")]
const KEEP_SCRATCH: usize = 64 * 1024;

/// Builds outgoing frames, compressing for connections that negotiated deflate.
#[derive(Debug)]
pub struct Encoder {
    /// Messages shorter than this go out uncompressed (`--ws-deflate-min`).
    #[cfg_attr(not(feature = "ws-deflate"), allow(dead_code))]
    min_size: usize,
    /// The loop's compressor and its scratch output, made on first use.
    #[cfg(feature = "ws-deflate")]
    deflater: Option<Box<(Deflater, Vec<u8>)>>,
}

impl Encoder {
    /// An encoder compressing messages of at least `min_size` bytes.
    pub fn new(min_size: usize) -> Encoder {
        Encoder {
            min_size,
            #[cfg(feature = "ws-deflate")]
            deflater: None,
        }
    }

    /// One final frame carrying `payload` for a connection that negotiated `compression`.
    pub fn frame(&mut self, compression: Compression, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        match self.compressed(compression, opcode, payload) {
            Some(compressed) => compressed,
            None => frame(opcode, payload),
        }
    }

    /// The compressed frame, when `compression` asks for it and deflate pays.
    #[cfg(feature = "ws-deflate")]
    fn compressed(
        &mut self,
        compression: Compression,
        opcode: OpCode,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        if compression != Compression::PerMessageDeflate || payload.len() < self.min_size {
            return None;
        }
        let (deflater, scratch) = &mut **self
            .deflater
            .get_or_insert_with(|| Box::new((Deflater::new(), Vec::new())));
        if scratch.capacity() > KEEP_SCRATCH {
            *scratch = Vec::new();
        }
        scratch.clear();
        if !deflater.compress(payload, scratch) || scratch.len() >= payload.len() {
            return None;
        }
        let mut out = Vec::new();
        write_compressed_frame(&mut out, opcode, scratch);
        Some(out)
    }

    #[cfg(not(feature = "ws-deflate"))]
    fn compressed(&mut self, _: Compression, _: OpCode, _: &[u8]) -> Option<Vec<u8>> {
        None
    }

    /// Lets go of a large message's scratch space (over 64 KiB) once a batch is encoded.
    pub fn trim(&mut self) {
        #[cfg(feature = "ws-deflate")]
        if let Some(deflater) = &mut self.deflater {
            if deflater.1.capacity() > KEEP_SCRATCH {
                deflater.1 = Vec::new();
            }
        }
    }
}

/// The frames of one broadcast, each variant encoded on first demand and then shared.
pub struct Variants<'m> {
    opcode: OpCode,
    payload: &'m [u8],
    plain: Option<Rc<[u8]>>,
    /// `Some(None)`: compression was tried and did not pay; deflate recipients get `plain`.
    compressed: Option<Option<Rc<[u8]>>>,
}

impl<'m> Variants<'m> {
    /// The variants of a message; nothing is encoded yet.
    pub fn new(opcode: OpCode, payload: &'m [u8]) -> Variants<'m> {
        Variants {
            opcode,
            payload,
            plain: None,
            compressed: None,
        }
    }

    /// The frame for a recipient that negotiated `compression`.
    pub fn frame(&mut self, encoder: &mut Encoder, compression: Compression) -> Rc<[u8]> {
        if compression == Compression::PerMessageDeflate {
            let (opcode, payload) = (self.opcode, self.payload);
            let compressed = self.compressed.get_or_insert_with(|| {
                encoder
                    .compressed(compression, opcode, payload)
                    .map(Rc::from)
            });
            if let Some(shared) = compressed {
                return shared.clone();
            }
        }
        self.plain
            .get_or_insert_with(|| frame(self.opcode, self.payload).into())
            .clone()
    }

    /// How many distinct frames were encoded (for the log: 1 or 2, whatever the audience).
    pub fn encoded(&self) -> usize {
        usize::from(self.plain.is_some()) + usize::from(matches!(self.compressed, Some(Some(_))))
    }
}

/// Inflates whole compressed messages with the loop's one inflater.
#[derive(Debug, Default)]
pub struct Decompressor {
    #[cfg(feature = "ws-deflate")]
    inflater: Option<Box<Inflater>>,
}

impl Decompressor {
    /// The message `compressed` carries, at most `limit` bytes once inflated (else 1009;
    /// corrupt data or text that is not UTF-8: 1007).
    #[cfg(feature = "ws-deflate")]
    pub fn message(
        &mut self,
        kind: DataKind,
        compressed: &[u8],
        limit: usize,
    ) -> Result<Message<'_>, DecodeError> {
        self.inflater
            .get_or_insert_with(Box::default)
            .message(kind, compressed, limit)
    }

    /// Without the feature nothing is negotiated, so the decoder never yields a compressed
    /// message; if it did, it could not be read.
    /// Lets go of a large message's output (over 64 KiB) once it has been handled.
    pub fn trim(&mut self) {
        #[cfg(feature = "ws-deflate")]
        if let Some(inflater) = &mut self.inflater {
            inflater.trim();
        }
    }

    #[cfg(not(feature = "ws-deflate"))]
    pub fn message(&mut self, _: DataKind, _: &[u8], _: usize) -> Result<Message<'_>, DecodeError> {
        Err(DecodeError {
            code: crate::codec::ws::CloseCode::PROTOCOL_ERROR,
            reason: "compressed message without permessage-deflate",
        })
    }
}

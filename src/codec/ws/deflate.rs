//! permessage-deflate payloads (RFC 7692 §7.2), sans-IO: one message in, one message out.
//!
//! Negotiated as `server_no_context_takeover; client_no_context_takeover` (`extensions.rs`),
//! every message is a deflate stream of its own. So a connection needs no compressor state
//! at all: one [`Deflater`] and one [`Inflater`] per loop serve every connection, each
//! message compressed or inflated whole and the context reset. An idle WebSocket costs
//! what it costs without the extension. The price is that a fragmented compressed message
//! is inflated at its last frame (the message decoder holds its compressed fragments until
//! then, bounded by `--max-message` like any fragmented message): a shared context cannot be
//! left half-way through one connection's message while another's arrives.
//!
//! The wire rules of §7.2.1/§7.2.2: the sender compresses with a sync flush and removes the
//! `00 00 ff ff` that ends it; the receiver puts those four bytes back before inflating.
//!
//! Limits, enforced while inflating, not after: the output grows in steps up to the
//! caller's limit plus one byte, and a stream that wants more is refused (close 1009) — a
//! decompression bomb costs at most that much memory, once per loop. A corrupt stream gets
//! 1007 (RFC 6455 §7.4.1: "data within a message that was not consistent with the type").
//!
//! The crate is `miniz_oxide`: pure Rust without `unsafe`, one dependency (`adler2`), and its
//! low-level API works on caller-owned buffers, which is what a per-loop context wants.
//! `flate2` would be the same code (its Rust backend *is* miniz_oxide) behind a streaming
//! wrapper we do not need, plus `crc32fast` and `cfg-if`. Its one limit: the compressor
//! always uses the full 32 KiB window, so an offer asking us to use a smaller one is
//! declined (`extensions.rs`).

use miniz_oxide::deflate::core::{
    compress_to_output, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::close::CloseCode;
use super::message::{DataKind, DecodeError, Message};

/// §7.2.1: the end of a sync flush, removed by the sender and put back by the receiver.
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compression level 1 (miniz's fastest LZ77 path, greedy parsing, one probe): the server
/// compresses each broadcast once, but it does so on the loop thread, so CPU matters more
/// than the last percent of ratio. On 1 KiB JSON-like chat messages level 6 saves a few
/// percent more bytes for about twice the CPU (benches/ws_deflate.rs prints both).
pub const LEVEL: u8 = 1;

/// Output capacity the inflater keeps between messages: 64 KiB. A larger message's buffer
/// (up to `--max-message`) is freed at the next message, so a burst of big messages does
/// not leave the loop holding their size for good.
const KEEP_OUTPUT: usize = 64 * 1024;

/// Smallest output step while inflating: 4 KiB.
const MIN_OUTPUT_STEP: usize = 4096;

/// The per-loop compressor.
pub struct Deflater {
    /// Boxed: about 300 KiB of hash chains and buffers, once per loop.
    compressor: Box<CompressorOxide>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    /// A compressor for raw deflate (no zlib header) at [`LEVEL`].
    pub fn new() -> Deflater {
        // Negative window bits: a raw deflate stream, as RFC 7692 carries.
        let flags = create_comp_flags_from_zip_params(i32::from(LEVEL), -15, 0);
        Deflater {
            compressor: Box::new(CompressorOxide::new(flags)),
        }
    }

    /// Appends `payload` compressed as one whole message (§7.2.1: sync flush, trailer
    /// removed) to `out`. Returns false, with `out` as it was, when deflate does not pay or
    /// the compressor failed (it does not on valid settings); the caller then sends the
    /// message uncompressed.
    ///
    /// The message goes in as pieces of [`PIECE`] bytes, each ended by a sync flush (legal
    /// anywhere in a deflate stream, 5 bytes each, and the window carries over), so that after
    /// each piece the output so far can be held against the input: once deflate has saved
    /// less than 1/16 of what it has seen, the rest is not tried. Incompressible data (media,
    /// encrypted or already compressed payloads) costs one piece of CPU on the loop thread
    /// instead of the whole message: about 0.5 ms, not 140 ms, for 16 MiB of random bytes.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        self.compressor.reset();
        let mut done = 0;
        loop {
            let piece = &payload[done..payload.len().min(done + PIECE)];
            let (status, consumed) =
                compress_to_output(&mut self.compressor, piece, TDEFLFlush::Sync, |chunk| {
                    out.extend_from_slice(chunk);
                    true
                });
            if status != TDEFLStatus::Okay || consumed != piece.len() {
                out.truncate(start);
                return false;
            }
            done += consumed;
            if done == payload.len() {
                break;
            }
            if !pays(out.len() - start, done) {
                out.truncate(start);
                return false;
            }
        }
        let ends_with_trailer = out.get(start..).is_some_and(|c| c.ends_with(&TRAILER));
        if !ends_with_trailer {
            out.truncate(start);
            return false;
        }
        out.truncate(out.len() - TRAILER.len());
        true
    }
}

/// Input the compressor takes between two looks at what it saves: 64 KiB.
pub const PIECE: usize = 64 * 1024;

/// Whether `compressed` bytes for `input` bytes save at least 1/16 of them.
fn pays(compressed: usize, input: usize) -> bool {
    compressed.saturating_mul(16) <= input.saturating_mul(15)
}

/// The per-loop decompressor and its output buffer.
pub struct Inflater {
    /// Boxed: about 11 KiB of Huffman tables, once per loop.
    decompressor: Box<DecompressorOxide>,
    /// The message last inflated; the whole output is kept because deflate refers back
    /// into it (no wrapping window: the buffer *is* the window).
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inflater({} bytes kept)", self.out.capacity())
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

/// Zero-fills `out` up to `len` bytes with no spare capacity beyond (plain `resize` may
/// double it, which would let a bomb hold twice the limit).
fn grow_to(out: &mut Vec<u8>, len: usize) {
    out.reserve_exact(len.saturating_sub(out.len()));
    out.resize(len, 0);
}

fn corrupt() -> DecodeError {
    DecodeError {
        code: CloseCode::INVALID_PAYLOAD,
        reason: "corrupt permessage-deflate data",
    }
}

fn too_big() -> DecodeError {
    DecodeError {
        code: CloseCode::TOO_BIG,
        reason: "inflated message longer than the limit",
    }
}

impl Inflater {
    /// An inflater holding no output yet.
    pub fn new() -> Inflater {
        Inflater {
            decompressor: Box::default(),
            out: Vec::new(),
        }
    }

    /// Bytes of output buffer held between messages.
    pub fn capacity(&self) -> usize {
        self.out.capacity()
    }

    /// Frees the output buffer if a large message left it over 64 KiB: call once done with
    /// what [`Inflater::inflate`] returned, so the loop does not keep a big message's size.
    pub fn trim(&mut self) {
        if self.out.capacity() > KEEP_OUTPUT {
            self.out = Vec::new();
        }
    }

    /// Inflates one whole compressed message (its frames' payloads, concatenated) and
    /// returns it as the message it is: text is checked to be UTF-8 (else 1007).
    pub fn message(
        &mut self,
        kind: DataKind,
        compressed: &[u8],
        limit: usize,
    ) -> Result<Message<'_>, DecodeError> {
        let bytes = self.inflate(compressed, limit)?;
        match kind {
            DataKind::Binary => Ok(Message::Binary(bytes)),
            DataKind::Text => {
                std::str::from_utf8(bytes)
                    .map(Message::Text)
                    .map_err(|_| DecodeError {
                        code: CloseCode::INVALID_PAYLOAD,
                        reason: "text is not valid UTF-8",
                    })
            }
        }
    }

    /// Inflates `compressed` + [`TRAILER`] (§7.2.2) into at most `limit` bytes.
    pub fn inflate(&mut self, compressed: &[u8], limit: usize) -> Result<&[u8], DecodeError> {
        if self.out.capacity() > KEEP_OUTPUT {
            self.out = Vec::new();
        }
        self.decompressor.init();
        self.out.clear();
        // Room for one byte past the limit, so "more than `limit`" shows as such.
        let cap = limit.saturating_add(1);
        let first = compressed.len().saturating_mul(4).max(MIN_OUTPUT_STEP);
        grow_to(&mut self.out, first.min(cap));
        let flags = TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF | TINFL_FLAG_HAS_MORE_INPUT;
        let mut pos = 0;
        'inputs: for mut input in [compressed, &TRAILER[..]] {
            loop {
                let (status, used, written) =
                    decompress(&mut self.decompressor, input, &mut self.out, pos, flags);
                input = input.get(used..).unwrap_or_default();
                pos += written;
                if pos > limit {
                    return Err(too_big());
                }
                match status {
                    // All of this input taken: go on with the next (the trailer), or stop.
                    TINFLStatus::NeedsMoreInput if input.is_empty() => break,
                    TINFLStatus::HasMoreOutput => {
                        let grown = self.out.len().saturating_mul(2).min(cap);
                        if grown <= self.out.len() {
                            return Err(too_big());
                        }
                        grow_to(&mut self.out, grown);
                    }
                    // The sender ended the stream with a final block (§7.2.3.4 allows a
                    // BFINAL block); what follows it is ignored, as zlib-based peers do.
                    TINFLStatus::Done => break 'inputs,
                    _ => return Err(corrupt()),
                }
            }
        }
        self.out.truncate(pos);
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(payload: &[u8]) -> Vec<u8> {
        let mut compressed = Vec::new();
        assert!(Deflater::new().compress(payload, &mut compressed));
        assert!(!compressed.ends_with(&TRAILER) || payload.is_empty());
        Inflater::new()
            .inflate(&compressed, payload.len())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_example() {
        // §7.2.3.1: "Hello" compressed with no context takeover.
        let wire = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(Inflater::new().inflate(&wire, 5).unwrap(), b"Hello");
        assert_eq!(round_trip(b"Hello"), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_3_uncompressed_block() {
        // §7.2.3.3: "Hello" in a stored (BTYPE=00) block.
        let wire = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(Inflater::new().inflate(&wire, 5).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_5_two_blocks() {
        // §7.2.3.5: "He" and "llo" in two blocks of one message.
        let wire = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(Inflater::new().inflate(&wire, 100).unwrap(), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_4_final_block() {
        // §7.2.3.4: a BFINAL block ends the message; what follows it is ignored.
        let wire = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(Inflater::new().inflate(&wire, 5).unwrap(), b"Hello");
    }

    #[test]
    fn empty_message() {
        // §7.2.3.6: an empty message is a single 0x00 byte (or, leniently, no payload).
        assert_eq!(Inflater::new().inflate(&[0x00], 0).unwrap(), b"");
        assert_eq!(Inflater::new().inflate(&[], 0).unwrap(), b"");
        assert_eq!(round_trip(b""), b"");
    }

    /// Bytes no compressor can shrink (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_messages_are_given_up_after_one_piece() {
        let mut deflater = Deflater::new();
        let mut out = b"kept".to_vec();
        // Over one piece of noise: refused, and `out` is as it was.
        assert!(!deflater.compress(&noise(PIECE + 1), &mut out));
        assert!(!deflater.compress(&noise(4 << 20), &mut out));
        assert_eq!(out, b"kept");
        // Noise that fits one piece is compressed whole (the caller compares the sizes).
        assert!(deflater.compress(&noise(1000), &mut out));
        // Text behind a piece of noise is never reached; noise behind text is compressed
        // as long as the whole still pays.
        let mut mixed = noise(PIECE);
        mixed.extend(std::iter::repeat_n(b'a', 4 * PIECE));
        assert!(!deflater.compress(&mixed, &mut Vec::new()));
        let mut mixed: Vec<u8> = std::iter::repeat_n(b'a', 4 * PIECE).collect();
        mixed.extend(noise(PIECE));
        let mut compressed = Vec::new();
        assert!(deflater.compress(&mixed, &mut compressed));
        assert_eq!(
            Inflater::new().inflate(&compressed, mixed.len()).unwrap(),
            mixed
        );
        assert!(pays(15, 16) && !pays(16, 16));
    }

    #[test]
    fn round_trips_of_many_sizes_share_one_context() {
        let mut deflater = Deflater::new();
        let mut inflater = Inflater::new();
        for len in [
            1usize,
            10,
            1000,
            4097,
            PIECE,
            PIECE + 1,
            70_000,
            1 << 20,
            3 << 20,
        ] {
            let payload: Vec<u8> = (0..len)
                .map(|i| b"{\"user\":\"ana\",\"n\":12345}"[i % 24] ^ (i / 997) as u8)
                .collect();
            let mut compressed = Vec::new();
            assert!(deflater.compress(&payload, &mut compressed));
            assert_eq!(
                inflater.inflate(&compressed, len).unwrap(),
                payload,
                "len {len}"
            );
            // The context is reset: the same message compresses the same way again.
            let mut again = Vec::new();
            assert!(deflater.compress(&payload, &mut again));
            assert_eq!(again, compressed);
        }
        assert!(inflater.inflate(&[0x00], 0).is_ok());
        assert!(
            inflater.capacity() <= KEEP_OUTPUT,
            "a big message's buffer is let go"
        );
    }

    #[test]
    fn limit_is_exact_and_enforced_while_inflating() {
        let payload = vec![b'a'; 10_000];
        let mut compressed = Vec::new();
        assert!(Deflater::new().compress(&payload, &mut compressed));
        let mut inflater = Inflater::new();
        assert_eq!(inflater.inflate(&compressed, 10_000).unwrap().len(), 10_000);
        let err = inflater.inflate(&compressed, 9_999).unwrap_err();
        assert_eq!(err.code, CloseCode::TOO_BIG);
    }

    #[test]
    fn bomb_costs_at_most_the_limit() {
        // 64 MiB of zeros compresses to about 64 KiB; at level 1 to more, so build it once.
        let zeros = vec![0u8; 64 << 20];
        let mut bomb = Vec::new();
        assert!(Deflater::new().compress(&zeros, &mut bomb));
        drop(zeros);
        assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
        let mut inflater = Inflater::new();
        let err = inflater.inflate(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.code, CloseCode::TOO_BIG);
        assert!(inflater.out.capacity() <= (1 << 20) + 1);
    }

    #[test]
    fn corrupt_streams_are_1007() {
        for wire in [
            &[0xff, 0xff, 0xff, 0xff][..],       // BTYPE=11 (reserved)
            &[0x00, 0x05, 0x00, 0x00, 0x00][..], // stored block with LEN != ~NLEN
            &[0x07][..],                         // BTYPE=11 in a final block
        ] {
            let err = Inflater::new().inflate(wire, 1000).unwrap_err();
            assert_eq!(err.code, CloseCode::INVALID_PAYLOAD, "{wire:02x?}");
        }
    }

    #[test]
    fn text_must_inflate_to_utf8() {
        let mut compressed = Vec::new();
        assert!(Deflater::new().compress(&[0xc3, 0x28], &mut compressed));
        let err = Inflater::new()
            .message(DataKind::Text, &compressed, 100)
            .unwrap_err();
        assert_eq!(err.code, CloseCode::INVALID_PAYLOAD);
        let mut compressed = Vec::new();
        assert!(Deflater::new().compress("κόσμε".as_bytes(), &mut compressed));
        let mut inflater = Inflater::new();
        let msg = inflater.message(DataKind::Text, &compressed, 100);
        assert_eq!(msg, Ok(Message::Text("κόσμε")));
    }

    /// Prints, for chat-like messages of growing size, the bytes deflate saves and what a
    /// compression costs: the figures behind `--ws-deflate-min`'s default. Not a check.
    #[test]
    #[ignore = "a measurement; run with --ignored --nocapture"]
    fn ws_deflate_min_measurement() {
        let mut deflater = Deflater::new();
        let body = "{\"user\":\"ana\",\"room\":\"general\",\"text\":\"see you at the station at nine,             bring the tickets\",\"ts\":1733100000123,\"id\":48213}";
        println!("| bytes | deflated | saved | ns per compress |");
        for len in [
            16usize,
            32,
            64,
            96,
            128,
            192,
            256,
            512,
            1024,
            65536,
            1 << 20,
            16 << 20,
        ] {
            let msg: Vec<u8> = format!("📢 새로운 알림: {}", body.repeat(len / body.len() + 1))
                .into_bytes()
                .into_iter()
                .take(len)
                .collect();
            let mut out = Vec::new();
            let rounds = (20_000 * 1024 / len.max(1024)).max(3) as u32;
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                out.clear();
                assert!(deflater.compress(&msg, &mut out));
            }
            let ns = start.elapsed().as_nanos() / u128::from(rounds);
            let saved = len as i64 - out.len() as i64;
            println!("| {len} | {} | {saved} | {ns} |", out.len());
        }
        // Incompressible bytes: what trying costs now that `compress` gives up after a piece.
        println!("| random bytes | bytes compressed | ns per attempt |");
        let mut out = Vec::new();
        for len in [PIECE, 1 << 20, 16 << 20] {
            let msg = noise(len);
            let rounds = ((64 << 20) / len) as u32;
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                out.clear();
                let _ = deflater.compress(&msg, &mut out);
            }
            let ns = start.elapsed().as_nanos() / u128::from(rounds);
            println!("| {len} | {} | {ns} |", len.min(PIECE));
        }
    }

    /// Random garbage never panics, whatever the limit.
    #[test]
    fn garbage_never_panics() {
        // One stream of noise, cut into inputs of 0..97 bytes.
        let lens = (0..2000).map(|round| round % 97);
        let stream = noise(lens.clone().sum());
        let mut inflater = Inflater::new();
        let mut at = 0;
        for (round, len) in lens.enumerate() {
            let _ = inflater.inflate(&stream[at..at + len], round % 300);
            at += len;
        }
    }
}

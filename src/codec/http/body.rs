//! `BodyDecoder`: one message body as it streams in, whatever frames it (RFC 9112 §6): a
//! `Content-Length`, chunked coding with its trailer section, or (responses only) the end of
//! the connection. The request parser and the response parser both read bodies with it.
//!
//! Like the parsers around it, it is fed a slice and says how many bytes it used; data comes
//! out as slices of the input (no copy), chunked coding removed.

use super::fields::{chunk_size_line, is_ctl, is_tchar, take_body};

/// Where a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDecoder {
    /// `remaining` bytes of a `Content-Length` body to come (0: the body is complete).
    Length {
        /// Bytes still to come.
        remaining: u64,
    },
    /// Chunked: waiting for a complete chunk-size line; `total` bytes of chunks so far.
    ChunkSize {
        /// Chunk bytes so far, for the body limit.
        total: u64,
    },
    /// Chunked: inside a chunk's data.
    ChunkData {
        /// Bytes of this chunk still to come.
        remaining: u64,
        /// Chunk bytes so far, this one included.
        total: u64,
    },
    /// Chunked: the CRLF that must follow a chunk's data.
    ChunkDataEnd {
        /// Chunk bytes so far.
        total: u64,
    },
    /// Chunked: after the last chunk, trailer lines (checked, then discarded) until the empty
    /// line; `seen` bytes of trailer section so far.
    Trailers {
        /// Trailer bytes so far.
        seen: usize,
    },
    /// The body runs until the connection closes (a response without a length).
    UntilClose,
}

/// What a body may grow to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Chunk bytes in all (a `Content-Length` is checked against its own limit at the head).
    pub max_chunked: u64,
    /// Bytes of the trailer section.
    pub max_trailers: usize,
}

/// What one call found.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEvent<'a> {
    /// Body bytes.
    Data(&'a [u8]),
    /// The body is complete.
    End,
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Malformed framing.
    Bad(&'static str),
    /// The chunks went past `BodyLimits::max_chunked`.
    TooLarge,
    /// The trailer section went past `BodyLimits::max_trailers`.
    TrailersTooLarge,
}

impl BodyDecoder {
    /// A chunked body, nothing read yet.
    pub fn chunked() -> BodyDecoder {
        BodyDecoder::ChunkSize { total: 0 }
    }

    /// Consumes what it can of `input`: `(n, Some(event))` (advance by `n`, handle the event,
    /// call again), or `(n, None)` (advance by `n`, then wait for more bytes). After `End` the
    /// decoder has nothing more to do.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        limits: &BodyLimits,
    ) -> Result<(usize, Option<BodyEvent<'a>>), BodyError> {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            match *self {
                BodyDecoder::Length { remaining: 0 } => return Ok((pos, Some(BodyEvent::End))),
                BodyDecoder::Length { remaining } => {
                    let Some((data, left)) = take_body(rest, remaining) else {
                        return Ok((pos, None));
                    };
                    *self = BodyDecoder::Length { remaining: left };
                    return Ok((pos + data.len(), Some(BodyEvent::Data(data))));
                }
                BodyDecoder::UntilClose if rest.is_empty() => return Ok((pos, None)),
                BodyDecoder::UntilClose => {
                    return Ok((pos + rest.len(), Some(BodyEvent::Data(rest))));
                }
                BodyDecoder::ChunkSize { total } => {
                    let Some((n, size)) = chunk_size_line(rest).map_err(BodyError::Bad)? else {
                        return Ok((pos, None));
                    };
                    pos += n;
                    *self = if size == 0 {
                        BodyDecoder::Trailers { seen: 0 }
                    } else {
                        let total = total.saturating_add(size);
                        if total > limits.max_chunked {
                            return Err(BodyError::TooLarge);
                        }
                        BodyDecoder::ChunkData {
                            remaining: size,
                            total,
                        }
                    };
                }
                BodyDecoder::ChunkData {
                    remaining: 0,
                    total,
                } => {
                    *self = BodyDecoder::ChunkDataEnd { total };
                }
                BodyDecoder::ChunkData { remaining, total } => {
                    let Some((data, left)) = take_body(rest, remaining) else {
                        return Ok((pos, None));
                    };
                    *self = BodyDecoder::ChunkData {
                        remaining: left,
                        total,
                    };
                    return Ok((pos + data.len(), Some(BodyEvent::Data(data))));
                }
                BodyDecoder::ChunkDataEnd { total } => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        *self = BodyDecoder::ChunkSize { total };
                    }
                    [] | [b'\r'] => return Ok((pos, None)),
                    _ => return Err(BodyError::Bad("missing CRLF after chunk data")),
                },
                BodyDecoder::Trailers { seen } => {
                    let room = limits.max_trailers.saturating_sub(seen);
                    let Some(lf) = rest.iter().take(room).position(|&b| b == b'\n') else {
                        if rest.len() >= room {
                            return Err(BodyError::TrailersTooLarge);
                        }
                        return Ok((pos, None));
                    };
                    let line = rest.get(..lf).unwrap_or_default();
                    let Some(line) = line.strip_suffix(b"\r") else {
                        return Err(BodyError::Bad("trailer line not ended by CRLF"));
                    };
                    pos += lf + 1;
                    if line.is_empty() {
                        *self = BodyDecoder::Length { remaining: 0 };
                        return Ok((pos, Some(BodyEvent::End)));
                    }
                    check_trailer_line(line)?;
                    *self = BodyDecoder::Trailers {
                        seen: seen + lf + 1,
                    };
                }
            }
        }
    }
}

/// A trailer field line we are about to discard still has to look like a field: a token, a
/// colon, a value without control bytes. A line starting with a blank is obs-fold, which
/// RFC 9112 §5.2 lets us reject.
fn check_trailer_line(line: &[u8]) -> Result<(), BodyError> {
    let colon = line.iter().position(|&b| b == b':').unwrap_or(0);
    let (name, value) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) || value.iter().any(|&b| is_ctl(b)) {
        return Err(BodyError::Bad("invalid trailer field"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_chunked: 100,
        max_trailers: 64,
    };

    /// Decodes `input` fed `step` bytes at a time; the data and whether it ended.
    fn decode(
        mut body: BodyDecoder,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, bool), BodyError> {
        let (mut data, mut buf, mut fed) = (Vec::new(), Vec::new(), 0);
        loop {
            let (n, ev) = body.decode(&buf, &LIMITS)?;
            let ended = match ev {
                Some(BodyEvent::Data(d)) => {
                    data.extend_from_slice(d);
                    false
                }
                Some(BodyEvent::End) => true,
                None => {
                    buf.drain(..n);
                    if fed >= input.len() {
                        return Ok((data, false));
                    }
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                    continue;
                }
            };
            buf.drain(..n);
            if ended {
                return Ok((data, true));
            }
        }
    }

    #[test]
    fn chunked_whole_and_byte_at_a_time() {
        let wire = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: v\r\n\r\n";
        for step in [1, 2, 7, wire.len()] {
            assert_eq!(
                decode(BodyDecoder::chunked(), wire, step),
                Ok((b"abcde".to_vec(), true)),
                "step {step}"
            );
        }
    }

    #[test]
    fn lengths_and_limits() {
        let body = BodyDecoder::Length { remaining: 3 };
        assert_eq!(decode(body, b"abcdef", 2), Ok((b"abc".to_vec(), true)));
        let big = format!("{:x}\r\n", 101);
        assert_eq!(
            decode(BodyDecoder::chunked(), big.as_bytes(), 64),
            Err(BodyError::TooLarge)
        );
        let mut long = b"0\r\n".to_vec();
        long.extend_from_slice(&[b'a'; 70]);
        assert_eq!(
            decode(BodyDecoder::chunked(), &long, 80),
            Err(BodyError::TrailersTooLarge)
        );
        assert_eq!(
            decode(BodyDecoder::chunked(), b"1\r\nab", 8),
            Err(BodyError::Bad("missing CRLF after chunk data"))
        );
        assert_eq!(
            decode(BodyDecoder::chunked(), b"0\r\n bad\r\n\r\n", 16),
            Err(BodyError::Bad("invalid trailer field"))
        );
        assert_eq!(
            decode(BodyDecoder::UntilClose, b"all of it", 4),
            Ok((b"all of it".to_vec(), false))
        );
    }
}

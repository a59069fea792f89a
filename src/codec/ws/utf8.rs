//! Incremental UTF-8 validation for text messages that arrive in pieces (RFC 6455 §8.1).
//!
//! A text message may be split across fragments — and a fragment across reads — at any
//! byte, even inside a multi-byte character. The validator keeps the state of a character
//! cut at a piece boundary and fails on the first byte that cannot continue a valid
//! sequence, so the connection can be failed as soon as that byte arrives (Autobahn's
//! "fail fast" cases 6.4.x) rather than when the message is complete.
//!
//! The bulk of each piece is checked by `std::str::from_utf8`, which is well tested and
//! fast; only the (at most 3) bytes of a character cut at a boundary go through the small
//! state machine below, which encodes the table of well-formed sequences from the Unicode
//! Standard (Table 3-7). That table rules out overlong forms (`C0`, `C1`, `E0 80..9F`,
//! `F0 80..8F`), surrogates (`ED A0..BF`) and code points above U+10FFFF (`F4 90..`, `F5..`).

use std::fmt;

/// The input is not UTF-8 (or a message ended inside a character).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Validates a byte stream fed in pieces. Call [`finish`](Self::finish) at message end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still expected for the character in progress (0..=3).
    need: u8,
    /// The range the next continuation byte must fall in. Only the first continuation
    /// byte after a lead byte has a narrower range than `0x80..=0xBF` (Table 3-7).
    lo: u8,
    hi: u8,
}

impl Utf8Validator {
    /// A validator at the start of a character.
    pub const fn new() -> Self {
        Utf8Validator {
            need: 0,
            lo: 0x80,
            hi: 0xbf,
        }
    }

    /// Forgets any character in progress.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True when the bytes fed so far end on a character boundary.
    pub fn is_at_boundary(&self) -> bool {
        self.need == 0
    }

    /// Checks the next piece. Fails as soon as the bytes fed so far cannot be the start of
    /// valid UTF-8. After an error the validator must be reset before reuse.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), InvalidUtf8> {
        let mut rest = piece;
        // 1. Finish a character cut by the previous piece.
        while self.need > 0 {
            let Some((&byte, after)) = rest.split_first() else {
                return Ok(());
            };
            self.step(byte)?;
            rest = after;
        }
        // 2. The bulk, by the standard library.
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            // An invalid sequence (not merely a truncated one).
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            // 3. A valid but unfinished character at the end: keep its state.
            Err(e) => rest
                .get(e.valid_up_to()..)
                .unwrap_or_default()
                .iter()
                .try_for_each(|&byte| self.step(byte)),
        }
    }

    /// Ends the message: an unfinished character is an error. Resets the validator.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.is_at_boundary();
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// One byte through the state machine of Table 3-7.
    fn step(&mut self, byte: u8) -> Result<(), InvalidUtf8> {
        if self.need > 0 {
            if !(self.lo..=self.hi).contains(&byte) {
                return Err(InvalidUtf8);
            }
            self.need -= 1;
            (self.lo, self.hi) = (0x80, 0xbf);
            return Ok(());
        }
        let (need, lo, hi) = match byte {
            0x00..=0x7f => return Ok(()),
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf), // no overlong 3-byte forms
            0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf),
            0xed => (2, 0x80, 0x9f), // no surrogates U+D800..U+DFFF
            0xf0 => (3, 0x90, 0xbf), // no overlong 4-byte forms
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f), // nothing above U+10FFFF
            // 0x80..=0xc1 (stray continuation, overlong 2-byte lead), 0xf5..=0xff.
            _ => return Err(InvalidUtf8),
        };
        (self.need, self.lo, self.hi) = (need, lo, hi);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `std` says about a prefix: could more bytes still make it valid?
    fn valid_prefix(bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    /// Feeds `bytes` cut at the given positions; checks every step against `std`.
    fn check_split(bytes: &[u8], cuts: &[usize]) {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let fed = v.feed(&bytes[start..cut]);
            assert_eq!(
                fed.is_ok(),
                valid_prefix(&bytes[..cut]),
                "{bytes:02x?} cuts {cuts:?} at {cut}"
            );
            if fed.is_err() {
                return;
            }
            start = cut;
        }
        assert_eq!(
            v.finish().is_ok(),
            std::str::from_utf8(bytes).is_ok(),
            "{bytes:02x?} finish"
        );
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut s: Vec<Vec<u8>> = [
            "",
            "a",
            "hello",
            "κόσμε",
            "€",
            "𝄞",
            "\u{10ffff}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{fffd}",
            "Hello-µ@ßöäüàá-UTF-8!!",
            "📢 새로운 알림: hi",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
        let bad: &[&[u8]] = &[
            &[0xc0, 0x80],             // overlong NUL
            &[0xc1, 0xbf],             // overlong
            &[0xe0, 0x80, 0xaf],       // overlong '/'
            &[0xe0, 0x9f, 0xbf],       // overlong
            &[0xf0, 0x80, 0x80, 0xaf], // overlong
            &[0xf0, 0x8f, 0xbf, 0xbf], // overlong
            &[0xed, 0xa0, 0x80],       // surrogate U+D800
            &[0xed, 0xbf, 0xbf],       // surrogate U+DFFF
            &[0xf4, 0x90, 0x80, 0x80], // U+110000
            &[0xf5, 0x80, 0x80, 0x80], // beyond
            &[0xff],
            &[0x80],             // stray continuation
            &[0xe2, 0x82],       // truncated €
            &[0xf0, 0x9d, 0x84], // truncated 𝄞
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
                0x65, 0x64, 0x69, 0x74, 0x65, 0x64,
            ],
        ];
        for b in bad {
            s.push(b.to_vec());
            let mut wrapped = b"ok ".to_vec();
            wrapped.extend_from_slice(b);
            wrapped.extend_from_slice(" tail €".as_bytes());
            s.push(wrapped);
        }
        s
    }

    #[test]
    fn agrees_with_std_split_at_every_position() {
        for bytes in samples() {
            check_split(&bytes, &[]);
            for i in 0..=bytes.len() {
                check_split(&bytes, &[i]);
                for j in i..=bytes.len() {
                    check_split(&bytes, &[i, j]);
                }
            }
        }
    }

    #[test]
    fn agrees_with_std_on_all_short_sequences_byte_at_a_time() {
        // Every lead byte with continuation bytes at each boundary of Table 3-7.
        let cont = [
            0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xf4, 0xff,
        ];
        for lead in 0..=255u8 {
            for &b1 in &cont {
                for &b2 in &cont {
                    for &b3 in &cont {
                        let bytes = [lead, b1, b2, b3];
                        check_split(&bytes, &[1, 2, 3]);
                        check_split(&bytes[..3], &[1, 2]);
                    }
                }
            }
        }
    }

    #[test]
    fn fails_on_the_piece_holding_the_first_bad_byte() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8)); // would be > U+10FFFF
    }

    #[test]
    fn finish_inside_a_character_fails_and_resets() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xe2, 0x82]), Ok(()));
        assert!(!v.is_at_boundary());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        assert!(v.is_at_boundary());
        assert_eq!(v.feed(b"fine"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}

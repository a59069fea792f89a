//! The line protocol's codec: newline-framed messages, sans-IO.
//!
//! A message is the bytes up to `\n`; a `\r` right before it is dropped, so `nc` on Unix and
//! telnet-style clients that send `\r\n` both work. `next_line` is a pure function over a byte
//! slice in the httparse style: an incomplete line consumes nothing and is not an error, a
//! complete one returns the line and how many bytes to advance, and a line that cannot fit in
//! `max` bytes is an error as soon as that is known (before it is buffered any further).

/// The line was longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// The reply sent before closing a connection whose line was too long.
pub const TOO_LONG_REPLY: &[u8] = b"error: line too long\n";

/// Finds the first complete line in `buf`. Returns the line without its `\n` / `\r\n` and the
/// number of bytes it occupied, `Ok(None)` when no complete line is there yet, or
/// `Err(LineTooLong)` when the line (without its terminator) is over `max` bytes.
pub fn next_line(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, LineTooLong> {
    // A line of `max` bytes may be followed by `\r\n`: look no further than that.
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    match memchr::memchr(b'\n', window) {
        Some(i) => {
            let line = &buf[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                Err(LineTooLong)
            } else {
                Ok(Some((line, i + 1)))
            }
        }
        None if buf.len() > max.saturating_add(1) => Err(LineTooLong),
        // `max` bytes plus a `\r` may still be a valid line awaiting its `\n`.
        None if buf.len() == max.saturating_add(1) && buf.last() != Some(&b'\r') => {
            Err(LineTooLong)
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! cases {
        ($($name:ident: $input:expr, $max:expr => $want:expr;)*) => {
            $( #[test] fn $name() { assert_eq!(next_line($input, $max), $want); } )*
        };
    }

    cases! {
        empty_input_is_incomplete: b"", 10 => Ok(None);
        partial_line_is_incomplete: b"hel", 10 => Ok(None);
        lf_line: b"hello\nrest", 10 => Ok(Some((&b"hello"[..], 6)));
        crlf_line: b"hello\r\nrest", 10 => Ok(Some((&b"hello"[..], 7)));
        empty_line: b"\n", 10 => Ok(Some((&b""[..], 1)));
        bare_cr_is_kept_inside: b"a\rb\n", 10 => Ok(Some((&b"a\rb"[..], 4)));
        exactly_max: b"12345\n", 5 => Ok(Some((&b"12345"[..], 6)));
        exactly_max_crlf: b"12345\r\n", 5 => Ok(Some((&b"12345"[..], 7)));
        max_plus_cr_waits: b"12345\r", 5 => Ok(None);
        one_over_max: b"123456\n", 5 => Err(LineTooLong);
        too_long_without_newline: b"1234567", 5 => Err(LineTooLong);
        max_plus_one_not_cr: b"123456", 5 => Err(LineTooLong);
        exactly_max_no_newline_waits: b"12345", 5 => Ok(None);
    }

    #[test]
    fn byte_at_a_time_consumes_nothing_until_complete() {
        let input = b"first line\r\nsecond\n";
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for &b in input {
            buf.push(b);
            while let Some((line, used)) = next_line(&buf, 64).unwrap() {
                out.push(String::from_utf8(line.to_vec()).unwrap());
                buf.drain(..used);
            }
        }
        assert_eq!(out, ["first line", "second"]);
        assert!(buf.is_empty());
    }
}

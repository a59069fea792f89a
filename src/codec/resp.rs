//! A sans-IO RESP2 codec: the wire format of Redis (<https://redis.io/docs/latest/develop/reference/protocol-spec/>).
//!
//! Pure functions over `&[u8]`, in the httparse style: `decode` returns `Ok(None)` for a partial
//! value (nothing consumed, not an error; call again with more bytes), or the value and how many
//! bytes it took. Limits are checked from the headers, before any body has to be buffered: a
//! `$70000000\r\n` is refused at once, not after 64 MiB arrived.
//!
//! | first byte | type | decoded as |
//! |---|---|---|
//! | `+` | simple string | `Value::Simple` |
//! | `-` | error | `Value::Error` |
//! | `:` | integer | `Value::Integer` |
//! | `$` | bulk string (`$-1`: nil) | `Value::Bulk` / `Value::Nil` |
//! | `*` | array (`*-1`: nil) | `Value::Array` / `Value::Nil` |
//!
//! Commands go the other way as arrays of bulk strings (`encode_command`), which is all a
//! client ever sends.

use std::fmt;

/// Largest bulk string we accept: 64 MiB. Redis' own default (`proto-max-bulk-len`) is
/// 512 MiB; a broadcast message is bounded by `--max-message` (16 MiB) plus a small prefix,
/// so 64 MiB leaves room without letting a bad peer make us buffer half a gigabyte.
pub const MAX_BULK: usize = 64 << 20;
/// Most elements in one array: 1 Mi. Pub/sub replies have three; this only bounds garbage.
pub const MAX_ARRAY: usize = 1 << 20;
/// Longest header or simple-string/error line (without CRLF): 64 KiB. Redis' error messages
/// are short; a line this long without a CRLF is not RESP.
pub const MAX_LINE: usize = 64 << 10;
/// Deepest array nesting: 32. Redis replies nest two or three levels; the bound keeps a
/// hostile `****…` from recursing the stack away.
pub const MAX_DEPTH: usize = 32;

/// The RESP2 type bytes, with their wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `+` (0x2b)
    Simple,
    /// `-` (0x2d)
    Error,
    /// `:` (0x3a)
    Integer,
    /// `$` (0x24)
    Bulk,
    /// `*` (0x2a)
    Array,
    /// Any other first byte: not RESP2 (RESP3 types such as `%` or `>` included).
    Reserved(u8),
}

impl From<u8> for Kind {
    fn from(b: u8) -> Kind {
        match b {
            b'+' => Kind::Simple,
            b'-' => Kind::Error,
            b':' => Kind::Integer,
            b'$' => Kind::Bulk,
            b'*' => Kind::Array,
            other => Kind::Reserved(other),
        }
    }
}

/// A decoded value, borrowing its strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR message`
    Error(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(&'a [u8]),
    /// `$-1` or `*-1`
    Nil,
    /// `*2\r\n…`
    Array(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }
}

/// Why input is not RESP2 (the connection cannot be resynchronised: close it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a value is not a RESP2 type.
    UnknownType(u8),
    /// A header line is not a valid length or integer.
    BadNumber,
    /// A line ends in a bare `\n`, or a bulk string is not followed by CRLF.
    BadTerminator,
    /// A bulk string over `MAX_BULK`, an array over `MAX_ARRAY`, a line over `MAX_LINE`.
    TooLarge,
    /// Arrays nested deeper than `MAX_DEPTH`.
    TooDeep,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::BadNumber => f.write_str("bad RESP length or integer"),
            RespError::BadTerminator => f.write_str("missing CRLF"),
            RespError::TooLarge => f.write_str("RESP value over the size limit"),
            RespError::TooDeep => f.write_str("RESP arrays nested too deep"),
        }
    }
}

impl std::error::Error for RespError {}

/// Decodes one value from the start of `input`. `Ok(None)`: incomplete, nothing consumed.
/// `Ok(Some((value, n)))`: advance by `n`.
pub fn decode(input: &[u8]) -> Result<Option<(Value<'_>, usize)>, RespError> {
    decode_at(input, 0, 0)
}

fn decode_at(
    input: &[u8],
    at: usize,
    depth: usize,
) -> Result<Option<(Value<'_>, usize)>, RespError> {
    let Some(&first) = input.get(at) else {
        return Ok(None);
    };
    let kind = Kind::from(first);
    if let Kind::Reserved(b) = kind {
        return Err(RespError::UnknownType(b));
    }
    let Some((line, after)) = line(input, at + 1)? else {
        return Ok(None);
    };
    match kind {
        Kind::Simple => Ok(Some((Value::Simple(line), after))),
        Kind::Error => Ok(Some((Value::Error(line), after))),
        Kind::Integer => Ok(Some((Value::Integer(number(line)?), after))),
        Kind::Bulk => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, after)));
            }
            let len = length(len, MAX_BULK)?;
            let end = after + len;
            if input.len() < end + 2 {
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(RespError::BadTerminator);
            }
            Ok(Some((Value::Bulk(&input[after..end]), end + 2)))
        }
        Kind::Array => {
            let len = number(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, after)));
            }
            let len = length(len, MAX_ARRAY)?;
            if depth >= MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            // Every element takes at least 3 bytes (`:0\r\n` is 4), so the claimed count alone
            // cannot make us allocate more than the input could hold.
            let mut items = Vec::with_capacity(len.min((input.len() - after) / 3));
            let mut pos = after;
            for _ in 0..len {
                match decode_at(input, pos, depth + 1)? {
                    Some((v, next)) => {
                        items.push(v);
                        pos = next;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), pos)))
        }
        Kind::Reserved(_) => unreachable!("refused above"),
    }
}

/// The line starting at `from`, without its CRLF, and the offset after the CRLF.
fn line(input: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &input[from.min(input.len())..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(nl) if nl > MAX_LINE + 1 => Err(RespError::TooLarge),
        Some(nl) => {
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err(RespError::BadTerminator);
            }
            Ok(Some((&rest[..nl - 1], from + nl + 1)))
        }
        None if rest.len() > MAX_LINE + 1 => Err(RespError::TooLarge),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, RespError> {
    let s = std::str::from_utf8(line).map_err(|_| RespError::BadNumber)?;
    // `str::parse` accepts a leading `+`, which RESP does not write; refuse it and empty lines.
    if s.is_empty() || s.starts_with('+') {
        return Err(RespError::BadNumber);
    }
    s.parse().map_err(|_| RespError::BadNumber)
}

fn length(n: i64, max: usize) -> Result<usize, RespError> {
    let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
    if n > max {
        return Err(RespError::TooLarge);
    }
    Ok(n)
}

/// Appends a command (`*N` then one `$len` bulk string per argument) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    use std::io::Write;
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Value::*;

    /// `case!(input => value, consumed)` or `case!(input => error)`.
    macro_rules! cases {
        ($($input:expr => $expect:expr;)*) => {
            $(
                let input: &[u8] = $input;
                assert_eq!(decode(input), $expect, "input {:?}", String::from_utf8_lossy(input));
            )*
        };
    }

    fn ok(v: Value<'_>, n: usize) -> Result<Option<(Value<'_>, usize)>, RespError> {
        Ok(Some((v, n)))
    }

    #[test]
    fn decodes_every_type() {
        cases! {
            b"+OK\r\n" => ok(Simple(b"OK"), 5);
            b"+\r\n" => ok(Simple(b""), 3);
            b"-ERR unknown command\r\n" => ok(Error(b"ERR unknown command"), 22);
            b":0\r\n" => ok(Integer(0), 4);
            b":-42\r\n" => ok(Integer(-42), 6);
            b":9223372036854775807\r\n" => ok(Integer(i64::MAX), 22);
            b"$3\r\nfoo\r\n" => ok(Bulk(b"foo"), 9);
            b"$0\r\n\r\n" => ok(Bulk(b""), 6);
            b"$4\r\na\r\nb\r\n" => ok(Bulk(b"a\r\nb"), 10);
            b"$-1\r\n" => ok(Nil, 5);
            b"*-1\r\n" => ok(Nil, 5);
            b"*0\r\n" => ok(Array(vec![]), 4);
            b"*2\r\n$3\r\nfoo\r\n:1\r\n" => ok(Array(vec![Bulk(b"foo"), Integer(1)]), 17);
            b"*2\r\n*1\r\n+a\r\n$-1\r\n" => ok(Array(vec![Array(vec![Simple(b"a")]), Nil]), 17);
            b"+OK\r\n+next\r\n" => ok(Simple(b"OK"), 5);
        }
    }

    #[test]
    fn a_pubsub_message() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$12\r\nreadyloop:ws\r\n$5\r\nhello\r\n";
        cases! {
            wire => ok(Array(vec![Bulk(b"message"), Bulk(b"readyloop:ws"), Bulk(b"hello")]), wire.len());
        }
    }

    #[test]
    fn partial_input_is_not_an_error() {
        cases! {
            b"" => Ok(None);
            b"+OK" => Ok(None);
            b"+OK\r" => Ok(None);
            b"$3\r\nfo" => Ok(None);
            b"$3\r\nfoo" => Ok(None);
            b"$3\r\nfoo\r" => Ok(None);
            b"*2\r\n:1\r\n" => Ok(None);
            b"*1\r\n*1\r\n" => Ok(None);
        }
    }

    #[test]
    fn malformed_input_is_refused() {
        cases! {
            b"%1\r\n" => Err(RespError::UnknownType(b'%'));
            b"hello\r\n" => Err(RespError::UnknownType(b'h'));
            b"+OK\n" => Err(RespError::BadTerminator);
            b"\n" => Err(RespError::UnknownType(b'\n'));
            b":\r\n" => Err(RespError::BadNumber);
            b":+1\r\n" => Err(RespError::BadNumber);
            b":1x\r\n" => Err(RespError::BadNumber);
            b"$-2\r\n" => Err(RespError::BadNumber);
            b"*-5\r\n" => Err(RespError::BadNumber);
            b"$3\r\nfooXY" => Err(RespError::BadTerminator);
            b"*1\r\n!\r\n" => Err(RespError::UnknownType(b'!'));
        }
    }

    #[test]
    fn limits_are_checked_before_the_body_arrives() {
        let big = format!("${}\r\n", MAX_BULK + 1);
        assert_eq!(decode(big.as_bytes()), Err(RespError::TooLarge));
        let at_limit = format!("${MAX_BULK}\r\n");
        assert_eq!(
            decode(at_limit.as_bytes()),
            Ok(None),
            "allowed, waits for the body"
        );
        let many = format!("*{}\r\n", MAX_ARRAY + 1);
        assert_eq!(decode(many.as_bytes()), Err(RespError::TooLarge));
        let long = vec![b'+'; MAX_LINE + 3];
        assert_eq!(decode(&long), Err(RespError::TooLarge));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(deep.as_bytes()), Err(RespError::TooDeep));
        // A huge claimed count allocates by what the input holds, not by the claim.
        let claimed = format!("*{MAX_ARRAY}\r\n:1\r\n");
        assert_eq!(decode(claimed.as_bytes()), Ok(None));
    }

    #[test]
    fn byte_at_a_time_consumes_nothing_until_complete() {
        let wire: &[u8] =
            b"*3\r\n$7\r\nmessage\r\n$14\r\nreadyloop:line\r\n$6\r\nhi\r\nyo\r\n:7\r\n$-1\r\n+OK\r\n";
        let mut got = Vec::new();
        let mut start = 0;
        for end in 0..=wire.len() {
            match decode(&wire[start..end]).unwrap() {
                None => {}
                Some((v, n)) => {
                    assert_eq!(n, end - start, "a value is complete only at its last byte");
                    got.push(format!("{v:?}"));
                    start = end;
                }
            }
        }
        assert_eq!(start, wire.len());
        assert_eq!(got.len(), 4, "{got:?}");
        let first = Array(vec![
            Bulk(b"message"),
            Bulk(b"readyloop:line"),
            Bulk(b"hi\r\nyo"),
        ]);
        assert_eq!(got[0], format!("{first:?}"));
        assert_eq!(
            got[1..],
            [
                format!("{:?}", Integer(7)),
                format!("{Nil:?}"),
                format!("{:?}", Simple(b"OK"))
            ]
        );
    }

    #[test]
    fn encodes_commands_that_decode_back() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"readyloop:ws", b"a\r\nb"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$12\r\nreadyloop:ws\r\n$4\r\na\r\nb\r\n".to_vec()
        );
        let (v, n) = decode(&out).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert_eq!(
            v,
            Array(vec![
                Bulk(b"PUBLISH"),
                Bulk(b"readyloop:ws"),
                Bulk(b"a\r\nb")
            ])
        );
    }
}

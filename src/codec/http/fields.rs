//! What requests and responses share on the wire (RFC 9110 §5, RFC 9112 §7.1): the bounds on
//! header slots and chunk-size lines, the field-value helpers, and the chunk-size line itself.
//! The request parser (`request.rs`) and the response parser (`response_parser.rs`) both
//! frame bodies with these; each maps a refusal to its own error type.

/// Header slots httparse gets on the stack, the ceiling of a parser's header limit: 128 slots
/// of 32 bytes is 4 KiB of stack per parse attempt, and no real peer sends more than a few
/// dozen fields.
pub const MAX_HEADER_SLOTS: usize = 128;

/// Longest chunk-size line waited for, extensions and CRLF included: 4 KiB. Extensions carry
/// nothing we use; this bounds what a peer can make us buffer for them.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Most hex digits accepted in a chunk size: 16, all a `u64` holds, so the value can never
/// overflow. Longer (even with leading zeros) is refused.
pub const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// One complete chunk-size line (`chunk-size [ chunk-ext ] CRLF`) at the front of `input`:
/// `Ok(Some((line length, size)))`, `Ok(None)` while it is incomplete, or the reason it is
/// refused. Extensions are checked for shape and skipped.
pub fn chunk_size_line(input: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    let Some(lf) = input.iter().take(MAX_CHUNK_LINE).position(|&b| b == b'\n') else {
        if input.len() >= MAX_CHUNK_LINE {
            return Err("chunk-size line too long");
        }
        return Ok(None);
    };
    let line = input.get(..lf).unwrap_or_default();
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err("chunk-size line not ended by CRLF");
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("missing chunk size");
    }
    if digits > MAX_CHUNK_SIZE_DIGITS {
        return Err("chunk size too long");
    }
    let (hex, ext) = line.split_at(digits);
    // At most 16 digits: the shifts cannot overflow.
    let size = hex
        .iter()
        .fold(0u64, |n, &b| (n << 4) | u64::from(hex_value(b)));
    check_chunk_ext(ext)?;
    Ok(Some((lf + 1, size)))
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Chunk extensions: `*( BWS ";" BWS name [ BWS "=" BWS value ] )`. We ignore them, but the
/// text after the size must start with `;` (after optional blanks) and hold no control bytes:
/// "5 x" or "5\0" is not a size.
fn check_chunk_ext(ext: &[u8]) -> Result<(), &'static str> {
    let after_blanks = trim_start_ows(ext);
    match after_blanks.first() {
        None if ext.is_empty() => Ok(()),
        None => Err("blank after chunk size"),
        Some(b';') if after_blanks.iter().all(|&b| !is_ctl(b)) => Ok(()),
        Some(b';') => Err("control byte in chunk extension"),
        Some(_) => Err("invalid chunk size"),
    }
}

/// Up to `remaining` bytes from the front of `input`, and what is left after them; `None`
/// when there is nothing to give yet.
pub fn take_body(input: &[u8], remaining: u64) -> Option<(&[u8], u64)> {
    if input.is_empty() {
        return None;
    }
    let n = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
    let data = input.get(..n)?;
    Some((data, remaining - n as u64))
}

/// Control bytes other than HTAB are never allowed in field lines.
pub fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `s` without leading blanks (SP, HTAB).
pub fn trim_start_ows(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    s.get(n..).unwrap_or_default()
}

/// `s` without leading or trailing blanks.
pub fn trim_ows(s: &[u8]) -> &[u8] {
    let s = trim_start_ows(s);
    let n = s
        .iter()
        .rev()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    s.get(..s.len() - n).unwrap_or_default()
}

/// The non-empty, trimmed elements of a comma-separated list field (RFC 9110 §5.6.1).
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Does `value`, a comma-separated header list, hold `token` (case-insensitive)? Browsers
/// send `Connection: keep-alive, Upgrade`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(chunk_size_line(b"1a\r\nrest"), Ok(Some((4, 26))));
        assert_eq!(chunk_size_line(b"0;name=v\r\n"), Ok(Some((10, 0))));
        assert_eq!(chunk_size_line(b"ff"), Ok(None));
        assert_eq!(chunk_size_line(b"5 x\r\n"), Err("invalid chunk size"));
        assert_eq!(chunk_size_line(b"5 \r\n"), Err("blank after chunk size"));
        assert_eq!(chunk_size_line(b"\r\n"), Err("missing chunk size"));
        assert_eq!(
            chunk_size_line(b"5\n"),
            Err("chunk-size line not ended by CRLF")
        );
        assert_eq!(
            chunk_size_line(b"00000000000000001\r\n"),
            Err("chunk size too long")
        );
        assert_eq!(
            chunk_size_line(&[b'1'; MAX_CHUNK_LINE]),
            Err("chunk-size line too long")
        );
        assert_eq!(
            chunk_size_line(b"ffffffffffffffff\r\n"),
            Ok(Some((18, u64::MAX)))
        );
    }

    #[test]
    fn list_fields() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!has_token(b"keep-alive", "upgrade"));
        assert_eq!(
            list_elements(b" a ,, b\t").collect::<Vec<_>>(),
            [&b"a"[..], b"b"]
        );
    }
}

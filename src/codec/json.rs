//! JSON string escaping, the one piece of JSON writing every part of readyloop needs.
//!
//! `/stats`, `/tasks/ID`, the upload responses, `uploads.jsonl` and the load generator's
//! `--json` output are all built by hand (a serializer crate would be the largest dependency of
//! the binary for a few fixed shapes); this is the only part with rules worth getting right once.

/// Appends `s` escaped for use inside a JSON string (RFC 8259 §7): `"`, `\` and control
/// characters. The caller writes the surrounding quotes.
pub fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < '\u{20}' || c == '\u{7f}' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c => out.push(c),
        }
    }
}

/// `s` as a quoted JSON string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    escape_into(s, &mut out);
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_escaping() {
        for (input, expected) in [
            ("plain", "plain"),
            ("a\"b\\c", "a\\\"b\\\\c"),
            ("line\nbreak\r\ttab", "line\\nbreak\\r\\ttab"),
            ("\u{0}\u{1f}\u{8}\u{c}", "\\u0000\\u001f\\b\\f"),
            ("새로운 알림 📢", "새로운 알림 📢"),
            ("\u{7f}", "\\u007f"),
        ] {
            let mut out = String::new();
            super::escape_into(input, &mut out);
            assert_eq!(out, expected, "{input:?}");
        }
        assert_eq!(super::string("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(
            super::string("a\"b\\c\nd\u{1}\u{7f}é"),
            r#""a\"b\\c\nd\u0001\u007fé""#
        );
    }
}

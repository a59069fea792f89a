//! Text a peer sent, made safe to print in a log: `escaped(bytes)` displays it with every
//! control character, every invalid UTF-8 byte and every character that reorders text in a
//! terminal written as an escape, and cuts it after `MAX_SHOWN` bytes.
//!
//! A line, a file name or a header value reaches the log through here and nowhere else, so a
//! client cannot move the cursor, recolour or clear an operator's terminal (ANSI `ESC [`), fake
//! log lines of its own (a bare `\r` or `\n`), flip the direction of what follows (U+202E), or
//! fill the log with one huge message.

use std::fmt;

/// Bytes of the input shown at most; the rest is summarised as `… (N bytes)`.
pub const MAX_SHOWN: usize = 200;

/// Displays `bytes` escaped (see the module documentation).
pub fn escaped<T: AsRef<[u8]> + ?Sized>(bytes: &T) -> Escaped<'_> {
    Escaped(bytes.as_ref())
}

/// The display adapter `escaped` returns.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.0;
        let shown = &all[..all.len().min(MAX_SHOWN)];
        for chunk in shown.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if c.is_control() || is_reordering(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if all.len() > shown.len() {
            write!(f, "… ({} bytes)", all.len())?;
        }
        Ok(())
    }
}

/// Characters that change the direction or visibility of what follows in a terminal: the
/// bidirectional embeddings, overrides and isolates, and the zero-width joiners and marks.
fn is_reordering(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! cases {
        ($($name:ident: $input:expr => $want:expr;)*) => {
            $( #[test] fn $name() { assert_eq!(escaped($input).to_string(), $want); } )*
        };
    }

    cases! {
        plain_text_passes: "hello world" => "hello world";
        unicode_passes: "📢 새로운 알림" => "📢 새로운 알림";
        ansi_escape_is_shown: "\u{1b}[2Jgotcha" => "\\u{1b}[2Jgotcha";
        bare_cr_and_lf_are_shown: "ok\r[INFO] forged\n" => "ok\\r[INFO] forged\\n";
        backslash_is_doubled: "a\\nb" => "a\\\\nb";
        invalid_utf8_is_hex: &b"a\xff\xfeb"[..] => "a\\xff\\xfeb";
        nul_and_del: "\0\u{7f}" => "\\u{0}\\u{7f}";
        c1_controls: "\u{9b}31m" => "\\u{9b}31m";
        right_to_left_override: "abc\u{202e}def" => "abc\\u{202e}def";
    }

    #[test]
    fn long_input_is_cut() {
        let long = "x".repeat(1000);
        let shown = escaped(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(MAX_SHOWN)));
        assert!(shown.ends_with("… (1000 bytes)"), "{shown}");
    }

    #[test]
    fn a_cut_inside_a_character_shows_its_bytes() {
        let mut s = "x".repeat(MAX_SHOWN - 1);
        s.push('é'); // two bytes: the cut falls between them
        let shown = escaped(&s).to_string();
        assert!(shown.contains("\\xc3… (201 bytes)"), "{shown}");
    }
}

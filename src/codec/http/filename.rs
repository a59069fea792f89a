//! Upload file names: from what a client claims to what we dare create.
//!
//! A `filename=` parameter is peer input. [`sanitize`] reduces it to one plain
//! file name inside the upload directory. (Never overwriting an existing file is
//! the upload store's job: it links the finished file under `name-1.ext`,
//! `name-2.ext`, ... atomically, see `service::http::store`.)
//!
//! Decisions, each with its reason:
//! - Directory parts are dropped, at `/` and at `\` (old browsers send
//!   `C:\Users\me\a.txt`): only the last component is kept.
//! - Control characters (C0, DEL, C1) and the Unicode bidirectional controls
//!   (U+202A–U+202E, U+2066–U+2069, which can disguise `exe.txt` as
//!   `txt.exe`) are *replaced* by `_` rather than refused: the upload is
//!   legitimate, only the name is odd, and the replacement keeps logs and
//!   terminals safe.
//! - Leading dots are removed (no hidden files, and `..`, `.` and `...` become
//!   empty); blanks around the name are trimmed. An empty result is refused.
//! - The name is cut to [`MAX_NAME_BYTES`] at a char boundary, keeping a short
//!   extension, so it fits every common file system (255 bytes) with room for a
//!   numbered suffix; a cut that ends in a blank is trimmed again.
//! - Reserved Windows device names (`CON`, `NUL`, ...) are not handled: the
//!   server writes to a Unix file system.

/// Longest name [`sanitize`] returns: 200 bytes (file systems allow 255).
pub const MAX_NAME_BYTES: usize = 200;

/// Longest extension (dot included) kept apart when a name is cut or numbered:
/// 16 bytes; anything after a dot that is longer is treated as part of the stem.
const MAX_EXT_BYTES: usize = 16;

/// A safe file name derived from `untrusted`, or `None` if nothing usable is left.
pub fn sanitize(untrusted: &str) -> Option<String> {
    let base = untrusted.rsplit(['/', '\\']).next().unwrap_or_default();
    let replaced: String = base
        .chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let name = replaced
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    if name.is_empty() {
        return None;
    }
    // A cut can end the stem in a blank (when there is no extension to keep after it).
    Some(
        truncate_keeping_extension(name, MAX_NAME_BYTES)
            .trim_end()
            .to_owned(),
    )
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Splits `a.tar.gz` into `a.tar` and `.gz`. No extension when there is no
/// dot after the first character or the part after the last dot is too long.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXT_BYTES => name.split_at(dot),
        _ => (name, ""),
    }
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let stem = truncate_at_char_boundary(stem, max - ext.len());
    format!("{stem}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sanitizes!(name: input => expected;)`
    macro_rules! sanitizes {
        ($($name:ident: $input:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(sanitize($input).as_deref(), $expected);
            }
        )*};
    }

    sanitizes! {
        plain: "report.pdf" => Some("report.pdf");
        unix_path: "/etc/passwd" => Some("passwd");
        relative_escape: "../../.ssh/authorized_keys" => Some("authorized_keys");
        windows_path: "C:\\Users\\me\\photo.jpg" => Some("photo.jpg");
        mixed_separators: "a/b\\c/d.txt" => Some("d.txt");
        dot_dot: ".." => None;
        dot: "." => None;
        dots_after_dir: "dir/.." => None;
        empty: "" => None;
        blank: "   " => None;
        trailing_separator: "dir/" => None;
        hidden_file: ".bashrc" => Some("bashrc");
        dot_then_blank: ". .env" => Some("env");
        inner_dots_kept: "a..b.tar.gz" => Some("a..b.tar.gz");
        newline_replaced: "a\nb.txt" => Some("a_b.txt");
        nul_replaced: "a\0b" => Some("a_b");
        escape_replaced: "\u{1b}[31mred" => Some("_[31mred");
        c1_replaced: "a\u{85}b" => Some("a_b");
        bidi_replaced: "photo\u{202e}gpj.exe" => Some("photo_gpj.exe");
        trimmed: "  spaced name.txt  " => Some("spaced name.txt");
        unicode_kept: "새 파일 📢.txt" => Some("새 파일 📢.txt");
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.txt", "a".repeat(300));
        let s = sanitize(&long).unwrap();
        assert_eq!(s.len(), MAX_NAME_BYTES);
        assert!(s.ends_with("aaa.txt"));
        // Multi-byte characters are never split.
        let wide = format!("{}.png", "가".repeat(100));
        let s = sanitize(&wide).unwrap();
        assert!(s.len() <= MAX_NAME_BYTES && s.ends_with("가.png"));
        // A "extension" that is too long is just part of the name.
        let s = sanitize(&format!("a.{}", "b".repeat(300))).unwrap();
        assert_eq!(s.len(), MAX_NAME_BYTES);
        // A cut that ends in a blank is trimmed again (found by fuzzing).
        let s = sanitize(&format!("{} {}", "a".repeat(199), "b".repeat(50))).unwrap();
        assert_eq!(s, "a".repeat(199));
    }
}

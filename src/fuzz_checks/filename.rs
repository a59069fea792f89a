//! Fuzz properties of upload file-name sanitising (`codec::http::filename::sanitize`): what a
//! client's `filename=` or `?name=` becomes on disk.
//!
//! The input, as lossy UTF-8, is the untrusted name. Checked for every name that comes out:
//! it is one plain path component, so joined to the upload directory it stays directly inside
//! it (no separator, not `.` or `..`, no leading dot); it holds no control or bidirectional
//! control character; it is trimmed and within `MAX_NAME_BYTES`; sanitising it again changes
//! nothing; and an ordinary name (none of the above to fix) comes out unchanged.
//! [`check_sanitized`] is shared with the multipart target, which checks the file names of
//! the parts it parses the same way.

use crate::codec::http::filename::{sanitize, MAX_NAME_BYTES};
use std::path::{Component, Path};

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Sanitises `untrusted` and checks the result; returns it.
pub fn check_sanitized(untrusted: &str) -> Option<String> {
    let out = sanitize(untrusted);
    let Some(name) = &out else {
        return out;
    };
    assert!(!name.is_empty());
    assert!(
        name.len() <= MAX_NAME_BYTES,
        "{} bytes: {name:?}",
        name.len()
    );
    assert!(!name.contains(['/', '\\']), "separator in {name:?}");
    assert!(!name.starts_with('.'), "hidden or dot name {name:?}");
    assert!(
        !name.chars().any(|c| c.is_control() || is_bidi_control(c)),
        "control character in {name:?}"
    );
    assert_eq!(name.trim(), name, "blanks around {name:?}");
    let components: Vec<_> = Path::new(name).components().collect();
    assert!(
        matches!(components[..], [Component::Normal(_)]),
        "{name:?} is not one plain component: {components:?}"
    );
    let dir = Path::new("/srv/uploads");
    assert_eq!(
        dir.join(name).parent(),
        Some(dir),
        "{name:?} leaves the directory"
    );
    assert_eq!(
        sanitize(name).as_ref(),
        Some(name),
        "sanitising {name:?} again changes it"
    );
    out
}

/// A name with nothing to fix: no separator or control character, no leading dot or blank,
/// no trailing blank, short enough.
fn is_ordinary(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && name.trim() == name
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || is_bidi_control(c))
}

/// The file-name properties for one fuzz input.
pub fn check(data: &[u8]) {
    let untrusted = String::from_utf8_lossy(data);
    let out = check_sanitized(&untrusted);
    if is_ordinary(&untrusted) {
        assert_eq!(
            out.as_deref(),
            Some(&*untrusted),
            "an ordinary name was changed"
        );
    }
}

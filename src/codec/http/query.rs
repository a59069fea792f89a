//! The pieces of a request target a route reads: the query string's `key=value` pairs,
//! percent-decoded, and numeric ids in the path (`/tasks/ID`).
//!
//! Pure functions over untrusted text: a malformed escape (`%zz`) is kept as it is rather than
//! refused, and the result is lossy UTF-8, so any input gives some string and never a panic.
//! An id is accepted only in its one canonical spelling, so each resource has one URL.

/// The value of `key` in a query string, percent-decoded (`+` is a space).
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// `%XX` escapes decoded, `+` as a space (the form encoding), invalid escapes kept as is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    // Two hex digits exactly: `u8::from_str_radix` would also take a sign (`%+1`).
    let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
    while let Some(&b) = bytes.get(i) {
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi << 4 | lo) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path segment naming a numeric id: canonical decimal only (ASCII digits, no sign, no
/// leading zero unless the id is 0, within `u64`), so `/tasks/7` is the one spelling of task
/// 7 and `/tasks/+7`, `/tasks/07` and `/tasks/ 7` name nothing.
pub fn path_id(segment: &str) -> Option<u64> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if !canonical {
        return None;
    }
    segment.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param("name=a%20b.txt&x=1", "name").as_deref(),
            Some("a b.txt")
        );
        assert_eq!(query_param("x=1&name=c+d", "name").as_deref(), Some("c d"));
        assert_eq!(query_param("name=%zz%4", "name").as_deref(), Some("%zz%4"));
        // A sign is not a hex digit (found by fuzzing: `%+4` was decoded as byte 4).
        assert_eq!(percent_decode("%+41%-1%4A"), "% 41%-1J");
        assert_eq!(query_param("names=1", "name"), None);
        assert_eq!(query_param("all", "all").as_deref(), Some(""));
    }

    #[test]
    fn path_ids_are_canonical_decimal() {
        assert_eq!(path_id("7"), Some(7));
        assert_eq!(path_id("0"), Some(0));
        assert_eq!(path_id("18446744073709551615"), Some(u64::MAX));
        for refused in [
            "",
            "+7",
            "-7",
            "07",
            "00",
            " 7",
            "7 ",
            "7a",
            "18446744073709551616",
        ] {
            assert_eq!(path_id(refused), None, "{refused:?}");
        }
    }
}

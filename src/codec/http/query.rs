//! The query string of a request target: `key=value` pairs, percent-decoded.
//!
//! Pure functions over untrusted text: a malformed escape (`%zz`) is kept as it is rather than
//! refused, and the result is lossy UTF-8, so any input gives some string and never a panic.

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
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        assert_eq!(query_param("names=1", "name"), None);
        assert_eq!(query_param("all", "all").as_deref(), Some(""));
    }
}

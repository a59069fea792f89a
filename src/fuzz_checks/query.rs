//! Fuzz properties of the request-target pieces a route reads: query parameters
//! (`codec::http::query`) and the numeric id of `GET /tasks/ID`.
//!
//! The input, as lossy UTF-8, is used three ways. As a query string: `percent_decode` agrees
//! with a plain reading of the escapes (two hex digits after `%`, `+` a space, anything else
//! as it is), and `query_param` finds the first pair with that key. As a path segment:
//! `path_id` accepts exactly the canonical decimal numbers, so an id prints back as the
//! segment it came from. And as values: a query our own encoding builds from the input's
//! pieces gives each value back.

use super::parameter;
use crate::codec::http::query::{path_id, percent_decode, query_param};

/// `%XX` with two hex digits is a byte, `+` a space, every other byte itself.
fn reference_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|&c| char::from(c).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but ASCII letters and digits; a space becomes `+`.
fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for &b in value.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query and task-id properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, rest) = parameter(data);
    let text = String::from_utf8_lossy(rest);

    assert_eq!(
        percent_decode(&text),
        reference_decode(&text),
        "decoding {text:?}"
    );
    let key = text.split('&').next().unwrap_or_default();
    let key = key.split_once('=').map_or(key, |(k, _)| k);
    let expected = text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| reference_decode(v))
    });
    assert_eq!(query_param(&text, key), expected, "key {key:?} of {text:?}");

    // A path segment: an id only in canonical decimal form.
    match path_id(&text) {
        Some(id) => assert_eq!(id.to_string(), *text, "id {id} from {text:?}"),
        None => assert!(
            text.parse::<u64>()
                .map_or(true, |id| id.to_string() != *text),
            "canonical id {text:?} refused"
        ),
    }
    let mut eight = [0u8; 8];
    for (slot, b) in eight.iter_mut().zip(rest) {
        *slot = *b;
    }
    let id = u64::from_le_bytes(eight) >> (p % 64);
    assert_eq!(path_id(&id.to_string()), Some(id));

    // Our own encoding of the input's pieces, as `k0=v0&k1=v1...`, gives every value back.
    // At most 32 values: each lookup scans the whole query, so more would make the check
    // quadratic in the input and slow the fuzzer down to no purpose.
    let values: Vec<&str> = text.split('\n').take(32).collect();
    let query: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("k{i}={}", form_encode(v)))
        .collect();
    let query = query.join("&");
    for (i, v) in values.iter().enumerate() {
        assert_eq!(query_param(&query, &format!("k{i}")).as_deref(), Some(*v));
    }
}

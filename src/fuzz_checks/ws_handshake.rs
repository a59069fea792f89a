//! Fuzz properties of the WebSocket opening handshake (`codec::ws::handshake`): request
//! headers in, an accept or a refusal out, and the load generator's check of the answer.
//!
//! Server side: the input is a request stream; a head that parses is judged by
//! `check_upgrade`. A refusal carries a status we answer (400, 405, 426); an acceptance has a
//! valid key, and the 101 we would send for it passes the client's own check and parses as
//! one complete `101` head. Client side: the input is a server's answer to a key made from
//! its first bytes; a success names the end of a head that lies inside the input, and the same
//! bytes cut there give the same success, while a shorter cut is incomplete or refused, never
//! a success elsewhere. And both sides at once: the request our client writes, for a host and
//! path made from the input, is accepted by our server with the same key, host and path.

use super::parameter;
use crate::codec::http::request::{Event, Limits, RequestParser};
use crate::codec::http::response_parser::{ResponseEvent, ResponseParser};
use crate::codec::ws::handshake::{
    accept_key, check_response, check_upgrade, key_from_nonce, request, response, validate_key,
    MAX_RESPONSE_HEAD,
};

fn check_server(stream: &[u8]) {
    let mut parser = RequestParser::new(Limits::default());
    let Ok((_, Some(Event::Head(head)))) = parser.parse(stream) else {
        return;
    };
    match check_upgrade(&head) {
        Ok(key) => {
            assert!(validate_key(key), "accepted key {key:?}");
            assert_eq!(head.ws_key.as_deref(), Some(key));
            let answer = response(&accept_key(key));
            assert_eq!(check_response(&answer, key), Ok(Some(answer.len())));
            let mut client = ResponseParser::default();
            match client.parse(&answer) {
                Ok((n, Some(ResponseEvent::Head(h)))) => {
                    assert_eq!((n, h.status), (answer.len(), 101));
                }
                other => panic!("our 101 parses as {other:?}"),
            }
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 426), "{e:?}");
            assert!(!e.reason().is_empty());
        }
    }
}

fn check_client(p: u8, answer: &[u8]) {
    let mut nonce = [p; 16];
    for (slot, b) in nonce.iter_mut().zip(answer) {
        *slot = *b;
    }
    let key = key_from_nonce(nonce);
    assert!(validate_key(&key), "our own key {key:?}");
    match check_response(answer, &key) {
        Ok(Some(n)) => {
            assert!(n <= answer.len() && n <= MAX_RESPONSE_HEAD + 4);
            assert!(answer[..n].ends_with(b"\r\n\r\n"));
            assert_eq!(check_response(&answer[..n], &key), Ok(Some(n)));
            for short in [n - 1, n / 2] {
                let r = check_response(&answer[..short], &key);
                assert!(
                    !matches!(r, Ok(Some(_))),
                    "a prefix of {short} succeeded: {r:?}"
                );
            }
        }
        Ok(None) => assert!(answer.len() <= MAX_RESPONSE_HEAD),
        Err(_) => {}
    }
}

/// Both of our sides agree on the request our client writes.
fn check_both(p: u8, bytes: &[u8]) {
    let printable = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/".contains(b);
    let host: String = bytes
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || **b == b'.')
        .map(|&b| char::from(b))
        .collect();
    let host = if host.is_empty() {
        "h".to_owned()
    } else {
        host
    };
    let tail: String = bytes
        .iter()
        .filter(|b| printable(b))
        .map(|&b| char::from(b))
        .collect();
    let path = format!("/{}", tail.split('?').next().unwrap_or_default());
    let key = key_from_nonce([p; 16]);
    let written = request(&host, &path, &key);
    let mut parser = RequestParser::new(Limits {
        max_head: 64 * 1024,
        ..Limits::default()
    });
    let Ok((n, Some(Event::Head(head)))) = parser.parse(&written) else {
        panic!(
            "our request does not parse: {:?}",
            String::from_utf8_lossy(&written)
        );
    };
    assert_eq!(n, written.len());
    assert_eq!(check_upgrade(&head), Ok(&key[..]));
    assert_eq!(head.path, path);
    assert_eq!(head.host.as_deref(), Some(&host[..]));
}

/// The handshake's properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, rest) = parameter(data);
    check_server(rest);
    check_client(p, rest);
    check_both(p, rest);
}

//! The opening handshake (RFC 6455 §4): the HTTP/1.1 upgrade, both sides.
//!
//! The HTTP codec parses the request; this file only judges its WebSocket headers
//! (`check_upgrade`), computes `Sec-WebSocket-Accept` and writes the `101` response.
//! For the load generator it also writes a client request and checks the server's answer.
//! Nothing here reads a socket: all functions take and return bytes or strings.

use crate::codec::http::fields::has_token;
use crate::codec::http::request::{BodyFraming, Method, RequestHead};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// §1.3: the GUID appended to the client's key before hashing.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only version RFC 6455 defines (§4.1 item 9).
pub const VERSION: &str = "13";

/// Longest response head `check_response` waits for: 8 KiB, far more than any real
/// `101` response; a server sending more without `\r\n\r\n` is not speaking WebSocket.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// §4.2.2 item 5.4: base64(SHA-1(key + GUID)).
pub fn accept_key(client_key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(client_key.as_bytes());
    sha1.update(GUID.as_bytes());
    BASE64.encode(sha1.digest().bytes())
}

/// §4.1 item 7: the key is "a randomly selected 16-byte value that has been
/// base64-encoded", so it is 24 characters of canonical padded base64.
pub fn validate_key(key: &str) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|bytes| bytes.len() == 16)
}

/// A client key from 16 bytes of nonce (the caller picks them, randomly per §4.1).
pub fn key_from_nonce(nonce: [u8; 16]) -> String {
    BASE64.encode(nonce)
}

/// §4.2.2: the `101 Switching Protocols` response completing the handshake.
pub fn response(accept: &str) -> Vec<u8> {
    response_with_extensions(accept, None)
}

/// §4.2.2 item 5.6 / §9.1: the `101`, naming the extensions accepted (if any) in
/// `Sec-WebSocket-Extensions` (see `extensions.rs`).
pub fn response_with_extensions(accept: &str, extensions: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(extensions) = extensions {
        head.push_str("Sec-WebSocket-Extensions: ");
        head.push_str(extensions);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Why an HTTP request is not an acceptable WebSocket upgrade, and the answer it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeError {
    /// No `Upgrade: websocket` or no `Connection: upgrade`: a plain HTTP request (426).
    NotUpgrade,
    /// An upgrade with another method than `GET` (405).
    NotGet,
    /// Not HTTP/1.1, or a request body (400).
    BadRequest,
    /// `Sec-WebSocket-Version` missing or not 13 (426 naming the version we speak, §4.4).
    BadVersion,
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64 (400). A repeated key is refused
    /// by the request parser already.
    BadKey,
}

impl UpgradeError {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            UpgradeError::NotUpgrade | UpgradeError::BadVersion => 426,
            UpgradeError::NotGet => 405,
            UpgradeError::BadRequest | UpgradeError::BadKey => 400,
        }
    }

    /// A short, fixed explanation, safe to send back and to log.
    pub fn reason(self) -> &'static str {
        match self {
            UpgradeError::NotUpgrade => "this endpoint speaks WebSocket",
            UpgradeError::NotGet => "WebSocket upgrades use GET",
            UpgradeError::BadRequest => "bad WebSocket upgrade request",
            UpgradeError::BadVersion => "unsupported WebSocket version",
            UpgradeError::BadKey => "bad Sec-WebSocket-Key",
        }
    }

    /// Header fields the refusal must carry (RFC 9110 §15.5.6 `Allow`, RFC 6455 §4.4).
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            UpgradeError::NotUpgrade => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            UpgradeError::NotGet => &[("Allow", "GET")],
            UpgradeError::BadVersion => &[("Sec-WebSocket-Version", "13")],
            UpgradeError::BadRequest | UpgradeError::BadKey => &[],
        }
    }
}

/// §4.2.1: checks a parsed request head for a WebSocket upgrade and returns the client's key.
/// Which paths speak WebSocket, and which origins may, is the service's business.
pub fn check_upgrade(head: &RequestHead) -> Result<&str, UpgradeError> {
    if !head.wants_websocket() {
        return Err(UpgradeError::NotUpgrade);
    }
    if head.method != Method::Get {
        return Err(UpgradeError::NotGet);
    }
    if head.version_minor != 1 || head.body != BodyFraming::None {
        return Err(UpgradeError::BadRequest);
    }
    if head.ws_version.as_deref() != Some(VERSION) {
        return Err(UpgradeError::BadVersion);
    }
    match head.ws_key.as_deref() {
        Some(key) if validate_key(key) => Ok(key),
        _ => Err(UpgradeError::BadKey),
    }
}

/// §4.1: the client's opening request (for the load generator).
pub fn request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Why a server's answer does not complete the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// No end of headers within [`MAX_RESPONSE_HEAD`] bytes.
    TooLong,
    /// Not UTF-8 or not `HTTP/1.1 NNN ...`.
    Malformed,
    /// A well-formed response with another status than 101 (the status is given).
    Status(u16),
    /// 101, but `Upgrade`, `Connection` or `Sec-WebSocket-Accept` is missing or wrong.
    BadHeaders,
}

/// §4.1 (client side): checks the server's response to a request sent with `key`.
///
/// `Ok(None)`: the head is not complete yet, nothing consumed. `Ok(Some(n))`: the handshake
/// succeeded and `bytes[..n]` was the head; what follows is already WebSocket frames.
pub fn check_response(bytes: &[u8], key: &str) -> Result<Option<usize>, ResponseError> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if bytes.len() > MAX_RESPONSE_HEAD {
            Err(ResponseError::TooLong)
        } else {
            Ok(None)
        };
    };
    if end > MAX_RESPONSE_HEAD {
        return Err(ResponseError::TooLong);
    }
    let head = bytes
        .get(..end)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or(ResponseError::Malformed)?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next().unwrap_or_default().splitn(3, ' ');
    let status = match (status_line.next(), status_line.next()) {
        (Some("HTTP/1.1"), Some(code)) if code.len() == 3 => {
            code.parse::<u16>().map_err(|_| ResponseError::Malformed)?
        }
        _ => return Err(ResponseError::Malformed),
    };
    if status != 101 {
        return Err(ResponseError::Status(status));
    }
    let expected = accept_key(key);
    let (mut upgrade, mut connection, mut accept) = (false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ResponseError::Malformed);
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value.as_bytes(), "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value.as_bytes(), "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept |= value == expected;
        }
    }
    if upgrade && connection && accept {
        Ok(Some(end + 4))
    } else {
        Err(ResponseError::BadHeaders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 6455 §1.3 (and §4.2.2), checked against Python's hashlib too.
    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn rfc6455_1_3_accept_key() {
        assert_eq!(accept_key(RFC_KEY), RFC_ACCEPT);
    }

    macro_rules! keys {
        ($($name:ident: $key:expr => $ok:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(validate_key($key), $ok);
            }
        )*};
    }

    keys! {
        rfc6455_4_1_key_rfc_example: RFC_KEY => true;
        rfc6455_4_1_key_15_bytes: "AAAAAAAAAAAAAAAAAAAA" => false;
        rfc6455_4_1_key_17_bytes: "AAAAAAAAAAAAAAAAAAAAAA==AA" => false;
        rfc6455_4_1_key_not_base64: "dGhlIHNhbXBsZSBub25jZQ!!" => false;
        rfc6455_4_1_key_unpadded: "dGhlIHNhbXBsZSBub25jZQ" => false;
        rfc6455_4_1_key_empty: "" => false;
        rfc6455_4_1_key_non_canonical_bits: "dGhlIHNhbXBsZSBub25jZR==" => false;
    }

    #[test]
    fn key_from_nonce_is_valid() {
        let key = key_from_nonce(*b"the sample nonce");
        assert_eq!(key, RFC_KEY);
        assert!(validate_key(&key));
    }

    #[test]
    fn rfc6455_4_2_2_response() {
        let r = response(&accept_key(RFC_KEY));
        assert_eq!(
            r,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(check_response(&r, RFC_KEY), Ok(Some(r.len())));
    }

    fn head(request: &str) -> RequestHead {
        use crate::codec::http::request::{Event, Limits, RequestParser};
        let mut parser = RequestParser::new(Limits::default());
        match parser.parse(request.as_bytes()) {
            Ok((_, Some(Event::Head(head)))) => *head,
            other => panic!("{request:?} did not parse: {other:?}"),
        }
    }

    const BROWSER: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
        Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key:  dGhlIHNhbXBsZSBub25jZQ== \r\n\r\n";

    #[test]
    fn rfc6455_4_2_1_upgrade_checks() {
        assert_eq!(check_upgrade(&head(BROWSER)), Ok(RFC_KEY));
        let case = |from: &str, to: &str| {
            check_upgrade(&head(&BROWSER.replace(from, to))).map(str::to_owned)
        };
        assert_eq!(
            case("Version: 13", "Version: 8"),
            Err(UpgradeError::BadVersion)
        );
        assert_eq!(case(RFC_KEY, "short"), Err(UpgradeError::BadKey));
        assert_eq!(case("", ""), Ok(RFC_KEY.to_owned()));
        assert_eq!(
            case("keep-alive, Upgrade", "keep-alive"),
            Err(UpgradeError::NotUpgrade)
        );
        assert_eq!(case("GET", "POST"), Err(UpgradeError::NotGet));
        assert_eq!(case("HTTP/1.1", "HTTP/1.0"), Err(UpgradeError::BadRequest));
        assert_eq!(
            case("\r\n\r\n", "\r\nContent-Length: 1\r\n\r\n"),
            Err(UpgradeError::BadRequest)
        );
        let upper = BROWSER
            .replace("Upgrade: websocket", "UPGRADE: WebSocket")
            .replace("Connection: keep-alive, Upgrade", "CONNECTION: UPGRADE");
        assert_eq!(check_upgrade(&head(&upper)), Ok(RFC_KEY));
        for e in [UpgradeError::NotUpgrade, UpgradeError::BadVersion] {
            assert_eq!(e.status(), 426);
            assert!(e.headers().contains(&("Sec-WebSocket-Version", "13")));
        }
    }

    #[test]
    fn client_request_round_trip() {
        let req = request("localhost:8000", "/echo", RFC_KEY);
        let text = std::str::from_utf8(&req).unwrap();
        assert!(text.starts_with("GET /echo HTTP/1.1\r\nHost: localhost:8000\r\n"));
        assert!(text.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn check_response_partial_then_frames_follow() {
        let mut bytes = response(RFC_ACCEPT);
        let head = bytes.len();
        for cut in 0..head {
            assert_eq!(
                check_response(&bytes[..cut], RFC_KEY),
                Ok(None),
                "cut {cut}"
            );
        }
        bytes.extend_from_slice(&[0x81, 0x00]); // a frame right behind the head
        assert_eq!(check_response(&bytes, RFC_KEY), Ok(Some(head)));
    }

    #[test]
    fn check_response_failures() {
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check_response(not_found, RFC_KEY),
            Err(ResponseError::Status(404))
        );
        let wrong_accept = response("AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(
            check_response(&wrong_accept, RFC_KEY),
            Err(ResponseError::BadHeaders)
        );
        assert_eq!(
            check_response(b"garbage\r\n\r\n", RFC_KEY),
            Err(ResponseError::Malformed)
        );
        assert_eq!(
            check_response(&[b'x'; MAX_RESPONSE_HEAD + 1], RFC_KEY),
            Err(ResponseError::TooLong)
        );
    }
}

//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1) and the permessage-deflate negotiation
//! (RFC 7692 §7.1): which offer a server accepts, and the answer it gives.
//!
//! The one extension readyloop speaks is permessage-deflate, and only in the configuration
//! that keeps an idle connection free of compressor state: no context takeover in either
//! direction. A server may impose both (§7.1.1.1 and §7.1.1.2 let it add the parameters to
//! its answer whatever the offer said), so every acceptable offer gets
//! `permessage-deflate; server_no_context_takeover; client_no_context_takeover`, and each
//! message is compressed and inflated whole by one context per loop (`deflate.rs`).
//!
//! An offer we cannot honour is declined by skipping it — the next offer is tried, and when
//! none is left the handshake succeeds without the extension (§7.1: "the server MUST decline
//! an extension negotiation offer", never fail the handshake). Declined are offers with an
//! unknown parameter, a repeated one, a bad value, and `server_max_window_bits` below 15: our
//! compressor (`miniz_oxide`) cannot promise a window smaller than 32 KiB. Nothing here
//! reads a socket: the functions take the header values and return the answer as a string.

/// The extension token of RFC 7692.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Longest `Sec-WebSocket-Extensions` value the negotiation looks at: 4 KiB (a browser sends
/// about 60 bytes). The request head's own limit already bounds it; this bounds the work of
/// the parser below whatever that limit is set to. Past it the rest of the offers are ignored.
pub const MAX_EXTENSIONS_LEN: usize = 4096;

/// What a connection speaks after the handshake, as far as RSV1 and payloads are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// No extension: RSV1 is a protocol error (RFC 6455 §5.2).
    #[default]
    Off,
    /// permessage-deflate with no context takeover either way: RSV1 on the first frame of a
    /// data message marks it compressed (RFC 7692 §6).
    PerMessageDeflate,
}

/// The accepted permessage-deflate offer: what goes into the `101`'s
/// `Sec-WebSocket-Extensions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateAnswer {
    /// The offer named `server_max_window_bits=15`; §7.1.2.1 wants the answer to name it
    /// too ("the same or smaller value").
    echo_server_window: bool,
}

impl DeflateAnswer {
    /// The response header's value.
    pub fn header_value(self) -> &'static str {
        if self.echo_server_window {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
    }
}

/// Picks the first permessage-deflate offer we can honour from the request's
/// `Sec-WebSocket-Extensions` values (in the order they came; a client lists its offers in
/// preference order, §9.1). `None`: answer without the extension.
pub fn negotiate_deflate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<DeflateAnswer> {
    let mut budget = MAX_EXTENSIONS_LEN;
    for value in values {
        let Some(value) = value.get(..value.len().min(budget)) else {
            return None; // a cut inside a character: the rest is ignored
        };
        budget -= value.len();
        for offer in split_outside_quotes(value, b',') {
            if let Some(answer) = judge_offer(offer) {
                return Some(answer);
            }
        }
        if budget == 0 {
            break;
        }
    }
    None
}

/// One offer (`name *(";" param)`): the answer if it is a permessage-deflate we accept.
fn judge_offer(offer: &str) -> Option<DeflateAnswer> {
    let mut parts = split_outside_quotes(offer, b';');
    let name = parts.next()?;
    if !name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
        return None;
    }
    let mut seen = [false; 4];
    let mut echo_server_window = false;
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(unquote(v.trim_start())?)),
            None => (param, None),
        };
        let slot = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None, // §7.1: a parameter not defined for an offer
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None; // §7.1: the same parameter twice
        }
        match (slot, value) {
            // §7.1.1: these two take no value.
            (0 | 1, None) => {}
            (0 | 1, Some(_)) => return None,
            // §7.1.2.1: a value is required; we only compress with the full 32 KiB window.
            (2, Some(bits)) => match window_bits(bits)? {
                15 => echo_server_window = true,
                _ => return None,
            },
            (2, None) => return None,
            // §7.1.2.2: the client may limit its own window; our inflater takes any window,
            // so we need not answer it (a value, when given, must still be valid).
            (_, Some(bits)) => {
                window_bits(bits)?;
            }
            (_, None) => {}
        }
    }
    Some(DeflateAnswer { echo_server_window })
}

/// §7.1.2: `1*DIGIT` in 8..=15, without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A parameter value: a token, or a quoted-string whose content must be a token (§9.1). The
/// values we accept are plain digits, so an escape (`\`) never needs undoing: it is refused.
fn unquote(value: &str) -> Option<&str> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    let token = !inner.is_empty() && inner.bytes().all(crate::codec::http::fields::is_tchar);
    token.then_some(inner)
}

/// Splits on `sep` where it is not inside a quoted-string; each piece trimmed of spaces and
/// tabs, empty pieces dropped (RFC 9110 §5.6.1 list rules).
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        let mut end = s.len();
        for (i, b) in s.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        rest = s.get(end + 1..);
        Some(s.get(..end).unwrap_or_default().trim_matches([' ', '\t']))
    })
    .filter(|piece| !piece.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    const BOTH_15: &str = "permessage-deflate; server_no_context_takeover; \
        client_no_context_takeover; server_max_window_bits=15";

    macro_rules! offers {
        ($($name:ident: [$($value:expr),*] => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                let got = negotiate_deflate([$($value),*]).map(DeflateAnswer::header_value);
                assert_eq!(got, $want);
            }
        )*};
    }

    offers! {
        // What Chromium and Firefox send.
        rfc7692_browser_offer: ["permessage-deflate; client_max_window_bits"] => Some(BOTH);
        // Python websockets' default offer.
        rfc7692_python_websockets_offer: ["permessage-deflate; client_max_window_bits=12"] => Some(BOTH);
        rfc7692_bare_offer: ["permessage-deflate"] => Some(BOTH);
        rfc7692_name_is_case_insensitive: ["PerMessage-Deflate"] => Some(BOTH);
        rfc7692_7_1_1_both_no_context_takeover: [BOTH] => Some(BOTH);
        rfc7692_7_1_2_1_server_window_15_is_echoed: ["permessage-deflate; server_max_window_bits=15"] => Some(BOTH_15);
        rfc7692_7_1_2_1_quoted_value: ["permessage-deflate; server_max_window_bits=\"15\""] => Some(BOTH_15);
        rfc7692_7_1_2_1_smaller_server_window_declined: ["permessage-deflate; server_max_window_bits=10"] => None;
        // §7.1: several offers, in order of preference: the first we can honour wins.
        rfc7692_7_1_falls_back_to_the_next_offer: [
            "permessage-deflate; server_max_window_bits=10, permessage-deflate; client_max_window_bits"
        ] => Some(BOTH);
        rfc7692_7_1_offers_across_header_fields: [
            "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=9", "permessage-deflate"
        ] => Some(BOTH);
        rfc7692_7_1_unknown_extension_ignored: ["foo; bar=1"] => None;
        rfc7692_7_1_unknown_parameter_declined: ["permessage-deflate; foo"] => None;
        rfc7692_7_1_repeated_parameter_declined: ["permessage-deflate; client_max_window_bits; client_max_window_bits"] => None;
        rfc7692_7_1_1_no_context_takeover_takes_no_value: ["permessage-deflate; server_no_context_takeover=1"] => None;
        rfc7692_7_1_2_1_server_window_needs_a_value: ["permessage-deflate; server_max_window_bits"] => None;
        rfc7692_7_1_2_window_out_of_range: ["permessage-deflate; client_max_window_bits=16"] => None;
        rfc7692_7_1_2_window_below_range: ["permessage-deflate; client_max_window_bits=7"] => None;
        rfc7692_7_1_2_window_leading_zero: ["permessage-deflate; client_max_window_bits=015"] => None;
        rfc7692_7_1_2_window_not_digits: ["permessage-deflate; client_max_window_bits=1x"] => None;
        rfc7692_7_1_2_empty_quoted_value: ["permessage-deflate; client_max_window_bits=\"\""] => None;
        rfc6455_9_1_quoted_comma_does_not_split: ["foo; x=\"a,permessage-deflate\""] => None;
        no_header: [] => None;
        empty_header: ["", " , ,"] => None;
    }

    #[test]
    fn long_header_is_bounded_not_a_panic() {
        let junk = "x; y=\"\u{e9}\",".repeat(1000);
        assert_eq!(
            negotiate_deflate([junk.as_str(), "permessage-deflate"]),
            None
        );
        assert_eq!(
            negotiate_deflate(["\"unterminated, permessage-deflate"]),
            None
        );
        assert_eq!(negotiate_deflate(["permessage-deflate; a=\"\\\""]), None);
    }
}

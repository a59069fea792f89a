//! `Addr`: where a listener listens or a connection goes, an IP socket address (v4 or v6) or a
//! Unix domain socket path, written the way the `listening` lines and the command line write
//! it: `127.0.0.1:8000`, `[::1]:8000`, `unix:/run/readyloop.sock`.
//!
//! Only addresses: a host name is resolved before the loop runs (a lookup can block), by the
//! command line, never here.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The prefix of a Unix socket path on the command line and in `listening` lines.
pub const UNIX_PREFIX: &str = "unix:";

/// An IP socket address or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// TCP over IPv4 or IPv6.
    Ip(SocketAddr),
    /// A Unix domain stream socket (the path may be empty for an unnamed peer).
    Unix(PathBuf),
}

impl Addr {
    /// The IP socket address, if this is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Addr::Ip(a) => Some(*a),
            Addr::Unix(_) => None,
        }
    }

    /// This address as a log line shows a peer (see `AsPeer`).
    pub(crate) fn as_peer(&self) -> AsPeer<'_> {
        AsPeer(self)
    }
}

/// A peer's address in a log line: as `Display` writes it, except that a Unix peer's path is
/// quoted and escaped (`{:?}`: control characters, invalid UTF-8, bidirectional overrides). A
/// client picks that path itself (it may bind its socket anywhere it can write), so written raw
/// it could put terminal escapes or a forged line in the log; an IP address cannot. The runtime
/// imports no codec, hence not `codec::escape`; a `sun_path` is at most 108 bytes, nothing to cut.
pub(crate) struct AsPeer<'a>(&'a Addr);

impl fmt::Display for AsPeer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Addr::Unix(p) if !p.as_os_str().is_empty() => write!(f, "{UNIX_PREFIX}{p:?}"),
            addr => write!(f, "{addr}"),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Addr {
        Addr::Ip(a)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Ip(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "{UNIX_PREFIX}{}", p.display()),
        }
    }
}

impl FromStr for Addr {
    type Err = String;

    /// `IP:PORT` (`[v6]:PORT` for IPv6) or `unix:/path`.
    fn from_str(s: &str) -> Result<Addr, String> {
        if let Some(path) = s.strip_prefix(UNIX_PREFIX) {
            if path.is_empty() {
                return Err(format!("{s:?}: expected unix:/path/to/socket"));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(Addr::Ip)
            .map_err(|_| format!("{s:?} is not an address (IP:PORT, [IPv6]:PORT or unix:/path)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_text() {
        for text in [
            "127.0.0.1:8000",
            "[::1]:0",
            "unix:/tmp/r.sock",
            "unix:rel.sock",
        ] {
            let addr: Addr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        assert_eq!(
            "[::1]:80".parse::<Addr>().unwrap().ip(),
            Some("[::1]:80".parse().unwrap())
        );
        assert!("unix:".parse::<Addr>().is_err());
        assert!("localhost:80"
            .parse::<Addr>()
            .unwrap_err()
            .contains("not an address"));
        assert!("::1:80".parse::<Addr>().is_err());
    }

    #[test]
    fn a_unix_peer_path_is_escaped_in_the_log() {
        let peer = Addr::Unix(PathBuf::from("/tmp/\u{1b}[2J\r[INFO] forged\u{202e}"));
        assert_eq!(
            peer.as_peer().to_string(),
            "unix:\"/tmp/\\u{1b}[2J\\r[INFO] forged\\u{202e}\""
        );
        assert_eq!(Addr::Unix(PathBuf::new()).as_peer().to_string(), "unix:");
        let ip: Addr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(ip.as_peer().to_string(), "127.0.0.1:9");
    }
}

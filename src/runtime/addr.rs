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
}

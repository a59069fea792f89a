//! `readyloop client [--tls [--ca FILE | --insecure]] HOST:PORT`: the interactive line client,
//! on a poll of its own.
//!
//! The address may be a host name (resolved once, before anything is polled; each address it
//! resolves to is tried in turn) or an IP address, `[::1]:10000` for IPv6. Errors are one line
//! naming what failed: `connect 127.0.0.1:1: refused`.
//!
//! The original client blocks in `input()` and so cannot print what the server pushes while the
//! user is typing. Here stdin and the socket are both registered with one `mio::Poll`: whichever
//! is ready is served, so pushed lines appear as they arrive. Stdin EOF half-closes the socket
//! (the server flushes its replies and closes); the server's EOF ends the client.
//!
//! With `--tls` the same loop runs through rustls' buffered `ClientConnection`: plaintext from
//! stdin goes into its writer, `write_tls` puts records on the socket, `read_tls` and
//! `process_new_packets` take them off. The server's loop uses the unbuffered API so that an
//! idle connection holds no buffer; this client has one connection and a user, so the
//! buffered API's simpler driving wins, and being a second implementation it checks the
//! server's from the outside. Stdin EOF sends close_notify before the FIN; a server that
//! closes without one is reported as a truncation.

use crate::runtime::{Addr, Socket};
use log::{debug, trace};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

const USAGE: &str = "\
usage: readyloop client [--tls [--ca FILE | --insecure]] HOST:PORT|unix:/path
Sends each line of stdin to the server and prints what the server sends, as it arrives
(pushed lines too). Stdin EOF half-closes the connection; the server's EOF ends the client.
  HOST:PORT   the line listener, e.g. 127.0.0.1:10000, localhost:10000 or [::1]:10000,
              or a Unix socket, unix:/run/readyloop-line.sock
  --tls       speak TLS (a `serve --line-tls` listener, or HTTPS by hand); the certificate
              is checked against HOST
  --ca FILE   the certificates to trust (PEM), e.g. the server's own self-signed one
  --insecure  trust any certificate (for tests against a self-signed one)
";

/// How long each address may take to accept the connection: 10 s, longer than a LAN needs and
/// short enough that a dead address does not hang an interactive user.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);

/// Restores stdin's blocking mode when the client ends (the flag is shared with the shell).
struct NonBlockingStdin {
    old_flags: libc::c_int,
}

impl NonBlockingStdin {
    fn set() -> io::Result<Self> {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: fcntl on our own stdin fd with F_GETFL/F_SETFL.
        let old_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if old_flags < 0 {
            return Err(io::Error::last_os_error());
        }
        if unsafe { libc::fcntl(fd, libc::F_SETFL, old_flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NonBlockingStdin { old_flags })
    }
}

impl Drop for NonBlockingStdin {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::fcntl(io::stdin().as_raw_fd(), libc::F_SETFL, self.old_flags) };
    }
}

/// What the command line asked for.
#[derive(Debug, Default)]
struct Args {
    target: Option<String>,
    tls: bool,
    ca: Option<std::path::PathBuf>,
    insecure: bool,
}

fn parse(args: Vec<OsString>) -> Result<Option<Args>, String> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let a = arg.to_string_lossy().into_owned();
        match a.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--tls" => out.tls = true,
            "--insecure" => out.insecure = true,
            "--ca" => {
                let file = args.next().ok_or("client: --ca: missing value")?;
                out.ca = Some(file.into());
            }
            _ if a.starts_with('-') => {
                return Err(format!(
                    "client: unknown option {a:?} (see readyloop client --help)"
                ))
            }
            _ if out.target.is_some() => {
                return Err(format!(
                    "client: unexpected argument {a:?} (see readyloop client --help)"
                ))
            }
            _ => out.target = Some(a),
        }
    }
    if (out.ca.is_some() || out.insecure) && !out.tls {
        return Err("client: --ca and --insecure go with --tls".into());
    }
    if out.ca.is_some() && out.insecure {
        return Err("client: --ca FILE or --insecure, not both".into());
    }
    Ok(Some(out))
}

/// Entry point of `readyloop client ARGS`.
pub fn main(args: Vec<OsString>) -> Result<(), Box<dyn std::error::Error>> {
    let Some(args) = parse(args)? else {
        return Ok(());
    };
    let target = args
        .target
        .ok_or("client: missing HOST:PORT (see readyloop client --help)")?;
    // The TLS configuration (and its files) first: a bad --ca fails before any connect.
    let tls = if args.tls {
        Some(tls_session(&target, args.ca.as_deref(), args.insecure)?)
    } else {
        None
    };
    let stream = match target.parse::<Addr>() {
        Ok(Addr::Unix(path)) => {
            let s = std::os::unix::net::UnixStream::connect(&path)
                .map_err(|e| format!("connect unix:{}: {}", path.display(), io_words(&e)))?;
            s.set_nonblocking(true)?;
            Socket::from_fd(s.into())
        }
        _ => {
            let s = connect_any(&resolve(&target)?)?;
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            Socket::from_fd(s.into())
        }
    };
    run(stream, tls)?;
    Ok(())
}

/// A client session for `target`'s host, trusting `ca` (or, with `insecure`, anything).
#[cfg(feature = "tls")]
fn tls_session(
    target: &str,
    ca: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Box<rustls::ClientConnection>, String> {
    use crate::runtime::tls_config;
    let config =
        tls_config::client_config(ca, insecure, &[]).map_err(|e| format!("client: {e}"))?;
    let host = host_of(target);
    let name = tls_config::server_name(host).map_err(|e| format!("client: {e}"))?;
    let conn =
        rustls::ClientConnection::new(config, name).map_err(|e| format!("client: TLS: {e}"))?;
    Ok(Box::new(conn))
}

#[cfg(not(feature = "tls"))]
fn tls_session(_: &str, _: Option<&std::path::Path>, _: bool) -> Result<NoTls, String> {
    Err("client: --tls: this readyloop was built without the `tls` feature".into())
}

/// The host of `HOST:PORT`, `[V6]:PORT` or `IP:PORT`, without brackets: the name a
/// certificate is checked for (here and in `readyloop load --tls`).
pub fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `HOST:PORT` (or `IP:PORT`, `[V6]:PORT`) to addresses, once.
pub fn resolve(target: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if target.starts_with("unix:") {
        return Err(format!(
            "client: {target:?}: Unix sockets are not supported yet"
        ));
    }
    if !target.contains(':') {
        return Err(format!("client: {target:?} is not HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("client: cannot resolve {target:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("client: {target:?} resolves to no address"));
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` that accepts; the error names every address tried.
fn connect_any(addrs: &[SocketAddr]) -> Result<std::net::TcpStream, String> {
    let mut failures = Vec::new();
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => failures.push(format!("connect {addr}: {}", io_words(&e))),
        }
    }
    Err(failures.join("; "))
}

/// What went wrong, in words: `refused`, `timed out`, or the system's message.
pub fn io_words(e: &io::Error) -> String {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => "refused".into(),
        (io::ErrorKind::TimedOut, _) => "timed out".into(),
        (io::ErrorKind::AddrNotAvailable, _) => "address not available".into(),
        (io::ErrorKind::ConnectionReset, _) => "reset".into(),
        (_, Some(libc::EHOSTUNREACH)) => "host unreachable".into(),
        (_, Some(libc::ENETUNREACH)) => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// `io_words` for an `io::ErrorKind` known only by its `Debug` name (`ConnectionRefused`), as
/// the load tool's error counters keep it.
pub fn kind_words(name: &str) -> String {
    match name {
        "ConnectionRefused" => "refused",
        "TimedOut" => "timed out",
        "AddrNotAvailable" => "address not available",
        "ConnectionReset" => "reset",
        "HostUnreachable" => "host unreachable",
        "NetworkUnreachable" => "network unreachable",
        other => other,
    }
    .to_string()
}

/// Stands in for the TLS session in a build without the `tls` feature (never made).
#[cfg(not(feature = "tls"))]
enum NoTls {}

#[cfg(feature = "tls")]
type Session = Box<rustls::ClientConnection>;
#[cfg(not(feature = "tls"))]
type Session = NoTls;

/// Plaintext to the socket, and the socket to plaintext: directly, or through a TLS session.
enum Wire {
    Plain,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls(Session),
}

/// What one read of the socket came to.
enum Got {
    /// Plaintext (perhaps none: a handshake record, or a partial one).
    Data(usize),
    /// The server is done (EOF, or close_notify).
    End,
    /// Nothing more until the next event.
    WouldBlock,
}

impl Wire {
    /// Writes what it can of `outbuf` (draining it), and TLS records waiting to go. Returns
    /// whether bytes are still waiting for the socket.
    fn send(&mut self, stream: &mut Socket, outbuf: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Wire::Plain => {
                while !outbuf.is_empty() {
                    match stream.write(outbuf) {
                        Ok(n) => {
                            trace!("sent {n} bytes");
                            outbuf.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(!outbuf.is_empty())
            }
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                // The writer takes plaintext up to rustls' buffer limit (64 KiB); the rest
                // waits here, so a large stdin is not copied into rustls all at once.
                if !outbuf.is_empty() {
                    let n = tls.writer().write(outbuf)?;
                    outbuf.drain(..n);
                }
                while tls.wants_write() {
                    match tls.write_tls(stream) {
                        Ok(n) => trace!("sent {n} bytes of TLS records"),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                    if !outbuf.is_empty() {
                        let n = tls.writer().write(outbuf)?;
                        outbuf.drain(..n);
                    }
                }
                Ok(!outbuf.is_empty())
            }
            #[cfg(not(feature = "tls"))]
            Wire::Tls(never) => match *never {},
        }
    }

    /// Stdin is done: TLS says so with close_notify (sent by the next `send`), once the
    /// handshake is done (plaintext written before it waits in rustls, and a close_notify
    /// now would overtake it). False while that is not yet the case.
    fn close(&mut self) -> bool {
        match self {
            Wire::Plain => true,
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                if tls.is_handshaking() {
                    return false;
                }
                debug!("sending close_notify");
                tls.send_close_notify();
                true
            }
            #[cfg(not(feature = "tls"))]
            Wire::Tls(never) => match *never {},
        }
    }

    /// One read: plaintext into `out`.
    fn receive(
        &mut self,
        stream: &mut Socket,
        buf: &mut [u8],
        out: &mut impl Write,
    ) -> io::Result<Got> {
        match self {
            Wire::Plain => match stream.read(buf) {
                Ok(0) => Ok(Got::End),
                Ok(n) => {
                    out.write_all(&buf[..n])?;
                    Ok(Got::Data(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Got::End),
                Err(e) => Err(e),
            },
            #[cfg(feature = "tls")]
            Wire::Tls(tls) => {
                let eof = match tls.read_tls(stream) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::WouldBlock),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Got::End),
                    Err(e) => return Err(e),
                };
                let state = tls
                    .process_new_packets()
                    .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                let mut n = 0;
                let want = state.plaintext_bytes_to_read();
                while n < want {
                    let got = tls.reader().read(buf)?;
                    if got == 0 {
                        break;
                    }
                    out.write_all(&buf[..got])?;
                    n += got;
                }
                if state.peer_has_closed() {
                    debug!("close_notify from the server");
                    return Ok(Got::End);
                }
                if eof {
                    if tls.is_handshaking() {
                        return Err(io::Error::other(
                            "TLS: the server closed during the handshake",
                        ));
                    }
                    // EOF without close_notify: what was printed may be cut short.
                    return Err(io::Error::other(
                        "TLS: the server closed without close_notify (the reply may be truncated)",
                    ));
                }
                Ok(Got::Data(n))
            }
            #[cfg(not(feature = "tls"))]
            Wire::Tls(never) => match *never {},
        }
    }
}

/// Shuttles stdin → `std_stream` and `std_stream` → stdout until the server closes, through
/// `tls` when given.
fn run(mut stream: Socket, tls: Option<Session>) -> io::Result<()> {
    let mut wire = tls.map_or(Wire::Plain, Wire::Tls);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut stream, SOCKET, Interest::READABLE)?;
    let stdin_fd = io::stdin().as_raw_fd();
    let _guard = NonBlockingStdin::set()?;
    // A regular file (`< file`) cannot be registered with epoll (EPERM): it is always ready,
    // so read it as if an event had said so.
    let mut stdin_polled =
        match poll
            .registry()
            .register(&mut SourceFd(&stdin_fd), STDIN, Interest::READABLE)
        {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => false,
            Err(e) => return Err(e),
        };
    let mut stdin_open = true;
    let mut close_sent = false;
    let mut half_closed = false;
    let mut outbuf: Vec<u8> = Vec::new();
    let mut write_armed = false;
    // A TLS client speaks first (its ClientHello): try a write before any event.
    let mut try_write = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(16);
    let mut stdout = io::stdout();
    loop {
        // A file on stdin is always ready: poll without waiting, but still poll, so replies are
        // read while it is sent. Stop taking stdin while 1 MiB waits for the socket.
        let file_ready = stdin_open && !stdin_polled && outbuf.len() < 1 << 20;
        let mut stdin_ready = file_ready;
        let mut socket_readable = false;
        let timeout = (file_ready || try_write).then_some(std::time::Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            match ev.token() {
                STDIN => stdin_ready = true,
                _ => {
                    socket_readable |= ev.is_readable();
                    try_write |= ev.is_writable();
                }
            }
        }
        if stdin_ready && stdin_open {
            loop {
                match io::stdin().lock().read(&mut buf) {
                    Ok(0) => {
                        debug!("stdin EOF: half-closing the connection");
                        stdin_open = false;
                        if stdin_polled {
                            let _ = poll.registry().deregister(&mut SourceFd(&stdin_fd));
                            stdin_polled = false;
                        }
                        break;
                    }
                    Ok(n) => {
                        outbuf.extend_from_slice(&buf[..n]);
                        if !stdin_polled {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if !stdin_open && outbuf.is_empty() && !close_sent && wire.close() {
            close_sent = true;
            try_write = true;
        }
        // Bytes to write come from stdin (plaintext) or from the TLS session (records of
        // its own: the handshake, close_notify): try whenever either may have some.
        if !outbuf.is_empty() || try_write || socket_readable || stdin_ready {
            let want_write = wire.send(&mut stream, &mut outbuf)?;
            try_write = false;
            if want_write != write_armed {
                let interest = if want_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry().reregister(&mut stream, SOCKET, interest)?;
                write_armed = want_write;
            }
            if close_sent && !want_write && !half_closed {
                let _ = stream.shutdown_write();
                half_closed = true;
            }
        }
        if socket_readable {
            loop {
                match wire.receive(&mut stream, &mut buf, &mut stdout)? {
                    Got::End => {
                        stdout.flush()?;
                        return Ok(());
                    }
                    Got::Data(n) => {
                        if n > 0 {
                            stdout.flush()?;
                        }
                        // TLS may have records to answer with (a key update, tickets):
                        // the write side gets a turn after this read.
                        try_write = true;
                    }
                    Got::WouldBlock => break,
                }
            }
        }
    }
}

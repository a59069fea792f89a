//! `readyloop client HOST:PORT`: the interactive line client, on a poll of its own.
//!
//! The address may be a host name (resolved once, before anything is polled; each address it
//! resolves to is tried in turn) or an IP address, `[::1]:10000` for IPv6. Errors are one line
//! naming what failed: `connect 127.0.0.1:1: refused`.
//!
//! The original client blocks in `input()` and so cannot print what the server pushes while the
//! user is typing. Here stdin and the socket are both registered with one `mio::Poll`: whichever
//! is ready is served, so pushed lines appear as they arrive. Stdin EOF half-closes the socket
//! (the server flushes its replies and closes); the server's EOF ends the client.

use log::{debug, trace};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;

const USAGE: &str = "\
usage: readyloop client HOST:PORT
Sends each line of stdin to the server and prints what the server sends, as it arrives
(pushed lines too). Stdin EOF half-closes the connection; the server's EOF ends the client.
  HOST:PORT   the line listener, e.g. 127.0.0.1:10000, localhost:10000 or [::1]:10000
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

/// Entry point of `readyloop client ARGS`.
pub fn main(args: Vec<OsString>) -> Result<(), Box<dyn std::error::Error>> {
    let mut target = None;
    for arg in args {
        let a = arg.to_string_lossy().into_owned();
        match a.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(());
            }
            _ if a.starts_with('-') => {
                return Err(
                    format!("client: unknown option {a:?} (see readyloop client --help)").into(),
                )
            }
            _ if target.is_some() => {
                return Err(format!(
                    "client: unexpected argument {a:?} (see readyloop client --help)"
                )
                .into())
            }
            _ => target = Some(a),
        }
    }
    let target = target.ok_or("client: missing HOST:PORT (see readyloop client --help)")?;
    let addrs = resolve(&target)?;
    let stream = connect_any(&addrs)?;
    run(stream)?;
    Ok(())
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

/// Shuttles stdin → `std_stream` and `std_stream` → stdout until the server closes.
pub fn run(std_stream: std::net::TcpStream) -> io::Result<()> {
    std_stream.set_nonblocking(true)?;
    std_stream.set_nodelay(true)?;
    let mut stream = TcpStream::from_std(std_stream);
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
    let mut outbuf: Vec<u8> = Vec::new();
    let mut write_armed = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(16);
    let mut stdout = io::stdout();
    loop {
        // A file on stdin is always ready: poll without waiting, but still poll, so replies are
        // read while it is sent. Stop taking stdin while 1 MiB waits for the socket.
        let file_ready = stdin_open && !stdin_polled && outbuf.len() < 1 << 20;
        let mut stdin_ready = file_ready;
        let mut socket_readable = false;
        let mut socket_writable = false;
        let timeout = file_ready.then_some(std::time::Duration::ZERO);
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
                    socket_writable |= ev.is_writable();
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
        if !outbuf.is_empty() || socket_writable {
            while !outbuf.is_empty() {
                match stream.write(&outbuf) {
                    Ok(n) => {
                        trace!("sent {n} bytes");
                        outbuf.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let want_write = !outbuf.is_empty();
            if want_write != write_armed {
                let interest = if want_write {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                poll.registry().reregister(&mut stream, SOCKET, interest)?;
                write_armed = want_write;
            }
        }
        if !stdin_open && outbuf.is_empty() {
            let _ = stream.shutdown(Shutdown::Write);
        }
        if socket_readable {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        stdout.flush()?;
                        return Ok(());
                    }
                    Ok(n) => {
                        stdout.write_all(&buf[..n])?;
                        stdout.flush()?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

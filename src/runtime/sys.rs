//! What the loop needs from the OS beyond mio: the descriptor limit, and sockets set up the way
//! a server wants them.
//!
//! Every connection is a file descriptor, and the default soft limit (often 1024) is far below
//! what a server holding tens of thousands of idle connections needs. Like nginx'
//! `worker_rlimit_nofile`, we raise the soft limit to the hard limit at start-up; raising the
//! hard limit itself needs privileges and is the administrator's call.
//!
//! Listening sockets are made in one place (`bind_socket`), for the loop and for the
//! supervisor of `--workers` alike; so are outgoing sockets with a chosen source address
//! (`connect_from`, the load generator's way past the ephemeral port range).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// A TCP socket bound to `addr` with SO_REUSEADDR (and SO_REUSEPORT when `reuse_port`: several
/// worker processes sharing one port, each with its own accept queue), non-blocking, not yet
/// listening.
pub fn bind_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<socket2::Socket> {
    let socket = tcp_socket(addr)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A Unix stream socket bound to `path`, non-blocking, not yet listening. A socket file left
/// by a run that did not clean up (nobody accepts on it) is replaced; a live one, or a file
/// that is not a socket, is an error (`AddrInUse`).
pub fn bind_unix(path: &Path) -> io::Result<socket2::Socket> {
    let bind = || -> io::Result<socket2::Socket> {
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.bind(&socket2::SockAddr::unix(path)?)?;
        Ok(socket)
    };
    match bind() {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            // A connect to a Unix socket never waits: it is refused or queued at once.
            let refused = std::os::unix::net::UnixStream::connect(path)
                .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
            if !(is_socket && refused) {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            bind()
        }
        other => other,
    }
}

/// A non-blocking TCP socket of `addr`'s family.
fn tcp_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A non-blocking `connect` to `addr` from source address `from`, in progress. The kernel picks
/// the port at connect time, per (source, destination) pair (IP_BIND_ADDRESS_NO_PORT), so each
/// source address gets the whole ephemeral range instead of one port reserved per `bind`.
pub fn connect_from(from: IpAddr, addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let socket = tcp_socket(addr)?;
    let one: libc::c_int = 1;
    // SAFETY: a plain setsockopt with a valid fd and an int-sized option value. Failing is
    // harmless (the port is then chosen at bind), so the result is not checked.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(&SocketAddr::new(from, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit. Returns `(before, after)`.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it has no other effects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// Makes the allocator give every large buffer (128 KiB and up) its own mapping, returned to
/// the system when freed. glibc otherwise raises that threshold each time such a buffer is
/// freed, up to 32 MiB, after which large buffers come from the heap and their memory stays
/// with the process: a burst of clients sending big messages then leaves the server's
/// resident size at its peak for good. A no-op where the C library is not glibc.
pub fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the loop starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Resident set size of process `pid` (or of this process with `None`), in bytes, from
/// `/proc/PID/statm`. Used by benchmarks and the load generator's `--server-pid`.
pub fn rss_bytes(pid: Option<u32>) -> io::Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let text = std::fs::read_to_string(path)?;
    let resident: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("unexpected statm format"))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Ok(resident * page)
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_reaches_hard_limit() {
        let (_, after) = super::raise_nofile_limit().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        assert_eq!(after, lim.rlim_max);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }

    #[test]
    fn rss_is_reported() {
        assert!(super::rss_bytes(None).unwrap() > 0);
    }
}

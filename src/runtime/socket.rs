//! `Socket`: a connected stream socket as the loop sees it, a file descriptor and nothing else,
//! whatever its family (TCP over IPv4 or IPv6, or a Unix domain socket).
//!
//! The loop needs six things from a connected socket: `read`, a vectored write, `shutdown` of
//! the sending side, the pending error of a non-blocking `connect`, whether that connect has
//! completed, and registration with the poll. All are the same system calls for every family,
//! so one type serves them all and a connection stays 24 bytes: the fd is 4 of them. Writes use
//! `send` (one piece) or `sendmsg` (several) with `MSG_NOSIGNAL`, so a peer that has gone away
//! is an `EPIPE` error here, never a `SIGPIPE` that kills a host which did not ignore it.

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A connected (or connecting), non-blocking stream socket.
#[derive(Debug)]
pub struct Socket(OwnedFd);

/// Maps a `-1` return to the `errno` error.
fn check(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

impl Socket {
    /// A socket from a descriptor that is already non-blocking.
    pub fn from_fd(fd: OwnedFd) -> Socket {
        Socket(fd)
    }

    /// `read(2)` into `buf`: `Ok(0)` is the peer's EOF.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        check(unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) })
    }

    /// One `send(2)`, or `sendmsg(2)` for several slices, of every slice in `bufs`, without
    /// SIGPIPE.
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let [one] = bufs {
            // Most flushes are one piece (a reply, a shared broadcast frame): `send(2)` skips
            // the kernel's copy and check of a `msghdr` and its iovec array, which made
            // `sendmsg` measurably dearer than the floor's plain `write` (benches/at_floor.rs).
            // SAFETY: `one` is valid for reads of `one.len()` bytes.
            return check(unsafe {
                libc::send(
                    self.fd(),
                    one.as_ptr().cast(),
                    one.len(),
                    libc::MSG_NOSIGNAL,
                )
            });
        }
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: `msg` points at `bufs.len()` valid iovecs for the duration of the call.
        check(unsafe { libc::sendmsg(self.fd(), &msg, libc::MSG_NOSIGNAL) })
    }

    /// `shutdown(SHUT_WR)`: our FIN; the peer may still send.
    pub fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: shutdown on our own fd.
        check(unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) } as libc::ssize_t).map(|_| ())
    }

    /// `SO_ERROR`: the outcome of a non-blocking `connect`, once it is known.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `err`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        check(rc as libc::ssize_t)?;
        Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
    }

    /// Whether a non-blocking `connect` has completed (`getpeername` succeeds); `NotConnected`
    /// while it is still in progress.
    pub fn check_connected(&self) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len`.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let rc = unsafe {
            libc::getpeername(
                self.fd(),
                (&mut addr as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        check(rc as libc::ssize_t).map(|_| ())
    }

    /// `TCP_NODELAY` (a no-op error on a Unix socket, which has no Nagle to turn off).
    pub fn set_nodelay(&self) -> io::Result<()> {
        let one: libc::c_int = 1;
        // SAFETY: a plain setsockopt with an int-sized value.
        let rc = unsafe {
            libc::setsockopt(
                self.fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        check(rc as libc::ssize_t).map(|_| ())
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// `Read` and `Write` for code that drives a socket itself (the interactive client, rustls'
/// buffered API), on the same system calls.
impl io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Socket::read(self, buf)
    }
}

impl io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Socket::write_vectored(self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd()).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd()).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_writes_and_shuts_down_a_unix_pair() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let s = Socket::from_fd(ours.into());
        let mut buf = [0u8; 8];
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        theirs.write_all(b"ping").unwrap();
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        let n = s
            .write_vectored(&[IoSlice::new(b"po"), IoSlice::new(b"ng")])
            .unwrap();
        assert_eq!(n, 4);
        s.shutdown_write().unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"pong");
        assert!(s.check_connected().is_ok());
        assert!(s.take_error().unwrap().is_none());
        drop(theirs);
        // The peer is gone: a write is an error, not a SIGPIPE.
        let err = loop {
            match s.write_vectored(&[IoSlice::new(b"x")]) {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}

//! The floors: for each hot path, the least a readiness loop must do, on raw `libc` epoll with
//! nothing else, so that readyloop's CPU per operation can be read as a ratio against it.
//!
//! One loop shape for all of them (`run`): a non-blocking listener and every connection in one
//! edge-triggered epoll set, each socket registered once for `IN | OUT | RDHUP` and never
//! modified (no `epoll_ctl` after the `ADD`). On readable: read into one buffer shared by the
//! whole loop until a short read (which drains a TCP socket: more data raises a new edge) or
//! `EAGAIN`, and hand the bytes to the path's `Floor`; only an unfinished tail is kept per
//! connection. A path writes its answer for one read with one `write`; what the socket refuses
//! waits for the next `EPOLLOUT` edge. No parsing beyond the framing, no timers, no limits, no
//! logging: these are yardsticks, not servers. `hello` does not even register its sockets:
//! accept, write, close.
//!
//! Not a bench target (Cargo only picks up `benches/*.rs`): `at_floor` runs these as child
//! processes of itself (`serve`), exactly as it runs readyloop and the tokio baselines.

pub mod hello;
pub mod http;
pub mod line;
pub mod ws;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};

/// The size of the loop's one receive buffer: 64 KiB, readyloop's own.
const READ_BUF: usize = 64 * 1024;
/// Events taken per `epoll_wait`: 1,024, as mio's users commonly ask.
const EVENTS: usize = 1024;
/// The token of the listener (connections use their fd, which is never this).
const LISTENER: u64 = u64::MAX;

/// What a path does with the bytes of its connections.
pub trait Floor {
    /// A new connection `fd`.
    fn on_open(&mut self, _conns: &mut Conns, _fd: RawFd) {}
    /// `input` arrived on `fd` (its kept tail first); returns how many bytes were used, the
    /// rest is kept for the next read.
    fn on_input(&mut self, conns: &mut Conns, fd: RawFd, input: &[u8]) -> usize;
    /// `fd` is gone.
    fn on_close(&mut self, _fd: RawFd) {}
}

/// One connection: its unfinished input and the output its socket refused.
#[derive(Default)]
struct Conn {
    tail: Vec<u8>,
    unsent: Vec<u8>,
    close_when_sent: bool,
}

/// The open connections, indexed by fd.
#[derive(Default)]
pub struct Conns {
    by_fd: Vec<Option<Conn>>,
    closing: Vec<RawFd>,
}

impl Conns {
    /// Writes `bytes` to `fd` now (one `write`), keeping what the socket refuses.
    pub fn send(&mut self, fd: RawFd, bytes: &[u8]) {
        let Some(Some(conn)) = self.by_fd.get_mut(fd as usize) else {
            return;
        };
        if !conn.unsent.is_empty() {
            conn.unsent.extend_from_slice(bytes);
            return;
        }
        match write(fd, bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => conn.unsent.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.unsent.extend_from_slice(bytes),
            Err(_) => self.closing.push(fd),
        }
    }

    /// Closes `fd` once what it was sent is written.
    pub fn close_when_sent(&mut self, fd: RawFd) {
        if let Some(Some(conn)) = self.by_fd.get_mut(fd as usize) {
            if conn.unsent.is_empty() {
                self.closing.push(fd);
            } else {
                conn.close_when_sent = true;
            }
        }
    }

    fn flush(&mut self, fd: RawFd) {
        let Some(Some(conn)) = self.by_fd.get_mut(fd as usize) else {
            return;
        };
        while !conn.unsent.is_empty() {
            match write(fd, &conn.unsent) {
                Ok(n) => {
                    conn.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closing.push(fd);
                    return;
                }
            }
        }
        if conn.close_when_sent {
            self.closing.push(fd);
        }
    }
}

/// A raw epoll instance.
pub struct Epoll(RawFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; the fd is ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    /// Adds `fd`, edge-triggered, with `events`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLET as u32,
            u64: token,
        };
        // SAFETY: `ev` lives across the call.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits without a timeout for events into `events`, returning how many came.
    pub fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        loop {
            // SAFETY: the buffer is `events.len()` entries long.
            let n =
                unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, -1) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A non-blocking listener on 127.0.0.1 (port 0), as a raw fd, and its address.
pub fn listener() -> io::Result<(RawFd, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    Ok((l.into_raw_fd(), addr))
}

/// One `accept4` (non-blocking, close-on-exec): `None` once the backlog is empty.
pub fn accept(listener: RawFd) -> Option<RawFd> {
    loop {
        // SAFETY: null address pointers are allowed.
        let fd = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            return Some(fd);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
            _ => return None,
        }
    }
}

/// `TCP_NODELAY` on `fd`, as readyloop and the tokio baselines set it.
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// One `write`.
pub fn write(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length come from a live slice.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `read`: `Ok(0)` is end of stream.
fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length come from a live slice.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `close`.
pub fn close(fd: RawFd) {
    // SAFETY: the fd is ours and closed once.
    unsafe { libc::close(fd) };
}

/// Runs `floor` on a listener of its own until the process is killed, printing
/// `listening KIND ADDR` first (the readyloop binary's line).
pub fn run(kind: &str, mut floor: impl Floor) -> io::Result<()> {
    let (listen_fd, addr) = listener()?;
    let ep = Epoll::new()?;
    ep.add(listen_fd, LISTENER, libc::EPOLLIN as u32)?;
    announce(kind, addr);
    let mut conns = Conns::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut buf = vec![0u8; READ_BUF];
    let interest = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
    loop {
        let n = ep.wait(&mut events)?;
        for ev in &events[..n] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                while let Some(fd) = accept(listen_fd) {
                    set_nodelay(fd);
                    ep.add(fd, fd as u64, interest)?;
                    let i = fd as usize;
                    if conns.by_fd.len() <= i {
                        conns.by_fd.resize_with(i + 1, || None);
                    }
                    conns.by_fd[i] = Some(Conn::default());
                    floor.on_open(&mut conns, fd);
                }
                continue;
            }
            let fd = token as RawFd;
            if flags & libc::EPOLLOUT as u32 != 0 {
                conns.flush(fd);
            }
            if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                == 0
            {
                continue;
            }
            loop {
                match read(fd, &mut buf) {
                    Ok(0) => {
                        conns.closing.push(fd);
                        break;
                    }
                    Ok(got) => {
                        let Some(Some(conn)) = conns.by_fd.get_mut(fd as usize) else {
                            break;
                        };
                        if conn.tail.is_empty() {
                            let used = floor.on_input(&mut conns, fd, &buf[..got]);
                            if used < got {
                                if let Some(Some(conn)) = conns.by_fd.get_mut(fd as usize) {
                                    conn.tail.extend_from_slice(&buf[used..got]);
                                }
                            }
                        } else {
                            let mut input = std::mem::take(&mut conn.tail);
                            input.extend_from_slice(&buf[..got]);
                            let used = floor.on_input(&mut conns, fd, &input);
                            input.drain(..used);
                            if let Some(Some(conn)) = conns.by_fd.get_mut(fd as usize) {
                                conn.tail = input;
                            }
                        }
                        if got < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        conns.closing.push(fd);
                        break;
                    }
                }
            }
        }
        // Reap at the end of the batch, so a reused fd is not named by a stale event.
        while let Some(fd) = conns.closing.pop() {
            if let Some(slot) = conns.by_fd.get_mut(fd as usize) {
                if slot.take().is_some() {
                    floor.on_close(fd);
                    close(fd);
                }
            }
        }
    }
}

/// Prints the first line the bench waits for.
pub fn announce(kind: &str, addr: SocketAddr) {
    use std::io::Write;
    println!("listening {kind} {addr}");
    let _ = io::stdout().flush();
}

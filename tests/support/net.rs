//! Raw blocking sockets on loopback, every call bounded: `connect` (read and write timeouts
//! of `IO_TIMEOUT`), reading exactly `n` bytes or to EOF, the line echo round trip, poll(2)
//! over several sockets, writing into a peer that does not read (`stuff`), and the numbered
//! lines that make a lost or reordered byte visible. The HTTP and WebSocket clients build on
//! `connect`.

use super::IO_TIMEOUT;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

/// A blocking client socket with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// True for the error of a read or write that ran into its socket timeout.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads exactly `n` bytes (panics on timeout or early EOF).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Reads until EOF (panics on timeout or error).
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("reading to EOF (got {} bytes): {e}", all.len()));
    all
}

/// Asserts the next read is a clean EOF.
pub fn expect_eof(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("expected EOF, got error {e}"),
    }
}

/// Writes `line` and expects it echoed.
pub fn echo(s: &mut TcpStream, line: &str) {
    s.write_all(line.as_bytes()).unwrap();
    let got = read_n(s, line.len());
    assert_eq!(String::from_utf8_lossy(&got), line);
}

/// Which of `streams` are readable (data or EOF) within `limit`, via poll(2).
pub fn readable(streams: &[&TcpStream], limit: Duration) -> Vec<bool> {
    let mut fds: Vec<libc::pollfd> = streams
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the duration of the call.
    let rc = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            limit.as_millis() as libc::c_int,
        )
    };
    assert!(rc >= 0, "poll: {}", io::Error::last_os_error());
    fds.iter().map(|p| p.revents != 0).collect()
}

/// `n` bytes of numbered lines of `len` bytes each (the last may be shorter but is complete),
/// so a lost, duplicated or reordered line shows up as a mismatch.
pub fn numbered_lines(n: usize, len: usize) -> Vec<u8> {
    assert!(len >= 12);
    let mut out = Vec::with_capacity(n + len);
    let mut i = 0u64;
    while out.len() < n {
        let line_len = len.min(n - out.len()).max(12);
        let start = out.len();
        write!(out, "{i:010}").unwrap();
        while out.len() < start + line_len - 1 {
            out.push(b'a' + (out.len() % 26) as u8);
        }
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Writes as much of `data` as the peer accepts without reading on our side: non-blocking
/// writes until all is written or the socket has refused bytes for `stall`. Returns how many
/// bytes were accepted (the stream is left blocking again).
pub fn stuff(s: &mut TcpStream, data: &[u8], stall: Duration) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut stalled_since: Option<Instant> = None;
    while sent < data.len() {
        match s.write(&data[sent..]) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    sent
}

/// Raises this process' soft RLIMIT_NOFILE to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    readyloop::runtime::sys::raise_nofile_limit()
        .expect("raise RLIMIT_NOFILE")
        .1
}

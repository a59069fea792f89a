//! `Acceptor`: the listeners of a loop. Accept until `WouldBlock`, hand each new connection to
//! the handler, and survive running out of descriptors.
//!
//! EMFILE is the classic trap of a readiness loop: the pending connection stays in the backlog,
//! the listener stays readable, and every `accept` fails again at once, so a naive loop spins at
//! 100% CPU. Instead the acceptor deregisters its listeners, logs once, and tries again when a
//! connection closes (a descriptor came free) or `ACCEPT_RETRY` passes.

use super::addr::Addr;
use super::config::Stats;
use super::connection::Phase;
use super::core::{Core, IO};
use super::handler::{with_conn, Handler};
use super::id::ListenerId;
use super::socket::Socket;
use super::states::States;
use super::sys;
use log::{debug, info, trace, warn, Level};
use mio::net::{TcpListener, UnixListener};
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Listener `i` uses token `LISTENER_BASE - i` (the top of the token space is the loop's own:
/// the waker and the signal pipe sit above it).
pub(crate) const LISTENER_BASE: usize = usize::MAX - 2;
/// At most this many listeners per loop (tokens below are connection keys).
pub(crate) const MAX_LISTENERS: usize = 64;
/// Pause before retrying `accept` after EMFILE/ENFILE, unless a connection closes sooner.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Backlog for listeners we bind (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket of either family.
enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ListenSocket {
    /// One `accept4(2)`: the new connection (already non-blocking) and its peer.
    fn accept(&self) -> io::Result<(Socket, Addr)> {
        // SAFETY (both arms): `into_raw_fd` hands over sole ownership of a valid descriptor.
        match self {
            ListenSocket::Tcp(l) => l.accept().map(|(s, peer)| {
                let fd = unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) };
                (Socket::from_fd(fd), Addr::Ip(peer))
            }),
            ListenSocket::Unix(l) => l.accept().map(|(s, peer)| {
                let fd = unsafe { OwnedFd::from_raw_fd(s.into_raw_fd()) };
                let path = peer
                    .as_pathname()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                (Socket::from_fd(fd), Addr::Unix(path))
            }),
        }
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            ListenSocket::Tcp(l) => l,
            ListenSocket::Unix(l) => l,
        }
    }
}

struct Listener {
    /// `None` once closed (shutdown).
    socket: Option<ListenSocket>,
    /// Every connection accepted here speaks TLS with this configuration.
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    name: String,
    addr: Addr,
    /// A Unix socket file this loop created, removed when the listener closes.
    owned_path: Option<PathBuf>,
    /// `TCP_NODELAY` was set on the listening socket before `listen`, and Linux copies it to
    /// every socket accepted there: no `setsockopt` per connection (one syscall of the seven a
    /// hello connection costs; benches/at_floor.rs). False for listeners handed to us already
    /// listening, whose backlog may hold connections made before the option was set.
    nodelay_inherited: bool,
}

/// The listeners, and whether accepting is paused for want of descriptors.
#[derive(Default)]
pub(crate) struct Acceptor {
    listeners: Vec<Listener>,
    paused_until: Option<Instant>,
    /// Accepts failed for want of descriptors and the backlog has not been drained since: the
    /// warning is logged once per such episode, not on every `ACCEPT_RETRY` (nor again when
    /// closing connections lets the backlog in one descriptor at a time).
    starved: bool,
}

/// The token of listener `index`, and back.
pub(crate) fn listener_token(index: usize) -> Token {
    Token(LISTENER_BASE - index)
}

/// The listener index a token names, if it names one.
pub(crate) fn listener_index(token: Token) -> Option<usize> {
    (token.0 <= LISTENER_BASE && token.0 > LISTENER_BASE - MAX_LISTENERS)
        .then(|| LISTENER_BASE - token.0)
}

impl Acceptor {
    /// Binds `addr` (an IP address, see `sys::bind_socket`; or a Unix socket path, see
    /// `sys::bind_unix`), listens with a 4096 backlog, and serves it.
    pub(crate) fn listen(
        &mut self,
        registry: &Registry,
        stats: &mut Stats,
        name: &str,
        addr: &Addr,
        reuse_port: bool,
        nodelay: bool,
    ) -> io::Result<(ListenerId, Addr)> {
        let mut nodelay_inherited = false;
        let (socket, owned_path) = match addr {
            Addr::Ip(ip) => {
                let socket = sys::bind_socket(*ip, reuse_port)?;
                nodelay_inherited =
                    nodelay && cfg!(target_os = "linux") && socket.set_tcp_nodelay(true).is_ok();
                socket.listen(LISTEN_BACKLOG)?;
                let std_listener: std::net::TcpListener = socket.into();
                (ListenSocket::Tcp(TcpListener::from_std(std_listener)), None)
            }
            Addr::Unix(path) => {
                let socket = sys::bind_unix(path)?;
                socket.listen(LISTEN_BACKLOG)?;
                let std_listener: std::os::unix::net::UnixListener = socket.into();
                let l = ListenSocket::Unix(UnixListener::from_std(std_listener));
                (l, Some(path.clone()))
            }
        };
        let id = self.add(registry, stats, name, socket, owned_path)?;
        self.listeners[id.0 as usize].nodelay_inherited = nodelay_inherited;
        Ok((id, self.listeners[id.0 as usize].addr.clone()))
    }

    /// Serves an already bound, non-blocking TCP listener.
    pub(crate) fn add_tcp(
        &mut self,
        registry: &Registry,
        stats: &mut Stats,
        name: &str,
        socket: TcpListener,
    ) -> io::Result<ListenerId> {
        self.add(registry, stats, name, ListenSocket::Tcp(socket), None)
    }

    /// Serves an already bound, non-blocking Unix listener (one made by another process, say:
    /// the supervisor of `--workers` hands its listener to every worker).
    pub(crate) fn add_unix(
        &mut self,
        registry: &Registry,
        stats: &mut Stats,
        name: &str,
        socket: UnixListener,
    ) -> io::Result<ListenerId> {
        self.add(registry, stats, name, ListenSocket::Unix(socket), None)
    }

    fn add(
        &mut self,
        registry: &Registry,
        stats: &mut Stats,
        name: &str,
        mut socket: ListenSocket,
        owned_path: Option<PathBuf>,
    ) -> io::Result<ListenerId> {
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(io::Error::other("too many listeners"));
        }
        let index = self.listeners.len();
        registry.register(socket.source(), listener_token(index), Interest::READABLE)?;
        let addr = match &socket {
            ListenSocket::Tcp(l) => Addr::Ip(l.local_addr()?),
            ListenSocket::Unix(l) => {
                let local = l.local_addr()?;
                Addr::Unix(
                    local
                        .as_pathname()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                )
            }
        };
        info!("listening {name} {addr}");
        self.listeners.push(Listener {
            socket: Some(socket),
            #[cfg(feature = "tls")]
            tls: None,
            name: name.to_string(),
            addr,
            owned_path,
            nodelay_inherited: false,
        });
        stats.open.push(0);
        Ok(ListenerId(index as u16))
    }

    /// Makes every connection accepted on `id` from now on speak TLS with `config`.
    #[cfg(feature = "tls")]
    pub(crate) fn set_tls(&mut self, id: ListenerId, config: std::sync::Arc<rustls::ServerConfig>) {
        if let Some(l) = self.listeners.get_mut(id.0 as usize) {
            l.tls = Some(config);
        }
    }

    /// The name and bound address of a listener.
    pub(crate) fn addr(&self, id: ListenerId) -> Option<(&str, &Addr)> {
        self.listeners
            .get(id.0 as usize)
            .map(|l| (l.name.as_str(), &l.addr))
    }

    /// When a paused accept is to be retried.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.paused_until
    }

    /// A descriptor was freed: retry a paused accept now rather than at its deadline. Only
    /// then: doing this on every iteration made the retry immediate, and a loop that cannot
    /// accept spun on EMFILE at 100% CPU.
    pub(crate) fn descriptor_freed(&mut self, now: Instant) {
        if self.paused_until.is_some() {
            self.paused_until = Some(now);
        }
    }

    /// Closes every listener (graceful shutdown).
    pub(crate) fn close_all(&mut self, registry: &Registry) {
        self.paused_until = None;
        for l in &mut self.listeners {
            if let Some(mut socket) = l.socket.take() {
                let _ = registry.deregister(socket.source());
                if let Some(path) = l.owned_path.take() {
                    let _ = std::fs::remove_file(path);
                }
                info!("closed listener {} {}", l.name, l.addr);
            }
        }
    }

    /// Accepts on listener `index` until `WouldBlock`.
    pub(crate) fn accept_ready<H: Handler>(
        &mut self,
        index: usize,
        handler: &mut H,
        core: &mut Core<H::Message>,
        states: &mut States<H::Conn>,
    ) {
        if self.paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(index).and_then(|l| l.socket.as_ref()) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(index, stream, peer, handler, core, states),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.starved {
                        // The backlog is empty: every waiting connection got a descriptor.
                        self.starved = false;
                        info!("accept backlog drained: no longer out of descriptors");
                    }
                    trace!(target: IO, "listener {} accept WouldBlock", self.listeners[index].name);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    core.stats.metrics.accept_paused_total += 1;
                    self.pause(&e, core.now, core.conns.len(), &core.registry);
                    return;
                }
                Err(e) => {
                    core.stats.metrics.accept_errors_total += 1;
                    warn!("listener {} accept failed: {e}", self.listeners[index].name);
                    return;
                }
            }
        }
    }

    /// Out of descriptors: the pending connection stays in the backlog, and every `accept`
    /// would fail again at once. Stop asking until a connection closes or `ACCEPT_RETRY` passes.
    fn pause(&mut self, e: &io::Error, now: Instant, open: usize, registry: &Registry) {
        if self.starved {
            debug!("accept failed again: {e}; still pausing accepts");
        } else {
            self.starved = true;
            warn!(
                "accept failed: {e}; pausing accepts ({open} connections open) until a descriptor frees up"
            );
        }
        self.paused_until = Some(now + ACCEPT_RETRY);
        for l in &mut self.listeners {
            if let Some(socket) = l.socket.as_mut() {
                let _ = registry.deregister(socket.source());
            }
        }
    }

    /// Re-registers the listeners after a pause and accepts what waited in their backlogs.
    pub(crate) fn resume<H: Handler>(
        &mut self,
        handler: &mut H,
        core: &mut Core<H::Message>,
        states: &mut States<H::Conn>,
    ) {
        self.paused_until = None;
        debug!("resuming accepts");
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if let Some(socket) = l.socket.as_mut() {
                // A fresh registration reports readiness that is already there (the backlog).
                let _ =
                    core.registry
                        .register(socket.source(), listener_token(i), Interest::READABLE);
            }
        }
        for i in 0..self.listeners.len() {
            self.accept_ready(i, handler, core, states);
        }
    }

    fn admit<H: Handler>(
        &mut self,
        index: usize,
        stream: Socket,
        peer: Addr,
        handler: &mut H,
        core: &mut Core<H::Message>,
        states: &mut States<H::Conn>,
    ) {
        core.stats.accepted_total += 1;
        let listener = ListenerId(index as u16);
        let Some(state) = handler.accept(listener, &peer) else {
            core.stats.metrics.refused_total += 1;
            debug!(
                "listener {} refused {}",
                self.listeners[index].name,
                peer.as_peer()
            );
            return;
        };
        if core.config.nodelay && peer.ip().is_some() && !self.listeners[index].nodelay_inherited {
            let _ = stream.set_nodelay();
        }
        let id = match core.insert(stream, Some(listener), Phase::Open) {
            Ok(id) => id,
            Err(e) => {
                warn!("register {} failed: {e}", peer.as_peer());
                return;
            }
        };
        core.stats.metrics.handled_total += 1;
        #[cfg(feature = "tls")]
        if let Some(config) = &self.listeners[index].tls {
            match super::tls::TlsSession::server(config.clone(), id.key) {
                Ok(session) => core.start_tls(id.key, session),
                Err(e) => {
                    warn!("TLS session for {peer}: {e}");
                    core.close_now(id.key, None, super::id::CloseReason::Aborted);
                }
            }
        }
        states.insert(id.key, state);
        if log::log_enabled!(target: IO, Level::Trace) {
            core.peers.insert(id.key, peer);
        }
        trace!(target: IO, "{} accepted on {}", core.who(id.key), self.listeners[index].name);
        with_conn(handler, core, states, id, |h, cx, conn| h.on_open(cx, conn));
        #[cfg(feature = "tls")]
        core.arm_handshake_deadline(id.key);
        // Into the poll, now that `on_open` has said what the connection is for (one that
        // closes at once waits for no event: see `Core::insert`). Data may already be waiting
        // (the client wrote right after connecting); the registration reports it as an event,
        // so there is no need to read here.
        core.update_interest(id.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nodelay_inherited` relies on: on Linux a socket accepted on a listener that had
    /// `TCP_NODELAY` set before `listen` has it too, and one accepted on a listener without
    /// it does not (so the per-connection `setsockopt` is still needed there).
    #[test]
    #[cfg(target_os = "linux")]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        for set_on_listener in [true, false] {
            let socket = sys::bind_socket("127.0.0.1:0".parse().unwrap(), false).unwrap();
            if set_on_listener {
                socket.set_tcp_nodelay(true).unwrap();
            }
            socket.listen(LISTEN_BACKLOG).unwrap();
            let listener: std::net::TcpListener = socket.into();
            listener.set_nonblocking(false).unwrap();
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert_eq!(accepted.nodelay().unwrap(), set_on_listener);
        }
    }
}

//! The configuration of `readyloop serve`: which listeners, and each service's settings.
//!
//! Plain data with the documented defaults; the binary fills it from the command line, an
//! embedder builds it by hand. Each service takes the part it needs when the server is made.

#[cfg(feature = "redis")]
use super::redis_relay::RedisUrl;
use crate::runtime::{Addr, Config};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

/// Default capacity of each task thread's queue, counted in **messages**: one per 64 KiB body
/// piece, plus one for each `begin` and `finish`. The buffered body is thus bounded by
/// `queue depth × piece` per thread: 256 × 64 KiB = 16 MiB. A full queue only pauses reading
/// the connection whose piece did not fit (TCP pushes back on the client).
pub const DEFAULT_TASK_QUEUE: usize = 256;

/// Default most uploads in progress at once (`--max-uploads`): 256. An upload is in progress
/// from its start (the head of a raw upload, the `file` part of a form) until its task is done
/// or failed, waiting to begin included. Each may hold one 64 KiB piece in the loop (16 MiB
/// for all 256) and one descriptor for its file on a task thread. Past it a new upload gets
/// `503` with `Retry-After`; below it none is refused for a busy task thread: its reads pause.
pub const DEFAULT_MAX_UPLOADS: usize = 256;

/// Default `--ws-deflate-min`: 192 bytes. A compression costs about 9 µs whatever the size
/// (mostly resetting the per-loop context, which no context takeover needs per message).
/// For JSON-like chat text deflate makes messages up to ~100 bytes *longer*, saves 9% at 128
/// bytes, 26% at 192, 44% at 256 and 85% at 1 KiB; 192 is where the bytes saved start to be
/// worth that pass (`cargo test --release --lib ws_deflate_min_measurement -- --ignored
/// --nocapture` prints the table). A message deflate does not shrink goes out plain anyway.
pub const DEFAULT_WS_DEFLATE_MIN: usize = 192;

/// What the line listener does with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineMode {
    /// Write each line back to its sender.
    Echo,
    /// Write each line to every *other* line client (push instead of poll).
    Broadcast,
}

/// The protocols a listener can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Greeting, then close.
    Hello,
    /// Newline-framed messages.
    Line,
    /// HTTP/1.1 and WebSocket.
    #[cfg(feature = "http")]
    Http,
}

impl Protocol {
    /// Every protocol this build speaks.
    pub const ALL: [Protocol; if cfg!(feature = "http") { 3 } else { 2 }] = [
        #[cfg(feature = "http")]
        Protocol::Http,
        Protocol::Line,
        Protocol::Hello,
    ];

    /// The name used in `listening <name> <addr>` and in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hello => "hello",
            Protocol::Line => "line",
            #[cfg(feature = "http")]
            Protocol::Http => "http",
        }
    }
}

/// Configuration of `readyloop serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listeners to bind, in order; `None` addresses are disabled (`off`). Without the `http`
    /// feature the default is `None`, and `bind` refuses `Some` with a message saying so.
    /// An address is an IP socket address or a Unix socket path (`unix:/path`).
    pub http: Option<Addr>,
    /// See `http`.
    pub line: Option<Addr>,
    /// See `http`.
    pub hello: Option<Addr>,
    /// The hello greeting, sent as is followed by `\n`.
    pub greeting: String,
    /// Echo or broadcast.
    pub line_mode: LineMode,
    /// Longest accepted line, in bytes (without its terminator).
    pub max_line: usize,
    /// Close line and hello connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// SO_REUSEPORT on every listener (worker processes).
    pub reuse_port: bool,
    /// HTTP and WebSocket settings (unused without an HTTP listener, like with `--http off`).
    pub web: WebConfig,
    /// Relay broadcasts through Redis pub/sub to other processes (`--redis`).
    #[cfg(feature = "redis")]
    pub redis: Option<RedisUrl>,
    /// The loop's own tunables.
    pub loop_config: Config,
    /// TLS on the HTTP listener (HTTPS and WSS), and on the line listener with `line_tls`.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsFiles>,
    /// `--line-tls`: the line listener speaks TLS too (with the same certificate).
    #[cfg(feature = "tls")]
    pub line_tls: bool,
    /// Listeners inherited, already listening, from the supervisor of `--workers` (a Unix
    /// socket path cannot be bound twice): served as they are instead of binding the address.
    pub inherited: Vec<(Protocol, RawFd)>,
}

/// A certificate chain and its key, PEM files (`--tls-cert`, `--tls-key`).
#[cfg(feature = "tls")]
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key (not encrypted).
    pub key: std::path::PathBuf,
}

impl ServeConfig {
    /// The name of `protocol`'s listener in `listening` lines: `https` for HTTP with TLS.
    pub fn listener_name(&self, protocol: Protocol) -> &'static str {
        #[cfg(all(feature = "tls", feature = "http"))]
        if protocol == Protocol::Http && self.tls.is_some() {
            return "https";
        }
        protocol.name()
    }

    /// The TLS configuration of `protocol`'s listener, when it has one (this reads the PEM
    /// files: start-up only).
    #[cfg(feature = "tls")]
    pub fn tls_config(
        &self,
        protocol: Protocol,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        use crate::runtime::tls_config::server_config;
        let Some(files) = &self.tls else {
            return Ok(None);
        };
        match protocol {
            #[cfg(feature = "http")]
            Protocol::Http => {
                let alpn = [crate::runtime::tls_config::ALPN_HTTP1];
                server_config(&files.cert, &files.key, &alpn).map(Some)
            }
            Protocol::Line if self.line_tls => {
                server_config(&files.cert, &files.key, &[]).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Checks what the server needs from its environment, so that a bad setting fails before
    /// any listener is bound or any `listening` line printed: the upload dir must be a
    /// directory we can create files in.
    pub fn validate(&self) -> Result<(), String> {
        if cfg!(feature = "http") && self.http.is_some() {
            let dir = &self.web.upload_dir;
            let fail = |e: std::io::Error| format!("--upload-dir {}: {e}", dir.display());
            std::fs::create_dir_all(dir).map_err(fail)?;
            let probe = dir.join(format!(".readyloop-probe-{}", std::process::id()));
            std::fs::File::create(&probe).map_err(fail)?;
            std::fs::remove_file(&probe).map_err(fail)?;
        }
        if self.web.inspect {
            // The page shows every connection's state and the trace log: not for the world.
            match &self.http {
                None => return Err("--inspect needs the HTTP listener (--http ADDR)".into()),
                Some(Addr::Ip(a)) if !a.ip().is_loopback() => {
                    return Err(format!(
                        "--inspect shows the loop's internals: give it a loopback --http address, not {a}"
                    ))
                }
                Some(_) => {}
            }
            if !cfg!(feature = "websocket") {
                return Err(
                    "--inspect: this readyloop was built without the `websocket` feature".into(),
                );
            }
        }
        #[cfg(feature = "tls")]
        if self.line_tls && self.tls.is_none() {
            return Err("--line-tls needs --tls-cert FILE and --tls-key FILE".into());
        }
        #[cfg(feature = "tls")]
        for protocol in Protocol::ALL {
            self.tls_config(protocol)?;
        }
        Ok(())
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            http: cfg!(feature = "http")
                .then(|| Addr::Ip(SocketAddr::from(([127, 0, 0, 1], 8000)))),
            line: Some(Addr::Ip(SocketAddr::from(([127, 0, 0, 1], 10000)))),
            hello: Some(Addr::Ip(SocketAddr::from(([127, 0, 0, 1], 8001)))),
            greeting: "Hello, World!".to_string(),
            line_mode: LineMode::Echo,
            max_line: 65536,
            idle_timeout: None,
            reuse_port: false,
            web: WebConfig::default(),
            #[cfg(feature = "redis")]
            redis: None,
            loop_config: Config::default(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            line_tls: false,
            inherited: Vec::new(),
        }
    }
}

/// HTTP and WebSocket settings of `readyloop serve`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Largest request body, in bytes (`--max-body`, 64 MiB).
    pub max_body: u64,
    /// The request head must arrive within this (`--header-timeout`, 10 s; slowloris).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this (`--keepalive-timeout`, 75 s).
    pub keepalive_timeout: Duration,
    /// Where uploads are stored (`--upload-dir`, `./uploads`).
    pub upload_dir: std::path::PathBuf,
    /// Background task threads (`--task-threads`, 1).
    pub task_threads: usize,
    /// Queued task messages per thread (`--task-queue`, `DEFAULT_TASK_QUEUE`).
    pub task_queue: usize,
    /// Uploads in progress past which a new one gets 503 (`--max-uploads`, `DEFAULT_MAX_UPLOADS`).
    pub max_uploads: usize,
    /// Ping idle WebSocket clients this often, and drop them if no pong came by the next
    /// ping (`--ws-ping`, 30 s; `None` disables).
    pub ws_ping: Option<Duration>,
    /// Largest WebSocket message, in bytes (`--max-message`, 16 MiB; over it → close 1009).
    pub max_message: usize,
    /// Pending output over which a `/ws` client is cut off as too slow (`--ws-max-pending`, 4 MiB).
    pub ws_max_pending: usize,
    /// Accept permessage-deflate offers (`--ws-deflate on|off`; on when built with the
    /// `ws-deflate` feature, which `on` needs).
    pub ws_deflate: bool,
    /// Messages shorter than this are sent uncompressed (`--ws-deflate-min`,
    /// `DEFAULT_WS_DEFLATE_MIN`).
    pub ws_deflate_min: usize,
    /// How `/ws` wraps a broadcast message; `{}` is replaced by the message.
    pub broadcast_format: String,
    /// Allowed `Origin` values for WebSocket upgrades (empty: any).
    pub allowed_origins: Vec<String>,
    /// Serve the live page of the loop, `GET /loop` and its feed `/loop/ws` (`--inspect`;
    /// off: they are `404`). It shows internals, so it needs a loopback HTTP listener.
    pub inspect: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            max_body: 64 << 20,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(75),
            upload_dir: "uploads".into(),
            task_threads: 1,
            task_queue: DEFAULT_TASK_QUEUE,
            max_uploads: DEFAULT_MAX_UPLOADS,
            ws_ping: Some(Duration::from_secs(30)),
            max_message: 16 << 20,
            ws_max_pending: 4 << 20,
            ws_deflate: cfg!(feature = "ws-deflate"),
            ws_deflate_min: DEFAULT_WS_DEFLATE_MIN,
            broadcast_format: "📢 새로운 알림: {}".to_string(),
            allowed_origins: Vec::new(),
            inspect: false,
        }
    }
}

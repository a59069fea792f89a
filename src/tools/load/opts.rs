//! The flags of `readyloop load`, checked before anything connects: every error names the
//! option and the value (`--conns: "abc" is not a number`) and is one line, so a script sees
//! what it got wrong. Host names (`--addr localhost:8000`, `--url http://localhost/`) are
//! resolved here, once, before the loop runs (callbacks must never block on DNS), and files
//! (`--body-file`, `--report`) are opened here, so a typo fails before the run, not after it.

use super::thresholds::Threshold;
use crate::runtime::Addr;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Connections one process opens at most before `--procs auto` adds another: 9,000, well under
/// the 20,000 descriptor limit of this machine's processes, with margin for the loop's own fds.
pub const CONNS_PER_PROC: usize = 9_000;

/// How long the start-up probe waits for each address of a name that resolves to several
/// (`localhost` → `::1`, `127.0.0.1`): 1 s, plenty on a LAN, and a dead address costs no more.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest `--body-file`: 64 MiB, the server's default `--max-body`; the body is held in
/// memory once and shared by every request.
const MAX_BODY_FILE: u64 = 64 << 20;

pub const USAGE: &str = "\
usage: readyloop load MODE [OPTIONS]
modes:
  idle          open --conns connections and hold them (--ws PATH: as WebSockets)
  hello         connect, read the greeting until EOF, check it, repeat, on every slot
  echo          line ping-pong with payload checks (line listener in echo mode)
  ws-echo       WebSocket /echo ping-pong with payload checks
  ws-broadcast  WebSocket /ws: --senders send --msg-rate messages/s in total, every
                connection checks it gets each one once and in order
  http          HTTP/1.1 requests on keep-alive connections, every response parsed
common options:
  --addr HOST:PORT      server address (names resolved once at start; [::1]:8000 for IPv6;
                        unix:/path for a Unix socket)
                        [idle, echo 127.0.0.1:10000; hello :8001; ws-*, http :8000]
  --conns N             connections (hello, http --close: concurrent slots)  [100]
  --duration SECS       how long to measure                                  [10]
  --connect-rate N      connections opened per second, 0 = all at once       [5000]
  --ramp SECS           ramp linearly: the --rate if one is given, else the connections
  --rate R              open model (http, echo, ws-echo): R requests or messages per
                        second in total on a fixed schedule, whatever the responses do;
                        latency counts from each one's intended send time
  --pipeline K          requests or messages in flight per connection (http, echo, ws-echo) [1]
  --threshold EXPR      fail (exit 1) unless EXPR holds, e.g. 'p99<5ms', 'errors<1',
                        'rate>=900' (p50 p90 p99 p999 max in us/ms/s; repeatable)
  --report FILE.html    write a self-contained HTML report (plots, parameters)
  --json                print one JSON object as the last line instead of the table
  --quiet               no progress lines on stderr
http options:
  --url http[s]://HOST[:PORT]/PATH   target (instead of --addr and --path)
  --path PATH           request target                                       [/]
  --method M            request method                                       [GET]
  --header NAME:VALUE   extra request header (repeatable)
  --body-file FILE      request body (Content-Length is set)
  --close               a new connection per request (measures accept rate)
TLS (hello, echo, ws-*, idle, http; https:// URLs turn it on):
  --tls                 speak TLS (handshakes on the loop, as the server does them)
  --ca FILE             the certificates to trust (PEM), e.g. the server's self-signed one
  --insecure            trust any certificate (self-signed test servers)
  --server-name NAME    the name to check the certificate against [the host of --addr/--url]
other mode options:
  --size BYTES          message payload size (echo, ws-*)                    [64]
  --text                ws-echo: text messages instead of binary
  --ws PATH             idle: upgrade to WebSocket on PATH first
  --senders K           ws-broadcast: sending connections                    [1]
  --msg-rate R          ws-broadcast: messages per second, all senders together [100]
  --src-ips A-B|A,B,..  source IPv4 addresses, round-robin (e.g. 127.0.0.2-127.0.0.60)
  --procs N|auto        processes to spread --conns over; auto: one per 9000 conns [auto]
  --server-pid PID      sample the server's RSS at start and end, report bytes per connection
exit status: 0 ok; 1 a threshold missed or a response/payload check failed; 2 bad flags, or
no connection succeeded
";

/// What the load does on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Open connections and hold them.
    Idle,
    /// Connect, read the greeting, repeat.
    Hello,
    /// Line echo round trips.
    Echo,
    /// WebSocket `/echo` round trips.
    WsEcho,
    /// WebSocket `/ws`: a few senders, every connection receives.
    WsBroadcast,
    /// HTTP/1.1 requests, each response parsed and its status counted.
    Http,
}

const MODES: [Mode; 6] = [
    Mode::Idle,
    Mode::Hello,
    Mode::Echo,
    Mode::WsEcho,
    Mode::WsBroadcast,
    Mode::Http,
];

impl Mode {
    /// The mode's name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::Hello => "hello",
            Mode::Echo => "echo",
            Mode::WsEcho => "ws-echo",
            Mode::WsBroadcast => "ws-broadcast",
            Mode::Http => "http",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        MODES.into_iter().find(|m| m.name() == s)
    }

    fn default_port(self) -> u16 {
        match self {
            Mode::Idle | Mode::Echo => 10000,
            Mode::Hello => 8001,
            Mode::WsEcho | Mode::WsBroadcast | Mode::Http => 8000,
        }
    }

    /// Modes whose sends can follow `--rate`'s schedule: those with a request and its answer.
    pub fn has_open_model(self) -> bool {
        matches!(self, Mode::Http | Mode::Echo | Mode::WsEcho)
    }
}

/// The HTTP request of `load http`, as given by the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOpts {
    /// Request method (`--method`), a token.
    pub method: String,
    /// Request target (`--path`, or the path and query of `--url`).
    pub path: String,
    /// `Host` header value: the host and port as written in `--url`/`--addr` (not the address
    /// it resolved to), unless a `--header Host:...` overrides it.
    pub host: String,
    /// `--header NAME:VALUE`, in order.
    pub headers: Vec<(String, String)>,
    /// `--body-file`, as given (passed on to child processes).
    pub body_file: Option<PathBuf>,
    /// Its contents.
    pub body: Vec<u8>,
    /// `--close`: one request per connection.
    pub close: bool,
}

/// The parsed flags.
#[derive(Debug)]
pub struct Opts {
    /// What each connection does.
    pub mode: Mode,
    /// The server: `--addr` or `--url`, resolved once.
    pub addr: Addr,
    /// Connections to open (`--conns`).
    pub conns: usize,
    /// How long to measure (`--duration`).
    pub duration: Duration,
    /// Connections opened per second (`--connect-rate`); 0 means all at once.
    pub connect_rate: f64,
    /// `--ramp`: the rate (open model) or the connections rise linearly over this long.
    pub ramp: Option<Duration>,
    /// `--rate`: the open model's requests or messages per second, all connections together.
    pub rate: Option<f64>,
    /// Print the report as one JSON line (`--json`).
    pub json: bool,
    /// Message payload size in bytes (`--size`).
    pub size: usize,
    /// Requests or messages in flight per connection (`--pipeline`).
    pub pipeline: usize,
    /// ws-echo sends text instead of binary (`--text`).
    pub text: bool,
    /// `--src-ips` as given (passed on to children) and expanded.
    pub src_spec: Option<String>,
    /// The source addresses `src_spec` expands to.
    pub src_ips: Vec<IpAddr>,
    /// idle: upgrade to WebSocket on this path first (`--ws`).
    pub ws: Option<String>,
    /// ws-broadcast: sending connections (`--senders`).
    pub senders: usize,
    /// ws-broadcast: messages per second, all senders together (`--msg-rate`).
    pub msg_rate: f64,
    /// `None`: auto.
    pub procs: Option<usize>,
    /// Sample this process's RSS at start and end (`--server-pid`).
    pub server_pid: Option<u32>,
    /// No progress lines on stderr (`--quiet`).
    pub quiet: bool,
    /// Set in child processes: their index (hidden flag `--child I`).
    pub child: Option<usize>,
    /// `load http`: the request.
    pub http: HttpOpts,
    /// `--threshold`, in order.
    pub thresholds: Vec<Threshold>,
    /// `--report FILE`: the path, and the file, created at start-up so a bad path fails early.
    pub report: Option<(PathBuf, std::fs::File)>,
    /// The command line as given, for the report's parameters.
    pub command_line: String,
    /// `--tls`: every connection speaks TLS.
    pub tls: Option<TlsOpts>,
}

/// `--tls [--ca FILE | --insecure] [--server-name NAME]`, with the configuration built from
/// them once at start-up (a bad `--ca` fails before any connection).
#[derive(Debug, Clone)]
pub struct TlsOpts {
    /// `--ca`, as given (passed on to child processes).
    pub ca: Option<PathBuf>,
    pub insecure: bool,
    /// The name the certificate is checked against (and sent as SNI).
    pub server_name: String,
    #[cfg(feature = "tls")]
    pub config: std::sync::Arc<rustls::ClientConfig>,
    #[cfg(feature = "tls")]
    pub name: rustls::pki_types::ServerName<'static>,
}

impl TlsOpts {
    #[cfg(feature = "tls")]
    fn new(
        ca: Option<PathBuf>,
        insecure: bool,
        server_name: String,
        alpn: &[&[u8]],
    ) -> Result<TlsOpts, String> {
        use crate::runtime::tls_config;
        let config = tls_config::client_config(ca.as_deref(), insecure, alpn)
            .map_err(|e| format!("--tls: {e}"))?;
        let name =
            tls_config::server_name(&server_name).map_err(|e| format!("--server-name: {e}"))?;
        Ok(TlsOpts {
            ca,
            insecure,
            server_name,
            config,
            name,
        })
    }

    #[cfg(not(feature = "tls"))]
    fn new(_: Option<PathBuf>, _: bool, _: String, _: &[&[u8]]) -> Result<TlsOpts, String> {
        Err("--tls: this readyloop was built without the `tls` feature".into())
    }
}

impl Opts {
    /// The WebSocket path to upgrade on, if the mode uses one.
    pub fn ws_path(&self) -> Option<String> {
        match self.mode {
            Mode::WsEcho => Some(self.ws.clone().unwrap_or_else(|| "/echo".into())),
            Mode::WsBroadcast => Some(self.ws.clone().unwrap_or_else(|| "/ws".into())),
            Mode::Idle => self.ws.clone(),
            Mode::Hello | Mode::Echo | Mode::Http => None,
        }
    }

    /// How long opening the connections takes: `--ramp` when it ramps them, else `--conns`
    /// at `--connect-rate`.
    pub fn connect_time(&self) -> Duration {
        match self.ramp {
            Some(r) if self.rate.is_none() => r,
            _ if self.connect_rate > 0.0 => {
                Duration::from_secs_f64(self.conns as f64 / self.connect_rate)
            }
            _ => Duration::ZERO,
        }
    }

    /// Processes to use.
    pub fn proc_count(&self) -> usize {
        match self.procs {
            Some(n) => n.clamp(1, self.conns.max(1)),
            None => self.conns.div_ceil(CONNS_PER_PROC).max(1),
        }
    }

    /// `load http --close`: each request on a connection of its own.
    pub fn closes(&self) -> bool {
        self.mode == Mode::Http && self.http.close
    }
}

/// `--FLAG: "VALUE" is not a number` and friends: the option and the value in every message.
fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("--{flag}: {v:?} is not a number"))
}

fn positive(flag: &str, v: &str) -> Result<usize, String> {
    match number(flag, v)? {
        0 => Err(format!("--{flag}: {v:?} must be at least 1")),
        n => Ok(n),
    }
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    let f: f64 = number(flag, v)?;
    if !(f.is_finite() && f >= 0.0) || f > 1e9 {
        return Err(format!("--{flag}: {v:?} is not a number of seconds"));
    }
    Ok(Duration::from_secs_f64(f))
}

fn per_second(flag: &str, v: &str) -> Result<f64, String> {
    let f: f64 = number(flag, v)?;
    if !(f.is_finite() && f >= 0.0) {
        return Err(format!("--{flag}: {v:?} is not a rate per second"));
    }
    Ok(f)
}

/// `127.0.0.2-127.0.0.60` (an IPv4 range, inclusive) or `A,B,C` (a list).
pub fn parse_src_ips(s: &str) -> Result<Vec<IpAddr>, String> {
    let bad = |a: &str| format!("--src-ips: {a:?} is not an IP address");
    if let Some((a, b)) = s.split_once('-') {
        let a4: Ipv4Addr = a.trim().parse().map_err(|_| bad(a))?;
        let b4: Ipv4Addr = b.trim().parse().map_err(|_| bad(b))?;
        let (a4, b4) = (u32::from(a4), u32::from(b4));
        if b4 < a4 || b4 - a4 >= 1 << 16 {
            return Err(format!(
                "--src-ips: {s:?} is not a range of at most 65536 addresses"
            ));
        }
        return Ok((a4..=b4).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect());
    }
    s.split(',')
        .map(|a| a.trim().parse().map_err(|_| bad(a)))
        .collect()
}

/// Resolves `HOST:PORT` (or `IP:PORT`, `[V6]:PORT`) once. A name with several addresses gets a
/// quick blocking probe, in the resolver's order, and the first address that accepts wins, so
/// `localhost` finds the server whether it listens on `::1` or on `127.0.0.1`; with no taker
/// the first address is used and the run reports its failures.
pub fn resolve(flag: &str, s: &str) -> Result<Addr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(Addr::Ip(addr));
    }
    if s.starts_with("unix:") {
        return s.parse().map_err(|e| format!("--{flag}: {e}"));
    }
    if !s.contains(':') {
        return Err(format!("--{flag}: {s:?} is not HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("--{flag}: cannot resolve {s:?}: {e}"))?
        .collect();
    match addrs.as_slice() {
        [] => Err(format!("--{flag}: {s:?} resolves to no address")),
        [one] => Ok(Addr::Ip(*one)),
        several => Ok(Addr::Ip(
            several
                .iter()
                .copied()
                .find(|a| TcpStream::connect_timeout(a, PROBE_TIMEOUT).is_ok())
                .unwrap_or(several[0]),
        )),
    }
}

/// `http[s]://HOST[:PORT][/PATH[?QUERY]]` → (`HOST:PORT` to resolve, the `Host` header, the
/// request target, whether it is https).
pub fn parse_url(url: &str) -> Result<(String, String, String, bool), String> {
    let bad = |why: &str| format!("--url: {url:?} {why}");
    // TLS belongs to the transport (the loop's connections): `https://` only turns it on.
    let (rest, https) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(bad("is not an http:// or https:// URL")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(bad("has no host"));
    }
    if authority.contains('@') {
        return Err(bad("has user information, which is not supported"));
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let host_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{}", if https { 443 } else { 80 })
    };
    // Host: as written, port included only when given (RFC 9110 §7.2).
    Ok((host_port, authority.to_string(), path, https))
}

fn check_path(flag: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "--{flag}: {path:?} must start with / and hold no spaces or control bytes"
        ));
    }
    Ok(())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_header(v: &str) -> Result<(String, String), String> {
    let Some((name, value)) = v.split_once(':') else {
        return Err(format!("--header: {v:?} is not NAME:VALUE"));
    };
    let value = value.trim();
    if !is_token(name) || value.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f) {
        return Err(format!("--header: {v:?} is not NAME:VALUE"));
    }
    Ok((name.to_string(), value.to_string()))
}

fn read_body(path: &PathBuf) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("--body-file: {shown:?}: {e}"))?;
    if meta.len() > MAX_BODY_FILE {
        return Err(format!(
            "--body-file: {shown:?} is larger than {} MiB",
            MAX_BODY_FILE >> 20
        ));
    }
    std::fs::read(path).map_err(|e| format!("--body-file: {shown:?}: {e}"))
}

/// A command-line argument, owned.
enum Arg {
    Value(OsString),
    Long(String),
    Short(char),
}

/// Parses `MODE [OPTIONS]`. `Ok(None)` after printing the help.
pub fn parse_args(args: Vec<OsString>) -> Result<Option<Opts>, String> {
    let command_line = std::iter::once("readyloop load".to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut parser = lexopt::Parser::from_args(args);
    let mut mode = None;
    let mut addr: Option<String> = None;
    let mut url: Option<String> = None;
    let mut path: Option<String> = None;
    let mut report: Option<PathBuf> = None;
    let mut o = Opts {
        mode: Mode::Idle,
        addr: Addr::Ip(SocketAddr::from(([127, 0, 0, 1], 0))),
        conns: 100,
        duration: Duration::from_secs(10),
        connect_rate: 5000.0,
        ramp: None,
        rate: None,
        json: false,
        size: 64,
        pipeline: 1,
        text: false,
        src_spec: None,
        src_ips: Vec::new(),
        ws: None,
        senders: 1,
        msg_rate: 100.0,
        procs: None,
        server_pid: None,
        quiet: false,
        child: None,
        http: HttpOpts {
            method: "GET".into(),
            path: "/".into(),
            host: String::new(),
            headers: Vec::new(),
            body_file: None,
            body: Vec::new(),
            close: false,
        },
        thresholds: Vec::new(),
        report: None,
        command_line,
        tls: None,
    };
    let mut given: Vec<&'static str> = Vec::new();
    let (mut tls, mut insecure) = (false, false);
    let (mut ca, mut server_name): (Option<PathBuf>, Option<String>) = (None, None);
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = parser.next().map_err(err)? {
        // Owned, so the parser is free to hand out the flag's value.
        let arg = match arg {
            lexopt::Arg::Value(v) => Arg::Value(v),
            lexopt::Arg::Long(name) => Arg::Long(name.to_string()),
            lexopt::Arg::Short(c) => Arg::Short(c),
        };
        // Every flag's value, as a string, named in errors.
        let mut value = |flag: &'static str| -> Result<String, String> {
            given.push(flag);
            let v = parser.value().map_err(err)?;
            v.into_string()
                .map_err(|v| format!("--{flag}: {v:?} is not valid UTF-8"))
        };
        let long = match arg {
            Arg::Long(ref name) => name.as_str(),
            _ => "",
        };
        match (&arg, long) {
            (Arg::Value(v), _) if mode.is_none() => {
                let s = v.to_string_lossy().into_owned();
                let names: Vec<&str> = MODES.iter().map(|m| m.name()).collect();
                mode = Some(Mode::parse(&s).ok_or_else(|| {
                    format!(
                        "unknown mode {s:?} (modes: {}; see readyloop load --help)",
                        names.join(", ")
                    )
                })?);
            }
            (Arg::Value(v), _) => {
                return Err(format!(
                    "unexpected argument {:?} (see readyloop load --help)",
                    v.to_string_lossy()
                ))
            }
            (_, "addr") => addr = Some(value("addr")?),
            (_, "url") => url = Some(value("url")?),
            (_, "path") => path = Some(value("path")?),
            (_, "conns") => o.conns = positive("conns", &value("conns")?)?,
            (_, "duration") => o.duration = seconds("duration", &value("duration")?)?,
            (_, "connect-rate") => {
                o.connect_rate = per_second("connect-rate", &value("connect-rate")?)?
            }
            (_, "ramp") => o.ramp = Some(seconds("ramp", &value("ramp")?)?),
            (_, "rate") => {
                let v = value("rate")?;
                let r = per_second("rate", &v)?;
                if r == 0.0 {
                    return Err(format!("--rate: {v:?} must be above 0"));
                }
                o.rate = Some(r);
            }
            (_, "json") => o.json = true,
            (_, "size") => o.size = number("size", &value("size")?)?,
            (_, "pipeline") => o.pipeline = positive("pipeline", &value("pipeline")?)?,
            (_, "text") => o.text = true,
            (_, "src-ips") => {
                let s = value("src-ips")?;
                o.src_ips = parse_src_ips(&s)?;
                o.src_spec = Some(s);
            }
            (_, "ws") => o.ws = Some(value("ws")?),
            (_, "senders") => o.senders = number("senders", &value("senders")?)?,
            (_, "msg-rate") => o.msg_rate = per_second("msg-rate", &value("msg-rate")?)?,
            (_, "procs") => {
                let s = value("procs")?;
                o.procs = if s == "auto" {
                    None
                } else {
                    Some(positive("procs", &s)?)
                };
            }
            (_, "server-pid") => o.server_pid = Some(number("server-pid", &value("server-pid")?)?),
            (_, "quiet") => o.quiet = true,
            (_, "child") => o.child = Some(number("child", &value("child")?)?),
            (_, "method") => {
                let m = value("method")?;
                if !is_token(&m) {
                    return Err(format!("--method: {m:?} is not a method name"));
                }
                o.http.method = m;
            }
            (_, "header") => o.http.headers.push(parse_header(&value("header")?)?),
            (_, "body-file") => o.http.body_file = Some(PathBuf::from(value("body-file")?)),
            (_, "close") => {
                given.push("close");
                o.http.close = true;
            }
            (_, "threshold") => o.thresholds.push(Threshold::parse(&value("threshold")?)?),
            (_, "report") => report = Some(PathBuf::from(value("report")?)),
            (_, "tls") => tls = true,
            (_, "insecure") => {
                given.push("insecure");
                insecure = true;
            }
            (_, "ca") => ca = Some(PathBuf::from(value("ca")?)),
            (_, "server-name") => server_name = Some(value("server-name")?),
            (_, "help") | (Arg::Short('h'), _) => {
                print!("{USAGE}");
                return Ok(None);
            }
            (Arg::Short(c), _) => {
                return Err(format!("invalid option '-{c}' (see readyloop load --help)"))
            }
            (_, name) => {
                return Err(format!(
                    "invalid option '--{name}' (see readyloop load --help)"
                ))
            }
        }
    }
    o.mode = mode.ok_or("missing MODE (see readyloop load --help)")?;

    // Flags that belong to some modes only.
    let only = |flags: &[&str], modes: &[Mode], what: &str| -> Result<(), String> {
        match flags.iter().find(|f| given.contains(f)) {
            Some(f) if !modes.contains(&o.mode) => Err(format!(
                "--{f}: applies to {what}, not to mode {}",
                o.mode.name()
            )),
            _ => Ok(()),
        }
    };
    let http_flags = ["url", "path", "method", "header", "body-file", "close"];
    only(&http_flags, &[Mode::Http], "mode http")?;
    only(
        &["rate"],
        &[Mode::Http, Mode::Echo, Mode::WsEcho],
        "modes http, echo and ws-echo (the connection ramp is --connect-rate or --ramp)",
    )?;
    only(
        &["pipeline"],
        &[Mode::Http, Mode::Echo, Mode::WsEcho],
        "modes http, echo and ws-echo",
    )?;
    only(
        &["ws"],
        &[Mode::Idle, Mode::WsEcho, Mode::WsBroadcast],
        "modes idle and ws-*",
    )?;
    only(
        &["senders", "msg-rate"],
        &[Mode::WsBroadcast],
        "mode ws-broadcast",
    )?;
    only(&["text"], &[Mode::WsEcho], "mode ws-echo")?;
    if url.is_some() && (addr.is_some() || path.is_some()) {
        return Err("--url: give either --url or --addr and --path".into());
    }
    if let Some(p) = &o.ws {
        check_path("ws", p)?;
    }
    if o.http.close && o.pipeline > 1 {
        return Err("--close: one request per connection, so --pipeline must be 1".into());
    }
    if o.ramp.is_some() && o.mode == Mode::Hello {
        return Err("--ramp: hello connects again all the time; use --connect-rate".into());
    }

    // The target, resolved once.
    let (host_port, host_header) = match (&url, &addr) {
        (Some(u), _) => {
            let (hp, host, p, https) = parse_url(u)?;
            check_path("url", &p)?;
            o.http.path = p;
            tls |= https;
            (hp, host)
        }
        (None, Some(a)) => (a.clone(), a.clone()),
        (None, None) => {
            let a = format!("127.0.0.1:{}", o.mode.default_port());
            (a.clone(), a)
        }
    };
    if !tls {
        if let Some(f) = ["ca", "insecure", "server-name"]
            .iter()
            .find(|f| given.contains(f))
        {
            return Err(format!("--{f}: goes with --tls"));
        }
    }
    if ca.is_some() && insecure {
        return Err("--ca FILE or --insecure, not both".into());
    }
    if tls {
        // ALPN only where it names the protocol: HTTP/1.1 (WebSocket upgrades are HTTP/1.1).
        let alpn: &[&[u8]] = match o.mode {
            Mode::Http | Mode::WsEcho | Mode::WsBroadcast => &[b"http/1.1"],
            Mode::Idle if o.ws.is_some() => &[b"http/1.1"],
            _ => &[],
        };
        let name =
            server_name.unwrap_or_else(|| crate::tools::client::host_of(&host_port).to_string());
        o.tls = Some(TlsOpts::new(ca, insecure, name, alpn)?);
    }
    o.addr = resolve(if url.is_some() { "url" } else { "addr" }, &host_port)?;
    o.http.host = host_header;
    if let Some(p) = path {
        check_path("path", &p)?;
        o.http.path = p;
    }
    if let Some(f) = &o.http.body_file {
        o.http.body = read_body(f)?;
    }
    if let Some(p) = report {
        let file = std::fs::File::create(&p)
            .map_err(|e| format!("--report: cannot create {:?}: {e}", p.display()))?;
        o.report = Some((p, file));
    }
    Ok(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn parse(s: &str) -> Result<Opts, String> {
        parse_args(args(s)).map(|o| o.expect("not --help"))
    }

    #[test]
    fn defaults_follow_the_mode() {
        let o = parse("hello").unwrap();
        assert_eq!(o.addr.ip().unwrap().port(), 8001);
        let o = parse("ws-echo --conns 20000").unwrap();
        assert_eq!(o.addr.ip().unwrap().port(), 8000);
        assert_eq!(o.ws_path().as_deref(), Some("/echo"));
        assert_eq!(o.proc_count(), 3);
        let o = parse("idle --procs 2 --conns 1").unwrap();
        assert_eq!(o.proc_count(), 1);
        let o = parse("http").unwrap();
        assert_eq!(
            (o.addr.ip().unwrap().port(), o.http.path.as_str()),
            (8000, "/")
        );
        assert_eq!(o.http.host, "127.0.0.1:8000");
    }

    #[test]
    fn urls_split_into_address_host_and_target() {
        let p = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            p("http://127.0.0.1:8000/healthz?x=1#frag"),
            (
                "127.0.0.1:8000".into(),
                "127.0.0.1:8000".into(),
                "/healthz?x=1".into(),
                false
            )
        );
        assert_eq!(
            p("http://example"),
            ("example:80".into(), "example".into(), "/".into(), false)
        );
        assert_eq!(
            p("https://example/x"),
            ("example:443".into(), "example".into(), "/x".into(), true)
        );
        assert_eq!(
            p("http://[::1]:9/a"),
            ("[::1]:9".into(), "[::1]:9".into(), "/a".into(), false)
        );
        let host_of = crate::tools::client::host_of;
        assert_eq!(host_of("[::1]:9"), "::1");
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(p("http://[::1]?q").0, "[::1]:80");
        assert_eq!(p("http://[::1]?q").2, "/?q");
        let o = parse("http --url http://[::1]:8000/healthz").unwrap();
        assert_eq!(o.addr, Addr::Ip("[::1]:8000".parse().unwrap()));
        assert_eq!(o.http.path, "/healthz");
    }

    #[test]
    fn errors_name_the_option_and_the_value() {
        for (bad, want) in [
            ("idle --conns abc", r#"--conns: "abc" is not a number"#),
            ("idle --conns 0", r#"--conns: "0" must be at least 1"#),
            (
                "idle --duration -1",
                r#"--duration: "-1" is not a number of seconds"#,
            ),
            ("nope", r#"unknown mode "nope""#),
            ("", "missing MODE"),
            ("echo --ws /x", "--ws: applies to modes idle and ws-*"),
            (
                "idle --rate 10",
                "--rate: applies to modes http, echo and ws-echo",
            ),
            ("echo --rate 0", r#"--rate: "0" must be above 0"#),
            ("echo --method GET", "--method: applies to mode http"),
            (
                "http --header nocolon",
                r#"--header: "nocolon" is not NAME:VALUE"#,
            ),
            (
                "http --method G/T",
                r#"--method: "G/T" is not a method name"#,
            ),
            ("http --url ftp://x/", "is not an http:// or https:// URL"),
            ("http --ca x.pem", "--ca: goes with --tls"),
            ("echo --tls --ca x.pem --insecure", "not both"),
            (
                "echo --tls",
                if cfg!(feature = "tls") {
                    "--ca FILE"
                } else {
                    "built without the `tls` feature"
                },
            ),
            ("http --path nope", r#"--path: "nope" must start with /"#),
            ("http --close --pipeline 2", "--pipeline must be 1"),
            (
                "http --body-file /nonexistent/x",
                r#"--body-file: "/nonexistent/x""#,
            ),
            ("http --threshold p99<5", "needs a unit"),
            (
                "http --report /nonexistent/dir/r.html",
                "--report: cannot create",
            ),
            ("echo --addr nohost", r#"--addr: "nohost" is not HOST:PORT"#),
            ("echo --addr unix:", "expected unix:/path/to/socket"),
            (
                "echo --addr host.invalid:1",
                r#"--addr: cannot resolve "host.invalid:1""#,
            ),
            ("idle --src-ips 127.0.0.9-127.0.0.2", "--src-ips"),
            ("idle --bogus", "invalid option '--bogus'"),
        ] {
            match parse_args(args(bad)) {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => {
                    assert!(e.contains(want), "{bad:?}: {e:?} lacks {want:?}");
                    assert!(!e.contains('\n'), "{bad:?}: not one line: {e:?}");
                }
            }
        }
    }

    #[test]
    fn host_names_resolve_once() {
        let o = parse("echo --addr localhost:1").unwrap();
        assert!(o.addr.ip().unwrap().ip().is_loopback(), "{}", o.addr);
        assert_eq!(o.addr.ip().unwrap().port(), 1);
    }

    #[test]
    fn src_ip_ranges_expand() {
        let ips = parse_src_ips("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(parse_src_ips("10.0.0.1,10.0.0.2").unwrap().len(), 2);
    }
}

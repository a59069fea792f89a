//! `readyloop load MODE`: a load generator built on readyloop's own `EventLoop`, used as a
//! client (non-blocking `connect`, completion seen as WRITABLE and checked with `take_error`).
//!
//! - `mod.rs`: the flags and the choice between one process and several (`--procs`).
//! - `run.rs`: the driver of one process (ramp, reopen, send schedule, progress, stop).
//! - `client.rs`: the `Handler`, one state machine per connection, per mode.
//! - `report.rs`: the figures, the table, the JSON, and the merge of children's results.
//! - `procs.rs`: running child processes of ourselves and merging what they print.
//! - `json.rs`: the little JSON this needs, by hand.

mod client;
mod json;
mod procs;
mod report;
mod run;

pub use report::Report;

use lexopt::prelude::*;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Connections one process opens at most before `--procs auto` adds another: 9,000, well under
/// the 20,000 descriptor limit of this machine's processes, with margin for the loop's own fds.
pub const CONNS_PER_PROC: usize = 9_000;

const USAGE: &str = "\
usage: readyloop load MODE [OPTIONS]
modes:
  idle          open --conns connections and hold them (--ws PATH: as WebSockets)
  hello         connect, read the greeting until EOF, check it, repeat, on every slot
  echo          line ping-pong with payload checks (line listener in echo mode)
  ws-echo       WebSocket /echo ping-pong with payload checks
  ws-broadcast  WebSocket /ws: --senders send --msg-rate messages/s in total, every
                connection checks it gets each one once and in order
options:
  --addr ADDR           server address   [idle, echo 127.0.0.1:10000; hello :8001; ws-* :8000]
  --conns N             connections (hello: concurrent slots)        [100]
  --duration SECS       how long to measure                          [10]
  --rate CONNS_PER_S    connection ramp, 0 = all at once             [5000]
  --size BYTES          message payload size (echo, ws-*)            [64]
  --pipeline K          messages in flight per connection (echo, ws-echo) [1]
  --text                ws-echo: text messages instead of binary
  --ws PATH             idle: upgrade to WebSocket on PATH first
  --senders K           ws-broadcast: sending connections            [1]
  --msg-rate R          ws-broadcast: messages per second, all senders together [100]
  --src-ips A-B|A,B,..  source IPv4 addresses, round-robin (e.g. 127.0.0.2-127.0.0.60)
  --procs N|auto        processes to spread --conns over; auto: one per 9000 conns [auto]
  --server-pid PID      sample the server's RSS at start and end, report bytes per connection
  --json                print one JSON object as the last line instead of the table
  --quiet               no progress lines on stderr
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
}

impl Mode {
    /// The mode's name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::Hello => "hello",
            Mode::Echo => "echo",
            Mode::WsEcho => "ws-echo",
            Mode::WsBroadcast => "ws-broadcast",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        [
            Mode::Idle,
            Mode::Hello,
            Mode::Echo,
            Mode::WsEcho,
            Mode::WsBroadcast,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }

    fn default_port(self) -> u16 {
        match self {
            Mode::Idle | Mode::Echo => 10000,
            Mode::Hello => 8001,
            Mode::WsEcho | Mode::WsBroadcast => 8000,
        }
    }
}

/// The parsed flags.
#[derive(Debug, Clone)]
pub struct Opts {
    /// What each connection does.
    pub mode: Mode,
    /// The server (`--addr`).
    pub addr: SocketAddr,
    /// Connections to open (`--conns`).
    pub conns: usize,
    /// How long to measure (`--duration`).
    pub duration: Duration,
    /// Connections per second; 0 means no ramp.
    pub rate: f64,
    /// Print the report as one JSON line (`--json`).
    pub json: bool,
    /// Message payload size in bytes (`--size`).
    pub size: usize,
    /// Messages in flight per connection (`--pipeline`).
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
}

impl Opts {
    /// The WebSocket path to upgrade on, if the mode uses one.
    pub fn ws_path(&self) -> Option<String> {
        match self.mode {
            Mode::WsEcho => Some(self.ws.clone().unwrap_or_else(|| "/echo".into())),
            Mode::WsBroadcast => Some(self.ws.clone().unwrap_or_else(|| "/ws".into())),
            Mode::Idle => self.ws.clone(),
            Mode::Hello | Mode::Echo => None,
        }
    }

    fn quiet(&self) -> bool {
        self.quiet
    }

    /// How long the ramp takes at `--rate`.
    pub fn ramp_time(&self) -> Duration {
        if self.rate > 0.0 {
            Duration::from_secs_f64(self.conns as f64 / self.rate)
        } else {
            Duration::ZERO
        }
    }

    /// Processes to use.
    pub fn proc_count(&self) -> usize {
        match self.procs {
            Some(n) => n.clamp(1, self.conns.max(1)),
            None => self.conns.div_ceil(CONNS_PER_PROC).max(1),
        }
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let f: f64 = s.parse().map_err(|e| format!("bad seconds {s:?}: {e}"))?;
    if !(f.is_finite() && f >= 0.0) {
        return Err(format!("bad seconds {s:?}"));
    }
    Ok(Duration::from_secs_f64(f))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|e| format!("bad rate {s:?}: {e}"))?;
    if !(f.is_finite() && f >= 0.0) {
        return Err(format!("bad rate {s:?}"));
    }
    Ok(f)
}

/// `127.0.0.2-127.0.0.60` (an IPv4 range, inclusive) or `A,B,C` (a list).
pub fn parse_src_ips(s: &str) -> Result<Vec<IpAddr>, String> {
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|e| format!("bad address {a:?}: {e}"))?;
        let b: Ipv4Addr = b
            .trim()
            .parse()
            .map_err(|e| format!("bad address {b:?}: {e}"))?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a >= 1 << 16 {
            return Err(format!("bad address range {s:?}"));
        }
        return Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect());
    }
    s.split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|e| format!("bad address {a:?}: {e}"))
        })
        .collect()
}

/// Parses `MODE [OPTIONS]`. `Ok(None)` after printing the help.
pub fn parse_args(args: Vec<OsString>) -> Result<Option<Opts>, Box<dyn std::error::Error>> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut mode = None;
    let mut addr: Option<SocketAddr> = None;
    let mut o = Opts {
        mode: Mode::Idle,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        conns: 100,
        duration: Duration::from_secs(10),
        rate: 5000.0,
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
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Value(v) if mode.is_none() => {
                let s = v.string()?;
                mode = Some(Mode::parse(&s).ok_or_else(|| format!("unknown mode {s:?}\n{USAGE}"))?);
            }
            Long("addr") => addr = Some(parser.value()?.parse()?),
            Long("conns") => o.conns = parser.value()?.parse()?,
            Long("duration") => o.duration = parse_secs(&parser.value()?.string()?)?,
            Long("rate") => o.rate = parse_rate(&parser.value()?.string()?)?,
            Long("json") => o.json = true,
            Long("size") => o.size = parser.value()?.parse()?,
            Long("pipeline") => o.pipeline = parser.value()?.parse()?,
            Long("text") => o.text = true,
            Long("src-ips") => {
                let s = parser.value()?.string()?;
                o.src_ips = parse_src_ips(&s)?;
                o.src_spec = Some(s);
            }
            Long("ws") => o.ws = Some(parser.value()?.string()?),
            Long("senders") => o.senders = parser.value()?.parse()?,
            Long("msg-rate") => o.msg_rate = parse_rate(&parser.value()?.string()?)?,
            Long("procs") => {
                let s = parser.value()?.string()?;
                o.procs = if s == "auto" {
                    None
                } else {
                    Some(s.parse().map_err(|e| format!("bad --procs {s:?}: {e}"))?)
                };
            }
            Long("server-pid") => o.server_pid = Some(parser.value()?.parse()?),
            Long("quiet") => o.quiet = true,
            Long("child") => o.child = Some(parser.value()?.parse()?),
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    o.mode = mode.ok_or_else(|| format!("missing MODE\n{USAGE}"))?;
    o.addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], o.mode.default_port())));
    if o.conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    if o.ws.is_some() && matches!(o.mode, Mode::Hello | Mode::Echo) {
        return Err(format!("--ws does not apply to mode {}", o.mode.name()).into());
    }
    if let Some(path) = &o.ws {
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err(format!("bad --ws path {path:?}").into());
        }
    }
    Ok(Some(o))
}

/// Entry point of `readyloop load`.
pub fn main(args: Vec<OsString>) -> Result<(), Box<dyn std::error::Error>> {
    let Some(opts) = parse_args(args)? else {
        return Ok(());
    };
    match crate::runtime::sys::raise_nofile_limit() {
        Ok((before, after)) => log::debug!("RLIMIT_NOFILE soft limit {before} -> {after}"),
        Err(e) => log::warn!("could not raise RLIMIT_NOFILE: {e}"),
    }
    let report = if opts.child.is_none() && opts.proc_count() > 1 {
        procs::run(&opts)?
    } else {
        run::run(&opts)?
    };
    if opts.json {
        println!("{}", report.to_json(opts.child.is_some()));
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn defaults_follow_the_mode() {
        let o = parse_args(args("hello")).unwrap().unwrap();
        assert_eq!(o.addr.port(), 8001);
        let o = parse_args(args("ws-echo --conns 20000")).unwrap().unwrap();
        assert_eq!(o.addr.port(), 8000);
        assert_eq!(o.ws_path().as_deref(), Some("/echo"));
        assert_eq!(o.proc_count(), 3);
        let o = parse_args(args("idle --procs 2 --conns 1"))
            .unwrap()
            .unwrap();
        assert_eq!(o.proc_count(), 1);
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            "",
            "nope",
            "echo --ws /x",
            "idle --conns 0",
            "idle --rate -1",
            "idle --src-ips 127.0.0.9-127.0.0.2",
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn src_ip_ranges_expand() {
        let ips = parse_src_ips("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(parse_src_ips("10.0.0.1,10.0.0.2").unwrap().len(), 2);
    }
}

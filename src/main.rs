//! The `readyloop` binary: argument parsing and process set-up around the library.
//!
//! `readyloop` alone is `readyloop serve`. Subcommands: `serve`, `client ADDR`, `load MODE`.
//! Logging goes to stderr through `env_logger` (`RUST_LOG`, default `info`) and the library's
//! non-blocking sink (`init_logging`); stdout carries only what scripts read: the
//! `listening <proto> <addr>` lines and the client's and load tool's output.

use lexopt::prelude::*;
use readyloop::logging;
use readyloop::service::{LineMode, Protocol, ServeConfig, Server};
use readyloop::Addr;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: readyloop [serve] [OPTIONS]
       readyloop client HOST:PORT      (see `readyloop client --help`)
       readyloop load MODE [OPTIONS]   (see `readyloop load --help`)
       readyloop --version

ADDR is IP:PORT, [IPv6]:PORT or unix:/path (port 0 picks a free port); `off` disables a listener.

serve options:
  --http ADDR|off            HTTP/1.1 + WebSocket listener   [127.0.0.1:8000]
  --line ADDR|off            line listener                   [127.0.0.1:10000]
  --hello ADDR|off           hello listener                  [127.0.0.1:8001]
  --greeting TEXT            hello greeting                  [Hello, World!]
  --line-mode echo|broadcast line listener mode              [echo]
  --max-line BYTES           longest line                    [65536]
  --idle-timeout SECS        close idle line/hello clients   [off]
  --shutdown-timeout SECS    graceful shutdown bound         [10]
  --high-watermark BYTES     pending output that pauses reads [1048576]
  --low-watermark BYTES      pending output that resumes them [262144]
  --max-buffered BYTES       unfinished input all clients may hold together; past it
                             the largest holders are closed  [268435456]
  --max-body BYTES           largest HTTP request body       [67108864]
  --header-timeout SECS      request head deadline           [10]
  --keepalive-timeout SECS   idle keep-alive connection      [75]
  --upload-dir DIR           where uploads are saved         [./uploads]
  --task-threads N           background task threads         [1]
  --task-queue N             queued pieces per task thread   [256]
  --max-uploads N            uploads in progress before 503  [256]
  --ws-ping SECS             ping idle WebSockets (0: off)   [30]
  --max-message BYTES        largest WebSocket message       [16777216]
  --ws-max-pending BYTES     cut off slower /ws clients      [4194304]
  --ws-deflate on|off        accept permessage-deflate       [on]
  --ws-deflate-min BYTES     send shorter messages plain     [192]
  --broadcast-format TEXT    /ws broadcast template, {} = message [📢 새로운 알림: {}]
  --allowed-origin ORIGIN    accept WebSocket upgrades only from these origins (repeatable)
  --inspect                  serve GET /loop, a live page of the loop (loopback --http only) [off]
  --tls-cert FILE --tls-key FILE  HTTPS and WSS on the HTTP listener (PEM: chain, key) [off]
  --line-tls                 TLS on the line listener too (same certificate)
  --tls-handshake-timeout SECS  a TLS handshake must finish within this, where no
                             other deadline bounds it (line)  [10]
  --redis redis://IP:PORT[/db]  relay /ws and line broadcasts through Redis pub/sub [off]
  --workers N                N worker processes sharing the ports (SO_REUSEPORT) [off]
";

fn main() -> ExitCode {
    let sink = init_logging();
    let result = run();
    // Records still queued are written before the process ends (bounded: a log nobody reads
    // must not keep a stopping server alive).
    if let Some(sink) = sink {
        sink.flush(EXIT_LOG_FLUSH);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("readyloop: {e}");
            ExitCode::from(exit_status(&*e))
        }
    }
}

/// How long `main` waits at exit for the log sink to write what is queued: 2 s, far more than a
/// full 1 MiB queue takes to reach a terminal, a file or a pipe that is being read, and short
/// enough that a log nobody reads delays an exit only a little (the shutdown itself is bounded
/// by `--shutdown-timeout`).
const EXIT_LOG_FLUSH: Duration = Duration::from_secs(2);

/// Logging for every subcommand: `env_logger` filters (`RUST_LOG`, default `info`) and formats;
/// the formatted records go to stderr through `readyloop::logging`'s sink, so the thread that
/// logs (the loop's) never waits for stderr: when stderr is not read, records are dropped and
/// counted, and one warning says how many once it is read again. A worker of
/// `serve --workers N` tags its lines with its index (they share stderr). Returns the sink, or
/// `None` when its thread could not start (then env_logger writes to stderr itself). The logger
/// is wrapped in `readyloop::log_capture::Capturing`, which does nothing until `/loop` is watched.
fn init_logging() -> Option<&'static logging::LogSink> {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.format_timestamp(None);
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let tag = args
        .windows(2)
        .find(|w| w[0] == "--worker-index")
        .map(|w| format!(" w{}", w[1].to_string_lossy()));
    if let Some(tag) = tag.clone() {
        logger.format(move |buf, r| {
            writeln!(buf, "[{:<5} {}{tag}] {}", r.level(), r.target(), r.args())
        });
    }
    let tag = tag.unwrap_or_default();
    let dropped_line = move |n| {
        format!(
            "[WARN  readyloop::log{tag}] {}\n",
            logging::dropped_message(n)
        )
    };
    let sink =
        logging::LogSink::with_dropped_line(std::io::stderr(), logging::CAPACITY, dropped_line)
            .map_err(|e| eprintln!("readyloop: log thread: {e}; logging to stderr directly"))
            .ok()
            .and_then(|sink| logging::install(sink).ok());
    if let Some(sink) = sink {
        logger.target(env_logger::Target::Pipe(Box::new(sink.writer())));
    }
    // Wrapped so the `/loop` page (`--inspect`) can sample the trace log while someone
    // watches; until then the level is exactly what RUST_LOG says.
    let logger = logger.build();
    let max = logger.filter();
    let _ = readyloop::log_capture::Capturing::new(Box::new(logger), max).install();
    sink
}

/// 1 for a load run that finished but missed a threshold or failed a check; 2 for every other
/// error (bad flags, nothing reachable, I/O).
fn exit_status(e: &(dyn std::error::Error + 'static)) -> u8 {
    #[cfg(feature = "load")]
    if e.is::<readyloop::tools::load::Failed>() {
        return 1;
    }
    let _ = e;
    2
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // The first argument may be a subcommand; anything else is a `serve` option.
    let (command, rest) = match args.first().and_then(|a| a.to_str()) {
        Some("--version" | "-V") => ("version".to_string(), Vec::new()),
        Some(c) if !c.starts_with('-') => (c.to_string(), args[1..].to_vec()),
        _ => ("serve".to_string(), args),
    };
    let serve_args = rest.clone();
    let mut parser = lexopt::Parser::from_args(rest);
    match command.as_str() {
        "serve" => serve(&mut parser, serve_args),
        "client" => readyloop::tools::client::main(parser.raw_args()?.collect()),
        #[cfg(feature = "load")]
        "load" => readyloop::tools::load::main(parser.raw_args()?.collect()),
        #[cfg(not(feature = "load"))]
        "load" => Err(missing_feature("load", "readyloop load")),
        "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "version" => {
            println!("readyloop {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    }
}

/// The error for a command or flag whose Cargo feature this build left out. (`--http ADDR` is
/// refused by `Server::bind` itself; `--http off` is accepted by every build.)
#[cfg(not(all(
    feature = "load",
    feature = "redis",
    feature = "tls",
    feature = "ws-deflate"
)))]
fn missing_feature(feature: &str, what: &str) -> Box<dyn std::error::Error> {
    format!("{what}: this readyloop was built without the `{feature}` feature").into()
}

/// A flag's value, as text (`--flag: missing value` when there is none).
fn text(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let v = parser
        .value()
        .map_err(|_| format!("{flag}: missing value"))?;
    v.into_string()
        .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))
}

/// A number-valued flag: `--max-line: "abc" is not a number`.
fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, flag: &str) -> Result<T, String> {
    let s = text(parser, flag)?;
    s.parse()
        .map_err(|_| format!("{flag}: {s:?} is not a number"))
}

/// A count that must be at least 1.
fn positive(parser: &mut lexopt::Parser, flag: &str) -> Result<usize, String> {
    match number(parser, flag)? {
        0 => Err(format!("{flag}: must be at least 1")),
        n => Ok(n),
    }
}

/// A duration in (fractional) seconds.
fn secs(parser: &mut lexopt::Parser, flag: &str) -> Result<Duration, String> {
    let s = text(parser, flag)?;
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok(Duration::from_secs_f64(f)),
        _ => Err(format!("{flag}: {s:?} is not a number of seconds")),
    }
}

/// A listener address, or `off`.
fn listener(parser: &mut lexopt::Parser, flag: &str) -> Result<Option<Addr>, String> {
    let s = text(parser, flag)?;
    if s == "off" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| format!("{flag}: {e}"))
}

fn serve(
    parser: &mut lexopt::Parser,
    args: Vec<std::ffi::OsString>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = ServeConfig::default();
    let mut workers: Option<usize> = None;
    // Hidden: set by the parent of `--workers` on each worker it starts.
    let mut worker: Option<usize> = None;
    let mut stats_fd: i32 = -1;
    #[cfg(feature = "tls")]
    let (mut tls_cert, mut tls_key): (Option<std::path::PathBuf>, Option<std::path::PathBuf>) =
        (None, None);
    while let Some(arg) = parser.next()? {
        let flag = match &arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(v) => return Err(format!("unexpected argument {v:?}\n{USAGE}").into()),
        };
        let f = flag.as_str();
        match arg {
            Long("workers") => workers = Some(positive(parser, f)?),
            Long("worker-index") => worker = Some(number(parser, f)?),
            Long("stats-fd") => stats_fd = number(parser, f)?,
            Long("listen-fd") => {
                let v = text(parser, f)?;
                let parsed = v.split_once('=').and_then(|(proto, fd)| {
                    let proto = Protocol::ALL.into_iter().find(|p| p.name() == proto)?;
                    Some((proto, fd.parse().ok()?))
                });
                cfg.inherited
                    .push(parsed.ok_or(format!("{f}: {v:?} is not PROTOCOL=FD"))?);
            }
            Long("http") => cfg.http = listener(parser, f)?,
            Long("line") => cfg.line = listener(parser, f)?,
            Long("hello") => cfg.hello = listener(parser, f)?,
            Long("greeting") => cfg.greeting = text(parser, f)?,
            Long("line-mode") => {
                cfg.line_mode = match text(parser, f)?.as_str() {
                    "echo" => LineMode::Echo,
                    "broadcast" => LineMode::Broadcast,
                    other => return Err(format!("{f}: {other:?} is not echo or broadcast").into()),
                }
            }
            Long("max-line") => cfg.max_line = number(parser, f)?,
            Long("idle-timeout") => cfg.idle_timeout = Some(secs(parser, f)?),
            Long("shutdown-timeout") => cfg.loop_config.shutdown_timeout = secs(parser, f)?,
            Long("high-watermark") => cfg.loop_config.high_watermark = number(parser, f)?,
            Long("low-watermark") => cfg.loop_config.low_watermark = number(parser, f)?,
            Long("max-body") => cfg.web.max_body = number(parser, f)?,
            Long("max-buffered") => cfg.loop_config.max_buffered_input = number(parser, f)?,
            Long("header-timeout") => cfg.web.header_timeout = secs(parser, f)?,
            Long("keepalive-timeout") => cfg.web.keepalive_timeout = secs(parser, f)?,
            Long("upload-dir") => cfg.web.upload_dir = text(parser, f)?.into(),
            Long("task-threads") => cfg.web.task_threads = positive(parser, f)?,
            Long("task-queue") => cfg.web.task_queue = positive(parser, f)?,
            Long("max-uploads") => cfg.web.max_uploads = positive(parser, f)?,
            Long("ws-ping") => {
                let every = secs(parser, f)?;
                cfg.web.ws_ping = (!every.is_zero()).then_some(every);
            }
            Long("max-message") => cfg.web.max_message = number(parser, f)?,
            Long("ws-max-pending") => cfg.web.ws_max_pending = number(parser, f)?,
            Long("ws-deflate") => {
                cfg.web.ws_deflate = match text(parser, f)?.as_str() {
                    #[cfg(feature = "ws-deflate")]
                    "on" => true,
                    #[cfg(not(feature = "ws-deflate"))]
                    "on" => return Err(missing_feature("ws-deflate", "--ws-deflate on")),
                    "off" => false,
                    other => return Err(format!("{f}: {other:?} is not on or off").into()),
                }
            }
            Long("ws-deflate-min") => cfg.web.ws_deflate_min = number(parser, f)?,
            Long("broadcast-format") => cfg.web.broadcast_format = text(parser, f)?,
            Long("allowed-origin") => cfg.web.allowed_origins.push(text(parser, f)?),
            Long("inspect") => cfg.web.inspect = true,
            #[cfg(feature = "tls")]
            Long("tls-cert") => tls_cert = Some(text(parser, f)?.into()),
            #[cfg(feature = "tls")]
            Long("tls-key") => tls_key = Some(text(parser, f)?.into()),
            #[cfg(feature = "tls")]
            Long("line-tls") => cfg.line_tls = true,
            #[cfg(feature = "tls")]
            Long("tls-handshake-timeout") => {
                cfg.loop_config.tls_handshake_timeout = secs(parser, f)?
            }
            #[cfg(not(feature = "tls"))]
            Long("tls-cert" | "tls-key" | "line-tls" | "tls-handshake-timeout") => {
                return Err(missing_feature("tls", &flag));
            }
            #[cfg(feature = "redis")]
            Long("redis") => {
                cfg.redis = Some(text(parser, f)?.parse().map_err(|e| format!("{f}: {e}"))?)
            }
            #[cfg(not(feature = "redis"))]
            Long("redis") => return Err(missing_feature("redis", "--redis")),
            Long("help") | Short('h') => {
                print!("{USAGE}");
                return Ok(());
            }
            Long("version") | Short('V') => {
                println!("readyloop {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    #[cfg(feature = "tls")]
    {
        cfg.tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(readyloop::service::config::TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
    }
    if cfg.loop_config.low_watermark > cfg.loop_config.high_watermark {
        return Err("--low-watermark must not exceed --high-watermark".into());
    }
    // Everything the server needs from its environment is checked before any `listening` line:
    // a script that sees one may rely on the server being up.
    cfg.validate()?;
    readyloop::runtime::sys::release_large_buffers();
    match readyloop::runtime::sys::raise_nofile_limit() {
        Ok((before, after)) => {
            log::info!("RLIMIT_NOFILE soft limit {before} -> {after}");
            // One slot per descriptor we may hold (up to a million).
            cfg.loop_config.reserve_connections = after.min(1 << 20) as usize;
        }
        Err(e) => log::warn!("could not raise RLIMIT_NOFILE: {e}"),
    }
    match (worker, workers) {
        (Some(index), _) => {
            readyloop::service::stats::join(index, stats_fd)
                .map_err(|e| format!("worker {index}: stats fd {stats_fd}: {e}"))?;
            cfg.reuse_port = true;
        }
        (None, Some(n)) => return readyloop::supervisor::supervise(&cfg, n, args),
        (None, None) => {}
    }
    let names = cfg.clone();
    let (mut ev, bound) = Server::bind(cfg)?;
    let mut out = std::io::stdout().lock();
    for (proto, addr) in &bound {
        writeln!(out, "listening {} {}", names.listener_name(*proto), addr)?;
    }
    out.flush()?;
    drop(out);
    ev.handle_signals()?;
    if worker.is_some() {
        readyloop::supervisor::run_worker(&mut ev)?;
    } else {
        ev.run()?;
    }
    ev.handler_mut().finish();
    Ok(())
}

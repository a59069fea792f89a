//! `GET /metrics`: the Prometheus text exposition of the real binary, checked by independent
//! implementations of the format and against traffic whose effect we know exactly.
//!
//! The format is checked by `promtool check metrics` (Debian's `prometheus` package) and by
//! `prometheus_client`'s parser (PyPI, through tests/interop/prom_parse.py), and one test has a
//! real Prometheus server scrape us. They run whenever those programs are there and say they
//! were skipped otherwise (the README's `cargo test` must pass on a bare machine); `.ci/run`
//! installs them and sets `READYLOOP_REQUIRE_PROMETHEUS=1`, which turns a missing one into a
//! failure. The counter tests need nothing but the binary.

#![cfg(all(feature = "cli", feature = "http"))]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::{connect, echo, expect_eof, read_to_eof, stuff, Client, Server, TempDir, IO_TIMEOUT};

/// The one request the tests scrape with: its length is part of the byte counts they check.
const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
/// `--greeting`'s default, as the hello listener writes it.
const GREETING: &str = "Hello, World!\n";

/// One scrape: every sample as `name{labels}` (spelled as the server writes it) → value, and
/// the text.
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
    /// Bytes of the response as they came (head and body).
    response_len: usize,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{}", self.text))
    }

    /// The sum of every sample of family `name` (each label set once).
    fn family_sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }
}

fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("sample {l:?}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value in {l:?}")),
            };
            (key.to_string(), value)
        })
        .collect()
}

/// `GET /metrics` (plus `query`) on a keep-alive connection.
fn scrape_with(c: &mut Client, query: &str) -> Scrape {
    if query.is_empty() {
        c.send(SCRAPE);
    } else {
        c.send(format!("GET /metrics{query} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    Scrape {
        samples: parse(&text),
        response_len: r.head.len() + r.body.len(),
        text,
    }
}

fn scrape(c: &mut Client) -> Scrape {
    scrape_with(c, "")
}

/// Whether an outside program runs (`program args...` exits 0); panics when CI requires the
/// Prometheus tools and it does not.
fn available(program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("READYLOOP_REQUIRE_PROMETHEUS").is_none(),
            "READYLOOP_REQUIRE_PROMETHEUS is set but `{program} {}` does not run",
            args.join(" ")
        );
        eprintln!("SKIPPED: `{program} {}` does not run here", args.join(" "));
    }
    ok
}

/// Runs `program args` with `input` on stdin; its exit status and stdout + stderr.
fn run_with_input(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text += &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The families an exposition declares: `# TYPE` name → type.
fn declared(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// Checks `text` with every independent parser present: `promtool check metrics` (which also
/// lints names, units and help) must report nothing, and prometheus_client must find exactly
/// the families the text declares, with their types.
fn validate(text: &str) {
    if available("promtool", &["--version"]) {
        let (ok, report) = run_with_input("promtool", &["check", "metrics"], text);
        assert!(ok && report.trim().is_empty(), "promtool: {report}");
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/prom_parse.py");
    if available("python3", &["-c", "import prometheus_client.parser"]) {
        let (ok, report) = run_with_input("python3", &[script], text);
        assert!(ok, "prometheus_client: {report}");
        let parsed: BTreeMap<String, String> = report
            .lines()
            .map(|l| {
                let mut w = l.split(' ');
                let (name, kind) = (w.next().unwrap(), w.next().unwrap());
                let samples: usize = w.next().unwrap().parse().unwrap();
                assert!(samples > 0, "family {name} without samples");
                (name.to_string(), kind.to_string())
            })
            .collect();
        assert_eq!(parsed, declared(text));
    }
}

/// Polls `/metrics` on `c` until `done` holds (bounded); every scrape made, in order.
fn scrape_until(c: &mut Client, done: impl Fn(&Scrape) -> bool) -> Vec<Scrape> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut all = Vec::new();
    loop {
        let s = scrape(c);
        let ok = done(&s);
        all.push(s);
        if ok {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "never reached:\n{}",
            all.last().unwrap().text
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Closes `s` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(s);
}

#[test]
fn every_family_parses_with_promtool_and_prometheus_client() {
    let server = Server::start(&[]);
    // Some traffic first, so histograms and counters are not all zero.
    let mut line = connect(server.line());
    echo(&mut line, "hello\n");
    read_to_eof(&mut connect(server.hello()));
    let mut c = Client::connect(server.http());
    let s = scrape(&mut c);
    validate(&s.text);
    let families = declared(&s.text);
    for (name, kind) in &families {
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} {kind}");
    }
    // Everything /stats has is here, under a name that says so.
    for name in [
        "readyloop_connections",
        "readyloop_accepts_total",
        "readyloop_read_bytes_total",
        "readyloop_written_bytes_total",
        "readyloop_loop_iterations_total",
        "readyloop_input_buffered_bytes",
        "readyloop_closed_over_budget_total",
        "readyloop_upload_tasks_accepted_total",
        "readyloop_upload_tasks_in_flight",
        "readyloop_upload_tasks_finished_total",
        "readyloop_log_dropped_total",
        "readyloop_uptime_seconds",
        // And what the issue asked for beyond it.
        "readyloop_handled_total",
        "readyloop_accepts_refused_total",
        "readyloop_accept_paused_total",
        "readyloop_closed_total",
        "readyloop_slow_consumers_total",
        "readyloop_output_queued_bytes",
        "readyloop_output_largest_queue_bytes",
        "readyloop_events_per_poll",
        "readyloop_poll_timeout_seconds",
        "readyloop_iteration_busy_seconds",
        "readyloop_upload_tasks",
    ] {
        assert!(families.contains_key(name), "{name} missing:\n{}", s.text);
    }
    assert_eq!(families["readyloop_events_per_poll"], "histogram");
    assert_eq!(s.get("readyloop_connections{protocol=\"line\"}"), 1.0);
    // Every iteration is counted once in each of its histograms and by its poll's reason.
    let iterations = s.get("readyloop_loop_iterations_total");
    assert!(iterations >= 3.0, "{iterations}");
    assert_eq!(s.get("readyloop_events_per_poll_count"), iterations);
    assert_eq!(s.get("readyloop_iteration_busy_seconds_count"), iterations);
    assert_eq!(s.family_sum("readyloop_polls_total"), iterations);
    assert_eq!(
        s.get("readyloop_events_per_poll_bucket{le=\"+Inf\"}"),
        iterations
    );
    // HEAD gets the head alone; other methods are refused.
    let mut head = Client::connect(server.http());
    head.send(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.head_response().status, 200);
    let mut post = Client::connect(server.http());
    post.send(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.response().status, 405);
}

#[test]
fn counters_move_by_exactly_what_known_traffic_did() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.http());
    let before = scrape(&mut c);
    const HELLOS: usize = 5;
    const EXITS: usize = 3;
    for _ in 0..HELLOS {
        assert_eq!(
            read_to_eof(&mut connect(server.hello())),
            GREETING.as_bytes()
        );
    }
    for _ in 0..EXITS {
        let mut s = connect(server.line());
        echo(&mut s, "ping\n");
        s.write_all(b"exit\n").unwrap();
        expect_eof(&mut s);
    }
    let mut gone = connect(server.line());
    echo(&mut gone, "x\n");
    reset(gone);
    let after = scrape_until(&mut c, |s| {
        s.get("readyloop_connections{protocol=\"line\"}") == 0.0
            && s.get("readyloop_connections{protocol=\"hello\"}") == 0.0
    });
    let last = after.last().unwrap();
    let delta = |key: &str| last.get(key) - before.get(key);
    let conns = (HELLOS + EXITS + 1) as f64;
    assert_eq!(delta("readyloop_accepts_total"), conns);
    assert_eq!(delta("readyloop_handled_total"), conns);
    assert_eq!(delta("readyloop_accepts_refused_total"), 0.0);
    assert_eq!(
        delta("readyloop_closed_total{reason=\"done\"}"),
        (HELLOS + EXITS) as f64
    );
    assert_eq!(delta("readyloop_closed_total{reason=\"peer_gone\"}"), 1.0);
    assert_eq!(
        last.family_sum("readyloop_closed_total") - before.family_sum("readyloop_closed_total"),
        conns
    );
    // Bytes: what the line clients sent ("ping\n" + "exit\n" each, and "x\n") plus every scrape
    // request after the first; written: greetings, echoes, and every scrape answer before the
    // last (a scrape counts its own request but is taken before its answer is written).
    let line_in = EXITS * 10 + 2;
    let line_out = EXITS * 5 + 2;
    let requests = after.len() * SCRAPE.len();
    let answers: usize = std::iter::once(&before)
        .chain(&after[..after.len() - 1])
        .map(|s| s.response_len)
        .sum();
    assert_eq!(
        delta("readyloop_read_bytes_total"),
        (line_in + requests) as f64
    );
    assert_eq!(
        delta("readyloop_written_bytes_total"),
        (HELLOS * GREETING.len() + line_out + answers) as f64
    );
    assert_eq!(last.get("readyloop_output_queued_bytes"), 0.0);
    assert_eq!(last.get("readyloop_write_interest_armed"), 0.0);
}

#[test]
fn a_reader_that_stops_reading_shows_in_the_queue_gauges() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.http());
    let before = scrape(&mut c);
    // Echo lines to a client that does not read: the server's socket buffer fills, its writes
    // come up short (WRITABLE armed), its queue grows past the high watermark (1 MiB) and it
    // stops reading from that client.
    let mut stuck = connect(server.line());
    let lines = support::numbered_lines(32 << 20, 80);
    let sent = stuff(&mut stuck, &lines, Duration::from_millis(300));
    assert!(sent < lines.len(), "the server took all {sent} bytes");
    let s = scrape(&mut c);
    assert_eq!(s.get("readyloop_write_interest_armed"), 1.0, "{}", s.text);
    assert_eq!(s.get("readyloop_read_paused"), 1.0);
    let largest = s.get("readyloop_output_largest_queue_bytes");
    assert!(largest >= (1 << 20) as f64, "{largest}");
    assert_eq!(s.get("readyloop_output_queued_bytes"), largest);
    assert!(s.get("readyloop_partial_writes_total") > before.get("readyloop_partial_writes_total"));
    assert!(
        s.get("readyloop_interest_changes_total") > before.get("readyloop_interest_changes_total")
    );
    assert_eq!(s.get("readyloop_connections_by_phase{phase=\"open\"}"), 2.0);
    validate(&s.text);
}

#[test]
fn workers_are_summed_with_all_1_and_labelled_each() {
    let server = Server::start(&["--workers", "2"]);
    // Connections spread over the workers by the kernel; each one echoes once.
    for i in 0..8 {
        echo(&mut connect(server.line()), &format!("hi {i}\n"));
    }
    let mut c = Client::connect(server.http());
    let deadline = Instant::now() + IO_TIMEOUT;
    let s = loop {
        let s = scrape_with(&mut c, "?all=1");
        if s.get("readyloop_workers_live") == 2.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "{}", s.text);
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s.get("readyloop_workers"), 2.0);
    validate(&s.text);
    // The sum is labelled `all`, each worker's own `0` and `1`, in every family.
    for key in [
        "readyloop_accepts_total",
        "readyloop_read_bytes_total",
        "readyloop_loop_iterations_total",
        "readyloop_events_per_poll_count",
        "readyloop_closed_total{reason=\"done\"}",
    ] {
        let labelled = |w: &str| match key.split_once('{') {
            Some((name, rest)) => format!("{name}{{worker=\"{w}\",{rest}"),
            None => format!("{key}{{worker=\"{w}\"}}"),
        };
        let sum = s.get(&labelled("0")) + s.get(&labelled("1"));
        assert_eq!(s.get(&labelled("all")), sum, "{key}");
    }
    // The largest queue is the largest of the workers', not their sum.
    let largest = |w: &str| {
        s.get(&format!(
            "readyloop_output_largest_queue_bytes{{worker=\"{w}\"}}"
        ))
    };
    assert_eq!(largest("all"), largest("0").max(largest("1")));
    // A plain scrape is the answering worker's own, labelled with its index.
    let own = scrape(&mut c);
    let worker = own
        .samples
        .keys()
        .find_map(|k| k.strip_prefix("readyloop_accepts_total{worker=\""))
        .expect("worker label")
        .trim_end_matches("\"}")
        .to_string();
    assert!(worker == "0" || worker == "1", "{worker}");
    assert!(!own.text.contains("worker=\"all\""));
}

/// A Prometheus server of our own on a free port, killed on drop.
struct Prometheus {
    child: Child,
    api: SocketAddr,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET url` with curl; the body.
fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_real_prometheus_scrapes_us() {
    if !available("prometheus", &["--version"]) || !available("curl", &["--version"]) {
        return;
    }
    let server = Server::start(&[]);
    echo(&mut connect(server.line()), "seen by prometheus\n");
    let dir = TempDir::new("prometheus");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: readyloop\n    \
             static_configs:\n      - targets: ['{}']\n",
            server.http()
        ),
    )
    .unwrap();
    let api = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={api}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let prometheus = Prometheus {
        child,
        api,
        _dir: dir,
    };
    // Prometheus reports the target's health and the last scrape's error, and answers queries
    // over what it stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = format!(
        "http://{}/api/v1/query?query=readyloop_accepts_total",
        prometheus.api
    );
    loop {
        let targets = curl(&format!("http://{}/api/v1/targets", prometheus.api));
        let answer = curl(&query);
        if let (Some(targets), Some(answer)) = (&targets, &answer) {
            assert!(
                !targets.contains("\"health\":\"down\""),
                "prometheus could not scrape us: {targets}"
            );
            if targets.contains("\"health\":\"up\"") && answer.contains("\"job\":\"readyloop\"") {
                assert!(targets.contains("\"lastError\":\"\""), "{targets}");
                // At least the line connection above, and the scrapes' own connection.
                assert!(
                    answer.contains("\"__name__\":\"readyloop_accepts_total\""),
                    "{answer}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped us: {targets:?} {answer:?}"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn running_out_of_descriptors_shows_as_paused_accepts() {
    let server = support::Server::start_with(
        &[],
        support::Options {
            nofile: Some(64),
            ..support::Options::default()
        },
    );
    // The scraping connection first, while there are descriptors for it.
    let mut c = Client::connect(server.http());
    let before = scrape(&mut c);
    assert_eq!(before.get("readyloop_accept_paused_total"), 0.0);
    // More clients than the server has descriptors: the kernel completes their handshakes into
    // the backlog, the server accepts until EMFILE and pauses.
    let clients: Vec<TcpStream> = (0..100).map(|_| connect(server.line())).collect();
    let during = scrape_until(&mut c, |s| s.get("readyloop_accept_paused_total") >= 1.0);
    let s = during.last().unwrap();
    let open = s.get("readyloop_connections{protocol=\"line\"}");
    assert!((1.0..100.0).contains(&open), "{open} line connections");
    // Every socket accept() returned became a connection; the others wait in the backlog.
    assert_eq!(
        s.get("readyloop_accepts_total"),
        s.get("readyloop_handled_total")
    );
    assert_eq!(s.get("readyloop_accept_errors_total"), 0.0);
    drop(clients);
    // Descriptors free again: everything that waited is accepted and closed in turn.
    scrape_until(&mut c, |s| {
        s.get("readyloop_accepts_total") - before.get("readyloop_accepts_total") == 100.0
            && s.get("readyloop_connections{protocol=\"line\"}") == 0.0
    });
}

//! Running the tools (`readyloop load`, `readyloop client`) as a user would, and reading what
//! they print: the exit status, stdout (the JSON line), stderr (progress and error lines), all
//! bounded by a deadline. The server they load is the one `Server` of `server.rs`.

use super::BIN;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct ToolRun {
    /// The exit status (`-1` if killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl ToolRun {
    /// The last stdout line, which must be one JSON object (`--json`).
    pub fn json(&self) -> &str {
        let last = self.stdout.lines().last().unwrap_or("");
        assert!(
            last.starts_with('{') && last.ends_with('}'),
            "no JSON line: {self:?}"
        );
        last
    }

    /// stderr without the progress lines (`load MODE: ...`).
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with("load "))
            .collect()
    }
}

/// Runs `readyloop ARGS` with stdin from `input`, killing it past `limit`.
pub fn run_tool_with_input(args: &[&str], input: &[u8], limit: Duration) -> ToolRun {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn readyloop");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut stdin, &input);
        // Dropping stdin sends EOF.
    });
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("readyloop {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    ToolRun {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took: start.elapsed(),
    }
}

/// Runs `readyloop ARGS` (stdin empty), killing it past `limit`.
pub fn run_tool(args: &[&str], limit: Duration) -> ToolRun {
    run_tool_with_input(args, b"", limit)
}

/// Runs `readyloop load ARGS --json --quiet` and expects exit status `code`.
pub fn run_load(args: &[&str], code: i32, limit: Duration) -> ToolRun {
    let mut all = vec!["load"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "--quiet"]);
    let r = run_tool(&all, limit);
    assert_eq!(r.code, code, "readyloop {all:?}: {r:?}");
    r
}

/// The number after the first `"key":` in `json`.
pub fn json_num(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let end = json[at..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .map_or(json.len(), |e| at + e);
    json[at..end]
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {json}"))
}

/// The text of the JSON object under `key` (`{...}`, braces included).
pub fn json_object<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":{{");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no object {key} in {json}"))
        + pat.len()
        - 1;
    let mut depth = 0;
    for (i, c) in json[at..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &json[at..=at + i];
                }
            }
            _ => {}
        }
    }
    panic!("unterminated {key} in {json}")
}

/// A port nothing listens on (bound, then closed again).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether this machine has an IPv6 loopback to test against.
pub fn have_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

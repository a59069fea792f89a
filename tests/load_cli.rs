//! How `readyloop load` and `readyloop client` talk to the person running them: one clear error
//! line and exit status 2 for bad flags and unreachable targets; `--threshold` and failed
//! checks make the exit status 1 and name what missed; one progress line per second in the same
//! form for every mode; `client --help`, host names, IPv6 and connect errors that name the
//! address. Against the real server, except where only a misbehaving peer can show a failed
//! check.

#![cfg(all(feature = "cli", feature = "load"))]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;
use support::{closed_port, have_ipv6, json_num, run_load, run_tool, run_tool_with_input, Server};

const LIMIT: Duration = Duration::from_secs(30);

/// Exit status 2 and exactly one line on stderr, containing `want`.
fn refused(args: &[&str], want: &str) {
    let r = run_tool(args, LIMIT);
    assert_eq!(r.code, 2, "{args:?}: {r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one error line, got {lines:?}");
    assert!(lines[0].starts_with("readyloop: "), "{lines:?}");
    assert!(
        lines[0].contains(want),
        "{args:?}: {lines:?} lacks {want:?}"
    );
    assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
}

#[test]
fn bad_flags_get_one_line_naming_option_and_value() {
    for (args, want) in [
        (
            &["load", "http", "--conns", "abc"][..],
            r#"--conns: "abc" is not a number"#,
        ),
        (
            &["load", "http", "--rate", "fast"],
            r#"--rate: "fast" is not a number"#,
        ),
        (&["load", "http", "--duration", "-3"], r#"--duration: "-3""#),
        (
            &["load", "http", "--threshold", "p99<5"],
            "--threshold: \"p99<5\" needs a unit",
        ),
        (
            &["load", "http", "--threshold", "p97<5ms"],
            "unknown metric",
        ),
        (
            &["load", "http", "--header", "novalue"],
            r#"--header: "novalue""#,
        ),
        (&["load", "http", "--url", "https://127.0.0.1/"], "TLS"),
        (
            &["load", "http", "--body-file", "/nonexistent/body"],
            "--body-file",
        ),
        (
            &["load", "http", "--report", "/nonexistent/dir/x.html"],
            "--report",
        ),
        (
            &["load", "idle", "--rate", "10"],
            "--rate: applies to modes http, echo and ws-echo",
        ),
        (
            &["load", "echo", "--method", "GET"],
            "--method: applies to mode http",
        ),
        (&["load", "nope"], r#"unknown mode "nope""#),
        (&["load"], "missing MODE"),
        (&["load", "echo", "--frobnicate"], "--frobnicate"),
        (
            &["load", "echo", "--addr", "no-port"],
            r#"--addr: "no-port" is not HOST:PORT"#,
        ),
        (
            &["load", "echo", "--addr", "host.invalid:1"],
            "cannot resolve",
        ),
        (&["client"], "missing HOST:PORT"),
        (&["client", "host.invalid:1"], "cannot resolve"),
        (&["client", "--bogus"], "--bogus"),
    ] {
        refused(args, want);
    }
}

#[test]
fn unreachable_targets_get_one_line_and_exit_2() {
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    let want = format!("no connection to {addr} succeeded: connect {addr}: refused");
    for mode in ["echo", "http", "hello", "idle"] {
        let r = run_tool(
            &[
                "load",
                mode,
                "--addr",
                &addr,
                "--conns",
                "3",
                "--duration",
                "5",
                "--quiet",
            ],
            LIMIT,
        );
        assert_eq!(r.code, 2, "{mode}: {r:?}");
        assert_eq!(
            r.errors(),
            [format!("readyloop: {want} (3 times)")],
            "{mode}: {r:?}"
        );
        // Nothing could happen, so it did not wait out the 5 s.
        assert!(r.took < Duration::from_secs(4), "{mode}: took {:?}", r.took);
    }
    refused(&["client", &addr], &format!("connect {addr}: refused"));
}

#[test]
fn thresholds_gate_the_exit_status_and_name_what_missed() {
    let server = Server::start(&[]);
    let url = format!("http://{}/healthz", server.http());
    let base = ["http", "--url", &url, "--conns", "2", "--duration", "1"];
    // All met: exit 0, each recorded in the JSON.
    let mut ok = base.to_vec();
    ok.extend_from_slice(&["--threshold", "p99<10s", "--threshold", "errors<1"]);
    ok.extend_from_slice(&["--threshold", "rate>1", "--threshold", "max<=60s"]);
    ok.extend_from_slice(&["--threshold", "p50<10s", "--threshold", "p90<10s"]);
    ok.extend_from_slice(&["--threshold", "p999<10s"]);
    let r = run_load(&ok, 0, LIMIT);
    let j = r.json();
    assert!(j.contains(r#"{"expr":"p99<10s","actual":"#), "{j}");
    assert!(!j.contains("\"ok\":false"), "{j}");
    // Two missed, one met: exit 1, one line naming the two.
    let mut missed = base.to_vec();
    missed.extend_from_slice(&["--threshold", "p50<1us", "--threshold", "errors<1"]);
    missed.extend_from_slice(&["--threshold", "rate>100000000"]);
    let r = run_load(&missed, 1, LIMIT);
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let line = errors[0];
    assert!(
        line.contains("threshold p50<1us missed (p50 was "),
        "{line}"
    );
    assert!(
        line.contains("threshold rate>100000000 missed (rate was "),
        "{line}"
    );
    assert!(
        !line.contains("errors<1"),
        "a met threshold is not named: {line}"
    );
    assert!(r.json().contains(r#""expr":"p50<1us""#), "{}", r.json());
    // The table says it too.
    let mut table = vec!["load"];
    table.extend_from_slice(&missed);
    table.push("--quiet");
    let r = run_tool(&table, LIMIT);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("threshold MISS p50<1us"), "{}", r.stdout);
    assert!(r.stdout.contains("threshold ok   errors<1"), "{}", r.stdout);
}

/// A line "echo" peer that answers every line with the wrong bytes.
fn lying_echo_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if out.write_all(format!("not {line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_failed_payload_check_makes_the_exit_status_1() {
    let addr = lying_echo_peer();
    let r = run_load(
        &["echo", "--addr", &addr, "--conns", "3", "--duration", "1"],
        1,
        LIMIT,
    );
    let j = r.json();
    assert_eq!(json_num(j, "checks_failed"), 3.0, "{j}");
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("echo: payload mismatch: 3"),
        "{errors:?}"
    );
}

#[test]
fn progress_is_one_line_per_second_in_one_form_for_every_mode() {
    let server = Server::start(&[]);
    let http = server.http().to_string();
    let line = server.line().to_string();
    let hello = server.hello().to_string();
    let url = format!("http://{http}/healthz");
    for args in [
        vec!["idle", "--addr", &line],
        vec!["hello", "--addr", &hello],
        vec!["echo", "--addr", &line],
        vec!["ws-echo", "--addr", &http],
        vec!["ws-broadcast", "--addr", &http],
        vec!["http", "--url", &url],
        vec!["http", "--url", &url, "--rate", "100"],
    ] {
        let mode = args[0];
        let mut all = vec!["load"];
        all.extend_from_slice(&args);
        all.extend_from_slice(&["--conns", "3", "--duration", "2.5"]);
        let r = run_tool(&all, LIMIT);
        assert_eq!(r.code, 0, "{all:?}: {r:?}");
        let progress: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("load "))
            .collect();
        assert_eq!(progress.len(), 2, "{mode}: {progress:?}");
        for (i, p) in progress.iter().enumerate() {
            let prefix = format!("load {mode}: {}s conns ", i + 1);
            assert!(p.starts_with(&prefix), "{p}");
            for part in [" rate ", "/s p99 ", " errors "] {
                assert!(p.contains(part), "{mode}: {p} lacks {part:?}");
            }
        }
        if all.contains(&"--rate") {
            assert!(progress[1].contains(" sent "), "{progress:?}");
        }
    }
}

#[test]
fn client_help_host_names_and_ipv6() {
    let r = run_tool(&["client", "--help"], LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("usage: readyloop client [--tls [--ca FILE | --insecure]] HOST:PORT"),
        "{}",
        r.stdout
    );
    let server = Server::start(&[]);
    let port = server.line().port();
    let r = run_tool_with_input(
        &["client", &format!("localhost:{port}")],
        b"hello by name\n",
        LIMIT,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "hello by name\n");
    if !have_ipv6() {
        println!("skipped the IPv6 half: no IPv6 loopback on this machine");
        return;
    }
    let v6 = Server::serve(
        &["--line", "[::1]:0", "--http", "off", "--hello", "off"],
        support::Options::default(),
    );
    let addr = v6.line().to_string();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let r = run_tool_with_input(&["client", &addr], b"hello over v6\n", LIMIT);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "hello over v6\n");
}

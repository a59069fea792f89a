//! `readyloop load http` against the real server: every flag of the mode (`--url`, `--addr` +
//! `--path`, `--method`, `--header`, `--body-file`, `--pipeline`, `--conns`, `--close`), status
//! counts in the JSON, a status outside 2xx/3xx failing the run, host names and IPv6.

#![cfg(all(feature = "cli", feature = "load"))]

mod support;

use std::time::Duration;
use support::{have_ipv6, json_num, json_object, run_load, Server, TempDir};

const LIMIT: Duration = Duration::from_secs(30);

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.http())
}

#[test]
fn responses_are_parsed_and_counted_by_status() {
    let server = Server::start(&[]);
    let r = run_load(
        &[
            "http",
            "--url",
            &url(&server, "/healthz"),
            "--conns",
            "4",
            "--duration",
            "1",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    // The contract's keys, with `msgs` counting responses.
    for key in [
        "mode",
        "conns_ok",
        "conns_failed",
        "errors",
        "msgs",
        "msgs_per_s",
    ] {
        assert!(j.contains(&format!("\"{key}\":")), "{key}: {j}");
    }
    let lat = json_object(j, "latency_us");
    for key in ["p50", "p99", "p999", "max"] {
        assert!(lat.contains(&format!("\"{key}\":")), "{key}: {lat}");
    }
    assert!(j.contains("\"mode\":\"http\""), "{j}");
    assert_eq!(json_num(j, "conns_ok"), 4.0, "{j}");
    assert_eq!(json_num(j, "errors"), 0.0, "{j}");
    let msgs = json_num(j, "msgs");
    assert!(msgs > 10.0, "{j}");
    // Every response was a parsed 200 with a latency sample.
    assert_eq!(json_num(json_object(j, "status"), "200"), msgs, "{j}");
    assert_eq!(json_num(j, "non_2xx_3xx"), 0.0, "{j}");
    assert_eq!(json_num(lat, "count"), msgs, "{j}");
    // Closed model: one request in flight per connection.
    assert!(json_num(j, "msgs_sent") - msgs <= 4.0, "{j}");
    assert!(!j.contains("latency_uncorrected_us"), "closed model: {j}");
}

#[test]
fn a_status_outside_2xx_3xx_fails_the_run() {
    let server = Server::start(&[]);
    let r = run_load(
        &[
            "http",
            "--url",
            &url(&server, "/nothing-here"),
            "--conns",
            "2",
            "--duration",
            "0.5",
        ],
        1,
        LIMIT,
    );
    let j = r.json();
    let msgs = json_num(j, "msgs");
    assert!(msgs > 0.0, "{j}");
    assert_eq!(json_num(json_object(j, "status"), "404"), msgs, "{j}");
    assert_eq!(json_num(j, "non_2xx_3xx"), msgs, "{j}");
    assert_eq!(json_num(j, "checks_failed"), msgs, "{j}");
    assert_eq!(
        json_num(json_object(j, "errors_by_kind"), "http: status 404"),
        msgs,
        "{j}"
    );
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "one error line: {errors:?}");
    assert!(errors[0].contains("http: status 404"), "{errors:?}");
}

#[test]
fn addr_and_path_method_and_pipeline() {
    let server = Server::start(&[]);
    let addr = server.http().to_string();
    // HEAD: the response has a Content-Length but no body; the parser must know.
    let r = run_load(
        &[
            "http",
            "--addr",
            &addr,
            "--path",
            "/",
            "--method",
            "HEAD",
            "--conns",
            "2",
            "--pipeline",
            "8",
            "--duration",
            "1",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    let msgs = json_num(j, "msgs");
    assert!(msgs > 16.0, "{j}");
    assert_eq!(json_num(json_object(j, "status"), "200"), msgs, "{j}");
    assert!(
        json_num(j, "msgs_sent") - msgs <= 16.0,
        "8 in flight on each of 2: {j}"
    );
    // The page itself is larger than all the bytes received: bodies were not sent.
    assert!(json_num(j, "bytes_received") < msgs * 1000.0, "{j}");
    // A method the route does not allow: 405, counted as such.
    let r = run_load(
        &[
            "http",
            "--addr",
            &addr,
            "--path",
            "/healthz",
            "--method",
            "DELETE",
            "--conns",
            "1",
            "--duration",
            "0.5",
        ],
        1,
        LIMIT,
    );
    let j = r.json();
    assert_eq!(
        json_num(json_object(j, "status"), "405"),
        json_num(j, "msgs"),
        "{j}"
    );
}

#[test]
fn body_file_arrives_whole() {
    let dir = TempDir::new("load-body");
    let body: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let body_path = dir.path().join("body.bin");
    std::fs::write(&body_path, &body).unwrap();
    let server = Server::http_only(&[]);
    let uploads = server.uploads();
    // A raw upload per request: 202 for each, and the stored files hold exactly the body.
    let r = run_load(
        &[
            "http",
            "--url",
            &url(&server, "/upload-file?name=body.bin"),
            "--method",
            "POST",
            "--body-file",
            body_path.to_str().unwrap(),
            "--header",
            "Content-Type: application/octet-stream",
            "--conns",
            "1",
            "--rate",
            "20",
            "--duration",
            "1",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    let msgs = json_num(j, "msgs");
    assert!(msgs >= 5.0, "{j}");
    assert_eq!(json_num(json_object(j, "status"), "202"), msgs, "{j}");
    // The uploads are stored by background tasks after the 202: wait for the first.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let files: Vec<_> = std::fs::read_dir(&uploads)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("body"))
            .collect();
        if let Some(f) = files.first() {
            break f.path();
        }
        assert!(std::time::Instant::now() < deadline, "no upload stored");
        std::thread::sleep(Duration::from_millis(50));
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read(&stored).unwrap().len() < body.len() && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read(&stored).unwrap() == body,
        "{stored:?} differs from the body"
    );
}

#[test]
fn header_reaches_the_server() {
    let server = Server::start(&[]);
    // `Connection: close` from --header: the server closes after each response and every
    // request needs a connection of its own, which the counts show.
    let r = run_load(
        &[
            "http",
            "--url",
            &url(&server, "/healthz"),
            "--header",
            "Connection: close",
            "--conns",
            "2",
            "--duration",
            "1",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    let msgs = json_num(j, "msgs");
    assert!(msgs > 10.0, "{j}");
    assert!(
        json_num(j, "conns_ok") >= msgs,
        "a connection per response: {j}"
    );
    assert_eq!(json_num(j, "errors"), 0.0, "{j}");
}

#[test]
fn close_opens_a_connection_per_request() {
    let server = Server::start(&[]);
    let r = run_load(
        &[
            "http",
            "--url",
            &url(&server, "/healthz"),
            "--close",
            "--conns",
            "4",
            "--duration",
            "1",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    let msgs = json_num(j, "msgs");
    assert!(msgs > 10.0, "{j}");
    assert_eq!(json_num(json_object(j, "status"), "200"), msgs, "{j}");
    // One connect per response (plus those still in progress at the end).
    assert!(
        json_num(j, "conns_ok") >= msgs && json_num(j, "conns_ok") <= msgs + 4.0,
        "{j}"
    );
    assert_eq!(json_num(j, "errors"), 0.0, "{j}");
    // Under --rate too: each scheduled request opens its connection.
    let r = run_load(
        &[
            "http",
            "--url",
            &url(&server, "/healthz"),
            "--close",
            "--conns",
            "4",
            "--rate",
            "100",
            "--duration",
            "1",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    let msgs = json_num(j, "msgs");
    assert!((80.0..=101.0).contains(&msgs), "{j}");
    assert!(json_num(j, "conns_ok") >= msgs, "{j}");
}

#[test]
fn host_names_resolve_once_at_start() {
    let server = Server::start(&[]);
    let port = server.http().port();
    let r = run_load(
        &[
            "http",
            "--url",
            &format!("http://localhost:{port}/healthz"),
            "--conns",
            "2",
            "--duration",
            "0.5",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    assert!(json_num(j, "msgs") > 0.0, "{j}");
    assert_eq!(json_num(j, "errors"), 0.0, "{j}");
    let line = server.line().port();
    let r = run_load(
        &[
            "echo",
            "--addr",
            &format!("localhost:{line}"),
            "--conns",
            "2",
            "--duration",
            "0.5",
        ],
        0,
        LIMIT,
    );
    assert!(json_num(r.json(), "msgs") > 0.0, "{}", r.json());
}

#[test]
fn ipv6_targets() {
    if !have_ipv6() {
        println!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let server = Server::serve(
        &["--http", "[::1]:0", "--line", "[::1]:0", "--hello", "off"],
        support::Options::default(),
    );
    let http = server.http();
    let r = run_load(
        &[
            "http",
            "--url",
            &format!("http://{http}/healthz"),
            "--conns",
            "2",
            "--duration",
            "0.5",
        ],
        0,
        LIMIT,
    );
    let j = r.json();
    assert!(json_num(j, "msgs") > 0.0, "{j}");
    assert!(j.contains("\"addr\":\"[::1]:"), "{j}");
    let r = run_load(
        &[
            "ws-echo",
            "--addr",
            &http.to_string(),
            "--conns",
            "2",
            "--duration",
            "0.5",
        ],
        0,
        LIMIT,
    );
    assert!(json_num(r.json(), "msgs") > 0.0, "{}", r.json());
    let line = server.line().to_string();
    let r = run_load(
        &["echo", "--addr", &line, "--conns", "2", "--duration", "0.5"],
        0,
        LIMIT,
    );
    assert!(json_num(r.json(), "msgs") > 0.0, "{}", r.json());
}

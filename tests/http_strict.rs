//! HTTP details a strict client relies on, on the real binary: absolute-form request targets
//! (RFC 9112 §3.2.2) over a raw socket and from `curl --request-target`, and HTTP/1.0
//! persistent connections, which must be told they persist (`Connection: keep-alive`) or a
//! 1.0 client will not reuse them.

#![cfg(all(feature = "cli", feature = "http"))]

mod support;

use std::process::Command;
use support::*;

#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    let server = Server::http_only(&[]);
    let addr = server.http();
    let mut c = server.http_client();
    // (request target, status, body starts with)
    for (target, status, body) in [
        (format!("http://{addr}/healthz"), 200, "ok"),
        ("HTTP://example.test/healthz?x=1".to_string(), 200, "ok"),
        (
            "https://example.test:8443/tasks/999".to_string(),
            404,
            "no such task",
        ),
        ("http://example.test".to_string(), 200, "<!doctype html>"),
        ("http://example.test/nope".to_string(), 404, "not found"),
    ] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, status, "{target}: {}", r.text());
        assert!(
            r.text().to_ascii_lowercase().starts_with(body),
            "{target}: {}",
            r.text()
        );
        assert!(!r.closes(), "{target}");
    }
    // An upload too: the query after an absolute target is the query.
    c.send(
        format!(
            "POST http://{addr}/upload-file?name=absolute.txt HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Length: 3\r\n\r\nabc"
        )
        .as_bytes(),
    );
    let task = task_id(&c.response());
    assert!(server
        .wait_task(task)
        .contains("\"stored\": \"absolute.txt\""));
    // No host in the authority: 400, and the connection closes.
    c.send(b"GET http:///healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 400, "{}", r.text());
    c.expect_closed();
}

#[test]
fn curl_request_target_in_absolute_form() {
    if !have_curl() {
        return;
    }
    let server = Server::http_only(&[]);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--request-target"])
        .arg(server.http_url("/healthz"))
        .arg(server.http_url("/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[test]
fn http_1_0_keep_alive_is_announced_and_the_connection_serves_again() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    for _ in 0..2 {
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head);
    }
    // An upload's answer says so too.
    c.send(
        b"POST /upload-file?name=ten.txt HTTP/1.0\r\nConnection: keep-alive\r\n\
          Content-Length: 2\r\n\r\n10",
    );
    let r = c.response();
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head);
    // A 1.0 request that does not ask is closed, and told so.
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
    c.expect_closed();
    // HTTP/1.1 keeps the connection without saying anything.
    let mut c = server.http_client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), None, "{}", r.head);
}

//! HTTP/1.1 on the real binary, over loopback: keep-alive (with curl), pipelining, chunked
//! bodies, `Expect: 100-continue`, HEAD, HTTP/1.0, `Connection: close`, every limit and timeout
//! of issue 3, and a table of malformed requests, each answered with the right status and a
//! close while a keep-alive connection opened earlier keeps working.

#![cfg(all(feature = "cli", feature = "http"))]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn curl_reuses_one_keepalive_connection_for_two_urls() {
    if !have_curl() {
        return;
    }
    let server = Server::http_only(&[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{num_connects}\\n"])
        .arg(server.http_url("/healthz"))
        .arg(server.http_url("/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // One connect for the first URL, none for the second: the connection was reused.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 1\n200 0\n");
    let stats = server.get("/stats").text();
    // curl's one connection plus this /stats request's own.
    assert_eq!(json_u64(&stats, "accepted_total"), Some(2), "{stats}");
}

#[test]
fn keepalive_serves_many_requests_on_one_connection() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    for _ in 0..20 {
        c.send(GET_HEALTHZ);
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        assert!(!r.closes());
    }
    let stats = server.get("/stats").text();
    assert_eq!(json_u64(&stats, "accepted_total"), Some(2), "{stats}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /no-such-page HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /stats HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let statuses: Vec<u16> = (0..4).map(|_| c.response().status).collect();
    assert_eq!(statuses, [200, 404, 405, 200]);
    // Still usable afterwards.
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().text(), "ok");
}

#[test]
fn pipelined_requests_split_at_odd_places_still_answered_in_order() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    let all: Vec<u8> = [
        GET_HEALTHZ,
        b"GET /tasks/77 HTTP/1.1\r\nHost: t\r\n\r\n",
        GET_HEALTHZ,
    ]
    .concat();
    for piece in all.chunks(7) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.response().status, 200);
    assert_eq!(c.response().status, 404);
    assert_eq!(c.response().status, 200);
}

#[test]
fn head_has_headers_and_no_body() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert!(len > 100, "HEAD / advertises the page's length, got {len}");
    // Had a body been sent, this answer would start in the middle of it.
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().text(), "ok");
    // GET / carries exactly the advertised bytes.
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().body.len(), len);
}

#[test]
fn http10_closes_unless_keepalive_is_asked_for() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    c.expect_closed();

    let mut c = server.http_client();
    for _ in 0..2 {
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
}

#[test]
fn connection_close_is_honoured() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.closes(), "{:?}", r.headers);
    c.expect_closed();
}

#[test]
fn unknown_route_is_404_and_the_connection_stays() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 404);
    c.send(b"GET /tasks/999999 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 404);
    c.send(b"GET /tasks/not-a-number HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 404);
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().status, 200);
}

#[test]
fn wrong_method_is_405_with_allow() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    for (req, allow) in [
        (
            &b"DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            "GET, HEAD",
        ),
        (
            b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            "GET, HEAD",
        ),
        (b"GET /upload-file HTTP/1.1\r\nHost: t\r\n\r\n", "POST"),
        (
            b"POST /tasks/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            "GET, HEAD",
        ),
    ] {
        c.send(req);
        let r = c.response();
        assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(req));
        assert_eq!(r.header("allow"), Some(allow));
    }
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().status, 200);
}

#[test]
fn head_over_16_kib_is_431_and_closes() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    let mut req = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    while req.len() <= 17 * 1024 {
        req.extend_from_slice(format!("X-Pad-{}: {}\r\n", req.len(), "a".repeat(100)).as_bytes());
    }
    // No final empty line: the server must refuse before the head is complete.
    c.send(&req);
    assert_eq!(c.response().status, 431);
    c.expect_closed();

    // A head just under the limit is fine.
    let mut c = server.http_client();
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec();
    req.extend_from_slice(format!("X-Pad: {}\r\n\r\n", "a".repeat(15 * 1024)).as_bytes());
    c.send(&req);
    assert_eq!(c.response().status, 200);
}

#[test]
fn body_over_max_body_is_413_and_closes() {
    let server = Server::http_only(&["--max-body", "1000"]);
    // Content-Length: refused at the head, before any body byte.
    let mut c = server.http_client();
    c.send(b"POST /upload-file?name=big.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    assert_eq!(c.response().status, 413);
    c.expect_closed();
    // Chunked: refused at the chunk that goes past the limit.
    let mut c = server.http_client();
    c.send(
        b"POST /upload-file?name=big.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    c.send(&[b"3e8\r\n".as_slice(), &[b'a'; 1000], b"\r\n1\r\n"].concat());
    assert_eq!(c.response().status, 413);
    c.expect_closed();
    // Exactly the limit is accepted.
    let mut c = server.http_client();
    c.send(&raw_upload_head("ok.bin", 1000));
    c.send(&[b'b'; 1000]);
    let task = task_id(&c.response());
    assert!(server.wait_task(task).contains("\"done\""));
    assert!(
        !server.uploads().join("big.bin").exists(),
        "a refused upload left a file"
    );
}

#[test]
fn chunked_request_body_with_extensions_and_trailers() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(
        b"POST /upload-file?name=chunked.txt HTTP/1.1\r\nHost: t\r\n\
          Transfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n\
          1 ; a=\"b\"; c\r\n,\r\n\
          7\r\n world!\r\n\
          0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
    );
    let task = task_id(&c.response());
    let json = server.wait_task(task);
    assert!(json.contains("\"done\""), "{json}");
    assert_eq!(
        std::fs::read(server.uploads().join("chunked.txt")).unwrap(),
        b"hello, world!"
    );
    // The trailers were consumed: the connection is in sync for the next request.
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().text(), "ok");
}

#[test]
fn expect_100_continue_before_the_body() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(
        b"POST /upload-file?name=cont.txt HTTP/1.1\r\nHost: t\r\n\
          Expect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    let interim = c.response();
    assert_eq!(interim.status, 100);
    c.send(b"body");
    let task = task_id(&c.response());
    assert!(server.wait_task(task).contains("\"done\""));
    assert_eq!(
        std::fs::read(server.uploads().join("cont.txt")).unwrap(),
        b"body"
    );

    // Refused at the head: the final answer comes instead of 100, and the connection closes
    // (the client has not sent the body, so it cannot be skipped).
    let mut c = server.http_client();
    c.send(
        b"POST /nowhere HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    assert_eq!(c.response().status, 404);
    c.expect_closed();
}

#[test]
fn slowloris_gets_408_within_the_header_timeout() {
    let server = Server::http_only(&["--header-timeout", "1"]);
    let mut c = server.http_client();
    let start = Instant::now();
    let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut sent = 0;
    // One byte every 200 ms: the head would take ~16 s; the server must cut it off at ~1 s.
    while sent < req.len() && start.elapsed() < Duration::from_secs(5) {
        c.send(&req[sent..=sent]);
        sent += 1;
        if c.poll_read(Duration::from_millis(200)) {
            break;
        }
    }
    let r = c.response();
    let took = start.elapsed();
    assert_eq!(r.status, 408);
    c.expect_closed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "408 after {took:?}"
    );
    assert!(sent < req.len());
}

#[test]
fn a_body_trickling_a_byte_at_a_time_gets_408() {
    let server = Server::http_only(&["--header-timeout", "1"]);
    let mut c = server.http_client();
    c.send(b"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    let start = Instant::now();
    // One byte every 100 ms: each arrival is activity, but 1 KiB per second is never reached.
    while start.elapsed() < Duration::from_secs(5) {
        c.send(b"x");
        if c.poll_read(Duration::from_millis(100)) {
            break;
        }
    }
    let r = c.response();
    let took = start.elapsed();
    assert_eq!(r.status, 408);
    c.expect_closed();
    assert!(took < Duration::from_secs(3), "408 after {took:?}");
}

#[test]
fn idle_keepalive_connection_is_closed_after_the_keepalive_timeout() {
    let server = Server::http_only(&["--keepalive-timeout", "1"]);
    let mut c = server.http_client();
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().status, 200);
    let start = Instant::now();
    c.expect_closed();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // A connection that keeps talking is not cut off.
    let mut c = server.http_client();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        c.send(GET_HEALTHZ);
        assert_eq!(c.response().status, 200);
    }
}

/// Malformed requests: `(what, bytes, status)`. Each is sent on its own connection, must get
/// `status`, and the connection must then close.
const MALFORMED: &[(&str, &[u8], u16)] = &[
    ("garbage request line", b"HELLO\r\n\r\n", 400),
    ("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("missing version", b"GET /\r\nHost: t\r\n\r\n", 400),
    ("bad protocol name", b"GET / HTTX/1.1\r\nHost: t\r\n\r\n", 400),
    ("unsupported version", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    ("NUL in target", b"GET /a\0b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ("NUL in header value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n", 400),
    ("NUL in header name", b"GET / HTTP/1.1\r\nHost: t\r\nX\0A: b\r\n\r\n", 400),
    ("space in header name", b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: b\r\n\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    ("header folding", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n  folded\r\n\r\n", 400),
    ("bare CR in value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400),
    ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (
        "conflicting Content-Length",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    ),
    (
        "conflicting Content-Length list",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    ),
    ("negative Content-Length", b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    ("plus-signed Content-Length", b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("hex Content-Length", b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    (
        "overflowing Content-Length",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 184467440737095516160\r\n\r\n",
        400,
    ),
    (
        "Content-Length over max-body",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551615\r\n\r\n",
        413,
    ),
    (
        "Transfer-Encoding and Content-Length",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunked not last",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "chunked twice",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        400,
    ),
    (
        "unsupported transfer coding",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    (
        "Transfer-Encoding in HTTP/1.0",
        b"POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "non-hex chunk size",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    (
        "negative chunk size",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "17-digit chunk size",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n",
        400,
    ),
    (
        "chunk size over max-body",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        413,
    ),
    (
        "junk after chunk size",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n",
        400,
    ),
    (
        "chunk data longer than its size",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size line with bare LF",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
        400,
    ),
    (
        "folded trailer",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n folded\r\n\r\n",
        400,
    ),
    ("unknown expectation", b"POST /healthz HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 0\r\n\r\n", 417),
];

#[test]
fn malformed_requests_get_their_status_and_close_while_others_keep_working() {
    assert!(MALFORMED.len() >= 20);
    let server = Server::http_only(&[]);
    // Opened before the first bad request, used after each one.
    let mut good = server.http_client();
    good.send(GET_HEALTHZ);
    assert_eq!(good.response().status, 200);
    let mut failures = Vec::new();
    for &(what, bytes, status) in MALFORMED {
        let mut bad = server.http_client();
        bad.send(bytes);
        match bad.try_response(false) {
            Some(r) if r.status == status => {
                if !r.closes() {
                    failures.push(format!("{what}: {status} without Connection: close"));
                }
                bad.expect_closed();
            }
            Some(r) => failures.push(format!(
                "{what}: got {} {:?}, want {status}",
                r.status,
                r.text()
            )),
            None => failures.push(format!("{what}: closed without an answer, want {status}")),
        }
        good.send(GET_HEALTHZ);
        let r = good.response();
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "after {what}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_method_is_501_and_the_connection_stays_in_sync() {
    let server = Server::http_only(&[]);
    let mut c = server.http_client();
    c.send(b"BREW /pot HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.response().status, 501);
    c.send(GET_HEALTHZ);
    assert_eq!(c.response().text(), "ok");
}

#[test]
fn stats_reports_the_contract_fields() {
    let server = Server::http_only(&[]);
    let r = server.get("/stats");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    for key in [
        "connections",
        "accepted_total",
        "bytes_read",
        "bytes_written",
        "loop_iterations",
        "tasks_queued",
        "tasks_done",
        "tasks_failed",
        "uptime_s",
    ] {
        assert!(
            text.contains(&format!("\"{key}\"")),
            "{key} missing in {text}"
        );
    }
}

#[test]
fn sigterm_closes_idle_and_half_sent_connections_promptly() {
    let mut server = Server::http_only(&["--header-timeout", "20", "--shutdown-timeout", "30"]);
    let mut idle = server.http_client();
    idle.send(GET_HEALTHZ);
    assert_eq!(idle.response().status, 200);
    let mut half = server.http_client();
    half.send(b"GET /healthz HTTP/1.1\r\nHo");
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let status = server.terminate(Duration::from_secs(15));
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    idle.expect_closed();
    // The half-sent request was promised nothing: refused at once, not held until its header
    // deadline.
    assert_eq!(half.response().status, 503);
    half.expect_closed();
    // (The idle client's close is immediate: it has nothing unread. The half-sent one is a
    // close in the middle of its input, which lingers for the rest of its head, up to the 2 s
    // linger timeout, since this client reads only afterwards; the bound leaves room for it.)
    assert!(took < Duration::from_secs(6), "exit took {took:?}");
}

//! HTTPS, WSS and TLS lines with real clients: rustls (buffered, independent of the server's
//! unbuffered session), curl, openssl s_client and `readyloop client --tls`, against
//! certificates made for each test (tests/support/tls.rs). Each key type, both protocol
//! versions, ALPN, keep-alive, pipelining, uploads, session resumption, 1,000 connections at
//! once, and what the log says about it all.
//!
//! The bad-input and shutdown cases are in tests/tls_bad_input.rs.

#![cfg(all(feature = "tls", feature = "cli", feature = "http"))]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// An HTTPS server (HTTP listener only) with `certs`, plus `extra` flags.
fn https_server(certs: &Certs, extra: &[&str]) -> Server {
    let mut args: Vec<String> = certs.serve_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::http_only(&args)
}

#[test]
fn every_key_type_serves_https_over_tls12_and_tls13() {
    for kind in [KeyKind::EcdsaP256, KeyKind::Ed25519, KeyKind::Rsa2048] {
        if kind == KeyKind::Rsa2048 && !have_program("openssl", "version") {
            continue;
        }
        let certs = Certs::new(kind);
        let server = https_server(&certs, &[]);
        for (versions, want) in [
            (
                &[&rustls::version::TLS13][..],
                rustls::ProtocolVersion::TLSv1_3,
            ),
            (
                &[&rustls::version::TLS12][..],
                rustls::ProtocolVersion::TLSv1_2,
            ),
        ] {
            let mut c = TlsClient::connect(server.http(), certs.client_config_with(versions));
            assert_eq!(c.conn().protocol_version(), Some(want), "{kind:?}");
            assert_eq!(c.conn().alpn_protocol(), Some(&b"http/1.1"[..]), "{kind:?}");
            assert_eq!(
                c.get("/healthz"),
                (200, b"ok".to_vec()),
                "{kind:?} {want:?}"
            );
            // Keep-alive: the same connection serves a second request.
            let (status, body) = c.get("/stats");
            assert_eq!(status, 200, "{kind:?}");
            assert!(String::from_utf8_lossy(&body).contains("accepted_total"));
        }
    }
}

#[test]
fn the_listening_line_says_https() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let cert = certs.cert();
    let key = certs.key();
    let mut child = spawn_serve(&[
        "--http",
        "127.0.0.1:0",
        "--line",
        "off",
        "--hello",
        "off",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let lines = line_reader(child.stdout.take().unwrap());
    let line = lines
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("a listening line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening https 127.0.0.1:"), "{line:?}");
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let server = https_server(&certs, &[]);
    let mut c = TlsClient::connect(server.http(), certs.client_config());
    // Three requests in one write, so in one TLS record: the server parses them out of one
    // record's plaintext and answers each.
    c.send(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.response(), (200, b"ok".to_vec()));
    assert_eq!(c.response().0, 404);
    assert_eq!(c.response(), (200, b"ok".to_vec()));
    // A request split across records, byte by byte: the same answer.
    for b in b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" {
        c.send(&[*b]);
    }
    assert_eq!(c.response(), (200, b"ok".to_vec()));
}

#[test]
fn curl_gets_keeps_alive_and_uploads_over_https() {
    if !have_program("curl", "--version") {
        return;
    }
    let certs = Certs::new(KeyKind::EcdsaP256);
    let server = https_server(&certs, &[]);
    let base = format!("https://localhost:{}", server.http().port());
    let resolve = format!("localhost:{}:127.0.0.1", server.http().port());
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", &certs.ca_arg()])
            .args(["--resolve", &resolve])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Two GETs in one curl run: the second reuses the connection (0 new connects).
    let healthz = format!("{base}/healthz");
    let got = curl(&["-w", " %{http_code} %{num_connects}\\n", &healthz, &healthz]);
    assert_eq!(got, "ok 200 1\nok 200 0\n");
    // HTTP/1.1 was negotiated by ALPN (curl offers h2 too, and falls back).
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--cacert",
            &certs.ca_arg(),
            "--resolve",
            &resolve,
        ])
        .arg(&healthz)
        .output()
        .unwrap();
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(
        verbose.contains("ALPN: server accepted http/1.1"),
        "{verbose}"
    );
    // A 2 MB upload, raw and as a form: stored intact.
    let data = pseudo_random(7, 2_000_000);
    let file = server.root().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let raw = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Content-Type: application/octet-stream",
        &format!("{base}/upload-file?name=raw.bin"),
    ]);
    let form = curl(&[
        "-F",
        &format!("file=@{}", file.display()),
        &format!("{base}/upload-file"),
    ]);
    for (answer, name) in [(raw, "raw.bin"), (form, "big.bin")] {
        let task = json_u64(&answer, "task").unwrap_or_else(|| panic!("{answer}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = curl(&[&format!("{base}/tasks/{task}")]);
            if status.contains("\"done\"") {
                break;
            }
            assert!(!status.contains("\"failed\""), "{status}");
            assert!(
                std::time::Instant::now() < deadline,
                "task {task}: {status}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let stored = std::fs::read(server.uploads().join(name)).unwrap();
        assert_eq!(sha256_hex(&stored), sha256_hex(&data), "{name}");
    }
}

/// `openssl s_client` with `args`, sending `stdin`; (exit success, stdout + stderr).
fn s_client(server: &Server, certs: &Certs, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &server.http().to_string()])
        .args(["-servername", "localhost", "-CAfile", &certs.ca_arg()])
        .args(["-verify_return_error", "-ign_eof", "-crlf"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out_rx = collect(child.stdout.take().unwrap());
    let err_rx = collect(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let _ = child.kill();
    let status = status.expect("s_client hung");
    let out = out_rx.recv_timeout(IO_TIMEOUT).unwrap_or_default();
    let err = err_rx.recv_timeout(IO_TIMEOUT).unwrap_or_default();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    (status.success(), text)
}

#[test]
fn openssl_s_client_protocol_versions_and_alpn() {
    if !have_program("openssl", "version") {
        return;
    }
    let certs = Certs::new(KeyKind::EcdsaP256);
    let server = https_server(&certs, &[]);
    let get = b"GET /healthz HTTP/1.1\nHost: t\nConnection: close\n\n";
    for (flag, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let (ok, text) = s_client(&server, &certs, &[flag, "-alpn", "http/1.1"], get);
        assert!(ok, "{flag}: {text}");
        assert!(text.contains(&format!("New, {name}")), "{flag}: {text}");
        assert!(text.contains("ALPN protocol: http/1.1"), "{flag}: {text}");
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{flag}: {text}"
        );
        assert!(text.contains("HTTP/1.1 200 OK"), "{flag}: {text}");
    }
    // No ALPN offered: served as HTTP/1.1 all the same.
    let (ok, text) = s_client(&server, &certs, &["-tls1_3"], get);
    assert!(ok && text.contains("No ALPN negotiated"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    // TLS 1.1 is refused with an alert (SECLEVEL=0 lets openssl offer it at all).
    let (ok, text) = s_client(
        &server,
        &certs,
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
        get,
    );
    assert!(!ok, "TLS 1.1 was accepted: {text}");
    assert!(text.contains("alert"), "no alert for TLS 1.1: {text}");
    assert!(!text.contains("HTTP/1.1 200"), "{text}");
    // `h2` alone: a clean refusal, the no_application_protocol alert.
    let (ok, text) = s_client(&server, &certs, &["-alpn", "h2"], get);
    assert!(!ok, "{text}");
    assert!(text.contains("no application protocol"), "{text}");
    // `h2,http/1.1`: http/1.1 is chosen.
    let (ok, text) = s_client(&server, &certs, &["-alpn", "h2,http/1.1"], get);
    assert!(ok && text.contains("ALPN protocol: http/1.1"), "{text}");
    // And the server serves on.
    let mut c = TlsClient::connect(server.http(), certs.client_config());
    assert_eq!(c.get("/healthz"), (200, b"ok".to_vec()));
}

#[test]
fn tickets_resume_sessions_on_both_versions() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let server = https_server(&certs, &[]);
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12]] {
        // One config, so one client session store: the second connection offers the ticket.
        let config = certs.client_config_with(versions);
        let mut first = TlsClient::connect(server.http(), config.clone());
        // TLS 1.3 tickets come after the handshake: a round trip makes sure they arrived.
        assert_eq!(first.get("/healthz").0, 200);
        assert_eq!(
            first.conn().handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        let mut second = TlsClient::connect(server.http(), config);
        assert_eq!(second.get("/healthz").0, 200);
        assert_eq!(
            second.conn().handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?}"
        );
    }
}

#[test]
fn the_interactive_client_speaks_tls() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let mut args = certs.serve_args();
    args.extend(["--line-tls".to_string()]);
    let mut all = vec!["--hello", "off"];
    all.extend(args.iter().map(String::as_str));
    let server = Server::start(&all);
    let line = format!("localhost:{}", server.line().port());
    let https = format!("localhost:{}", server.http().port());
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(BIN)
            .arg("client")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("client hung");
        let out = String::from_utf8(out.recv_timeout(IO_TIMEOUT).unwrap()).unwrap();
        let err = String::from_utf8(err.recv_timeout(IO_TIMEOUT).unwrap()).unwrap();
        (status.code(), out, err)
    };
    let ca = certs.ca_arg();
    // Lines over TLS, trusting the CA; stdin EOF sends close_notify, the server answers
    // what it got and closes.
    let (code, out, err) = run(&["--tls", "--ca", &ca, &line], "héllo\nworld\n".as_bytes());
    assert_eq!((code, out.as_str()), (Some(0), "héllo\nworld\n"), "{err}");
    // --insecure trusts anything; the server name is not checked either.
    let ip_line = server.line().to_string();
    let (code, out, err) = run(&["--tls", "--insecure", &ip_line], b"x\n");
    assert_eq!((code, out.as_str()), (Some(0), "x\n"), "{err}");
    // HTTPS by hand.
    let (code, out, err) = run(
        &["--tls", "--ca", &ca, &https],
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("HTTP/1.1 200 OK") && out.ends_with("ok"),
        "{out}"
    );
    // A certificate the client does not trust (its own CA is another one): one error line.
    let other = Certs::new(KeyKind::EcdsaP256);
    let (code, out, err) = run(&["--tls", "--ca", &other.ca_arg(), &line], b"x\n");
    assert_eq!(code, Some(2), "{out} {err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    // Flags that make no sense together, and a --ca that is no certificate file.
    let (code, _, err) = run(&["--tls", "--ca", &ca, "--insecure", &line], b"");
    assert_eq!(code, Some(2));
    assert!(err.contains("not both"), "{err}");
    let (code, _, err) = run(&["--tls", &line], b"");
    assert_eq!(code, Some(2));
    assert!(err.contains("--ca FILE"), "{err}");
    let key = certs.key();
    let (code, _, err) = run(&["--tls", "--ca", key.to_str().unwrap(), &line], b"");
    assert_eq!(code, Some(2));
    assert!(err.contains("key.pem: no certificate"), "{err}");
}

/// A minimal WebSocket client over a `TlsClient`: the upgrade, then one masked text frame at
/// a time (this test's messages are short).
fn wss_open(c: &mut TlsClient, path: &str) {
    c.send(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    let (status, _) = c.response();
    assert_eq!(status, 101);
}

fn wss_send(c: &mut TlsClient, text: &str) {
    let mask = [1u8, 2, 3, 4];
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.send(&frame);
}

fn wss_recv(c: &mut TlsClient) -> String {
    let head = c.read_n(2);
    assert_eq!(head[0], 0x81, "a final text frame");
    let len = match head[1] {
        126 => {
            let l = c.read_n(2);
            u16::from_be_bytes([l[0], l[1]]) as usize
        }
        n => n as usize,
    };
    String::from_utf8(c.read_n(len)).unwrap()
}

#[test]
fn wss_echo_and_broadcast() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let server = https_server(&certs, &["--ws-ping", "0"]);
    let mut e = TlsClient::connect(server.http(), certs.client_config());
    wss_open(&mut e, "/echo");
    wss_send(&mut e, "over wss");
    assert_eq!(wss_recv(&mut e), "over wss");
    let mut a = TlsClient::connect(server.http(), certs.client_config());
    let mut b = TlsClient::connect(server.http(), certs.client_config());
    wss_open(&mut a, "/ws");
    wss_open(&mut b, "/ws");
    wss_send(&mut a, "안녕");
    for c in [&mut a, &mut b] {
        assert_eq!(wss_recv(c), "📢 새로운 알림: 안녕");
    }
}

#[test]
fn a_thousand_tls_connections_at_once_are_all_served() {
    const CONNS: usize = 1000;
    const THREADS: usize = 4;
    raise_nofile();
    let certs = Certs::new(KeyKind::EcdsaP256);
    let server = https_server(&certs, &[]);
    let addr = server.http();
    let config = certs.client_config();
    let before = server.rss();
    // Handshakes from four threads; every connection stays open until all are made.
    let per_thread: Vec<Vec<TlsClient>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let config = config.clone();
                s.spawn(move || {
                    (0..CONNS / THREADS)
                        .map(|_| TlsClient::connect(addr, config.clone()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut clients: Vec<TlsClient> = per_thread.into_iter().flatten().collect();
    assert_eq!(clients.len(), CONNS);
    // Each makes a request, all still open: every one is answered.
    for c in clients.iter_mut() {
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for c in clients.iter_mut() {
        assert_eq!(c.response(), (200, b"ok".to_vec()));
    }
    let (_, stats) = clients[0].get("/stats");
    let stats = String::from_utf8(stats).unwrap();
    let open = json_u64(&stats, "http").expect("open http connections in /stats");
    assert!(open >= CONNS as u64, "{open} open: {stats}");
    let grown = server.rss().saturating_sub(before);
    eprintln!(
        "{CONNS} idle TLS connections after one request each: RSS grew {} KiB ({} B each)",
        grown / 1024,
        grown / CONNS as u64
    );
    drop(clients);
    // Every descriptor comes back (the server's own, a handful, remain).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .count();
        if fds < 50 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{fds} fds still open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_trace_log_narrates_the_tls_layer() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let mut args = certs.serve_args();
    args.extend(["--http", "127.0.0.1:0", "--line", "off", "--hello", "off"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::serve(
        &args,
        Options {
            rust_log: Some("readyloop=trace".into()),
            ..Options::default()
        },
    );
    let config = certs.client_config_with(&[&rustls::version::TLS13]);
    let mut c = TlsClient::connect(server.http(), config);
    assert_eq!(c.get("/healthz").0, 200);
    c.tls.conn.send_close_notify();
    c.tls.flush().unwrap();
    assert_eq!(c.ending(), Ending::CloseNotify);
    assert!(server.wait_log("closed (Done)", IO_TIMEOUT));
    let log = server.stderr_text();
    let tls: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("readyloop::tls]"))
        .collect();
    let want = [
        "conn 0 handshake begins (server)",
        "conn 0 records in: ",
        "conn 0 handshake record out: ",
        "conn 0 handshake done: TLSv1_3, TLS13_",
        ", ALPN http/1.1, full handshake",
        "conn 0 record in: 42 bytes of plaintext",
        "conn 0 record out: ",
        "conn 0 close_notify sealed",
    ];
    for w in want {
        assert!(
            tls.iter().any(|l| l.contains(w)),
            "no {w:?} in the TLS log:\n{}",
            tls.join("\n")
        );
    }
    // The handshake is reported once, at debug.
    let done: Vec<_> = tls
        .iter()
        .filter(|l| l.contains("handshake done"))
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done[0].starts_with("[DEBUG"), "{}", done[0]);
    // The peer's close_notify is narrated by the loop.
    assert!(log.contains("TLS close_notify from the peer"), "{log}");
}

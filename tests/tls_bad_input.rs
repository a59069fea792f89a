//! TLS peers that misbehave, start-up files that are wrong, and a shutdown with TLS clients
//! connected. Every bad peer gets a bounded answer (an alert, a close; never a hang), ends
//! only its own connection, and is logged once at debug (target `readyloop::tls`); a
//! connection made before it is still served after it. Every bad file stops the server
//! before any `listening` line with one error line naming the file and exit 2.

#![cfg(all(feature = "tls", feature = "cli", feature = "http"))]

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// An HTTPS server logging at debug, with a 1 s header timeout (the stalled-handshake case).
fn server(certs: &Certs) -> (Server, TempDir) {
    let dir = TempDir::new("tls-bad");
    let uploads = dir.path().join("uploads");
    let mut args = certs.serve_args();
    args.extend(
        [
            "--http",
            "127.0.0.1:0",
            "--line",
            "off",
            "--hello",
            "off",
            "--header-timeout",
            "1",
            "--upload-dir",
            uploads.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::serve(
        &args,
        Options {
            rust_log: Some("readyloop=debug".into()),
            ..Options::default()
        },
    );
    (server, dir)
}

/// Debug lines of the TLS layer that report a peer's fault (every line but the handshake
/// reports).
fn tls_faults(server: &Server) -> Vec<String> {
    server
        .stderr_text()
        .lines()
        .filter(|l| l.starts_with("[DEBUG readyloop::tls]") && !l.contains("handshake done"))
        .map(String::from)
        .collect()
}

/// Reads a raw stream to its end (EOF or reset) within `limit`; what came (an alert, say).
fn raw_ending(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("no end within {limit:?} (got {all:?}): {e}"),
        }
    }
}

/// Sends half a ClientHello and waits: the server must close without a word, after about
/// the 1 s deadline the test server was given (not at once, and within 5 s).
fn stall_handshake(addr: std::net::SocketAddr, certs: &Certs) {
    let mut s = connect(addr);
    let hello = client_hello(certs.client_config());
    write_raw(&mut s, &hello[..hello.len() / 2]);
    let start = Instant::now();
    let got = raw_ending(&mut s, Duration::from_secs(5));
    let took = start.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
}

/// A TLS alert record (content type 21), if `bytes` begin with one.
fn is_alert(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x15)
}

/// The ClientHello a rustls client with `config` sends first.
fn client_hello(config: std::sync::Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(config, localhost()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// A ClientHello record split into two records (its handshake message spans both).
fn split_hello(record: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let body = &record[5..];
    let half = body.len() / 2;
    let rec = |part: &[u8]| {
        let mut r = vec![0x16, record[1], record[2]];
        r.extend((part.len() as u16).to_be_bytes());
        r.extend_from_slice(part);
        r
    };
    (rec(&body[..half]), rec(&body[half..]))
}

#[test]
fn a_client_hello_split_across_records_and_reads_is_answered() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let (server, _dir) = server(&certs);
    let (first, second) = split_hello(&client_hello(certs.client_config()));
    let mut s = connect(server.http());
    // The first record in two reads, then the second.
    write_raw(&mut s, &first[..3]);
    std::thread::sleep(Duration::from_millis(50));
    write_raw(&mut s, &first[3..]);
    std::thread::sleep(Duration::from_millis(50));
    write_raw(&mut s, &second);
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x16, "a ServerHello record: {head:?}");
    assert!(tls_faults(&server).is_empty(), "{:?}", tls_faults(&server));
}

/// Runs each bad peer against one server, between a bystander's requests.
#[test]
fn each_bad_peer_ends_only_its_own_connection_logged_once() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let (server, _dir) = server(&certs);
    let addr = server.http();
    let mut bystander = TlsClient::connect(addr, certs.client_config());
    assert_eq!(bystander.get("/healthz").0, 200);

    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "plaintext HTTP on the TLS port",
            Box::new(|| {
                let mut s = connect(addr);
                write_raw(&mut s, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
                let got = raw_ending(&mut s, Duration::from_secs(5));
                assert!(got.is_empty() || is_alert(&got), "{got:?}");
                assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1"));
            }),
            "TLS error",
        ),
        (
            "garbage instead of a ClientHello",
            Box::new(|| {
                let mut s = connect(addr);
                let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x20];
                junk.extend(pseudo_random(3, 32));
                write_raw(&mut s, &junk);
                let got = raw_ending(&mut s, Duration::from_secs(5));
                assert!(got.is_empty() || is_alert(&got), "{got:?}");
            }),
            "TLS error",
        ),
        (
            "half a ClientHello in one record, then application data",
            Box::new(|| {
                let mut s = connect(addr);
                let (first, _) = split_hello(&client_hello(certs.client_config()));
                write_raw(&mut s, &first);
                // rustls now holds half a handshake message (offsets into what it was given).
                std::thread::sleep(Duration::from_millis(50));
                write_raw(&mut s, &[0x17, 0x03, 0x03, 0x00, 0x04, 1, 2, 3, 4]);
                // rustls queues no alert for this one: a clean close.
                let got = raw_ending(&mut s, Duration::from_secs(5));
                assert!(got.is_empty() || is_alert(&got), "{got:?}");
            }),
            "TLS error",
        ),
        (
            "a TLS 1.1 ClientHello (no supported_versions, TLS 1.1 suites only)",
            Box::new(|| {
                let mut s = connect(addr);
                let mut body = vec![0x03, 0x02];
                body.extend(pseudo_random(4, 32)); // random
                body.push(0); // no session id
                body.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // RSA AES-CBC suites
                body.extend([0x01, 0x00]); // null compression
                let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
                hs.extend(&body);
                let mut record = vec![0x16, 0x03, 0x02, 0x00, hs.len() as u8];
                record.extend(&hs);
                write_raw(&mut s, &record);
                let got = raw_ending(&mut s, Duration::from_secs(5));
                assert!(is_alert(&got), "no alert for TLS 1.1: {got:?}");
            }),
            "TLS error",
        ),
        (
            "a client certificate nobody asked for (TLS 1.2)",
            Box::new(|| {
                let mut s = connect(addr);
                let hello = client_hello(certs.client_config_with(&[&rustls::version::TLS12]));
                write_raw(&mut s, &hello);
                // The server's flight, up to ServerHelloDone: read until it pauses.
                s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut flight = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    flight.extend_from_slice(&buf[..n]);
                }
                assert_eq!(
                    flight.first(),
                    Some(&0x16),
                    "a handshake flight: {flight:?}"
                );
                // A Certificate message (an empty list) where ClientKeyExchange belongs.
                write_raw(
                    &mut s,
                    &[0x16, 0x03, 0x03, 0x00, 0x07, 0x0b, 0, 0, 3, 0, 0, 0],
                );
                let got = raw_ending(&mut s, Duration::from_secs(5));
                assert!(is_alert(&got), "no alert: {got:?}");
            }),
            "TLS error",
        ),
        (
            "a stalled handshake (half a ClientHello), under --header-timeout 1",
            Box::new(|| stall_handshake(addr, &certs)),
            "closing before the TLS handshake finished",
        ),
        (
            "a connection that never says anything",
            Box::new(|| {
                let mut s = connect(addr);
                let got = raw_ending(&mut s, Duration::from_secs(5));
                assert!(got.is_empty(), "{got:?}");
            }),
            "closing before the TLS handshake finished",
        ),
        (
            "close_notify in the middle of a request",
            Box::new(|| {
                let mut c = TlsClient::connect(addr, certs.client_config());
                c.send(b"GET /healthz HTTP/1.1\r\nHo");
                c.tls.conn.send_close_notify();
                c.tls.flush().unwrap();
                // The server closes too, cleanly: its own close_notify, then EOF.
                assert_eq!(c.ending(), Ending::CloseNotify);
            }),
            "close_notify in the middle of a message",
        ),
        (
            "a truncated record, then EOF",
            Box::new(|| {
                let mut c = TlsClient::connect(addr, certs.client_config());
                // An application-data record header promising 64 bytes, and 20 of them.
                let mut partial = vec![0x17, 0x03, 0x03, 0x00, 0x40];
                partial.extend(pseudo_random(5, 20));
                c.tls.sock.write_all(&partial).unwrap();
                c.tls.sock.shutdown(Shutdown::Write).unwrap();
                assert_eq!(c.ending(), Ending::CloseNotify);
            }),
            "EOF inside a TLS record (25 bytes of it): truncated",
        ),
    ];
    for (name, case, logged) in cases {
        let before = tls_faults(&server).len();
        case();
        // Logged once, at debug, in the TLS target.
        let deadline = Instant::now() + Duration::from_secs(5);
        let faults = loop {
            let faults = tls_faults(&server);
            if faults.len() > before || Instant::now() > deadline {
                break faults;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        let faults_now = tls_faults(&server);
        assert_eq!(faults, faults_now, "{name}: logged more than once");
        let new = &faults[before..];
        assert_eq!(new.len(), 1, "{name}: logged {new:?}");
        assert!(new[0].contains(logged), "{name}: logged {new:?}");
        // The bystander is still served, and so is a new connection.
        assert_eq!(bystander.get("/healthz").0, 200, "{name}: bystander");
        let mut fresh = TlsClient::connect(addr, certs.client_config());
        assert_eq!(fresh.get("/healthz").0, 200, "{name}: a new connection");
    }
}

#[test]
fn sigterm_sends_close_notify_to_every_tls_client_and_exits_0() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let mut args = certs.serve_args();
    args.extend(["--line-tls", "--hello", "off", "--ws-ping", "0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&args);
    // An idle keep-alive HTTPS connection after a request, a WSS client, a TLS line client.
    let mut https = TlsClient::connect(server.http(), certs.client_config());
    assert_eq!(https.get("/healthz").0, 200);
    let mut wss = TlsClient::connect(server.http(), certs.client_config());
    wss.send(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(wss.response().0, 101);
    let mut line = TlsClient::connect(server.line(), certs.client_config());
    line.send(b"ping\n");
    assert_eq!(line.read_n(5), b"ping\n");
    let status = server.terminate(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", server.stderr_text());
    for (name, c) in [
        ("https", &mut https),
        ("wss", &mut wss),
        ("line", &mut line),
    ] {
        // `ending` skips what comes first (the WebSocket close frame); a clean end is only
        // reported after a close_notify.
        assert_eq!(c.ending(), Ending::CloseNotify, "{name}");
    }
}

#[test]
fn a_stalled_handshake_on_the_line_listener_is_closed_by_the_handshake_deadline() {
    // No --idle-timeout (the default): the line service arms no deadline, so the loop's own
    // handshake deadline is what bounds a peer that never finishes its ClientHello.
    let certs = Certs::new(KeyKind::EcdsaP256);
    let mut args = certs.serve_args();
    args.extend(["--line-tls", "--tls-handshake-timeout", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(
        &args,
        Options {
            rust_log: Some("readyloop=debug".into()),
            ..Options::default()
        },
    );
    // A client that finishes its handshake is past that deadline: idle for longer, it is
    // still served (no --idle-timeout, so nothing closes it).
    let mut patient = TlsClient::connect(server.line(), certs.client_config());
    stall_handshake(server.line(), &certs);
    std::thread::sleep(Duration::from_millis(500));
    patient.send(b"still here\n");
    assert_eq!(patient.read_n(11), b"still here\n");
    let log = server.stderr_text();
    assert_eq!(
        log.matches("TLS handshake not done in 1s, closing").count(),
        1,
        "{log}"
    );
}

#[test]
fn bad_certificate_and_key_files_fail_at_startup_naming_the_file() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let other = Certs::new(KeyKind::EcdsaP256);
    let cert = certs.cert();
    let key = certs.key();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let missing = certs.file("missing.pem");
    let missing = missing.to_str().unwrap();
    // A missing certificate, a missing key.
    serve_refused(&["--tls-cert", missing, "--tls-key", key], missing);
    serve_refused(&["--tls-cert", cert, "--tls-key", missing], missing);
    // Unreadable: a directory where a file belongs (root reads any file, so no chmod).
    let dir = certs.file("");
    let dir = dir.to_str().unwrap();
    serve_refused(&["--tls-cert", dir, "--tls-key", key], dir);
    // A file with no certificate, and one with no key (each given the other's file).
    serve_refused(&["--tls-cert", key, "--tls-key", key], "no certificate");
    serve_refused(&["--tls-cert", cert, "--tls-key", cert], "no private key");
    // A key that does not match the certificate.
    let wrong = other.key();
    let wrong = wrong.to_str().unwrap();
    serve_refused(
        &["--tls-cert", cert, "--tls-key", wrong],
        &format!("{wrong}: the key does not match the certificate in {cert}"),
    );
    // An encrypted key.
    if have_program("openssl", "version") {
        let enc = certs.file("encrypted.pem");
        let out = Command::new("openssl")
            .args([
                "pkcs8",
                "-topk8",
                "-passout",
                "pass:secret",
                "-in",
                key,
                "-out",
            ])
            .arg(&enc)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let enc = enc.to_str().unwrap();
        serve_refused(
            &["--tls-cert", cert, "--tls-key", enc],
            &format!("{enc}: the key is encrypted"),
        );
    }
    // Half a pair, and --line-tls without one.
    serve_refused(
        &["--tls-cert", cert],
        "--tls-cert and --tls-key go together",
    );
    serve_refused(&["--line-tls"], "--line-tls needs --tls-cert");
}

//! `readyloop load --tls` in every mode that makes sense against a TLS server: the handshakes
//! run on the load tool's loop (`Context::connect_tls`), each mode's checks pass, and a
//! certificate the tool does not trust fails every connection, with exit 2.

#![cfg(all(feature = "tls", feature = "cli", feature = "load"))]

mod support;

use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn every_mode_runs_over_tls() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let mut args = certs.serve_args();
    args.extend(["--line-tls", "--hello", "off", "--ws-ping", "0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let ca = certs.ca_arg();
    let http = format!("localhost:{}", server.http().port());
    let line = format!("localhost:{}", server.line().port());
    let url = format!("https://{http}/healthz");
    let runs: [&[&str]; 7] = [
        &["http", "--url", &url, "--ca", &ca],
        &["http", "--url", &url, "--ca", &ca, "--close"],
        &["echo", "--addr", &line, "--tls", "--ca", &ca],
        &["ws-echo", "--addr", &http, "--tls", "--ca", &ca],
        &["ws-broadcast", "--addr", &http, "--tls", "--ca", &ca],
        &["idle", "--addr", &line, "--tls", "--ca", &ca],
        &[
            "idle",
            "--ws",
            "/ws",
            "--addr",
            &http,
            "--tls",
            "--insecure",
        ],
    ];
    for run in runs {
        let mut all = run.to_vec();
        all.extend(["--conns", "8", "--duration", "1"]);
        let out = run_load(&all, 0, LIMIT);
        let json = out.json();
        assert_eq!(json_num(json, "conns_failed"), 0.0, "{run:?}: {json}");
        assert_eq!(json_num(json, "errors"), 0.0, "{run:?}: {json}");
        assert!(json_num(json, "conns_ok") >= 8.0, "{run:?}: {json}");
        if run[0] != "idle" {
            assert!(json_num(json, "msgs") > 0.0, "{run:?}: {json}");
        }
    }
}

#[test]
fn an_untrusted_certificate_fails_every_connection() {
    let certs = Certs::new(KeyKind::EcdsaP256);
    let other = Certs::new(KeyKind::EcdsaP256);
    let mut args = certs.serve_args();
    args.extend(["--line-tls", "--hello", "off"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let line = format!("localhost:{}", server.line().port());
    let out = run_load(
        &[
            "echo",
            "--addr",
            &line,
            "--tls",
            "--ca",
            &other.ca_arg(),
            "--conns",
            "3",
            "--duration",
            "1",
        ],
        2,
        LIMIT,
    );
    assert!(
        out.stderr.contains("no connection to") && out.stderr.contains("tls: failed"),
        "{out:?}"
    );
    // A --ca that is not a certificate file fails before any connection.
    let key = certs.key();
    let out = run_load(
        &[
            "echo",
            "--addr",
            &line,
            "--tls",
            "--ca",
            key.to_str().unwrap(),
        ],
        2,
        LIMIT,
    );
    assert!(out.stderr.contains("key.pem: no certificate"), "{out:?}");
}

//! What an operator meets at start-up: `--version`, errors that name the option and its value,
//! and every start-up input checked before the first `listening` line (a script that sees one
//! relies on the server being up).

mod support;

use std::process::{Command, Output, Stdio};
use support::*;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Exit 2, nothing on stdout, and one error line on stderr that contains `needle`.
fn refused(args: &[&str], needle: &str) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn version_is_printed() {
    for args in [&["--version"][..], &["serve", "--version"], &["-V"]] {
        let out = run(args);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text, format!("readyloop {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn errors_name_the_option_and_the_value() {
    refused(
        &["--max-line", "abc"],
        r#"--max-line: "abc" is not a number"#,
    );
    refused(&["--workers", "0"], "--workers: must be at least 1");
    refused(
        &["--idle-timeout", "soon"],
        r#"--idle-timeout: "soon" is not a number of seconds"#,
    );
    refused(&["--line", "localhost:99"], "--line:");
    refused(&["--max-line"], "--max-line: missing value");
}

#[test]
#[cfg(feature = "http")]
fn an_unusable_upload_dir_fails_before_any_listening_line() {
    let dir = TempDir::new("startup");
    // A path below a regular file can never be a directory.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let below = file.join("uploads");
    refused(
        &[
            "--http",
            "127.0.0.1:0",
            "--line",
            "127.0.0.1:0",
            "--hello",
            "127.0.0.1:0",
        ]
        .iter()
        .copied()
        .chain(["--upload-dir", below.to_str().unwrap()])
        .collect::<Vec<_>>(),
        "--upload-dir",
    );
    // A port in use: the error names the listener and its address, and nothing is printed.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let uploads = dir.path().join("uploads");
    refused(
        &[
            "--line",
            &addr,
            "--http",
            "127.0.0.1:0",
            "--upload-dir",
            uploads.to_str().unwrap(),
        ],
        &format!("bind line {addr}"),
    );
}

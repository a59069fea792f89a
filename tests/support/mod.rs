//! The one test-support module of the integration tests. Every test file mounts it the same
//! way, `mod support;`, and takes what it needs with `use support::...` (everything below is
//! re-exported here, flat):
//!
//! - `server`: the one spawner, `Server`, which starts the real `readyloop serve` on port 0
//!   and learns its addresses from the `listening <proto> <addr>` lines; its flavours (three
//!   listeners, HTTP only with an upload dir of its own, a raised log level, a descriptor
//!   limit) are constructors and `Options`. Also the few helpers for a child process.
//! - `net`: raw blocking loopback sockets (connect, read exactly / to EOF, echo, poll,
//!   stuffing a socket that is not read) and the test data they carry.
//! - `http`: the one HTTP/1.1 client (`Client`, `Response`), the JSON fields tests read, and
//!   upload helpers.
//! - `tls` (feature `tls`): certificates made at test time and a blocking rustls client.
//! - `ws`: the one raw WebSocket client (`RawClient`, independent of the crate's codec), and a
//!   `tungstenite` client for the happy paths.
//! - `load`: running `readyloop load` and `readyloop client` with a deadline, and reading their
//!   exit status, JSON line and stderr.
//!
//! This file owns what they share: the timeouts, where the binary is, and `TempDir`.
//!
//! Nothing here may hang: reads and writes carry socket timeouts, waits for a child process
//! poll `try_wait` against a deadline, and a `Server` kills its process when dropped.

// Each test binary uses a different subset.
#![allow(dead_code)]

mod http;
mod load;
mod net;
mod server;
#[cfg(feature = "tls")]
mod tls;
mod ws;

// Flat, so that `use support::{Server, connect, RawClient}` reads the same in every file; a
// test binary that uses nothing of one part would otherwise be warned about its re-export.
#[cfg(feature = "tls")]
#[allow(unused_imports)]
pub use self::tls::*;
#[allow(unused_imports)]
pub use self::{http::*, load::*, net::*, server::*, ws::*};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The upper bound on any single blocking socket operation in the tests: generous for a
/// loaded CI machine, short enough that a wrong expectation fails within seconds.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a starting server may take to print its `listening` lines: generous, because the
/// HTTP tests start servers while others stream hundreds of MiB.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The real binary, built by cargo for the integration tests. It needs the `cli` feature;
/// without it this is empty, and only the in-process tests (tests/waker.rs) run.
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_readyloop") {
    Some(bin) => bin,
    None => "",
};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "readyloop-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp dir")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

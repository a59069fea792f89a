//! The properties every fuzz target checks, in the library so that the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, one line each) and `cargo test` run the very same code.
//!
//! A fuzz target that only asks "does it panic?" misses the bugs that matter most in a parser
//! of peer input: a wrong answer. So each file here takes the fuzzer's bytes, feeds them to one
//! entry point the way the loop does, and asserts what must hold for *any* input: consumed
//! counts within the input, the same result however the bytes are split across reads, a
//! parsed value that round-trips through our own writer, limits that hold. A failed
//! assertion is a panic, which libFuzzer reports as a crash with the input that caused it.
//!
//! Regressions: every input a campaign ever found (crash, leak, timeout) is kept in
//! `fuzz/regressions/<target>/`, and the seed corpus in `fuzz/corpus/<target>/`; the test
//! below replays both through [`TARGETS`] in every `cargo test`, so a fixed bug stays fixed
//! without a fuzzer installed.
//!
//! Compiled only for this crate's tests and for the fuzz crate (feature `fuzzing`): the
//! binary and embedders never carry it.

pub mod line;

#[cfg(feature = "http")]
pub mod filename;
#[cfg(feature = "http")]
pub mod http_request;
#[cfg(feature = "http")]
pub mod http_response;
#[cfg(feature = "http")]
pub mod multipart;
#[cfg(feature = "http")]
pub mod query;
#[cfg(feature = "redis")]
pub mod resp;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "websocket")]
pub mod ws_frame;
#[cfg(feature = "websocket")]
pub mod ws_handshake;
#[cfg(feature = "ws-deflate")]
pub mod ws_inflate;
#[cfg(feature = "websocket")]
pub mod ws_message;

/// A property check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every fuzz target of this build, by the name of its `fuzz/fuzz_targets/<name>.rs`. A target
/// whose feature is off is missing (the replay test then skips its files, and says so).
pub const TARGETS: &[(&str, Check)] = &[
    ("line", line::check),
    #[cfg(feature = "http")]
    ("filename", filename::check),
    #[cfg(feature = "http")]
    ("http_request", http_request::check),
    #[cfg(feature = "http")]
    ("http_response", http_response::check),
    #[cfg(feature = "http")]
    ("multipart", multipart::check),
    #[cfg(feature = "http")]
    ("query", query::check),
    #[cfg(feature = "redis")]
    ("resp", resp::check),
    #[cfg(feature = "tls")]
    ("tls_server", tls::check),
    #[cfg(feature = "websocket")]
    ("ws_frame", ws_frame::check),
    #[cfg(feature = "websocket")]
    ("ws_handshake", ws_handshake::check),
    #[cfg(feature = "ws-deflate")]
    ("ws_inflate", ws_inflate::check),
    #[cfg(feature = "websocket")]
    ("ws_message", ws_message::check),
];

/// Splits the first byte off `data` as a parameter of the run (a piece size, a split point, a
/// mode bit), so the fuzzer explores the parameter and the bytes together.
pub(crate) fn parameter(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&p, rest)) => (p, rest),
        None => (0, data),
    }
}

/// `len * p / 256`: a split point inside `0..=len` chosen by a parameter byte.
#[cfg(feature = "http")]
pub(crate) fn split_point(p: u8, len: usize) -> usize {
    len * usize::from(p) / 256
}

#[cfg(test)]
mod tests {
    use super::TARGETS;
    use std::path::{Path, PathBuf};

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// The targets `fuzz/Cargo.toml` declares (`[[bin]] name = "..."`).
    fn declared_targets() -> Vec<String> {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|name| *name != "readyloop-fuzz")
            .map(str::to_owned)
            .collect()
    }

    /// Every file under `fuzz/<kind>/<target>/`, as (target, path).
    fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
        let mut found = Vec::new();
        let Ok(dirs) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            return found;
        };
        for dir in dirs.map(Result::unwrap) {
            if !dir.file_type().unwrap().is_dir() {
                continue;
            }
            let target = dir.file_name().into_string().unwrap();
            for file in std::fs::read_dir(dir.path()).unwrap().map(Result::unwrap) {
                found.push((target.clone(), file.path()));
            }
        }
        found.sort();
        found
    }

    fn replay(kind: &str) -> usize {
        let declared = declared_targets();
        let mut replayed = 0;
        for (target, path) in inputs(kind) {
            assert!(
                declared.contains(&target),
                "{} is for no target of fuzz/Cargo.toml",
                path.display()
            );
            let Some((_, check)) = TARGETS.iter().find(|(name, _)| *name == target) else {
                eprintln!("skipped (its feature is off): {}", path.display());
                continue;
            };
            let data = std::fs::read(&path).unwrap();
            eprintln!("replaying {}", path.display());
            check(&data);
            replayed += 1;
        }
        replayed
    }

    #[test]
    fn every_regression_input_still_passes_its_checks() {
        replay("regressions");
    }

    #[test]
    fn every_seed_input_passes_its_checks() {
        let replayed = replay("corpus");
        assert!(replayed > 0, "no seed corpus under fuzz/corpus/");
    }

    /// A target declared in fuzz/Cargo.toml has a check here and a seed corpus, and the other
    /// way round (in the build with every feature).
    #[test]
    #[cfg(all(
        feature = "http",
        feature = "websocket",
        feature = "redis",
        feature = "tls"
    ))]
    fn targets_checks_and_corpora_match() {
        let mut declared = declared_targets();
        declared.sort();
        let mut checked: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
        checked.sort();
        assert_eq!(declared, checked, "fuzz/Cargo.toml against TARGETS");
        for target in &declared {
            let seeds = fuzz_dir().join("corpus").join(target);
            let count = std::fs::read_dir(&seeds).map_or(0, |d| d.count());
            assert!(count > 0, "no seed corpus in {}", seeds.display());
        }
    }
}

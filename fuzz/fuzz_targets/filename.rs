//! Fuzz target: upload file-name sanitising (codec::http::filename). The properties checked are in
//! `readyloop::fuzz_checks::filename` (src/fuzz_checks/filename.rs). Run: `cargo fuzz run filename`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::filename::check(data));

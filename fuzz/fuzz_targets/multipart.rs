//! Fuzz target: the multipart/form-data parser (codec::http::multipart). The properties checked are in
//! `readyloop::fuzz_checks::multipart` (src/fuzz_checks/multipart.rs). Run: `cargo fuzz run multipart`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::multipart::check(data));

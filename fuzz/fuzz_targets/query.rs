//! Fuzz target: query strings and the /tasks/ID segment (codec::http::query). The properties checked are in
//! `readyloop::fuzz_checks::query` (src/fuzz_checks/query.rs). Run: `cargo fuzz run query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::query::check(data));

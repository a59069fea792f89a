//! Fuzz target: the HTTP/1.1 request parser (codec::http::request). The properties checked are in
//! `readyloop::fuzz_checks::http_request` (src/fuzz_checks/http_request.rs). Run: `cargo fuzz run http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::http_request::check(data));

//! Fuzz target: the HTTP response parser of `load http` (codec::http::response_parser). The properties checked are in
//! `readyloop::fuzz_checks::http_response` (src/fuzz_checks/http_response.rs). Run: `cargo fuzz run http_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::http_response::check(data));

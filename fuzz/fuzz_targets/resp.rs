//! Fuzz target: the RESP2 decoder of the Redis relay (codec::resp). The properties checked are in
//! `readyloop::fuzz_checks::resp` (src/fuzz_checks/resp.rs). Run: `cargo fuzz run resp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::resp::check(data));

//! Fuzz target: permessage-deflate input (codec::ws::deflate, RSV1 in codec::ws::message). The
//! properties checked are in `readyloop::fuzz_checks::ws_inflate` (src/fuzz_checks/ws_inflate.rs).
//! Run: `cargo fuzz run ws_inflate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::ws_inflate::check(data));

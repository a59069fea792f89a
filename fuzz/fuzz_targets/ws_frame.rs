//! Fuzz target: WebSocket frame headers and masking (codec::ws::frame, codec::ws::mask). The properties checked are in
//! `readyloop::fuzz_checks::ws_frame` (src/fuzz_checks/ws_frame.rs). Run: `cargo fuzz run ws_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::ws_frame::check(data));

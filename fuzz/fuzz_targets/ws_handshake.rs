//! Fuzz target: the WebSocket opening handshake (codec::ws::handshake). The properties checked are in
//! `readyloop::fuzz_checks::ws_handshake` (src/fuzz_checks/ws_handshake.rs). Run: `cargo fuzz run ws_handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::ws_handshake::check(data));

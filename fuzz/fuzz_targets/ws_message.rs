//! Fuzz target: WebSocket messages: fragments, UTF-8, Close (codec::ws::message). The properties checked are in
//! `readyloop::fuzz_checks::ws_message` (src/fuzz_checks/ws_message.rs). Run: `cargo fuzz run ws_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::ws_message::check(data));

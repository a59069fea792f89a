//! Fuzz target: the line codec (codec::line). The properties checked are in
//! `readyloop::fuzz_checks::line` (src/fuzz_checks/line.rs). Run: `cargo fuzz run line`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::line::check(data));

//! Fuzz target: a TLS server session's first flight (runtime::tls::TlsSession). The properties checked are in
//! `readyloop::fuzz_checks::tls` (src/fuzz_checks/tls.rs). Run: `cargo fuzz run tls_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readyloop::fuzz_checks::tls::check(data));

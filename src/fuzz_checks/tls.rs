//! Fuzz properties of the TLS layer around rustls (`runtime::tls::TlsSession`), server side:
//! whatever a client sends as its first flight, the session fails cleanly or waits.
//!
//! The first byte picks a piece size; the rest is what a client sends, fed to a fresh server
//! session whole and in pieces, as reads deliver it (the pieces exercise the path that keeps
//! a record's start until its rest arrives). Checked: no panic; no plaintext and no finished
//! handshake come out of bytes that cannot hold a client's keys; after an error nothing more
//! is fed (the loop closes the connection), and the error is the same however the bytes were
//! split; the ciphertext queued for the peer (our handshake flight, an alert) and the partial
//! record kept stay bounded.
//!
//! The server's certificate is a placeholder and its key signs with zeros: a fuzzer cannot
//! complete a handshake either way, and this keeps the target free of key generation.

use super::parameter;
use crate::runtime::tls::{TlsPhase, TlsSession};
use rustls::crypto::ring;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey, SingleCertAndKey};
use rustls::{Error, ServerConfig, SignatureAlgorithm, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// Ciphertext a session may queue in answer to one client flight: 64 KiB (a TLS 1.3 server
/// flight with a small certificate is about 2 KB; an alert is 7 bytes).
const MAX_QUEUED: usize = 64 * 1024;

/// Received bytes a session may keep waiting for the rest: one handshake message (rustls
/// refuses ones over 64 KiB) and a record around it.
const MAX_KEPT: usize = 0xffff + 16 * 1024 + 2048 + 5;

/// A signing key that signs with zeros (ECDSA P-256 with SHA-256, the scheme every client
/// offers).
#[derive(Debug)]
struct ZeroKey;

impl SigningKey for ZeroKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = SignatureScheme::ECDSA_NISTP256_SHA256;
        offered
            .contains(&scheme)
            .then(|| Box::new(ZeroKey) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for ZeroKey {
    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(vec![0; 64])
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// The server configuration of `runtime::tls_config::server_config` (TLS 1.2 and 1.3, ALPN
/// `http/1.1`, tickets), with the placeholder certificate.
fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let certified = CertifiedKey::new(
                vec![CertificateDer::from(b"not a certificate".to_vec())],
                Arc::new(ZeroKey),
            );
            let mut config =
                ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default versions")
                    .with_no_client_auth()
                    .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            config.ticketer = ring::Ticketer::new().expect("a ticketer");
            Arc::new(config)
        })
        .clone()
}

/// Feeds `flight` in pieces of `piece` bytes; returns the error, if one came.
fn run(flight: &[u8], piece: usize) -> Option<String> {
    let mut session = TlsSession::server(config(), 0).expect("a server session");
    for chunk in flight.chunks(piece.max(1)) {
        let mut fresh = chunk.to_vec();
        let mut plaintext = 0;
        let received = session.receive(&mut fresh, &mut |p| plaintext += p.len());
        assert_eq!(plaintext, 0, "plaintext from a client without keys");
        assert!(
            session.pending() <= MAX_QUEUED,
            "{} bytes queued",
            session.pending()
        );
        assert!(
            session.partial_input() <= MAX_KEPT,
            "{} bytes kept",
            session.partial_input()
        );
        match received {
            Ok(r) => {
                assert!(!r.established, "a handshake completed");
                assert_eq!(session.phase(), TlsPhase::Handshaking);
            }
            Err(e) => {
                assert_eq!(session.partial_input(), 0, "a failed session keeps input");
                return Some(e.to_string());
            }
        }
    }
    None
}

/// The TLS layer's properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, flight) = parameter(data);
    let whole = run(flight, flight.len());
    let pieces = run(flight, usize::from(p) + 1);
    assert_eq!(
        whole,
        pieces,
        "whole and in pieces of {} differ",
        usize::from(p) + 1
    );
}

//! TLS for the tests: certificates made at test time (nothing private is committed) and a
//! blocking rustls client.
//!
//! `Certs::new(kind)` writes a test CA and a leaf certificate for `localhost` and `127.0.0.1`
//! signed by it into a fresh directory: ECDSA P-256 and Ed25519 keys come from `rcgen`; an
//! RSA key, which rcgen cannot make with ring, from `openssl` (the leaf is still signed by the
//! rcgen CA). `Certs::serve_args` are the `--tls-cert/--tls-key` flags, `ca_arg` the file
//! clients trust.
//!
//! `TlsClient` is rustls' buffered `ClientConnection` over a blocking `TcpStream` with the
//! tests' timeouts: an independent client (it shares no code with the server's unbuffered
//! session), with helpers for HTTP over it and for telling a close_notify from a bare EOF.

use super::{TempDir, IO_TIMEOUT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

/// The key type of a test certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Ed25519,
    Rsa2048,
}

/// A test CA and a server certificate signed by it, as PEM files in a directory of their own.
pub struct Certs {
    dir: TempDir,
    pub kind: KeyKind,
}

impl Certs {
    pub fn new(kind: KeyKind) -> Certs {
        let dir = TempDir::new("tls");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "readyloop test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let leaf_params = || {
            let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            p.subject_alt_names
                .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "localhost");
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            p
        };
        let (cert_pem, key_pem) = match kind {
            KeyKind::EcdsaP256 | KeyKind::Ed25519 => {
                let alg = if kind == KeyKind::Ed25519 {
                    &rcgen::PKCS_ED25519
                } else {
                    &rcgen::PKCS_ECDSA_P256_SHA256
                };
                let key = rcgen::KeyPair::generate_for(alg).unwrap();
                let cert = leaf_params().signed_by(&key, &ca, &ca_key).unwrap();
                (cert.pem(), key.serialize_pem())
            }
            KeyKind::Rsa2048 => {
                // openssl makes the key; rcgen (which reads it) signs the certificate.
                let key_path = dir.path().join("rsa.pem");
                let out = Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ])
                    .arg("-out")
                    .arg(&key_path)
                    .output()
                    .expect("openssl (RSA keys are made with it)");
                assert!(out.status.success(), "openssl genpkey: {out:?}");
                let key_pem = std::fs::read_to_string(&key_path).unwrap();
                let key = rcgen::KeyPair::from_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
                    .unwrap();
                let cert = leaf_params().signed_by(&key, &ca, &ca_key).unwrap();
                (cert.pem(), key_pem)
            }
        };
        std::fs::write(dir.path().join("cert.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();
        Certs { dir, kind }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA file as a command-line argument.
    pub fn ca_arg(&self) -> String {
        self.ca().to_str().unwrap().to_string()
    }

    /// A file in the certificates' directory (for tests that make broken variants).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--tls-cert CERT --tls-key KEY`.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert().to_str().unwrap().into(),
            "--tls-key".into(),
            self.key().to_str().unwrap().into(),
        ]
    }

    /// A client configuration trusting the test CA, offering ALPN `http/1.1`, TLS 1.2 and 1.3.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_with(&[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    /// Like `client_config`, with only the given protocol versions.
    pub fn client_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca()).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// The name the test certificates are issued for.
pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// How a TLS stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer sent close_notify (and then, or later, its FIN).
    CloseNotify,
    /// TCP EOF without a close_notify: a truncation, as far as TLS can tell.
    BareEof,
    /// A TLS alert or another TLS error.
    Error(String),
}

/// A blocking TLS client connection (rustls' buffered API, independent of the server's).
pub struct TlsClient {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// Plaintext read past the last response.
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake (panics on failure).
    pub fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsClient {
        Self::try_connect(addr, config).unwrap_or_else(|e| panic!("TLS to {addr}: {e}"))
    }

    /// Connects and completes the handshake.
    pub fn try_connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> io::Result<TlsClient> {
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let conn = rustls::ClientConnection::new(config, localhost()).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(TlsClient {
            tls,
            buf: Vec::new(),
        })
    }

    pub fn conn(&self) -> &rustls::ClientConnection {
        &self.tls.conn
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).expect("TLS write");
        self.tls.flush().expect("TLS flush");
    }

    /// Reads plaintext into the buffer; false at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Reads exactly `n` bytes of plaintext.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => panic!("EOF after {} of {n} bytes", self.buf.len()),
                Err(e) => panic!("reading {n} bytes (have {}): {e}", self.buf.len()),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// One HTTP/1.1 response: (status, body). Reads a `Content-Length` body.
    pub fn response(&mut self) -> (u16, Vec<u8>) {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match self.fill() {
                Ok(true) => {}
                other => panic!(
                    "response head: {other:?} (have {:?})",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line of {head:?}"));
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body = self.read_n(len);
        (status, body)
    }

    /// `GET path` (keep-alive); the status and body.
    pub fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        self.response()
    }

    /// Reads to the end of the stream and says how it ended (plaintext before it is dropped).
    pub fn ending(&mut self) -> Ending {
        loop {
            match self.fill() {
                Ok(true) => self.buf.clear(),
                // rustls reports a clean end only after a close_notify.
                Ok(false) => return Ending::CloseNotify,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ending::BareEof,
                Err(e) if super::timed_out(&e) => panic!("no end of stream within the timeout"),
                Err(e) => return Ending::Error(e.to_string()),
            }
        }
    }
}

/// True when `program` runs (`program version_arg` succeeds). A test that needs it and finds
/// it missing says it skipped; `.ci/run` installs the programs and sets
/// READYLOOP_REQUIRE_TLS_TOOLS, so that a skip there fails instead.
pub fn have_program(program: &str, version_arg: &str) -> bool {
    let found = Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var_os("READYLOOP_REQUIRE_TLS_TOOLS").is_some();
        assert!(
            !required,
            "{program} is required (READYLOOP_REQUIRE_TLS_TOOLS) but missing"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

/// Writes raw bytes to a plain TCP stream (for the hand-made TLS records of the bad-input tests).
pub fn write_raw(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("raw write");
}

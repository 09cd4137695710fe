//! TLS termination (`--certfile`, `--keyfile`, `--ca-certs`), with rustls.
//!
//! A terminator thread per process ([`terminator`]) owns the listening sockets when TLS is
//! on: it accepts, runs each TLS session ([`session`]) and hands the core one end of a unix
//! socket pair per connection, carrying the plaintext. The core serves that end like any
//! accepted connection (with the real client's address), so the HTTP and WSGI layers know
//! nothing of TLS, and sendfile, timeouts and keep-alive work unchanged. The cost is one
//! extra copy of each byte through the pair, on a thread that never takes the GIL.

pub mod session;
pub mod terminator;

use std::io;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the certificate, key and (optional) client CA bundle are read from.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub certfile: String,
    pub keyfile: String,
    pub ca_certs: Option<String>,
}

fn invalid(what: &str, path: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what} {path}: {e}"))
}

impl TlsFiles {
    /// Reads the files and builds a rustls configuration (ALPN `http/1.1`).
    pub fn load(&self) -> io::Result<Arc<ServerConfig>> {
        let certs = CertificateDer::pem_file_iter(&self.certfile)
            .map_err(|e| invalid("certfile", &self.certfile, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("certfile", &self.certfile, e))?;
        if certs.is_empty() {
            return Err(invalid("certfile", &self.certfile, "no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.keyfile)
            .map_err(|e| invalid("keyfile", &self.keyfile, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS", "setup", e))?;
        let builder = match &self.ca_certs {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(ca).map_err(|e| invalid("ca_certs", ca, e))?
                {
                    let cert = cert.map_err(|e| invalid("ca_certs", ca, e))?;
                    roots.add(cert).map_err(|e| invalid("ca_certs", ca, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid("ca_certs", ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            invalid(
                "keyfile",
                &self.keyfile,
                format!("with {}: {e}", self.certfile),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The configuration in use; [`Tls::reload`] swaps it for new sessions (SIGHUP).
pub struct Tls {
    files: TlsFiles,
    config: Mutex<Arc<ServerConfig>>,
}

impl Tls {
    pub fn new(files: TlsFiles) -> io::Result<Tls> {
        let config = Mutex::new(files.load()?);
        Ok(Tls { files, config })
    }

    /// Reads the files again; sessions started from now on use them. On error the old
    /// configuration stays.
    pub fn reload(&self) -> io::Result<()> {
        let fresh = self.files.load()?;
        if let Ok(mut config) = self.config.lock() {
            *config = fresh;
        }
        Ok(())
    }

    pub fn config(&self) -> Option<Arc<ServerConfig>> {
        self.config.lock().ok().map(|c| Arc::clone(&c))
    }
}

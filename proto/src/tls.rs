//! TLS of outgoing connections and the PEM files every TLS is made of (rustls with ring
//! only):
//!
//! - PEM files: certificate chains, private keys and CA bundles, loaded with errors that
//!   name the file and say what is wrong with it ([`load_certs`], [`load_key`],
//!   [`load_roots`]); the servers' listeners load theirs with these (apogee-server's `tls`).
//! - [`ClientTls`]: what an outgoing connection trusts (a CA bundle, or the system's roots)
//!   and the certificate it presents, if any; [`endpoint`] is the one place a tonic
//!   `Endpoint` to another server or a broker is made, `https` with it and `http` without.

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file that cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The crypto provider every TLS config of Apogee uses (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{what} {}: {e}", path.display())))
}

/// The certificates of a PEM file (a chain: the leaf first), at least one.
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from_pem(&read(path, what)?)
        .map_err(|e| TlsError(format!("{what} {}: {e}", path.display())))
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM file ({e})"))?;
    if certs.is_empty() {
        return Err("holds no certificate (no \"BEGIN CERTIFICATE\" section)".into());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "holds no private key (no \"BEGIN PRIVATE KEY\" section)".to_string()
            }
            e => format!("not a valid PEM private key ({e})"),
        };
        TlsError(format!("{what} {}: {why}", path.display()))
    })
}

/// A CA bundle as trust anchors.
pub fn load_roots(path: &Path, what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots.add(cert).map_err(|e| {
            TlsError(format!(
                "{what} {}: not a usable CA certificate ({e})",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// What an outgoing connection trusts and presents.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// Trusted CAs (PEM); none: the system's roots.
    ca_pem: Option<Vec<u8>>,
    /// The certificate chain and key presented to servers that ask (mutual TLS).
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_pem.as_ref().map(|_| ".."))
            .field("identity", &self.identity.as_ref().map(|_| ".."))
            .finish()
    }
}

impl ClientTls {
    /// TLS trusting the system's root certificates.
    pub fn system_roots() -> ClientTls {
        ClientTls::default()
    }

    /// TLS trusting the CAs of a PEM file (checked here; errors name the file).
    pub fn with_ca_file(path: &Path) -> Result<ClientTls, TlsError> {
        load_roots(path, "CA file")?;
        Ok(ClientTls {
            ca_pem: Some(read(path, "CA file")?),
            identity: None,
        })
    }

    /// Presents the certificate chain and key of these PEM files to servers that ask.
    pub fn with_identity_files(mut self, cert: &Path, key: &Path) -> Result<ClientTls, TlsError> {
        load_certs(cert, "client certificate")?;
        load_key(key, "client key")?;
        self.identity = Some((read(cert, "client certificate")?, read(key, "client key")?));
        Ok(self)
    }

    /// Whether a client certificate is presented.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    fn tonic_config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config.timeout(HANDSHAKE_TIMEOUT)
    }
}

/// The endpoint of `addr` (`host:port`, or a URI with its scheme): `https` verified with
/// `tls` when given, plain `http` otherwise. Errors say what is wrong with the address.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, String> {
    let uri = match (addr.contains("://"), tls) {
        (true, _) => addr.to_string(),
        (false, Some(_)) => format!("https://{addr}"),
        (false, None) => format!("http://{addr}"),
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| format!("address {addr:?}: {e}"))?;
    match tls {
        None => Ok(endpoint),
        Some(tls) => endpoint
            .tls_config(tls.tonic_config())
            .map_err(|e| format!("TLS for {addr:?}: {e}")),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;

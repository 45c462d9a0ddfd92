//! Certificates for TLS tests, made with rcgen at test time: a CA, a server certificate
//! (SAN 127.0.0.1 and localhost) every server of a cluster serves, and a client certificate
//! for mutual TLS, all signed by the CA, as PEM files in a directory the test owns. More
//! server certificates can be issued later (a replacement to reload). Also a raw rustls
//! client: the certificate a server serves ([`served_certificate`]) and an HTTPS GET
//! ([`https_get`]) for the operations endpoint.

use apogee_client::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// A certificate and its key as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER-encoded (to compare with what a server serves).
    pub der: Vec<u8>,
}

/// A test CA with the certificates it issued.
pub struct TestCerts {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// The CA certificate (PEM): what clients and servers trust.
    pub ca_file: PathBuf,
    /// What every server serves.
    pub server: CertFiles,
    /// What a cluster member (or a client) presents for mutual TLS.
    pub client: CertFiles,
}

impl TestCerts {
    /// Makes the CA, the server and the client certificate in `dir`.
    pub fn create(dir: &Path) -> TestCerts {
        std::fs::create_dir_all(dir).expect("creating the certificate dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Apogee test CA");
        let ca = params.self_signed(&ca_key).expect("self-signing the CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("writing the CA");
        let mut certs = TestCerts {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            ca_file,
            server: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                der: Vec::new(),
            },
            client: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                der: Vec::new(),
            },
        };
        certs.server = certs.issue("server", ExtendedKeyUsagePurpose::ServerAuth);
        certs.client = certs.issue("client", ExtendedKeyUsagePurpose::ClientAuth);
        certs
    }

    /// Issues another server certificate (SAN 127.0.0.1 and localhost, common name
    /// `name`) into `<name>.pem` and `<name>.key`. A cluster member's certificate serves
    /// both ends, so it is good for server and client authentication.
    pub fn issue_server(&self, name: &str) -> CertFiles {
        self.issue(name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = match usage {
            ExtendedKeyUsagePurpose::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
            _ => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("signing a certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&files.cert, cert.pem()).expect("writing a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("writing a key");
        files
    }

    /// TLS trusting the test CA, with no client certificate.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::with_ca_file(&self.ca_file).expect("the test CA loads")
    }

    /// TLS trusting the test CA and presenting the client certificate.
    pub fn client_tls_with_certificate(&self) -> ClientTls {
        self.client_tls()
            .with_identity_files(&self.client.cert, &self.client.key)
            .expect("the client certificate loads")
    }
}

/// A rustls client config trusting `ca_file` and offering `alpn`.
fn rustls_client(ca_file: &Path, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file).expect("the CA file") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A TLS connection to `addr` (127.0.0.1:port) verified against `ca_file`.
async fn tls_connect(
    addr: &str,
    ca_file: &Path,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let ip: std::net::IpAddr = addr
        .rsplit_once(':')
        .and_then(|(host, _)| host.parse().ok())
        .expect("an ip:port address");
    let handshake =
        rustls_client(ca_file, alpn).connect(rustls_pki_types::ServerName::from(ip), tcp);
    tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
        .await
        .map_err(|_| format!("the TLS handshake with {addr} timed out"))?
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))
}

/// The certificate (DER) a TLS server at `addr` serves to a new connection, verified
/// against `ca_file`.
pub async fn served_certificate(addr: &str, ca_file: &Path) -> Result<Vec<u8>, String> {
    let stream = tls_connect(addr, ca_file, b"h2").await?;
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
        .ok_or_else(|| format!("{addr} served no certificate"))
}

/// GETs `path` from an HTTPS server at `addr` verified against `ca_file`: (status, body).
pub async fn https_get(addr: &str, path: &str, ca_file: &Path) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tls_connect(addr, ca_file, b"http/1.1").await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // A server may close without a TLS close_notify: keep what was read.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

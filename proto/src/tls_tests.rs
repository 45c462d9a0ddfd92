//! Unit tests of [`super`]: PEM loading errors, what outgoing connections trust, endpoints.

use super::*;
use std::path::PathBuf;

/// A self-signed certificate and its key, as PEM.
fn self_signed(name: &str) -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (made.cert.pem(), made.key_pair.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn pem_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = load_certs(&dir.path().join("nope.crt"), "tls.cert_file").unwrap_err();
    assert!(missing.0.starts_with("tls.cert_file "), "{missing}");
    assert!(missing.0.contains("nope.crt"), "{missing}");

    let garbage = write(dir.path(), "garbage.crt", "hello, not a certificate\n");
    let err = load_certs(&garbage, "tls.cert_file").unwrap_err();
    assert!(
        err.0.contains("garbage.crt") && err.0.contains("holds no certificate"),
        "{err}"
    );

    let (cert, key) = self_signed("localhost");
    let key_file = write(dir.path(), "key.pem", &key);
    let as_cert = load_certs(&key_file, "tls.cert_file").unwrap_err();
    assert!(as_cert.0.contains("holds no certificate"), "{as_cert}");
    let cert_file = write(dir.path(), "cert.pem", &cert);
    let as_key = load_key(&cert_file, "tls.key_file").unwrap_err();
    assert!(
        as_key.0.contains("cert.pem") && as_key.0.contains("holds no private key"),
        "{as_key}"
    );

    let broken = write(
        dir.path(),
        "broken.crt",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
    );
    assert!(load_certs(&broken, "tls.cert_file").is_err());
    assert_eq!(load_certs(&cert_file, "x").unwrap().len(), 1);
    assert!(load_key(&key_file, "x").is_ok());
}

#[test]
fn client_tls_checks_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed("localhost");
    let ca = write(dir.path(), "ca.pem", &cert);
    let err = ClientTls::with_ca_file(&dir.path().join("none.pem")).unwrap_err();
    assert!(
        err.0.starts_with("CA file") && err.0.contains("none.pem"),
        "{err}"
    );
    let tls = ClientTls::with_ca_file(&ca).unwrap();
    assert!(!tls.has_identity());
    let key_file = write(dir.path(), "key.pem", &key);
    let err = tls
        .clone()
        .with_identity_files(&key_file, &key_file)
        .unwrap_err();
    assert!(err.0.starts_with("client certificate"), "{err}");
    assert!(tls
        .with_identity_files(&ca, &key_file)
        .unwrap()
        .has_identity());
}

#[test]
fn endpoints_use_https_exactly_with_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = ClientTls::with_ca_file(&write(dir.path(), "ca.pem", &self_signed("ca").0)).unwrap();
    assert_eq!(
        endpoint("127.0.0.1:9876", None).unwrap().uri().scheme_str(),
        Some("http")
    );
    assert_eq!(
        endpoint("127.0.0.1:9876", Some(&tls))
            .unwrap()
            .uri()
            .scheme_str(),
        Some("https")
    );
    assert!(endpoint("not an address", None).is_err());
}

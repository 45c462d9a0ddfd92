//! Unit tests of [`super`]: PEM loading errors, the files a server loads, reloads.

use super::*;

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

fn files(dir: &Path, cert: &str, key: &str) -> ServerTlsFiles {
    ServerTlsFiles {
        cert_file: write(dir, "server.crt", cert),
        key_file: write(dir, "server.key", key),
        client_ca_file: None,
    }
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
fn a_key_of_another_certificate_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed("localhost");
    let (_, other_key) = self_signed("localhost");
    let err = ServerTls::load(files(dir.path(), &cert, &other_key)).unwrap_err();
    assert!(
        err.0.contains("is not the private key of the certificate"),
        "{err}"
    );
    assert!(
        err.0.contains("server.key") && err.0.contains("server.crt"),
        "{err}"
    );
}

#[test]
fn a_client_ca_that_is_no_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed("localhost");
    let mut f = files(dir.path(), &cert, &key);
    f.client_ca_file = Some(write(dir.path(), "ca.pem", "nothing\n"));
    let err = ServerTls::load(f.clone()).unwrap_err();
    assert!(
        err.0.starts_with("tls.client_ca_file") && err.0.contains("ca.pem"),
        "{err}"
    );
    f.client_ca_file = Some(write(dir.path(), "ca.pem", &cert));
    ServerTls::load(f).unwrap();
}

#[test]
fn a_reload_serves_the_new_pair_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = self_signed("first.test");
    let f = files(dir.path(), &cert1, &key1);
    let tls = ServerTls::load(f.clone()).unwrap();
    let first = tls.served_certificate();
    assert_eq!(first, load_certs(&f.cert_file, "x").unwrap()[0]);

    // A certificate written without its key: refused, the first pair stays.
    let (cert2, key2) = self_signed("second.test");
    write(dir.path(), "server.crt", &cert2);
    assert!(tls.reload().is_err());
    assert_eq!(tls.served_certificate(), first);

    write(dir.path(), "server.key", &key2);
    tls.reload().unwrap();
    let second = tls.served_certificate();
    assert_ne!(second, first);
    assert_eq!(second, load_certs(&f.cert_file, "x").unwrap()[0]);
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

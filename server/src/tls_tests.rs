//! Unit tests of [`super`]: the files a server loads, reloads.

use super::*;
use apogee_proto::tls::load_certs;

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

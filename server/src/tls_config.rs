//! The `[tls]` section both servers have (the broker's config re-uses it): which PEM files
//! the listeners serve, which client certificates they verify, what the server trusts when
//! it connects to other servers, mutual TLS for cluster-internal calls, and how often the
//! files are checked for a new pair. Validation loads every file, so a bad one stops the
//! start (and `--check-config`) naming it. The files become the running TLS in
//! [`crate::tls`].

use crate::tls::{ServerTls, ServerTlsFiles};
use apogee_proto::tls::ClientTls;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The `[tls]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain the gRPC and HTTP listeners serve ("": TLS off, plain text).
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
    /// PEM CA bundle client certificates are verified against when a client presents one
    /// ("": none asked for).
    pub client_ca_file: String,
    /// Cluster-internal calls (registrations, replication) only from callers with a client
    /// certificate verified against `client_ca_file`; this server presents its own
    /// certificate when it calls other servers.
    pub cluster_mtls: bool,
    /// PEM CA bundle this server trusts when it connects to other servers (broker to
    /// NameServer, slave to master, NameServer to broker). Required with TLS on.
    pub ca_file: String,
    /// How often the certificate files are checked for a change (SIGHUP reloads at once).
    pub reload_interval_secs: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            cluster_mtls: false,
            ca_file: String::new(),
            reload_interval_secs: 30,
        }
    }
}

fn path(setting: &str) -> Option<PathBuf> {
    (!setting.is_empty()).then(|| PathBuf::from(setting))
}

impl TlsSection {
    /// Whether the listeners serve TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// Checks the settings together and loads every file named; errors name the setting
    /// and the file.
    pub fn validate(&self) -> Result<(), String> {
        self.server_tls()?;
        self.client_tls()?;
        Ok(())
    }

    fn check_settings(&self) -> Result<(), String> {
        let on = self.enabled();
        if self.key_file.is_empty() == on {
            return Err(
                "tls.cert_file and tls.key_file go together: set both (TLS on) or neither \
                 (plain text)"
                    .into(),
            );
        }
        if !on {
            for (key, set) in [
                ("tls.ca_file", !self.ca_file.is_empty()),
                ("tls.client_ca_file", !self.client_ca_file.is_empty()),
                ("tls.cluster_mtls", self.cluster_mtls),
            ] {
                if set {
                    return Err(format!(
                        "{key} is set but TLS is off: set tls.cert_file and tls.key_file too"
                    ));
                }
            }
            return Ok(());
        }
        if self.ca_file.is_empty() {
            return Err(
                "tls.ca_file is required with TLS on: this server connects to other servers \
                 over TLS and verifies their certificates against it"
                    .into(),
            );
        }
        if self.cluster_mtls && self.client_ca_file.is_empty() {
            return Err(
                "tls.cluster_mtls needs tls.client_ca_file, the CA the cluster members' \
                 certificates are verified against"
                    .into(),
            );
        }
        if self.reload_interval_secs == 0 {
            return Err("tls.reload_interval_secs must be at least 1".into());
        }
        Ok(())
    }

    /// The listeners' TLS, loaded (none with TLS off).
    pub fn server_tls(&self) -> Result<Option<Arc<ServerTls>>, String> {
        self.check_settings()?;
        let Some(cert_file) = path(&self.cert_file) else {
            return Ok(None);
        };
        let files = ServerTlsFiles {
            cert_file,
            key_file: PathBuf::from(&self.key_file),
            client_ca_file: path(&self.client_ca_file),
        };
        ServerTls::load(files).map(Some).map_err(|e| e.0)
    }

    /// What this server's own connections to other servers use (none with TLS off): the
    /// CA of `ca_file`, and this server's certificate with `cluster_mtls`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, String> {
        self.check_settings()?;
        let Some(ca) = path(&self.ca_file) else {
            return Ok(None);
        };
        let name = |e: apogee_proto::tls::TlsError| format!("tls.ca_file: {e}");
        let tls = ClientTls::with_ca_file(&ca).map_err(name)?;
        if !self.cluster_mtls {
            return Ok(Some(tls));
        }
        tls.with_identity_files(Path::new(&self.cert_file), Path::new(&self.key_file))
            .map(Some)
            .map_err(|e| format!("tls.cert_file/tls.key_file: {e}"))
    }

    /// [`Self::reload_interval_secs`] as a duration.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a certificate it signed for 127.0.0.1, as files in `dir`.
    fn pair(dir: &Path) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        (
            write("ca.pem", ca.pem()),
            write("server.pem", cert.pem()),
            write("server.key", key.serialize_pem()),
        )
    }

    #[test]
    fn tls_is_off_by_default_and_its_keys_go_together() {
        let off = TlsSection::default();
        assert!(!off.enabled());
        assert!(off.validate().is_ok());
        assert!(off.server_tls().unwrap().is_none() && off.client_tls().unwrap().is_none());
        let half = TlsSection {
            cert_file: "server.pem".into(),
            ..TlsSection::default()
        };
        assert!(half.validate().unwrap_err().contains("go together"));
        let stray = TlsSection {
            ca_file: "ca.pem".into(),
            ..TlsSection::default()
        };
        assert!(stray
            .validate()
            .unwrap_err()
            .contains("tls.ca_file is set but TLS is off"));
    }

    #[test]
    fn tls_on_needs_a_ca_file_and_mtls_a_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pair(dir.path());
        let mut on = TlsSection {
            cert_file: cert,
            key_file: key,
            ..TlsSection::default()
        };
        assert!(on
            .validate()
            .unwrap_err()
            .contains("tls.ca_file is required"));
        on.ca_file = ca.clone();
        on.validate().unwrap();
        assert!(!on.client_tls().unwrap().unwrap().has_identity());
        on.cluster_mtls = true;
        assert!(on
            .validate()
            .unwrap_err()
            .contains("needs tls.client_ca_file"));
        on.client_ca_file = ca;
        on.validate().unwrap();
        assert!(on.client_tls().unwrap().unwrap().has_identity());
    }

    #[test]
    fn files_that_do_not_load_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pair(dir.path());
        let missing = TlsSection {
            cert_file: dir.path().join("missing.pem").display().to_string(),
            key_file: key.clone(),
            ca_file: ca.clone(),
            ..TlsSection::default()
        };
        let err = missing.validate().unwrap_err();
        assert!(
            err.starts_with("tls.cert_file") && err.contains("missing.pem"),
            "{err}"
        );
        let bad_ca = TlsSection {
            cert_file: cert.clone(),
            key_file: key.clone(),
            ca_file: key.clone(),
            ..TlsSection::default()
        };
        let err = bad_ca.validate().unwrap_err();
        assert!(
            err.starts_with("tls.ca_file") && err.contains("server.key"),
            "{err}"
        );
        let swapped = TlsSection {
            cert_file: key,
            key_file: cert,
            ca_file: ca,
            ..TlsSection::default()
        };
        assert!(swapped
            .validate()
            .unwrap_err()
            .contains("holds no certificate"));
    }
}

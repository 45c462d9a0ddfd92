//! The global TLS flags of the `apogee` CLI (`--tls`, `--tls-ca-file`, `--tls-cert`,
//! `--tls-key`, or `APOGEE_TLS*` in the environment): every connection the CLI makes, to
//! NameServers and brokers alike, uses them.

use apogee_client::ClientTls;
use clap::Args;
use std::path::PathBuf;

/// How the CLI talks TLS.
#[derive(Clone, Debug, Default, Args)]
pub struct TlsArgs {
    /// Connect over TLS (the system's root certificates unless --tls-ca-file is given).
    #[arg(long, global = true, env = "APOGEE_TLS")]
    pub tls: bool,
    /// PEM file of the CA(s) the servers' certificates are verified against (implies --tls).
    #[arg(long, global = true, env = "APOGEE_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to servers that ask (with --tls-key; implies --tls).
    #[arg(long, global = true, env = "APOGEE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, env = "APOGEE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// The flags that take a value (for the mqadmin alias expansion).
pub const VALUE_FLAGS: [&str; 3] = ["--tls-ca-file", "--tls-cert", "--tls-key"];

impl TlsArgs {
    /// The TLS the flags ask for (`None`: plain text); a file that cannot be used, or a
    /// certificate without its key, is an error naming it.
    pub fn resolve(&self) -> Result<Option<ClientTls>, String> {
        let on = self.tls
            || self.tls_ca_file.is_some()
            || self.tls_cert.is_some()
            || self.tls_key.is_some();
        if !on {
            return Ok(None);
        }
        let tls = match &self.tls_ca_file {
            Some(ca) => ClientTls::with_ca_file(ca).map_err(|e| format!("--tls-ca-file: {e}"))?,
            None => ClientTls::system_roots(),
        };
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(Some(tls)),
            (Some(cert), Some(key)) => tls
                .with_identity_files(cert, key)
                .map(Some)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}")),
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flag_is_plain_text_and_a_lone_certificate_is_refused() {
        assert!(TlsArgs::default().resolve().unwrap().is_none());
        let on = TlsArgs {
            tls: true,
            ..TlsArgs::default()
        };
        assert!(on.resolve().unwrap().is_some());
        let lone = TlsArgs {
            tls_cert: Some("client.pem".into()),
            ..TlsArgs::default()
        };
        assert!(lone.resolve().unwrap_err().contains("go together"));
        let missing = TlsArgs {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        let err = missing.resolve().unwrap_err();
        assert!(
            err.starts_with("--tls-ca-file") && err.contains("ca.pem"),
            "{err}"
        );
    }
}

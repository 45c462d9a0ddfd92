//! The global TLS flags of the `apogee` CLI (`--tls`, `--tls-ca-file`, `--tls-cert`,
//! `--tls-key`, or `APOGEE_TLS*` in the environment): every connection the CLI makes, to
//! NameServers and brokers alike, uses them.

use apogee_client::transport::parse_host_port;
use apogee_client::ClientTls;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a plain-text call to a TLS server may fail with: the server's TLS alert, read as an
/// HTTP/2 frame, is "h2 protocol error: ... frame with invalid size" (a connection still
/// being made says "operation was canceled").
const GARBLED_H2: [&str; 2] = ["h2 protocol error", "frame with invalid size"];

/// How long [`speaks_tls`] waits for a server's first bytes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the CLI talks TLS.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = crate::cli::GLOBAL_OPTIONS)]
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

/// Whether the server at `addr` speaks TLS: it answers the HTTP/2 preface with a TLS record
/// (an alert: content type 21, version 3.x) where an HTTP/2 server sends frames.
pub async fn speaks_tls(addr: &str) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        Some(head == [0x15, 0x03])
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(true))
    )
}

/// For the error `text` of a call made in plain text: when a server it names (or, naming none,
/// one of `nameservers`) speaks TLS, the error to print instead: what was being done, then
/// "the server speaks TLS: use --tls".
pub async fn explain_plain_text_to_tls(text: &str, nameservers: &[String]) -> Option<String> {
    let named: Vec<String> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| matches!(c, ':' | ',' | '(' | ')' | ';')))
        .filter(|w| parse_host_port(w).is_ok())
        .map(str::to_string)
        .collect();
    let candidates = if named.is_empty() {
        nameservers
    } else {
        &named[..]
    };
    for addr in candidates {
        if !speaks_tls(addr).await {
            continue;
        }
        let advice = format!(
            "the server at {addr} speaks TLS: use --tls (with --tls-ca-file FILE when its \
             certificate is from a private CA)"
        );
        // What was being done: the text before the garbled protocol error, if any.
        let doing = GARBLED_H2
            .iter()
            .filter_map(|m| text.find(m))
            .min()
            .map(|at| {
                let head = text[..at].trim_end_matches(|c: char| c == ':' || c.is_whitespace());
                head.strip_suffix("transport error")
                    .unwrap_or(head)
                    .trim_end_matches(|c: char| c == ':' || c.is_whitespace())
            });
        return Some(match doing {
            Some(doing) if !doing.is_empty() => format!("{doing}: {advice}"),
            Some(_) => advice,
            None => format!("{advice} (in plain text: {text})"),
        });
    }
    None
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

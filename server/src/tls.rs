//! A server's TLS (rustls with ring only): [`ServerTls`], what a server's listeners (gRPC and
//! the HTTP operations endpoint) serve. It holds the loaded certificate and key behind a lock,
//! so new connections get a new pair as soon as it is reloaded ([`ServerTls::reload`],
//! [`ServerTls::spawn_reloader`]: on SIGHUP and when the files' modification times change).
//! A pair that does not load is logged and the one in use kept. With a client CA, client
//! certificates are asked for and verified when presented, but not required:
//! [`crate::cluster_mtls`] decides which calls need one.
//!
//! The PEM files are read with [`apogee_proto::tls`]'s loaders (errors name the file); the
//! handshake itself runs per connection in [`crate::net`], off the accept loop.

use apogee_proto::tls::{load_certs, load_key, load_roots, provider, TlsError};
use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The files a server's TLS is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain served (PEM, the server's certificate first).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Client certificates, when presented, are verified against this CA bundle; none: not
    /// asked for.
    pub client_ca_file: Option<PathBuf>,
}

/// What a listener speaks inside TLS (its ALPN protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/2: the gRPC listener.
    Grpc,
    /// HTTP/1.1: the operations endpoint.
    Http,
}

/// One loaded generation of the files.
struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    /// The files' modification times when they were read.
    stamp: Vec<Option<SystemTime>>,
    /// The served certificate (the leaf).
    leaf: CertificateDer<'static>,
}

/// A server's TLS: the loaded files, reloadable while serving.
pub struct ServerTls {
    files: ServerTlsFiles,
    current: RwLock<Arc<Loaded>>,
    /// The stamp of the last pair that failed to load (logged once, not at every poll).
    failed: parking_lot::Mutex<Option<Vec<Option<SystemTime>>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ServerTls {
    /// Loads the files; errors name the file at fault.
    pub fn load(files: ServerTlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        let loaded = load_files(&files)?;
        Ok(Arc::new(ServerTls {
            files,
            current: RwLock::new(Arc::new(loaded)),
            failed: parking_lot::Mutex::new(None),
        }))
    }

    /// The acceptor for a new connection: the pair loaded last.
    pub fn acceptor(&self, protocol: Protocol) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read();
        let config = match protocol {
            Protocol::Grpc => current.grpc.clone(),
            Protocol::Http => current.http.clone(),
        };
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// The certificate new connections are served (DER).
    pub fn served_certificate(&self) -> CertificateDer<'static> {
        self.current.read().leaf.clone()
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        let mut paths = vec![&self.files.cert_file, &self.files.key_file];
        paths.extend(self.files.client_ca_file.as_ref());
        paths.into_iter().map(|p| modified(p)).collect()
    }

    /// Reads the files again; on success new connections get the new pair, on failure the
    /// one in use is kept and the error returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load_files(&self.files)?;
        *self.current.write() = Arc::new(loaded);
        *self.failed.lock() = None;
        Ok(())
    }

    /// Reloads when a file changed since it was read (or since a failed attempt), logging
    /// the outcome; `force` reloads anyway (SIGHUP).
    pub fn reload_if_changed(&self, force: bool, why: &str) {
        let stamp = self.stamp();
        if !force
            && (stamp == self.current.read().stamp || self.failed.lock().as_ref() == Some(&stamp))
        {
            return;
        }
        match self.reload() {
            Ok(()) => tracing::info!(
                cert_file = %self.files.cert_file.display(),
                "TLS certificate reloaded ({why}); new connections get it"
            ),
            Err(e) => {
                tracing::warn!("TLS reload ({why}) failed, the certificate in use is kept: {e}");
                *self.failed.lock() = Some(stamp);
            }
        }
    }

    /// Reloads on SIGHUP and whenever the files change (checked every `interval`), until
    /// the task is aborted.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        // Listening before the task runs: a SIGHUP right after start reloads, not kills.
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!("cannot listen for SIGHUP (TLS reload): {e}"))
            .ok();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                let force = tokio::select! {
                    _ = tick.tick() => false,
                    _ = hup => true,
                };
                let tls = tls.clone();
                let why = if force { "SIGHUP" } else { "files changed" };
                // File reads and key parsing: off the async threads.
                let _ =
                    tokio::task::spawn_blocking(move || tls.reload_if_changed(force, why)).await;
            }
        })
    }
}

fn load_files(files: &ServerTlsFiles) -> Result<Loaded, TlsError> {
    let mut paths = vec![&files.cert_file, &files.key_file];
    paths.extend(files.client_ca_file.as_ref());
    let stamp = paths.into_iter().map(|p| modified(p)).collect();
    let certs = load_certs(&files.cert_file, "tls.cert_file")?;
    let key = load_key(&files.key_file, "tls.key_file")?;
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError(format!("tls.key_file {}: {e}", files.key_file.display())))?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    certified.keys_match().map_err(|_| {
        TlsError(format!(
            "tls.key_file {} is not the private key of the certificate in tls.cert_file {}",
            files.key_file.display(),
            files.cert_file.display()
        ))
    })?;
    let verifier = match &files.client_ca_file {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(ca) => WebPkiClientVerifier::builder_with_provider(
            Arc::new(load_roots(ca, "tls.client_ca_file")?),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError(format!("tls.client_ca_file {}: {e}", ca.display())))?,
    };
    let config = |alpn: &[u8]| -> Result<Arc<ServerConfig>, TlsError> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| TlsError(format!("tls.cert_file {}: {e}", files.cert_file.display())))?;
        c.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(c))
    };
    Ok(Loaded {
        grpc: config(b"h2")?,
        http: config(b"http/1.1")?,
        stamp,
        leaf: certs[0].clone(),
    })
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;

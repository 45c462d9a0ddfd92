//! A real S3-compatible server for the object-store tier's tests: moto's server (`moto_server`,
//! from PyPI), started on a free loopback port as its own process, its log shown when a test
//! fails. `deploy/dev-setup.sh` installs it into a virtual environment under the user's cache
//! (`$XDG_CACHE_HOME/apogee-s3/venv`, else `~/.cache/...`); `APOGEE_MOTO_SERVER` names
//! another executable. Without one the tests skip, except under CI
//! ([`crate::prerequisite`]).
//!
//! Started with `auth`, the server checks every request's signature against the access keys
//! it knows, and knows none: every request is refused as S3 refuses unknown credentials.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::process::{free_port, ManagedProcess};

/// The access key the tests give the broker (the server takes any while not checking).
pub const ACCESS_KEY: &str = "apogee-test";
pub const SECRET_KEY: &str = "apogee-test-secret";

/// A running `moto_server`.
pub struct S3Server {
    process: ManagedProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Where `moto_server` is, or why it cannot be had.
fn moto_server() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("APOGEE_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let venv = cache.join("apogee-s3/venv/bin/moto_server");
    if venv.exists() {
        return Ok(venv);
    }
    Err(format!("{} not found", venv.display()))
}

impl S3Server {
    /// Starts a server, or None (after printing why) where moto cannot be had outside CI.
    pub fn start() -> Option<S3Server> {
        S3Server::start_with(false)
    }

    /// A server that refuses every request's credentials.
    pub fn start_refusing() -> Option<S3Server> {
        S3Server::start_with(true)
    }

    fn start_with(auth: bool) -> Option<S3Server> {
        let program = moto_server();
        if !crate::prerequisite::present(
            "an S3-compatible server (moto_server)",
            program.as_ref().err().cloned(),
            "run deploy/dev-setup.sh, or set APOGEE_MOTO_SERVER",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut env = vec![("PYTHONUNBUFFERED".to_string(), "1".to_string())];
        if auth {
            // moto checks signatures from the first request on.
            env.push(("INITIAL_NO_AUTH_ACTION_COUNT".into(), "0".into()));
        }
        let mut process = ManagedProcess::spawn(
            "moto_server",
            program.unwrap(),
            vec![
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            env,
            dir.path().join("moto.log"),
        );
        process.wait_for_port(addr, Duration::from_secs(30));
        Some(S3Server {
            process,
            addr,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server (SIGKILL): the object store is down until [`start_again`].
    ///
    /// [`start_again`]: S3Server::start_again
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port (moto keeps its objects in memory: they are
    /// gone).
    pub fn start_again(&mut self) {
        self.process.start();
        self.process
            .wait_for_port(self.addr, Duration::from_secs(30));
    }

    /// Creates `bucket` (an unsigned request; moto takes it while it does not check).
    pub async fn create_bucket(&self, bucket: &str) {
        let (status, body) =
            crate::http::put_empty(&self.addr.to_string(), &format!("/{bucket}")).await;
        assert!(
            (200..300).contains(&status),
            "creating bucket {bucket}: HTTP {status} {body}\n{}",
            self.process.log_tail()
        );
    }

    /// An AWS shared credentials file with [`ACCESS_KEY`] and [`SECRET_KEY`].
    pub fn credentials_file(&self) -> PathBuf {
        let path = self._dir.path().join("credentials");
        std::fs::write(
            &path,
            format!("[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
        )
        .expect("writing the credentials file");
        path
    }

    /// The broker's `[tier]` settings (as `APOGEE_BROKER_` variables without the prefix) for
    /// `bucket` and `prefix` on this server.
    pub fn broker_env(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        vec![
            ("TIER__ENDPOINT".into(), self.endpoint()),
            ("TIER__BUCKET".into(), bucket.into()),
            ("TIER__PREFIX".into(), prefix.into()),
            (
                "TIER__CREDENTIALS_FILE".into(),
                self.credentials_file().display().to_string(),
            ),
        ]
    }

    /// A client of `bucket` signing with the test's credentials.
    fn client(&self, bucket: &str) -> AmazonS3 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("an S3 client")
    }

    /// The bytes of `key` in `bucket`, or None when there is no such object.
    pub async fn read(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.client(bucket).get(&ObjectPath::from(key)).await {
            Ok(got) => Some(got.bytes().await.expect("reading an object").to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {bucket}/{key}: {e}\n{}", self.process.log_tail()),
        }
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let client = self.client(bucket);
        let prefix = ObjectPath::from(prefix);
        let metas: Vec<_> = client
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("listing {bucket}/{prefix}: {e}"));
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        keys
    }

    /// Writes `bytes` as `key` in `bucket`.
    pub async fn write(&self, bucket: &str, key: &str, bytes: &'static [u8]) {
        self.client(bucket)
            .put(&ObjectPath::from(key), PutPayload::from_static(bytes))
            .await
            .unwrap_or_else(|e| panic!("writing {bucket}/{key}: {e}"));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}

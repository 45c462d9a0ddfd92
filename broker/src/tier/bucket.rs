//! The bucket: the object store behind `[tier]`, the claim on its prefix, and uploads.
//!
//! Apogee writes only under `<prefix>/`. The first object it writes there is the claim,
//! `<prefix>/apogee-tier.json`, naming the cluster. A prefix that holds the claim of another
//! cluster, or objects but no claim, is refused and never written to; an empty one is claimed
//! (with a create-only put, so two clusters cannot both claim it). Segment objects are named
//! `<prefix>/<group>/segments/<base offset, 20 digits>-e<master epoch, 10 digits>.log`: a
//! master fenced by a newer epoch writes other keys than its successor, never over them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, Certificate, ClientOptions, GetOptions,
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};

use crate::config::TierSection;

/// The claim's object name, under the prefix.
pub const CLAIM_OBJECT: &str = "apogee-tier.json";
/// The claim's format.
const CLAIM_FORMAT: u32 = 1;
/// The user-metadata field holding an uploaded segment's SHA-256 (hex).
pub const SHA256_METADATA: &str = "apogee-sha256";

/// Why the tier cannot be used, as an operator reads it.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("tier config: {0}")]
    Config(String),
    #[error("the object store at {endpoint} cannot be reached: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("the object store refused the credentials: {0}")]
    RefusedCredentials(String),
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("{0}")]
    Foreign(String),
    #[error("uploaded object {key} does not match the segment: {detail}")]
    Mismatch { key: String, detail: String },
    #[error("object store: {0}")]
    Store(String),
    #[error("reading the segment: {0}")]
    Local(String),
    #[error("restore from the tier: {0}")]
    Restore(String),
}

/// The claim's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    format: u32,
    cluster: String,
    claimed_at_ms: i64,
}

/// What `--check-config` and the start found under the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixState {
    /// Nothing is there yet: the broker claims it when it starts.
    Empty,
    /// This cluster's claim is there.
    Claimed,
}

/// An object's size and metadata ([`Bucket::head`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub sha256_hex: Option<String>,
    pub modified_ms: i64,
}

/// The object store behind `[tier]`, with the settings uploads follow.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    endpoint: String,
    bucket: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Bucket({}/{}/{})",
            self.endpoint, self.bucket, self.prefix
        )
    }
}

/// Access keys for the object store.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Names the access key only: the secret and the token are never printed.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, secret hidden)", self.access_key_id)
    }
}

/// The `[profile]` of an AWS shared credentials file's text.
pub fn parse_credentials_file(text: &str, profile: &str) -> Result<Credentials, String> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        _ => Err(format!(
            "profile [{profile}] with aws_access_key_id and aws_secret_access_key not found"
        )),
    }
}

/// The credentials `[tier]` names: its file, else the environment.
fn credentials(c: &TierSection) -> Result<Credentials, TierError> {
    if !c.credentials_file.is_empty() {
        let text = std::fs::read_to_string(&c.credentials_file).map_err(|e| {
            TierError::Config(format!("tier.credentials_file {}: {e}", c.credentials_file))
        })?;
        return parse_credentials_file(&text, &c.credentials_profile).map_err(|e| {
            TierError::Config(format!("tier.credentials_file {}: {e}", c.credentials_file))
        });
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
        }),
        _ => Err(TierError::Config(
            "no credentials: set tier.credentials_file, or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY in the environment"
                .into(),
        )),
    }
}

impl Bucket {
    /// The object store `c` names (no request is made).
    pub fn open(c: &TierSection) -> Result<Bucket, TierError> {
        // reqwest takes rustls' process-wide provider: ring, as every other TLS of Apogee.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let creds = credentials(c)?;
        let mut options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        if !c.ca_file.is_empty() {
            let pem = std::fs::read(&c.ca_file)
                .map_err(|e| TierError::Config(format!("tier.ca_file {}: {e}", c.ca_file)))?;
            for cert in Certificate::from_pem_bundle(&pem)
                .map_err(|e| TierError::Config(format!("tier.ca_file {}: {e}", c.ca_file)))?
            {
                options = options.with_root_certificate(cert);
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key)
            .with_virtual_hosted_style_request(c.virtual_hosted_style)
            // Every put and part carries its SHA-256, which the server checks.
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .with_client_options(options)
            // A few quick tries per request; the offload loop's own backoff does the rest.
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(token) = &creds.session_token {
            builder = builder.with_token(token);
        }
        if !c.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&c.endpoint)
                .with_allow_http(c.endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| TierError::Config(format!("tier: {e}")))?;
        let endpoint = if c.endpoint.is_empty() {
            format!("AWS S3 ({})", c.region)
        } else {
            c.endpoint.clone()
        };
        Ok(Bucket::over(
            Arc::new(store),
            &endpoint,
            &c.bucket,
            &c.prefix,
        ))
    }

    /// A bucket over any object store: the S3 client above, or in unit tests object_store's
    /// in-memory one.
    pub fn over(store: Arc<dyn ObjectStore>, endpoint: &str, bucket: &str, prefix: &str) -> Bucket {
        Bucket {
            store,
            prefix: prefix.to_string(),
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
        }
    }

    /// Where objects go, as the operator reads it: endpoint, bucket and prefix.
    pub fn location(&self) -> String {
        format!("{} s3://{}/{}", self.endpoint, self.bucket, self.prefix)
    }

    /// `name` under the prefix.
    pub fn object(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The object of the segment of `group` at `base`, written by the master of `epoch`.
    pub fn segment_object(&self, group: &str, base: u64, epoch: u64) -> ObjectPath {
        self.object(&format!("{group}/segments/{base:020}-e{epoch:010}.log"))
    }

    /// The index object of that segment (`super::index_object`).
    pub fn index_object(&self, group: &str, base: u64, epoch: u64) -> ObjectPath {
        self.object(&format!("{group}/segments/{base:020}-e{epoch:010}.index"))
    }

    /// The directory of `group`'s state snapshots (`super::state`).
    pub fn state_dir(&self, group: &str) -> String {
        format!("{group}/state")
    }

    /// The state snapshot of `group` taken at `taken_at_ms` by the master of `epoch`: names
    /// sort by the time taken.
    pub fn state_object(&self, group: &str, taken_at_ms: i64, epoch: u64) -> ObjectPath {
        self.object(&format!(
            "{}/{:020}-e{epoch:010}.state",
            self.state_dir(group),
            taken_at_ms.max(0)
        ))
    }

    /// An object store error as the operator reads it.
    fn explain(&self, e: object_store::Error) -> TierError {
        use object_store::Error as E;
        match e {
            E::Unauthenticated { source, .. } | E::PermissionDenied { source, .. } => {
                TierError::RefusedCredentials(source.to_string())
            }
            E::NotFound { .. } => TierError::NoSuchBucket(self.bucket.clone()),
            other => {
                let text = other.to_string();
                let lower = text.to_lowercase();
                if lower.contains("nosuchbucket") {
                    TierError::NoSuchBucket(self.bucket.clone())
                } else if lower.contains("invalidaccesskeyid")
                    || lower.contains("signaturedoesnotmatch")
                    || lower.contains("accessdenied")
                    || lower.contains("403 forbidden")
                {
                    TierError::RefusedCredentials(text)
                } else if lower.contains("error sending request")
                    || lower.contains("connect")
                    || lower.contains("timed out")
                {
                    TierError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        detail: text,
                    }
                } else {
                    TierError::Store(text)
                }
            }
        }
    }

    /// What the prefix holds, reading only: this cluster's claim, nothing, or (an error)
    /// another cluster's claim or objects Apogee did not write.
    pub async fn inspect(&self, cluster: &str) -> Result<PrefixState, TierError> {
        let claim_path = self.object(CLAIM_OBJECT);
        match self.store.get(&claim_path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.explain(e))?;
                let claim: Claim = serde_json::from_slice(&bytes).map_err(|_| {
                    TierError::Foreign(format!(
                        "{claim_path} is not a claim Apogee wrote: refused, nothing touched"
                    ))
                })?;
                if claim.format != CLAIM_FORMAT || claim.cluster != cluster {
                    return Err(TierError::Foreign(format!(
                        "the prefix is claimed by cluster {:?} (claim format {}): refused, \
                         nothing touched",
                        claim.cluster, claim.format
                    )));
                }
                Ok(PrefixState::Claimed)
            }
            Err(object_store::Error::NotFound { .. }) => {
                // No claim: the prefix must hold nothing at all.
                let listed = self.prefix_path();
                let first = self
                    .store
                    .list(listed.as_ref())
                    .try_next()
                    .await
                    .map_err(|e| self.explain(e))?;
                match first {
                    None => Ok(PrefixState::Empty),
                    Some(meta) => Err(TierError::Foreign(format!(
                        "the prefix holds objects Apogee did not write (such as {}): refused, \
                         nothing touched",
                        meta.location
                    ))),
                }
            }
            Err(e) => Err(self.explain(e)),
        }
    }

    fn prefix_path(&self) -> Option<ObjectPath> {
        (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
    }

    /// Inspects the prefix and claims it for `cluster` when it is empty. A claim written by
    /// another cluster at the same moment wins the create-only put; this one is then refused.
    pub async fn claim(&self, cluster: &str) -> Result<(), TierError> {
        if self.inspect(cluster).await? == PrefixState::Claimed {
            return Ok(());
        }
        let claim = Claim {
            format: CLAIM_FORMAT,
            cluster: cluster.to_string(),
            claimed_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let body = serde_json::to_vec_pretty(&claim).expect("a claim serializes");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.object(CLAIM_OBJECT), body.into(), opts)
            .await
        {
            Ok(_) => Ok(()),
            // Someone claimed it first: theirs is what counts.
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                self.inspect(cluster).await.map(|_| ())
            }
            Err(e) => Err(self.explain(e)),
        }
    }

    /// Uploads `parts` (the segment's bytes in order, `len` in all) to `path`, a single put
    /// for one part, else a multipart upload with at most `concurrency` parts in flight, and
    /// checks what the store then holds: its size and the SHA-256 recorded with it.
    pub async fn upload(
        &self,
        path: &ObjectPath,
        len: u64,
        sha256_hex: &str,
        mut parts: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, TierError>>,
        concurrency: usize,
    ) -> Result<(), TierError> {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(SHA256_METADATA.into()),
            AttributeValue::from(sha256_hex.to_string()),
        );
        let first = parts.recv().await.transpose()?.unwrap_or_default();
        if first.len() as u64 == len {
            self.store
                .put_opts(path, PutPayload::from(first), PutOptions::from(attributes))
                .await
                .map_err(|e| self.explain(e))?;
        } else {
            let upload = self
                .store
                .put_multipart_opts(path, PutMultipartOptions::from(attributes))
                .await
                .map_err(|e| self.explain(e))?;
            let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, first.len());
            let mut next = Some(first);
            let mut sent = 0u64;
            while let Some(part) = next.take() {
                if let Err(e) = writer.wait_for_capacity(concurrency).await {
                    let _ = writer.abort().await;
                    return Err(self.explain(e));
                }
                sent += part.len() as u64;
                writer.put(part);
                match parts.recv().await {
                    Some(Ok(p)) => next = Some(p),
                    Some(Err(e)) => {
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                    None => {}
                }
            }
            if sent != len {
                let _ = writer.abort().await;
                return Err(TierError::Local(format!(
                    "read {sent} bytes of a {len}-byte segment"
                )));
            }
            writer.finish().await.map_err(|e| self.explain(e))?;
        }
        self.verify(path, len, sha256_hex).await
    }

    /// Checks that `path` holds `len` bytes recorded with the SHA-256 `sha256_hex`.
    pub async fn verify(
        &self,
        path: &ObjectPath,
        len: u64,
        sha256_hex: &str,
    ) -> Result<(), TierError> {
        let head = self.head(path).await?;
        let mismatch = |detail: String| TierError::Mismatch {
            key: path.to_string(),
            detail,
        };
        if head.size != len {
            return Err(mismatch(format!("{} bytes, not {len}", head.size)));
        }
        let recorded = head.sha256_hex;
        if recorded.as_deref() != Some(sha256_hex) {
            return Err(mismatch(format!(
                "SHA-256 {recorded:?}, not {sha256_hex:?}"
            )));
        }
        Ok(())
    }

    /// What the store says of the object at `path`: its size, the SHA-256 recorded with it
    /// (hex) and when it was last written (Unix ms).
    pub async fn head(&self, path: &ObjectPath) -> Result<ObjectHead, TierError> {
        let head = self
            .store
            .get_opts(
                path,
                GetOptions {
                    head: true,
                    ..GetOptions::default()
                },
            )
            .await
            .map_err(|e| self.explain(e))?;
        Ok(ObjectHead {
            size: head.meta.size,
            sha256_hex: head
                .attributes
                .get(&Attribute::Metadata(SHA256_METADATA.into()))
                .map(|v| v.as_ref().to_string()),
            modified_ms: head.meta.last_modified.timestamp_millis(),
        })
    }

    /// The bytes of `path` (tests and tools; reads of tiered records come with the reads).
    pub async fn read(&self, path: &ObjectPath) -> Result<bytes::Bytes, TierError> {
        let got = self.store.get(path).await.map_err(|e| self.explain(e))?;
        got.bytes().await.map_err(|e| self.explain(e))
    }

    /// The bytes of `path`, or None when there is no such object.
    pub async fn read_if_there(
        &self,
        path: &ObjectPath,
    ) -> Result<Option<bytes::Bytes>, TierError> {
        match self.store.get(path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(|e| self.explain(e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.explain(e)),
        }
    }

    /// Writes a small object whole (one put, its SHA-256 checked by the server).
    pub async fn put_whole(&self, path: &ObjectPath, bytes: bytes::Bytes) -> Result<(), TierError> {
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.explain(e))
    }

    /// Deletes the object at `path` (one that is gone already is no error).
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), TierError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.explain(e)),
        }
    }

    /// Bytes `range` of the object at `path` (one ranged GET).
    pub async fn read_range(
        &self,
        path: &ObjectPath,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, TierError> {
        self.store
            .get_range(path, range)
            .await
            .map_err(|e| self.explain(e))
    }

    /// The names of every object under `<prefix>/<dir>`.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, TierError> {
        let path = self.object(dir);
        let metas: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| self.explain(e))?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_named_profile() {
        let text = "# shared\n[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n\
                    [backup]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        let d = parse_credentials_file(text, "default").unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.secret_access_key.as_str()),
            ("A", "S")
        );
        assert_eq!(d.session_token, None);
        let b = parse_credentials_file(text, "backup").unwrap();
        assert_eq!(b.session_token.as_deref(), Some("X"));
        let e = parse_credentials_file(text, "other").unwrap_err();
        assert!(e.contains("[other]"), "{e}");
        assert!(parse_credentials_file("[default]\naws_access_key_id = A\n", "default").is_err());
    }

    #[test]
    fn objects_carry_the_group_the_base_offset_and_the_epoch() {
        let b = Bucket::over(
            Arc::new(object_store::memory::InMemory::new()),
            "memory",
            "b",
            "prod/east",
        );
        assert_eq!(
            b.segment_object("broker-a", 1 << 30, 7).to_string(),
            "prod/east/broker-a/segments/00000000001073741824-e0000000007.log"
        );
        assert_eq!(
            b.object(CLAIM_OBJECT).to_string(),
            "prod/east/apogee-tier.json"
        );
    }
}

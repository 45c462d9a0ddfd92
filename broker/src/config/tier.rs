//! `[tier]`: the object-store tier (`crate::tier`): where sealed commit-log segments are
//! uploaded, and how.

use serde::{Deserialize, Serialize};

/// S3's smallest part of a multipart upload (every part but the last).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_BYTES: u64 = 5 << 30;
/// Parts of one upload in flight at most.
pub const MAX_UPLOAD_CONCURRENCY: usize = 64;
/// Bytes of a tiered segment fetched by one ranged GET and kept as one piece of the read
/// cache (a read needing fewer fetches the whole piece: the read-ahead).
pub const READ_CHUNK_BYTES: u64 = 4 << 20;
/// The smallest read cache: four pieces (a reader's piece and the next, for two readers).
pub const MIN_CACHE_BYTES: u64 = 4 * READ_CHUNK_BYTES;
/// The shortest interval between snapshots of the replicated state in the bucket.
pub const MIN_STATE_SNAPSHOT_INTERVAL_MS: u64 = 1000;

/// The object-store tier. Off unless `bucket` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSection {
    /// The S3 endpoint, `http://` or `https://` (empty: AWS's own for `region`).
    pub endpoint: String,
    /// The bucket; empty turns the tier off.
    pub bucket: String,
    /// Every object Apogee writes is under `<prefix>/` (empty: the bucket's root). Apogee
    /// claims a prefix that holds nothing and refuses one holding objects it did not write.
    pub prefix: String,
    pub region: String,
    /// Virtual-host style addresses (`https://bucket.endpoint/key`); the default is path
    /// style (`https://endpoint/bucket/key`), which S3-compatible servers take.
    pub virtual_hosted_style: bool,
    /// An AWS shared credentials file (`aws_access_key_id`, `aws_secret_access_key`,
    /// optionally `aws_session_token`, in `[profile]` sections). Empty: the environment's
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub credentials_file: String,
    /// The profile read from `credentials_file`.
    pub credentials_profile: String,
    /// A PEM file of CA certificates trusted for an `https` endpoint, beside the system's.
    pub ca_file: String,
    /// Bytes of each uploaded part (every part but a segment's last).
    pub part_bytes: u64,
    /// Parts of one upload in flight at most.
    pub upload_concurrency: usize,
    /// Upload bandwidth in bytes a second (0: unbounded).
    pub upload_bytes_per_sec: u64,
    /// Milliseconds between looks for segments to upload.
    pub scan_interval_ms: u64,
    /// A failed upload is tried again after this many milliseconds, doubled on each failure
    /// up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A segment the tier holds loses its local copy once it was last written longer ago
    /// than this (unset: no age limit). Its messages stay readable, from the tier.
    pub local_retention_ms: Option<u64>,
    /// The local commit log is kept at or below this many bytes by dropping the local copies
    /// of segments the tier holds, oldest first (unset: no byte limit).
    pub local_retention_bytes: Option<u64>,
    /// How long the tier keeps a segment, counted from its upload (unset: the store's
    /// `retention_hours`). Its messages end then: their index entries are pruned and the
    /// master deletes the object.
    pub retention_ms: Option<u64>,
    /// Bytes of tiered segments kept on local disk (`<data_dir>/tier-cache/`) for reads,
    /// in pieces of READ_CHUNK_BYTES, the least recently read dropped first.
    pub cache_bytes: u64,
    /// Milliseconds between the master's snapshots of the replicated state (topic and group
    /// configs, consumer offsets, users, ACLs) in the bucket, which `--restore-from-tier`
    /// restores: the most a restore loses of them.
    pub state_snapshot_interval_ms: u64,
}

impl Default for TierSection {
    fn default() -> Self {
        TierSection {
            endpoint: String::new(),
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            virtual_hosted_style: false,
            credentials_file: String::new(),
            credentials_profile: "default".into(),
            ca_file: String::new(),
            part_bytes: 8 << 20,
            upload_concurrency: 4,
            upload_bytes_per_sec: 0,
            scan_interval_ms: 5000,
            retry_initial_ms: 1000,
            retry_max_ms: 60_000,
            local_retention_ms: None,
            local_retention_bytes: None,
            retention_ms: None,
            cache_bytes: 1 << 30,
            state_snapshot_interval_ms: 60_000,
        }
    }
}

impl TierSection {
    /// Whether the tier is on.
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }

    /// Checks what serde cannot (only when the tier is on).
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        if !self.endpoint.is_empty()
            && !self.endpoint.starts_with("http://")
            && !self.endpoint.starts_with("https://")
        {
            return Err(format!(
                "tier.endpoint {:?} must start with http:// or https://",
                self.endpoint
            ));
        }
        if self.region.is_empty() {
            return Err("tier.region must be set".into());
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.contains("//")
        {
            return Err(format!(
                "tier.prefix {:?} must not start or end with '/' or hold an empty part",
                self.prefix
            ));
        }
        if !(MIN_PART_BYTES..=MAX_PART_BYTES).contains(&self.part_bytes) {
            return Err(format!(
                "tier.part_bytes must be within {MIN_PART_BYTES}..={MAX_PART_BYTES} (S3's part sizes)"
            ));
        }
        if !(1..=MAX_UPLOAD_CONCURRENCY).contains(&self.upload_concurrency) {
            return Err(format!(
                "tier.upload_concurrency must be within 1..={MAX_UPLOAD_CONCURRENCY}"
            ));
        }
        if self.scan_interval_ms == 0 || self.retry_initial_ms == 0 {
            return Err("tier.scan_interval_ms and tier.retry_initial_ms must be > 0".into());
        }
        if self.state_snapshot_interval_ms < MIN_STATE_SNAPSHOT_INTERVAL_MS {
            return Err(format!(
                "tier.state_snapshot_interval_ms must be at least {MIN_STATE_SNAPSHOT_INTERVAL_MS}"
            ));
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err("tier.retry_max_ms must be at least tier.retry_initial_ms".into());
        }
        if self.cache_bytes < MIN_CACHE_BYTES {
            return Err(format!(
                "tier.cache_bytes must be at least {MIN_CACHE_BYTES} (four read pieces of \
                 {READ_CHUNK_BYTES} bytes)"
            ));
        }
        if self.upload_bytes_per_sec != 0 && self.upload_bytes_per_sec < 1 << 20 {
            return Err(
                "tier.upload_bytes_per_sec must be 0 (unbounded) or at least 1 MiB a second".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> TierSection {
        TierSection {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            ..TierSection::default()
        }
    }

    #[test]
    fn off_by_default_and_every_bad_value_named() {
        assert!(!TierSection::default().enabled());
        assert_eq!(TierSection::default().validate(), Ok(()));
        assert_eq!(on().validate(), Ok(()));
        let cases: [(&str, TierSection); 8] = [
            (
                "tier.cache_bytes",
                TierSection {
                    cache_bytes: 1 << 20,
                    ..on()
                },
            ),
            (
                "tier.endpoint",
                TierSection {
                    endpoint: "s3.local".into(),
                    ..on()
                },
            ),
            (
                "tier.prefix",
                TierSection {
                    prefix: "a/".into(),
                    ..on()
                },
            ),
            (
                "tier.prefix",
                TierSection {
                    prefix: "a//b".into(),
                    ..on()
                },
            ),
            (
                "tier.part_bytes",
                TierSection {
                    part_bytes: 1 << 20,
                    ..on()
                },
            ),
            (
                "tier.upload_concurrency",
                TierSection {
                    upload_concurrency: 0,
                    ..on()
                },
            ),
            (
                "tier.retry_max_ms",
                TierSection {
                    retry_max_ms: 1,
                    ..on()
                },
            ),
            (
                "tier.upload_bytes_per_sec",
                TierSection {
                    upload_bytes_per_sec: 1000,
                    ..on()
                },
            ),
        ];
        for (field, section) in cases {
            let e = section.validate().unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn reads_from_toml_and_refuses_unknown_fields() {
        let s: TierSection =
            toml::from_str("bucket = \"history\"\nprefix = \"prod/a\"\npart_bytes = 8388608")
                .unwrap();
        assert!(s.enabled());
        assert_eq!((s.prefix.as_str(), s.part_bytes), ("prod/a", 8 << 20));
        assert!(toml::from_str::<TierSection>("buckets = \"x\"").is_err());
    }
}

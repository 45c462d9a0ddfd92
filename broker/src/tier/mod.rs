//! The object-store tier: sealed commit-log segments uploaded to S3-compatible storage.
//!
//! With `[tier]` set (`bucket`), the master uploads each sealed segment once it is flushed
//! and held by every in-sync member ([`offload`]): its SHA-256 first, then its bytes (one
//! put, or a multipart upload for a segment larger than `tier.part_bytes`, a bounded number
//! of parts in flight, at a bounded rate), then a check of what the store holds (size and
//! the SHA-256 recorded with the object; the server checks each part's SHA-256 as it
//! arrives). Only then does the [`manifest`] (replicated primary state in `meta`) record
//! it. Retention deletes a segment for its age only once it is recorded; the disk-space rule
//! is what it was without a tier. An object store that is down or refusing never holds up a
//! send: uploads run on their own task and are tried again with a doubling backoff, and the
//! status says why they wait ([`TierStatus`], `apogee tier status`, `apogee_tier_*`).
//!
//! Reads: the tier is the store's cold segments ([`reader`], `store/cold.rs`): once
//! `tier.local_retention_*` (or a full disk) evicted a recorded segment's local copy, its
//! records are read from the bucket by ranged GETs through a read cache on local disk
//! ([`cache`]), at the same offsets, by every read path.
//!
//! The bucket's layout and the claim on the prefix are [`bucket`]'s.

pub mod bucket;
mod cache;
pub mod index_object;
pub mod manifest;
mod offload;
mod reader;
pub mod restore;
pub mod state;

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge, Opts, Registry};

pub use bucket::{Bucket, PrefixState, TierError};
pub use manifest::{Manifest, TieredSegment};
pub use reader::TierReader;

use crate::config::TierSection;
use crate::store::{LocalRetention, MessageStore};

/// Where uploads stand, for `apogee tier status` and the broker's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStatus {
    /// Sealed segments on local disk not uploaded yet, and their bytes.
    pub local_segments: u64,
    pub local_bytes: u64,
    /// The segment being uploaded (its base offset) and its bytes; None between uploads.
    pub uploading: Option<(u64, u64)>,
    /// Segments the manifest records, and their bytes.
    pub tiered_segments: u64,
    pub tiered_bytes: u64,
    /// Bytes sealed but not uploaded, and how long the oldest of them has waited.
    pub lag_bytes: u64,
    pub lag_secs: u64,
    /// The last failure and when (Unix ms); cleared by the next upload that succeeds.
    pub last_error: Option<(i64, String)>,
}

/// The tier's Prometheus series.
#[derive(Clone)]
struct TierMetrics {
    uploaded_segments: IntCounter,
    uploaded_bytes: IntCounter,
    upload_failures: IntCounter,
    deleted_segments: IntCounter,
    state_snapshots: IntCounter,
    tiered_bytes: IntGauge,
    lag_bytes: IntGauge,
    lag_seconds: IntGauge,
    reads: reader::ReadMetrics,
    cached_bytes: IntGauge,
}

impl TierMetrics {
    fn new() -> TierMetrics {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("valid metric")
        };
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help)).expect("valid metric")
        };
        TierMetrics {
            uploaded_segments: counter(
                "apogee_tier_uploaded_segments_total",
                "Commit-log segments uploaded to the object store and verified",
            ),
            uploaded_bytes: counter(
                "apogee_tier_uploaded_bytes_total",
                "Bytes of commit-log segments uploaded to the object store and verified",
            ),
            upload_failures: counter(
                "apogee_tier_upload_failures_total",
                "Segment uploads that failed (each is tried again)",
            ),
            deleted_segments: counter(
                "apogee_tier_deleted_segments_total",
                "Tiered segments deleted from the object store past the tier's retention",
            ),
            state_snapshots: counter(
                "apogee_tier_state_snapshots_total",
                "Snapshots of the replicated state written to the object store",
            ),
            tiered_bytes: gauge(
                "apogee_tier_tiered_bytes",
                "Bytes of the segments the tier's manifest records",
            ),
            lag_bytes: gauge(
                "apogee_tier_offload_lag_bytes",
                "Bytes of sealed segments not uploaded yet",
            ),
            lag_seconds: gauge(
                "apogee_tier_offload_lag_seconds",
                "How long the oldest sealed segment not uploaded yet has waited",
            ),
            reads: reader::ReadMetrics {
                fetched_bytes: counter(
                    "apogee_tier_fetched_bytes_total",
                    "Bytes of tiered segments fetched from the object store for reads",
                ),
                cache_hits: counter(
                    "apogee_tier_read_cache_hits_total",
                    "Reads of tiered records served from the local read cache",
                ),
                fetch_failures: counter(
                    "apogee_tier_fetch_failures_total",
                    "Fetches of tiered segments for reads that failed (the read is refused \
                     as unavailable and may be tried again)",
                ),
            },
            cached_bytes: gauge(
                "apogee_tier_read_cache_bytes",
                "Bytes of tiered segments held in the local read cache",
            ),
        }
    }

    fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.uploaded_segments.clone()))?;
        r.register(Box::new(self.uploaded_bytes.clone()))?;
        r.register(Box::new(self.upload_failures.clone()))?;
        r.register(Box::new(self.deleted_segments.clone()))?;
        r.register(Box::new(self.state_snapshots.clone()))?;
        r.register(Box::new(self.tiered_bytes.clone()))?;
        r.register(Box::new(self.lag_bytes.clone()))?;
        r.register(Box::new(self.lag_seconds.clone()))?;
        r.register(Box::new(self.reads.fetched_bytes.clone()))?;
        r.register(Box::new(self.reads.cache_hits.clone()))?;
        r.register(Box::new(self.reads.fetch_failures.clone()))?;
        r.register(Box::new(self.cached_bytes.clone()))
    }
}

/// The in-sync members' hold on the log: the offset below which every in-sync member has
/// synced what the master wrote (u64::MAX with none to wait for).
pub type InSyncHold = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The object-store tier of one broker.
pub struct Tier {
    bucket: Bucket,
    config: TierSection,
    cluster: String,
    group: String,
    store: Arc<MessageStore>,
    manifest: Manifest,
    reader: Arc<TierReader>,
    status: Mutex<TierStatus>,
    metrics: TierMetrics,
    /// When the master last wrote a state snapshot ([`state`]).
    last_state_snapshot: Mutex<Option<std::time::Instant>>,
}

impl Tier {
    /// The tier `config` names, for the broker group `group` of `cluster`, over `store`
    /// (no request is made yet).
    pub fn new(
        config: &TierSection,
        cluster: &str,
        group: &str,
        store: Arc<MessageStore>,
    ) -> Result<Arc<Tier>, TierError> {
        Tier::with_bucket(Bucket::open(config)?, config, cluster, group, store)
    }

    /// The tier over `bucket` (unit tests pass an in-memory one).
    pub fn with_bucket(
        bucket: Bucket,
        config: &TierSection,
        cluster: &str,
        group: &str,
        store: Arc<MessageStore>,
    ) -> Result<Arc<Tier>, TierError> {
        let manifest = Manifest::new(store.kv());
        let metrics = TierMetrics::new();
        let local = |e: std::io::Error| TierError::Local(e.to_string());
        let cache =
            cache::ReadCache::open(&store.data_dir().join(cache::CACHE_DIR), config.cache_bytes)
                .map_err(local)?;
        let reader = Arc::new(
            TierReader::new(
                bucket.clone(),
                manifest.clone(),
                cache,
                metrics.reads.clone(),
                config
                    .retention_ms
                    .map_or(store.retention().max_age, std::time::Duration::from_millis),
            )
            .map_err(local)?,
        );
        // An index rebuilt from the local log gets the tier's records back first.
        reader.index_cold_run(&store, group).map_err(|e| {
            TierError::Local(format!(
                "indexing the tier's records below the local log after the index was rebuilt: \
                 {e}; the broker tries again at its next start"
            ))
        })?;
        // Reads below the local log come from the tier; retention evicts local copies.
        store.attach_cold(
            reader.clone(),
            LocalRetention {
                max_age: config
                    .local_retention_ms
                    .map(std::time::Duration::from_millis),
                max_bytes: config.local_retention_bytes,
            },
        );
        let tier = Arc::new(Tier {
            bucket,
            config: config.clone(),
            cluster: cluster.to_string(),
            group: group.to_string(),
            store,
            manifest,
            reader,
            status: Mutex::new(TierStatus::default()),
            metrics,
            last_state_snapshot: Mutex::new(None),
        });
        tier.refresh_status()
            .map_err(|e| TierError::Local(e.to_string()))?;
        Ok(tier)
    }

    /// Exposes the `apogee_tier_*` series on `registry`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        self.metrics.register(registry)
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where uploads stand now.
    pub fn status(&self) -> TierStatus {
        self.status.lock().clone()
    }

    /// Recomputes the counts from the manifest and the local segments, holds age retention
    /// back to what is recorded, and returns the manifest's segments.
    fn refresh_status(&self) -> Result<Vec<TieredSegment>, crate::store::StoreError> {
        let tiered = self.manifest.segments()?;
        let sealed = self.store.sealed_segments();
        let now = std::time::SystemTime::now();
        let is_tiered = |base: u64| tiered.binary_search_by_key(&base, |t| t.base).is_ok();
        let waiting: Vec<_> = sealed.iter().filter(|s| !is_tiered(s.base())).collect();
        let lag_secs = waiting
            .first()
            .and_then(|s| s.modified().ok())
            .and_then(|m| now.duration_since(m).ok())
            .map_or(0, |d| d.as_secs());
        let mut st = self.status.lock();
        st.local_segments = waiting.len() as u64;
        st.local_bytes = waiting.iter().map(|s| s.len()).sum();
        st.lag_bytes = st.local_bytes;
        st.lag_secs = lag_secs;
        st.tiered_segments = tiered.len() as u64;
        st.tiered_bytes = tiered.iter().map(|t| t.len()).sum();
        self.metrics.tiered_bytes.set(st.tiered_bytes as i64);
        self.metrics.lag_bytes.set(st.lag_bytes as i64);
        self.metrics.lag_seconds.set(lag_secs as i64);
        self.metrics
            .cached_bytes
            .set(self.reader.cached_bytes() as i64);
        drop(st);
        self.reader.set_segments(tiered.clone());
        Ok(tiered)
    }

    fn set_error(&self, e: &TierError) {
        self.metrics.upload_failures.inc();
        self.status.lock().last_error =
            Some((chrono::Utc::now().timestamp_millis(), e.to_string()));
    }
}

/// What `--check-config` says of `[tier]`: it reaches the bucket and reads the prefix,
/// writing nothing. An error says what is wrong (unreachable, refused credentials, no such
/// bucket, a prefix holding what Apogee did not write or another cluster's claim).
pub async fn check_reachable(config: &TierSection, cluster: &str) -> Result<String, TierError> {
    let bucket = Bucket::open(config)?;
    let state = bucket.inspect(cluster).await?;
    Ok(match state {
        PrefixState::Empty => format!(
            "tier: {} reached; the prefix is empty: the master claims it for cluster {cluster:?} \
             when it starts",
            bucket.location()
        ),
        PrefixState::Claimed => format!(
            "tier: {} reached; the prefix holds cluster {cluster:?}'s claim",
            bucket.location()
        ),
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reads;
#[cfg(test)]
mod tests_restore;

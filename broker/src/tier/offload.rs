//! The master's uploads (module doc of [`super`]): one segment at a time, oldest first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{InSyncHold, Tier, TierError, TieredSegment};
use crate::store::commitlog::Segment;

/// Bytes hashed per read.
const HASH_READ: usize = 1 << 20;

impl Tier {
    /// The master of `epoch`'s upload loop, until `stop` turns true: claims the prefix (again
    /// after any failure), then uploads every sealed segment that is flushed and below `held()`, oldest first, and
    /// looks again every `tier.scan_interval_ms`. A failure is recorded and tried again
    /// after a backoff that doubles from `tier.retry_initial_ms` to `tier.retry_max_ms`.
    pub fn spawn_offload(
        self: &Arc<Self>,
        epoch: u64,
        held: InSyncHold,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let tier = self.clone();
        tokio::spawn(async move {
            let initial = Duration::from_millis(tier.config.retry_initial_ms);
            let mut backoff = initial;
            let mut claimed = false;
            loop {
                let step = async {
                    if !claimed {
                        // The status follows the local segments while the store is away
                        // too (once claimed, `offload_next` refreshes it).
                        let t = tier.clone();
                        tokio::task::spawn_blocking(move || t.refresh_status())
                            .await
                            .map_err(|e| TierError::Local(e.to_string()))?
                            .map_err(|e| TierError::Local(e.to_string()))?;
                        tier.bucket.claim(&tier.cluster).await?;
                        claimed = true;
                    }
                    tier.snapshot_state_if_due(epoch).await?;
                    tier.offload_next(epoch, &held).await
                };
                let pause = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    r = step => match r {
                        Ok(true) => {
                            backoff = initial;
                            continue;
                        }
                        Ok(false) => {
                            backoff = initial;
                            Duration::from_millis(tier.config.scan_interval_ms)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                                "tier upload failed; tried again after the backoff");
                            tier.set_error(&e);
                            // The prefix is read again before the next upload: a bucket
                            // emptied or handed to another cluster meanwhile is found.
                            claimed = false;
                            let pause = backoff;
                            backoff = (backoff * 2).min(Duration::from_millis(tier.config.retry_max_ms));
                            pause
                        }
                    },
                };
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    /// A member that is not the master uploads nothing; this task keeps its status and its
    /// hold on age retention following the manifest its master replicates to it.
    pub fn spawn_follow(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let tier = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(tier.config.scan_interval_ms);
            loop {
                let t = tier.clone();
                let _ = tokio::task::spawn_blocking(move || t.refresh_status()).await;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }

    /// Uploads the oldest sealed segment that may go; false when there is none.
    pub(super) async fn offload_next(
        &self,
        epoch: u64,
        held: &InSyncHold,
    ) -> Result<bool, TierError> {
        let tiered = self
            .refresh_status()
            .map_err(|e| TierError::Local(e.to_string()))?;
        self.delete_expired(&tiered).await?;
        let limit = self.store.flushed_offset().min(held());
        let next = self
            .store
            .sealed_segments()
            .into_iter()
            .find(|s| tiered.binary_search_by_key(&s.base(), |t| t.base).is_err());
        let Some(segment) = next.filter(|s| s.end() <= limit && !s.is_empty()) else {
            return Ok(false);
        };
        self.upload(segment, epoch).await?;
        Ok(true)
    }

    /// Deletes the objects, then the manifest rows, of the segments below the store's cut
    /// for the tier's retention (`MessageStore::cold_floor`): their messages are no longer
    /// indexed. The master's task only; its members receive the rows' deletion with the
    /// rest of its state. A crash between the two deletes the object again next time.
    async fn delete_expired(&self, tiered: &[TieredSegment]) -> Result<(), TierError> {
        let floor = self.store.cold_floor();
        for t in tiered.iter().take_while(|t| t.end <= floor) {
            let path = object_store::path::Path::from(t.object.as_str());
            self.bucket.delete(&path).await?;
            self.bucket
                .delete(&self.bucket.index_object(&self.group, t.base, t.epoch))
                .await?;
            let (manifest, base) = (self.manifest.clone(), t.base);
            tokio::task::spawn_blocking(move || manifest.forget(base))
                .await
                .map_err(|e| TierError::Local(e.to_string()))?
                .map_err(|e| TierError::Local(e.to_string()))?;
            self.metrics.deleted_segments.inc();
            tracing::info!(base = t.base, object = %path,
                "a tiered segment past the tier's retention was deleted");
        }
        Ok(())
    }

    /// Hashes, uploads, verifies and records one segment.
    async fn upload(&self, segment: Arc<Segment>, epoch: u64) -> Result<(), TierError> {
        let (base, len) = (segment.base(), segment.len());
        self.status.lock().uploading = Some((base, len));
        let segment_for_index = segment.clone();
        let result = async {
            let sha256 = hash(segment.clone()).await?;
            let sha256_hex = hex::encode(sha256);
            let path = self.bucket.segment_object(&self.group, base, epoch);
            let started = Instant::now();
            let parts = read_parts(
                segment,
                self.config.part_bytes as usize,
                self.config.upload_bytes_per_sec,
            );
            self.bucket
                .upload(
                    &path,
                    len,
                    &sha256_hex,
                    parts,
                    self.config.upload_concurrency,
                )
                .await?;
            // What a rebuilt index needs of the segment, without its bodies.
            let s = segment_for_index.clone();
            let index = tokio::task::spawn_blocking(move || super::index_object::of_segment(&s))
                .await
                .map_err(|e| TierError::Local(e.to_string()))?
                .map_err(|e| TierError::Local(e.to_string()))?;
            self.bucket
                .put_whole(&self.bucket.index_object(&self.group, base, epoch), index)
                .await?;
            let record = TieredSegment {
                base,
                end: base + len,
                epoch,
                sha256,
                uploaded_at_ms: chrono::Utc::now().timestamp_millis(),
                object: path.to_string(),
            };
            let manifest = self.manifest.clone();
            tokio::task::spawn_blocking(move || manifest.record(&record))
                .await
                .map_err(|e| TierError::Local(e.to_string()))?
                .map_err(|e| TierError::Local(e.to_string()))?;
            tracing::info!(
                base,
                bytes = len,
                object = %path,
                secs = format_args!("{:.2}", started.elapsed().as_secs_f64()),
                "segment uploaded to the tier"
            );
            Ok(())
        }
        .await;
        let mut st = self.status.lock();
        st.uploading = None;
        if result.is_ok() {
            st.last_error = None;
            self.metrics.uploaded_segments.inc();
            self.metrics.uploaded_bytes.inc_by(len);
        }
        drop(st);
        let _ = self.refresh_status();
        result
    }
}

/// The SHA-256 of a segment's bytes, read on a blocking thread.
async fn hash(segment: Arc<Segment>) -> Result<[u8; 32], TierError> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; HASH_READ];
        let mut pos = 0u64;
        while pos < segment.len() {
            let n = HASH_READ.min((segment.len() - pos) as usize);
            segment
                .read_exact_at(&mut buf[..n], pos)
                .map_err(|e| TierError::Local(format!("{}: {e}", segment.path().display())))?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(hasher.finalize().into())
    })
    .await
    .map_err(|e| TierError::Local(e.to_string()))?
}

/// The segment's bytes in parts of `part` bytes, read ahead by at most two parts and sent
/// at no more than `bytes_per_sec` (0: unbounded).
fn read_parts(
    segment: Arc<Segment>,
    part: usize,
    bytes_per_sec: u64,
) -> mpsc::Receiver<Result<bytes::Bytes, TierError>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let started = Instant::now();
        let len = segment.len();
        let mut pos = 0u64;
        while pos < len {
            let n = part.min((len - pos) as usize);
            let s = segment.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                s.read_exact_at(&mut buf, pos)
                    .map(|()| bytes::Bytes::from(buf))
                    .map_err(|e| TierError::Local(format!("{}: {e}", s.path().display())))
            })
            .await
            .unwrap_or_else(|e| Err(TierError::Local(e.to_string())));
            let failed = read.is_err();
            if tx.send(read).await.is_err() || failed {
                return;
            }
            pos += n as u64;
            if bytes_per_sec > 0 {
                let due = Duration::from_secs_f64(pos as f64 / bytes_per_sec as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(ahead).await;
                }
            }
        }
    });
    rx
}

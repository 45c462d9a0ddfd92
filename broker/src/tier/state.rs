//! Snapshots of the replicated state in the bucket, for a restore on empty disks
//! ([`super::restore`]).
//!
//! Every `tier.state_snapshot_interval_ms` the master's upload task reads every replicated
//! row (topic and group configs, consumer offsets and consume state, users, ACLs, runtime
//! settings, the tier's manifest: what a slave's snapshot carries) and writes them as one
//! `TierStateSnapshot` (a layout with its own version) to
//! `<prefix>/<group>/state/<taken at ms>-e<epoch>.state`. The newest [`SNAPSHOTS_KEPT`] are
//! kept; a restore reads the newest it can decode.

use std::time::{Duration, Instant};

use apogee_proto::cluster::TierStateSnapshot;
use prost::Message;

use super::{Bucket, Tier, TierError};
use crate::replication::journal::replicated_rows;

/// The snapshot layout this binary writes and reads.
pub const STATE_SNAPSHOT_FORMAT: u32 = 1;
/// State snapshots kept in the bucket per group; older ones are deleted.
pub const SNAPSHOTS_KEPT: usize = 3;

impl Tier {
    /// The master of `epoch` writes a state snapshot when the last one is
    /// `tier.state_snapshot_interval_ms` old (or there was none since it became master).
    pub(super) async fn snapshot_state_if_due(&self, epoch: u64) -> Result<(), TierError> {
        let every = Duration::from_millis(self.config.state_snapshot_interval_ms);
        if self
            .last_state_snapshot
            .lock()
            .is_some_and(|at| at.elapsed() < every)
        {
            return Ok(());
        }
        let store = self.store.clone();
        let (cluster, group) = (self.cluster.clone(), self.group.clone());
        let snapshot = tokio::task::spawn_blocking(move || {
            let taken_at_ms = chrono::Utc::now().timestamp_millis();
            let log_end = store.log_end_offset();
            replicated_rows(store.kv().as_ref(), usize::MAX).map(|batches| TierStateSnapshot {
                format: STATE_SNAPSHOT_FORMAT,
                cluster,
                group,
                epoch,
                taken_at_ms,
                log_end,
                ops: batches.into_iter().flatten().collect(),
            })
        })
        .await
        .map_err(|e| TierError::Local(e.to_string()))?
        .map_err(|e| TierError::Local(e.to_string()))?;
        let path = self
            .bucket
            .state_object(&self.group, snapshot.taken_at_ms, epoch);
        let rows = snapshot.ops.len();
        self.bucket
            .put_whole(&path, snapshot.encode_to_vec().into())
            .await?;
        *self.last_state_snapshot.lock() = Some(Instant::now());
        self.metrics.state_snapshots.inc();
        tracing::debug!(object = %path, rows, "the replicated state was written to the tier");
        // The oldest beyond the newest few go.
        let mut names = self
            .bucket
            .list(&self.bucket.state_dir(&self.group))
            .await?;
        names.retain(|n| n.ends_with(".state"));
        names.sort();
        let doomed = names.len().saturating_sub(SNAPSHOTS_KEPT);
        for name in names.into_iter().take(doomed) {
            self.bucket
                .delete(&object_store::path::Path::from(name))
                .await?;
        }
        Ok(())
    }
}

/// The newest state snapshot of `group` in `bucket` that this binary can read, with its
/// object's name; None when there is none. One it cannot read (damaged, another layout,
/// another cluster's) is skipped with a warning and the one before it is tried.
pub async fn newest_snapshot(
    bucket: &Bucket,
    cluster: &str,
    group: &str,
) -> Result<Option<(String, TierStateSnapshot)>, TierError> {
    let mut names = bucket.list(&bucket.state_dir(group)).await?;
    names.retain(|n| n.ends_with(".state"));
    names.sort();
    for name in names.into_iter().rev() {
        let bytes = bucket
            .read(&object_store::path::Path::from(name.as_str()))
            .await?;
        match decode(&bytes, cluster, group) {
            Ok(s) => return Ok(Some((name, s))),
            Err(why) => tracing::warn!(object = %name, why, "a state snapshot skipped"),
        }
    }
    Ok(None)
}

/// A snapshot read back, checked: its layout, cluster and group.
pub fn decode(bytes: &[u8], cluster: &str, group: &str) -> Result<TierStateSnapshot, String> {
    let s = TierStateSnapshot::decode(bytes).map_err(|e| format!("not a state snapshot: {e}"))?;
    if s.format != STATE_SNAPSHOT_FORMAT {
        return Err(format!(
            "layout {} (this binary reads {STATE_SNAPSHOT_FORMAT})",
            s.format
        ));
    }
    if s.cluster != cluster || s.group != group {
        return Err(format!(
            "written for group {:?} of cluster {:?}, not {group:?} of {cluster:?}",
            s.group, s.cluster
        ));
    }
    Ok(s)
}

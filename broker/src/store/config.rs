//! The store's settings ([`StoreConfig`], its [`RetentionPolicy`]) and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::record;
use super::StoreError;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMode {
    /// After a group-commit fdatasync that covers the records.
    Sync,
    /// After the write; a flusher thread fdatasyncs every `async_flush_interval`.
    Async,
}

pub const DEFAULT_SEGMENT_SIZE: u64 = 1 << 30;
pub const DEFAULT_ASYNC_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Zeros kept ahead of the last record (`commitlog.rs`, preallocation).
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 4 << 20;
/// Flushed log bytes left in the page cache (`commitlog.rs`, page cache).
pub const DEFAULT_CACHED_TAIL_BYTES: u64 = 512 << 20;
/// Room for a 4 MiB body plus headers, properties and keys.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 4 * 1024 * 1024 + 256 * 1024;

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The store puts `commitlog/` and `index/` (RocksDB) under it.
    pub data_dir: PathBuf,
    /// Segment file size (default 1 GiB); must hold at least one record of `max_record_size`.
    pub segment_size: u64,
    /// Zeros kept written ahead of the last record so that an fdatasync flushes data, not a
    /// growing file's metadata (default 4 MiB; 0 turns it off).
    pub preallocate_bytes: u64,
    /// The newest bytes of the log left in the page cache once flushed (`commitlog.rs`, page
    /// cache; default 512 MiB; 0 leaves the page cache to the kernel).
    pub cached_tail_bytes: u64,
    pub flush_mode: FlushMode,
    /// Default 500 ms.
    pub async_flush_interval: Duration,
    /// Bigger records are rejected with [`StoreError::MessageTooLarge`].
    pub max_record_size: usize,
    /// A slave's copy: `append` is refused, only replicated bytes are written.
    pub replica: bool,
    /// SYNC_MASTER: an append is answered once a slave has it ([`MessageStore::set_replicated`]).
    pub sync_replicas: bool,
    /// How long a SYNC_MASTER append waits for a slave (then [`StoreError::NotReplicated`]).
    pub replica_timeout: Duration,
    /// Segment deletion and the disk-space limits ([`retention`]).
    pub retention: RetentionPolicy,
}

impl StoreConfig {
    /// Defaults for everything but the data directory (Sync flush).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
            cached_tail_bytes: DEFAULT_CACHED_TAIL_BYTES,
            flush_mode: FlushMode::Sync,
            async_flush_interval: DEFAULT_ASYNC_FLUSH_INTERVAL,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            replica: false,
            sync_replicas: false,
            replica_timeout: Duration::from_secs(3),
            retention: RetentionPolicy::default(),
        }
    }

    /// [`new`](Self::new) for unit tests: the disk ratios are 1.0, so the machine's disk
    /// (often nearly full of build output) never refuses a test's sends or deletes its
    /// segments. The retention tests set their own policy or inject the disk's figures.
    #[cfg(test)]
    pub(crate) fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::new(data_dir);
        config.retention.clean_ratio = 1.0;
        config.retention.refuse_ratio = 1.0;
        config
    }

    pub(super) fn validate(&self) -> Result<(), StoreError> {
        if self.max_record_size < record::MIN_RECORD_LEN {
            return Err(StoreError::Config(format!(
                "max_record_size {} is below the smallest record ({} bytes)",
                self.max_record_size,
                record::MIN_RECORD_LEN
            )));
        }
        if (self.max_record_size as u64) > self.segment_size
            || self.max_record_size > u32::MAX as usize
        {
            return Err(StoreError::Config(format!(
                "max_record_size {} must fit in segment_size {} (and in 4 GiB)",
                self.max_record_size, self.segment_size
            )));
        }
        self.retention.validate()?;
        if self.async_flush_interval.is_zero() {
            return Err(StoreError::Config(
                "async_flush_interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// When segments go and when sends are refused.
#[derive(Clone, Debug)]
pub struct RetentionPolicy {
    /// Sealed segments whose last write is older than this are deleted (default 72 h).
    pub max_age: Duration,
    /// Above this used fraction of the disk, the oldest sealed segments are deleted whatever
    /// their age (default 0.75).
    pub clean_ratio: f64,
    /// At or above this used fraction, sends are refused (default 0.90).
    pub refuse_ratio: f64,
    /// Time between passes (default 1 s: one `statvfs` and a directory's metadata).
    pub check_interval: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            max_age: Duration::from_secs(72 * 3600),
            clean_ratio: 0.75,
            refuse_ratio: 0.90,
            check_interval: Duration::from_secs(1),
        }
    }
}

impl RetentionPolicy {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let ok = |r: f64| r > 0.0 && r <= 1.0;
        if !ok(self.clean_ratio) || !ok(self.refuse_ratio) {
            return Err(StoreError::Config(format!(
                "disk ratios must be in (0, 1]: clean {} refuse {}",
                self.clean_ratio, self.refuse_ratio
            )));
        }
        disk_ratios(self.clean_ratio, self.refuse_ratio).map_err(StoreError::Config)?;
        if self.max_age.is_zero() || self.check_interval.is_zero() {
            return Err(StoreError::Config(
                "retention age and check interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The rule of the two disk ratios: cleaning starts at or below the point sends are refused.
/// It names them by their keys in the broker's config, which checks them with this rule at
/// startup (`--check-config` too) as the store does on every change at runtime.
pub fn disk_ratios(clean: f64, refuse: f64) -> Result<(), String> {
    if clean <= refuse {
        return Ok(());
    }
    let (low_key, up_key) = ("store.disk_clean_ratio", "store.disk_refuse_ratio");
    Err(format!(
        "{low_key} = {clean} is above {up_key} = {refuse}: sends would be refused for a full \
         disk before the oldest segments are deleted to make room; lower {low_key} or raise \
         {up_key}"
    ))
}

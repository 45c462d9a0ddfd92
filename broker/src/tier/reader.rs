//! Reads of tiered segments: the tier as the store's [`ColdSegments`].
//!
//! The store asks for the bytes of a record below its local log; [`TierReader`] finds the
//! segment in the manifest (kept in memory, read again when an offset or a segment is not
//! in it, as on a slave whose master recorded a new upload), and serves the bytes from the
//! read cache ([`super::cache`]) or fetches the pieces they lie in, `READ_CHUNK_BYTES` each,
//! by ranged GETs. A fetch that misses also starts fetching the segment's next piece in the
//! background (the read-ahead), so a consumer reading forward mostly finds its bytes local.
//!
//! **Own tasks.** Fetches run on the tier's own runtime (`apogee-tier-read` threads), never
//! on the broker's. The store's read is synchronous; its caller waits for the fetch on its
//! own thread: on a broker worker thread through `block_in_place`, which hands that worker's
//! other tasks to another thread first, so a cold consumer's wait never delays a hot one.
//! A piece is fetched once at a time (readers of the same piece wait for the one fetch).
//! A fetch that fails or takes longer than [`FETCH_LIMIT`] fails the read with
//! [`StoreError::Cold`] (UNAVAILABLE to a client, which tries again): nothing is lost.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use parking_lot::{Mutex, RwLock};
use prometheus::IntCounter;

use super::cache::{read_piece, PieceKey, ReadCache};
use super::index_object;
use super::{Bucket, Manifest, TieredSegment};
use crate::config::READ_CHUNK_BYTES;
use crate::store::{ColdSegments, MessageStore, StoreError};

/// The longest a read waits for one piece.
pub const FETCH_LIMIT: Duration = Duration::from_secs(30);
/// Threads of the tier's read runtime.
const READ_THREADS: usize = 2;

/// The tier's read counters.
#[derive(Clone)]
pub(super) struct ReadMetrics {
    pub(super) fetched_bytes: IntCounter,
    pub(super) cache_hits: IntCounter,
    pub(super) fetch_failures: IntCounter,
}

/// The tier as the store's cold segments.
pub struct TierReader {
    bucket: Bucket,
    manifest: Manifest,
    segments: RwLock<BTreeMap<u64, TieredSegment>>,
    cache: Arc<ReadCache>,
    /// One lock per piece being fetched.
    fetching: Arc<Mutex<HashMap<PieceKey, Arc<tokio::sync::Mutex<()>>>>>,
    runtime: Option<tokio::runtime::Runtime>,
    metrics: ReadMetrics,
    /// How long a segment stays in the tier after its upload.
    retention: Duration,
}

impl Drop for TierReader {
    fn drop(&mut self) {
        // Dropping a runtime inside another's context would panic; its fetches just end.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl TierReader {
    pub(super) fn new(
        bucket: Bucket,
        manifest: Manifest,
        cache: ReadCache,
        metrics: ReadMetrics,
        retention: Duration,
    ) -> std::io::Result<TierReader> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(READ_THREADS)
            .thread_name("apogee-tier-read")
            .enable_all()
            .build()?;
        let reader = TierReader {
            bucket,
            manifest,
            segments: RwLock::new(BTreeMap::new()),
            cache: Arc::new(cache),
            fetching: Arc::new(Mutex::new(HashMap::new())),
            runtime: Some(runtime),
            metrics,
            retention,
        };
        reader.reload();
        Ok(reader)
    }

    /// Reads the manifest again into memory.
    fn reload(&self) {
        match self.manifest.segments() {
            Ok(rows) => self.set_segments(rows),
            Err(e) => tracing::warn!(error = %e, "the tier's manifest could not be read"),
        }
    }

    /// The manifest's rows as just read.
    pub(super) fn set_segments(&self, rows: Vec<TieredSegment>) {
        *self.segments.write() = rows.into_iter().map(|t| (t.base, t)).collect();
    }

    /// The recorded segment holding `offset`, reading the manifest again on a miss.
    fn find(&self, offset: u64) -> Option<TieredSegment> {
        let look = |segs: &BTreeMap<u64, TieredSegment>| {
            segs.range(..=offset)
                .next_back()
                .map(|(_, t)| t)
                .filter(|t| offset < t.end)
                .cloned()
        };
        let found = look(&self.segments.read());
        found.or_else(|| {
            self.reload();
            look(&self.segments.read())
        })
    }

    /// After a rebuild of the store's index from its local log (`MessageStore::
    /// cold_unindexed`), indexes the records of the tier's run below it: from each segment's
    /// index object, or, where there is none or it is unusable, from the segment itself.
    /// Runs before the tier is attached, so before the store serves tiered records.
    pub(super) fn index_cold_run(
        &self,
        store: &MessageStore,
        group: &str,
    ) -> Result<(), StoreError> {
        if !store.cold_unindexed()? {
            return Ok(());
        }
        self.reload();
        let local = store.local_start_offset();
        let run: Vec<TieredSegment> = match self.run_start(local) {
            Some(start) => self
                .segments
                .read()
                .range(start..local)
                .map(|(_, t)| t.clone())
                .collect(),
            None => Vec::new(),
        };
        if !run.is_empty() {
            tracing::warn!(
                segments = run.len(),
                from = run[0].base,
                to = local,
                "the index was rebuilt from the local log: indexing the tier's records below it"
            );
        }
        for t in run {
            let path = self.bucket.index_object(group, t.base, t.epoch);
            let bucket = self.bucket.clone();
            let object = self
                .wait(async move { bucket.read_if_there(&path).await })
                .map_err(|e| StoreError::Cold(e.to_string()))?;
            let records = match object.map(|b| index_object::decode(&b, t.base, t.end)) {
                Some(Ok(records)) => records,
                other => {
                    if let Some(Err(why)) = other {
                        tracing::warn!(
                            base = t.base,
                            why,
                            "an unusable index object: reading the segment"
                        );
                    }
                    index_object::scan_records(t.base, t.len(), |pos, buf| {
                        self.read_exact_at(t.base, t.base + pos, buf)
                    })?
                }
            };
            store.dispatch_cold(&records)?;
        }
        store.finish_cold_dispatch()
    }

    /// Bytes of the read cache in use.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// Runs `fut` on the tier's runtime and waits for it on this thread (module doc).
    fn wait<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the reader")
            .spawn(async move {
                let _ = tx.send(fut.await);
            });
        let recv = move || rx.recv().expect("the fetch task answers");
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(recv)
            }
            _ => recv(),
        }
    }

    /// The piece `index` of `segment`, from the cache or fetched (and the next one fetched
    /// in the background).
    fn piece(&self, segment: &TieredSegment, index: u64) -> Result<Arc<std::fs::File>, StoreError> {
        let key = PieceKey {
            base: segment.base,
            index,
        };
        if let Some(file) = self.cache.get(key) {
            self.metrics.cache_hits.inc();
            return Ok(file);
        }
        let fetch = Fetch {
            bucket: self.bucket.clone(),
            cache: self.cache.clone(),
            fetching: self.fetching.clone(),
            metrics: self.metrics.clone(),
            object: ObjectPath::from(segment.object.as_str()),
            len: segment.len(),
        };
        let ahead = fetch.clone();
        let file = self.wait(async move { fetch.get(key).await })?;
        let next = PieceKey {
            index: index + 1,
            ..key
        };
        if (index + 1) * READ_CHUNK_BYTES < segment.len() && !self.cache.contains(next) {
            if let Some(rt) = &self.runtime {
                rt.spawn(async move {
                    let _ = ahead.get(next).await;
                });
            }
        }
        Ok(file)
    }
}

/// What fetching a piece needs, owned, for the runtime's tasks.
#[derive(Clone)]
struct Fetch {
    bucket: Bucket,
    cache: Arc<ReadCache>,
    fetching: Arc<Mutex<HashMap<PieceKey, Arc<tokio::sync::Mutex<()>>>>>,
    metrics: ReadMetrics,
    object: ObjectPath,
    len: u64,
}

impl Fetch {
    /// The piece from the cache, or fetched by one ranged GET (one fetch per piece at a time).
    async fn get(&self, key: PieceKey) -> Result<Arc<std::fs::File>, StoreError> {
        let lock = self.fetching.lock().entry(key).or_default().clone();
        let result = async {
            let _one = lock.lock().await;
            if let Some(file) = self.cache.get(key) {
                return Ok(file);
            }
            let from = key.index * READ_CHUNK_BYTES;
            let to = (from + READ_CHUNK_BYTES).min(self.len);
            let got =
                tokio::time::timeout(FETCH_LIMIT, self.bucket.read_range(&self.object, from..to))
                    .await
                    .map_err(|_| {
                        StoreError::Cold(format!(
                            "the object store did not answer within {} s for {}",
                            FETCH_LIMIT.as_secs(),
                            self.object
                        ))
                    })?
                    .map_err(|e| StoreError::Cold(format!("{}: {e}", self.object)))?;
            if got.len() as u64 != to - from {
                return Err(StoreError::Cold(format!(
                    "{} answered {} bytes for bytes {from}..{to}",
                    self.object,
                    got.len()
                )));
            }
            self.metrics.fetched_bytes.inc_by(got.len() as u64);
            let cache = self.cache.clone();
            tokio::task::spawn_blocking(move || cache.put(key, &got))
                .await
                .map_err(|e| StoreError::Cold(e.to_string()))?
                .map_err(StoreError::from)
        }
        .await;
        // The entry goes once nobody else waits on it.
        let mut fetching = self.fetching.lock();
        if Arc::strong_count(&lock) <= 2 {
            fetching.remove(&key);
        }
        drop(fetching);
        if result.is_err() {
            self.metrics.fetch_failures.inc();
        }
        result
    }
}

impl ColdSegments for TierReader {
    fn segment_of(&self, offset: u64) -> Option<(u64, u64)> {
        self.find(offset).map(|t| (t.base, t.end))
    }

    fn run_start(&self, local_start: u64) -> Option<u64> {
        let walk = |segs: &BTreeMap<u64, TieredSegment>| {
            let mut start = None;
            let mut at = local_start;
            for t in segs.range(..local_start).rev().map(|(_, t)| t) {
                if t.end != at {
                    break;
                }
                start = Some(t.base);
                at = t.base;
            }
            start
        };
        // No reload here (the log's start is asked often): the tier's status refresh keeps
        // the rows current (`Tier::refresh_status`), and so does any miss below.
        walk(&self.segments.read())
    }

    fn holds(&self, base: u64, end: u64) -> bool {
        // No reload: every retention pass asks for the oldest segment not uploaded yet, and
        // the tier's status refresh keeps the rows current (an upload refreshes at once).
        self.segments
            .read()
            .get(&base)
            .is_some_and(|t| t.end == end)
    }

    fn expired_upto(&self, now: std::time::SystemTime) -> Option<u64> {
        let now_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let kept_ms = self.retention.as_millis().min(i64::MAX as u128) as i64;
        let mut upto = None;
        for t in self.segments.read().values() {
            if upto.is_some_and(|end| end != t.base)
                || t.uploaded_at_ms.saturating_add(kept_ms) > now_ms
            {
                break;
            }
            upto = Some(t.end);
        }
        upto
    }

    fn read_exact_at(&self, base: u64, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let known = self.segments.read().get(&base).cloned();
        let segment = known
            .or_else(|| self.find(base).filter(|t| t.base == base))
            .ok_or_else(|| StoreError::Cold(format!("no tiered segment starts at {base}")))?;
        let mut pos = offset - base;
        let mut done = 0usize;
        while done < buf.len() {
            let index = pos / READ_CHUNK_BYTES;
            let within = pos - index * READ_CHUNK_BYTES;
            let n = ((READ_CHUNK_BYTES - within) as usize).min(buf.len() - done);
            let file = self.piece(&segment, index)?;
            read_piece(&file, &mut buf[done..done + n], within)?;
            done += n;
            pos += n as u64;
        }
        Ok(())
    }
}

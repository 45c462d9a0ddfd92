//! The store's fail-stop: a failed index write (the writer's, or consume state written
//! straight to the index) refuses every later append and wakes whoever waits for the
//! failure; and [`HookedKv`], an index with a write hook for tests that hold or fail writes.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{append_one, config, msg};
use super::*;

/// An index that runs `before_write` before each write and fails the write when it does.
pub(super) struct HookedKv<F> {
    pub inner: Arc<dyn KvStore>,
    pub before_write: F,
}

impl<F: Fn() -> Result<(), StoreError> + Send + Sync> KvStore for HookedKv<F> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }
    fn write(&self, batch: KvBatch) -> Result<(), StoreError> {
        (self.before_write)()?;
        self.inner.write(batch)
    }
    fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        self.inner.scan(cf, from, to, limit)
    }
    fn last_in(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<Option<KvPair>, StoreError> {
        self.inner.last_in(cf, from, to)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

/// An index whose writes fail while `broken` is set (a disk that filled under RocksDB).
fn breakable_kv(broken: Arc<std::sync::atomic::AtomicBool>) -> Arc<dyn KvStore> {
    Arc::new(HookedKv {
        inner: Arc::new(MemKv::default()),
        before_write: move || {
            if broken.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Index("No space left on device".into()));
            }
            Ok(())
        },
    })
}

#[tokio::test]
async fn a_failed_index_write_stops_writes_and_wakes_whoever_waits_for_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kv = breakable_kv(broken.clone());
    let store = MessageStore::open_with_kv(config(dir.path()), kv).unwrap();
    append_one(&store, msg("T", 0, 1)).await;
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move { store.failed().await })
    };
    tokio::task::yield_now().await;
    assert!(!watcher.is_finished(), "a sound store has not failed");

    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let first = store.append(vec![msg("T", 0, 2)]).await;
    assert!(matches!(first, Err(StoreError::Failed(_))), "{first:?}");
    let reason = tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("the watcher is woken")
        .unwrap();
    assert!(reason.contains("No space left on device"), "{reason}");
    // Later appends are refused with the same first reason, also once the index works again.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let later = store.append(vec![msg("T", 0, 3)]).await;
    assert!(
        matches!(&later, Err(StoreError::Failed(r)) if *r == reason),
        "{later:?}"
    );
    // And a new waiter learns it at once.
    assert_eq!(store.failed().await, reason);
    store.shutdown();
}

#[tokio::test]
async fn a_failed_write_of_consume_state_to_the_index_fails_the_store_too() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kv = breakable_kv(broken.clone());
    let store = MessageStore::open_with_kv(config(dir.path()), kv).unwrap();
    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    // Consume state goes to the index straight, not through the writer.
    let mut batch = KvBatch::new();
    batch.put(Cf::ConsumeState, b"k", b"v");
    assert!(store.kv().write(batch).is_err());
    let reason = tokio::time::timeout(Duration::from_secs(5), store.failed())
        .await
        .expect("the store failed");
    assert!(reason.contains("an index write failed"), "{reason}");
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let refused = store.append(vec![msg("T", 0, 1)]).await;
    assert!(matches!(refused, Err(StoreError::Failed(_))), "{refused:?}");
    store.shutdown();
}

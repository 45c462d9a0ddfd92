//! The store's fail-stop: the first failed write or fdatasync, of the log or of the index
//! (whoever wrote: the writer, the sync thread, or consume state written straight to the
//! index), is recorded once, refuses every later append and wakes whoever waits for it
//! ([`super::MessageStore::failed`]: the broker, which stops so a restart recovers from the
//! log).
//!
//! A failed index write is not retried: after a failed write RocksDB refuses every later
//! one until the database is reopened, and a failed fdatasync leaves a file whose state
//! cannot be trusted.

use super::kv::{Cf, KvBatch, KvPair, KvStore};
use super::StoreError;
use std::sync::Arc;
use tokio::sync::watch;

/// The first failure, shared by the store and the index wrapper.
#[derive(Clone)]
pub(crate) struct Failure(Arc<watch::Sender<Option<String>>>);

impl Failure {
    pub(crate) fn new() -> Failure {
        Failure(Arc::new(watch::channel(None).0))
    }

    /// Why the store failed, once it did.
    pub(crate) fn get(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Records `reason` unless a failure was recorded before; wakes the waiters.
    pub(crate) fn set(&self, reason: String) {
        self.0.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(reason);
            }
            first
        });
    }

    /// Waits until a failure is recorded; its reason.
    pub(crate) async fn wait(&self) -> String {
        let mut failure = self.0.subscribe();
        let reason = failure
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            // The sender lives in `self`.
            Err(_) => std::future::pending().await,
        }
    }
}

/// The index, recording its first failed write as the store's failure.
pub(crate) struct FailStopKv {
    inner: Arc<dyn KvStore>,
    failure: Failure,
}

impl FailStopKv {
    pub(crate) fn wrap(inner: Arc<dyn KvStore>, failure: Failure) -> Arc<dyn KvStore> {
        Arc::new(FailStopKv { inner, failure })
    }

    fn check<T>(&self, what: &str, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            self.failure.set(format!(
                "{what} failed, the store accepts no more writes: {e}"
            ));
        }
        r
    }
}

impl KvStore for FailStopKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }

    fn write(&self, batch: KvBatch) -> Result<(), StoreError> {
        self.check("an index write", self.inner.write(batch))
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
        self.check("an index flush", self.inner.flush())
    }
}

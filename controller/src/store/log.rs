//! The Raft log, the vote and the committed log id in RocksDB (see the parent module for
//! what is synced and why).

use super::{blocking, CF_LOG, CF_META};
use crate::types::{NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The log store; clones share the database (a clone is the log reader openraft asks for).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<super::Database>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    serde_json::to_vec(value).map_err(std::io::Error::other)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    serde_json::from_slice(bytes).map_err(std::io::Error::other)
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub(crate) fn new(db: Arc<super::Database>) -> Self {
        LogStore { db }
    }

    fn meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, std::io::Error> {
        let cf = self.db.cf_handle(CF_META).expect("column family raft_meta");
        match self.db.get_cf(cf, key).map_err(std::io::Error::other)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Writes one meta key, synced when `sync`.
    async fn put_meta<T: Serialize>(
        &self,
        key: &'static [u8],
        value: &T,
        sync: bool,
    ) -> Result<(), std::io::Error> {
        let bytes = encode(value)?;
        let db = self.db.clone();
        blocking(move || {
            let cf = db.cf_handle(CF_META).expect("column family raft_meta");
            let options = if sync {
                synced()
            } else {
                WriteOptions::default()
            };
            db.put_cf_opt(cf, key, bytes, &options)
        })
        .await
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, std::io::Error> {
        let cf = self.db.cf_handle(CF_LOG).expect("column family raft_log");
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item.map_err(std::io::Error::other)?;
                let entry: Entry<TypeConfig> = decode(&value)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }

    /// Deletes the entries with index in `from..to` in one synced batch, with `meta` written
    /// in the same batch when given.
    async fn delete_range(
        &self,
        from: u64,
        to: u64,
        meta: Option<(&'static [u8], Vec<u8>)>,
    ) -> Result<(), std::io::Error> {
        let db = self.db.clone();
        blocking(move || {
            let log = db.cf_handle(CF_LOG).expect("column family raft_log");
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(log, index_key(from), index_key(to));
            if let Some((key, value)) = meta {
                let cf = db.cf_handle(CF_META).expect("column family raft_meta");
                batch.put_cf(cf, key, value);
            }
            db.write_opt(batch, &synced())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let cf = self.db.cf_handle(CF_LOG).expect("column family raft_log");
        let from = index_key(start);
        let mut entries = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(read_error)?;
            let index =
                u64::from_be_bytes(key.as_ref().try_into().map_err(|_| {
                    read_error(std::io::Error::other(format!("bad log key {key:?}")))
                })?);
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&value).map_err(read_error)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.meta(KEY_LAST_PURGED).map_err(read_error)?;
        let last_log_id = self
            .last_entry_log_id()
            .map_err(read_error)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.put_meta(KEY_COMMITTED, &committed, false)
            .await
            .map_err(write_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self
            .meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)
            .map_err(read_error)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((entry.log_id.index, encode(&entry).map_err(write_error)?));
        }
        let db = self.db.clone();
        let written = blocking(move || {
            let cf = db.cf_handle(CF_LOG).expect("column family raft_log");
            let mut batch = WriteBatch::default();
            for (index, value) in encoded {
                batch.put_cf(cf, index_key(index), value);
            }
            db.write_opt(batch, &synced())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = write_error(std::io::Error::new(e.kind(), e.to_string()));
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        // Every index Raft can reach is below u64::MAX, the range's (excluded) end.
        self.delete_range(log_id.index, u64::MAX, None)
            .await
            .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let meta = encode(&log_id).map_err(write_error)?;
        self.delete_range(
            0,
            log_id.index.saturating_add(1),
            Some((KEY_LAST_PURGED, meta)),
        )
        .await
        .map_err(write_error)
    }
}

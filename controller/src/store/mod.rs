//! Durable Raft storage in RocksDB: the log, the vote and the committed log id
//! ([`log::LogStore`]), and the state machine with its snapshots ([`machine::StateMachine`]).
//!
//! Why RocksDB: the workspace already builds it for the broker's index, it gives atomic
//! multi-key batches (an append of several entries, a truncation, a snapshot's meta and data
//! land whole or not at all) and `WriteOptions::set_sync(true)`, which makes a write durable
//! (its WAL fsync'd) before the call returns. Every write of the log and the vote is such a
//! synced write, done on a blocking thread, and openraft is told an append is done only after
//! it returned. The committed log id is written without sync: losing it only means a
//! restarted controller re-applies fewer entries at start and the rest once the leader
//! commits them again.
//!
//! One database per controller, under its data dir, with three column families:
//! `raft_log` (big-endian index -> JSON entry), `raft_meta` (vote, committed, last purged)
//! and `raft_snapshot` (the current snapshot's meta and data). The state machine itself lives
//! in memory: at start it is the last snapshot, and openraft applies the committed entries
//! after it again.

pub mod log;
pub mod machine;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// The controller's RocksDB, shared by its log store and state machine. When the last handle
/// goes, it closes the database and only then says so ([`Database::closed`]): RocksDB
/// releases the directory's LOCK at the end of its close, so a controller started again on
/// the same directory in the same process (a NameServer restarted in place) waits for that,
/// not just for the last handle's drop to begin.
pub struct Database {
    db: Option<DB>,
    closed: watch::Sender<bool>,
}

impl Database {
    /// Becomes true once the database is closed.
    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

impl Deref for Database {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.db
            .as_ref()
            .expect("the database is open until dropped")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        drop(self.db.take());
        self.closed.send_replace(true);
    }
}

pub(crate) const CF_LOG: &str = "raft_log";
pub(crate) const CF_META: &str = "raft_meta";
pub(crate) const CF_SNAPSHOT: &str = "raft_snapshot";

/// Opens (creating when absent) the controller's database in `dir` and returns its log store
/// and state machine.
pub fn open(dir: &Path) -> Result<(log::LogStore, machine::StateMachine), OpenError> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let families = [CF_LOG, CF_META, CF_SNAPSHOT]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = Arc::new(Database {
        db: Some(DB::open_cf_descriptors(&options, dir, families)?),
        closed: watch::channel(false).0,
    });
    let machine = machine::StateMachine::open(db.clone())?;
    Ok((log::LogStore::new(db), machine))
}

/// Why the controller's storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("opening the controller's database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("reading the controller's snapshot: {0}")]
    Snapshot(std::io::Error),
}

/// Runs a RocksDB call that may wait for the disk (a synced write) on a blocking thread.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, std::io::Error>
where
    F: FnOnce() -> Result<T, rocksdb::Error> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(std::io::Error::other),
        Err(join) => Err(std::io::Error::other(join)),
    }
}

#[cfg(test)]
mod tests;

//! The state machine openraft applies entries to: a [`ControllerState`] in memory with the
//! last applied log id and membership, and its snapshots, kept in RocksDB (the current one,
//! meta and data in one synced batch) and loaded at start.

use super::{blocking, OpenError, CF_SNAPSHOT};
use crate::state::{CommandResult, ControllerState};
use crate::types::{NodeId, StorageError, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use rocksdb::{WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;

const KEY_META: &[u8] = b"meta";
const KEY_DATA: &[u8] = b"data";

/// What the state machine holds: the controller state and how far the log was applied.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    pub state: ControllerState,
}

/// The state machine; clones share the state (the snapshot builder and the controller's
/// reads are clones).
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<super::Database>,
    applied: Arc<RwLock<Applied>>,
    /// Snapshots built by this process, for unique snapshot ids.
    built: Arc<std::sync::atomic::AtomicU64>,
}

/// Reads the state machine's applied state (shares it, not the database).
#[derive(Clone)]
pub struct StateReader {
    applied: Arc<RwLock<Applied>>,
}

impl StateReader {
    /// The state as applied so far on this controller.
    pub fn read<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.applied.read())
    }
}

type Meta = SnapshotMeta<NodeId, BasicNode>;

fn snapshot_read_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}

fn snapshot_write_error(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    /// Loads the current snapshot, if any, as the state.
    pub(crate) fn open(db: Arc<super::Database>) -> Result<Self, OpenError> {
        let machine = StateMachine {
            db,
            applied: Arc::default(),
            built: Arc::default(),
        };
        if let Some((_, data)) = machine.stored_snapshot().map_err(OpenError::Snapshot)? {
            *machine.applied.write() = serde_json::from_slice(&data)
                .map_err(|e| OpenError::Snapshot(std::io::Error::other(e)))?;
        }
        Ok(machine)
    }

    /// The state as applied so far on this controller (not a linearizable read by itself).
    pub fn read<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.applied.read())
    }

    /// A reader of the applied state that does not hold the database open.
    pub fn reader(&self) -> StateReader {
        StateReader {
            applied: self.applied.clone(),
        }
    }

    /// Becomes true once the database is closed (every handle dropped).
    pub(crate) fn database_closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.db.closed()
    }

    fn stored_snapshot(&self) -> Result<Option<(Meta, Vec<u8>)>, std::io::Error> {
        let cf = self
            .db
            .cf_handle(CF_SNAPSHOT)
            .expect("column family raft_snapshot");
        let meta = self
            .db
            .get_cf(cf, KEY_META)
            .map_err(std::io::Error::other)?;
        let data = self
            .db
            .get_cf(cf, KEY_DATA)
            .map_err(std::io::Error::other)?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta = serde_json::from_slice(&meta).map_err(std::io::Error::other)?;
                Ok(Some((meta, data)))
            }
            _ => Ok(None),
        }
    }

    async fn store_snapshot(&self, meta: &Meta, data: Vec<u8>) -> Result<(), StorageError> {
        let meta_bytes = serde_json::to_vec(meta).map_err(snapshot_write_error)?;
        let db = self.db.clone();
        blocking(move || {
            let cf = db
                .cf_handle(CF_SNAPSHOT)
                .expect("column family raft_snapshot");
            let mut batch = WriteBatch::default();
            batch.put_cf(cf, KEY_META, meta_bytes);
            batch.put_cf(cf, KEY_DATA, data);
            let mut options = WriteOptions::default();
            options.set_sync(true);
            db.write_opt(batch, &options)
        })
        .await
        .map_err(snapshot_write_error)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_log_id, last_membership) = {
            let applied = self.applied.read();
            let data = serde_json::to_vec(&*applied).map_err(snapshot_write_error)?;
            (data, applied.last_applied, applied.last_membership.clone())
        };
        let number = self
            .built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{number}", id.leader_id, id.index),
            None => format!("none-{number}"),
        };
        let meta = Meta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        self.store_snapshot(&meta, data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let applied = self.applied.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.write();
        let mut results = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Normal(command) => applied.state.apply(&command),
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResult::RaftEntry
                }
                EntryPayload::Blank => CommandResult::RaftEntry,
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut installed: Applied = serde_json::from_slice(&data).map_err(snapshot_read_error)?;
        installed.last_applied = meta.last_log_id;
        installed.last_membership = meta.last_membership.clone();
        self.store_snapshot(meta, data).await?;
        *self.applied.write() = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .stored_snapshot()
            .map_err(snapshot_read_error)?
            .map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
    }
}

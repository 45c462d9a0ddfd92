//! The storage against openraft's own storage test suite, and durability across a reopen.

use super::log::LogStore;
use super::machine::StateMachine;
use crate::state::{Command, CommandResult};
use crate::types::{StorageError, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, machine) = super::open(dir.path()).expect("open the store");
        Ok((dir, log, machine))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite");
}

fn entry(term: u64, index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(command),
    }
}

fn register(member: u64) -> Command {
    Command::Register {
        group: "broker-a".into(),
        member,
        address: format!("127.0.0.1:{}", 10_000 + member),
        priority: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_vote_and_snapshot_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let (mut log, mut machine) = super::open(dir.path()).unwrap();
        log.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
        let entries = [entry(3, 1, register(1)), entry(3, 2, register(2))];
        openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries.clone())
            .await
            .unwrap();
        let results = machine.apply(entries).await.unwrap();
        assert!(matches!(
            results[1],
            CommandResult::Registered {
                member: 2,
                added: true
            }
        ));
        let snapshot = machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|id| id.index), Some(2));
        openraft::storage::RaftLogStorageExt::blocking_append(&mut log, [entry(3, 3, register(3))])
            .await
            .unwrap();
    }
    let (mut log, machine) = super::open(dir.path()).unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 2))
    );
    let indexes: Vec<u64> = log
        .try_get_log_entries(1..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, [1, 2, 3]);
    // The state comes back as the snapshot left it: members 1 and 2, applied up to 2.
    machine.read(|applied| {
        assert_eq!(applied.last_applied.map(|id| id.index), Some(2));
        let members: Vec<u64> = applied.state.groups["broker-a"]
            .members
            .keys()
            .copied()
            .collect();
        assert_eq!(members, [1, 2]);
    });
}

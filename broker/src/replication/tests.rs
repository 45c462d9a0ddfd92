//! Unit tests of the master's view of its slaves (in-sync rules, lag, the handback gate) and of
//! the master's check of a slave's Hello, on a replication context from `Broker::build`; how a
//! slave words a broken stream.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::{MemKv, NewMessage, StoreConfig};

fn store(dir: &std::path::Path) -> Arc<MessageStore> {
    let cfg = StoreConfig {
        segment_size: 1 << 20,
        max_record_size: 64 * 1024,
        ..StoreConfig::for_tests(dir)
    };
    MessageStore::open_with_kv(cfg, Arc::new(MemKv::new())).expect("store")
}

async fn append(store: &MessageStore, n: usize) {
    let msgs = (0..n)
        .map(|i| {
            let mut m = NewMessage::op_record("T", Vec::new());
            m.message_id = format!("ID{i}");
            m.body = vec![7u8; 100].into();
            m
        })
        .collect();
    store.append(msgs).await.expect("append");
}

fn config(max_lag_bytes: u64) -> BrokerConfig {
    BrokerConfig {
        role: Role::SyncMaster,
        replication: ReplicationSection {
            max_lag_bytes,
            sync_timeout_ms: 3_000,
            ..ReplicationSection::default()
        },
        ..BrokerConfig::default()
    }
}

fn status(rep: &Replication, id: i64) -> SlaveStatus {
    rep.slaves()
        .into_iter()
        .find(|s| s.broker_id == id)
        .expect("slave listed")
}

#[tokio::test]
async fn a_slave_is_in_sync_while_it_keeps_up_and_connected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rep = Replication::new(&config(1 << 20), store.clone(), None);
    let session = rep.slave_connected(1, "10.0.0.2:10911");
    append(&store, 10).await;
    let end = store.log_end_offset();

    // Behind, but it just connected (progress is recent): in sync, lag in bytes shown.
    rep.slave_report(1, session, end / 2, end / 2);
    let s = status(&rep, 1);
    assert!(s.in_sync && s.connected);
    assert_eq!(s.lag_bytes as u64, end - end / 2);

    // Everything written: in sync, no lag.
    rep.slave_report(1, session, end, end);
    let s = status(&rep, 1);
    assert!(s.in_sync);
    assert_eq!((s.lag_bytes, s.lag_ms), (0, 0));

    // A report of an old session changes nothing.
    rep.slave_report(1, session + 100, 0, 0);
    assert_eq!(status(&rep, 1).written_offset as u64, end);

    rep.slave_disconnected(1, session);
    let s = status(&rep, 1);
    assert!(!s.connected && !s.in_sync);
}

#[tokio::test]
async fn a_slave_behind_without_progress_or_too_far_behind_is_out_of_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rep = Replication::new(&config(500), store.clone(), None);
    let session = rep.slave_connected(1, "s1");
    append(&store, 20).await;
    let end = store.log_end_offset();

    // More than max_lag_bytes behind.
    rep.slave_report(1, session, 0, 0);
    assert!(!status(&rep, 1).in_sync);

    // Within the lag bound, but nothing confirmed for longer than the sync timeout.
    rep.slave_report(1, session, end - 100, end - 100);
    assert!(status(&rep, 1).in_sync);
    rep.slaves.lock().get_mut(&1).unwrap().last_progress_ms -= 10_000;
    assert!(!status(&rep, 1).in_sync);

    // Catching up brings it back.
    rep.slave_report(1, session, end, end);
    assert!(status(&rep, 1).in_sync);
}

#[tokio::test]
async fn lag_in_time_counts_from_when_the_log_passed_the_slave() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rep = Replication::new(&config(1 << 20), store.clone(), None);
    append(&store, 1).await;
    let first_end = store.log_end_offset();
    rep.note_log_end(1_000);
    append(&store, 1).await;
    rep.note_log_end(5_000);
    let end = store.log_end_offset();
    // A slave with nothing: the log passed it at 1,000.
    assert_eq!(rep.lag_ms(0, end, 9_000), 8_000);
    // A slave with the first record: the log passed it at 5,000.
    assert_eq!(rep.lag_ms(first_end, end, 9_000), 4_000);
    assert_eq!(rep.lag_ms(end, end, 9_000), 0);
}

#[tokio::test]
async fn a_master_that_had_slaves_waits_for_a_handback_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let rep = Replication::new(&config(1 << 20), store.clone(), None);
    assert!(
        !rep.handback_pending(),
        "a master that never had slaves serves at once"
    );
    rep.slave_connected(1, "s1");

    // "Restart": a new Replication over the same store.
    let rep = Replication::new(&config(1 << 20), store.clone(), None);
    assert!(rep.handback_pending());
    assert!(!rep.wait_handback(Duration::from_millis(20)).await);
    rep.open_gate();
    assert!(!rep.handback_pending());
    assert!(rep.wait_handback(Duration::from_millis(20)).await);

    // A slave never holds receives back.
    let slave = BrokerConfig {
        role: Role::Slave,
        broker_id: 1,
        ..config(1 << 20)
    };
    assert!(!Replication::new(&slave, store, None).handback_pending());
}

/// The replication context of a broker of `broker-a` in cluster `c1` with `role`, from
/// `Broker::build` over the in-memory index.
fn context(dir: &std::path::Path, role: Role) -> ReplicationContext {
    let mut config = BrokerConfig {
        cluster_name: "c1".into(),
        broker_name: "broker-a".into(),
        broker_id: if role == Role::Slave { 1 } else { 0 },
        role,
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    config.store.segment_bytes = 1 << 20;
    config.store.preallocate_bytes = 0;
    let base = crate::services::Foundation::in_memory(&config).expect("store");
    crate::services::Broker::build(config, base)
        .expect("services")
        .replication_context()
}

fn hello(cluster: &str, group: &str, broker_id: i64) -> apogee_proto::cluster::SlaveHello {
    apogee_proto::cluster::SlaveHello {
        cluster_name: cluster.into(),
        broker_name: group.into(),
        broker_id,
        data_format: crate::store::DATA_FORMAT_VERSION,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_master_takes_a_slave_of_its_own_group_and_refuses_others() {
    use apogee_proto::ApogeeError;
    let dir = tempfile::tempdir().unwrap();
    let master = context(dir.path(), Role::SyncMaster);
    assert!(master::check_hello(&master, &hello("c1", "broker-a", 1)).is_ok());
    assert!(matches!(
        master::check_hello(&master, &hello("c1", "broker-b", 1)),
        Err(ApogeeError::Forbidden(_))
    ));
    assert!(matches!(
        master::check_hello(&master, &hello("c2", "broker-a", 1)),
        Err(ApogeeError::Forbidden(_))
    ));
    assert!(matches!(
        master::check_hello(&master, &hello("c1", "broker-a", 0)),
        Err(ApogeeError::BadRequest(_))
    ));
    // A slave of another data format (0: one older than the versions) is refused, by name.
    for other in [0, crate::store::DATA_FORMAT_VERSION + 1] {
        let hello = apogee_proto::cluster::SlaveHello {
            data_format: other,
            ..hello("c1", "broker-a", 1)
        };
        let refused = master::check_hello(&master, &hello).unwrap_err();
        assert!(
            matches!(&refused, ApogeeError::PreconditionFailed(m) if m.contains("data format")),
            "{refused}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let slave = context(dir.path(), Role::Slave);
    let refused = master::check_hello(&slave, &hello("c1", "broker-a", 2)).unwrap_err();
    assert!(
        matches!(&refused, ApogeeError::PreconditionFailed(m) if m.contains("is a slave")),
        "{refused}"
    );
}

#[tokio::test]
async fn a_slave_built_by_the_services_counts_its_master_away_until_connected() {
    let dir = tempfile::tempdir().unwrap();
    let slave = context(dir.path(), Role::Slave);
    assert!(slave.targets.journal.master_away());
    assert!(slave.replication.master_link().is_some());
    let dir = tempfile::tempdir().unwrap();
    let master = context(dir.path(), Role::AsyncMaster);
    assert!(!master.targets.journal.master_away());
    assert!(master.replication.master_link().is_none());
}

/// An error of the transport under a status, with what caused it (as hyper's body error
/// carries h2's).
#[derive(Debug)]
struct Layer(&'static str, Option<Box<Layer>>);

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

#[test]
fn a_broken_stream_is_worded_with_the_causes_under_it() {
    let broken = Layer(
        "error reading a body from connection",
        Some(Box::new(Layer(
            "stream closed because of a broken pipe",
            None,
        ))),
    );
    let status = tonic::Status::from_error(Box::new(broken));
    let text = super::slave::with_causes(status).to_string();
    assert!(
        text.contains(
            "error reading a body from connection: stream closed because of a broken pipe"
        ),
        "{text}"
    );
    // A cause already in the message is not repeated.
    assert_eq!(text.matches("error reading a body").count(), 1, "{text}");
}

//! Applying replicated state to the tables that serve from it.
//!
//! A slave applies the master's state batches to its index database through the journal
//! (`journal.rs`), then makes the in-memory tables follow: the consume queues a batch touched
//! are re-read under their own locks, topic and group tables when their configs changed, the
//! runtime settings when `meta` did, and everything (the receipt secret included) at the end
//! of a snapshot. A master adopting a slave's handback does the same for the queues handed
//! back.

use std::sync::Arc;

use apogee_proto::cluster::{StateBatch, StateOp};
use apogee_proto::ApogeeError;

use super::journal::{ApplyEffects, JournaledKv};
use crate::access::AccessTable;
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::topics::TopicTable;

/// What replicated state lands in (see `Broker::state_targets`).
#[derive(Clone)]
pub struct StateTargets {
    pub journal: Arc<JournaledKv>,
    pub consume: Arc<ConsumeEngine>,
    pub topics: Arc<TopicTable>,
    pub groups: Arc<GroupTable>,
    pub access: Arc<AccessTable>,
    /// Makes the runtime settings follow the replicated row the master keeps them in.
    pub runtime: crate::runtime_config::Follower,
}

/// Slave: applies one batch from the master. The first batch of a snapshot first drops every
/// replicated row; after its last one, every table is re-read.
pub fn apply_batch(t: &StateTargets, batch: &StateBatch) -> Result<(), ApogeeError> {
    if batch.snapshot_begin {
        t.journal.clear_replicated().map_err(ApogeeError::from)?;
    }
    let fx = t.journal.apply(&batch.ops).map_err(ApogeeError::from)?;
    if batch.snapshot_end {
        t.consume.reload_all()?;
        t.topics.reload()?;
        t.groups.reload()?;
        t.access.reload()?;
        (t.runtime)();
        tracing::info!("applied the master's state snapshot");
        return Ok(());
    }
    follow(t, &fx)
}

/// Makes the in-memory tables follow what an applied batch changed.
fn follow(t: &StateTargets, fx: &ApplyEffects) -> Result<(), ApogeeError> {
    if fx.all_queues {
        t.consume.reload_all()?;
    } else {
        if !fx.queues.is_empty() {
            t.consume.reload_queues(&fx.queues)?;
        }
        if fx.meta {
            t.consume.reload_secret()?;
        }
    }
    // The data versions live in `meta`, usually beside the configs they count.
    if fx.topics || fx.meta {
        t.topics.reload()?;
    }
    if fx.groups || fx.meta {
        t.groups.reload()?;
    }
    // Users and ACL entries live in `meta` too, and so do the runtime settings.
    if fx.meta {
        t.access.reload()?;
        (t.runtime)();
    }
    Ok(())
}

/// Slave in controller mode whose log was cut back: drops every consumer offset and
/// consume-state row, so none points past the cut or at a record number a different message
/// will take, until the master's snapshot (sent as streaming starts) brings the master's.
pub fn forget_consume_progress(t: &StateTargets) -> Result<(), ApogeeError> {
    t.journal
        .clear_consume_progress()
        .map_err(ApogeeError::from)?;
    t.consume.reload_all()
}

/// Master: adopts the consume state a slave served while this master was away (published
/// to the journal like any write, so other slaves follow); returns the number of ops applied.
pub fn adopt_handback(t: &StateTargets, ops: &[StateOp]) -> Result<usize, ApogeeError> {
    let fx = t.journal.adopt(ops).map_err(ApogeeError::from)?;
    follow(t, &fx)?;
    Ok(ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::{Delivery, MessageFilter, PopRequest};
    use crate::store::{KvStore, MemKv, MessageStore, NewMessage, StoreConfig};
    use crate::topics::TopicConfig;
    use apogee_proto::group::GroupConfig;

    /// One broker: a store over a journaled in-memory index, and its tables.
    struct Side {
        _dir: tempfile::TempDir,
        store: Arc<MessageStore>,
        t: StateTargets,
    }

    fn message(i: usize) -> NewMessage {
        NewMessage {
            topic: "t".into(),
            queue_id: 0,
            message_id: format!("ID{i}"),
            tag: None,
            keys: vec![],
            message_group: None,
            message_type: 1,
            born_timestamp_ms: 0,
            born_host: "127.0.0.1".into(),
            delivery_timestamp_ms: None,
            reconsume_times: 0,
            properties: vec![],
            internal: vec![],
            body: format!("m{i}").into_bytes().into(),
        }
    }

    /// A broker whose log holds the same 5 messages as every other one made here.
    async fn side() -> Side {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(JournaledKv::new(Arc::new(MemKv::new())));
        let store = MessageStore::open_with_kv(StoreConfig::for_tests(dir.path()), journal.clone())
            .unwrap();
        store.append((0..5).map(message).collect()).await.unwrap();
        let t = StateTargets {
            topics: Arc::new(TopicTable::load(store.kv()).unwrap()),
            groups: Arc::new(GroupTable::load(store.kv(), true).unwrap()),
            access: Arc::new(AccessTable::load(store.kv(), None, None).unwrap()),
            consume: Arc::new(ConsumeEngine::open(store.clone()).unwrap()),
            journal,
            runtime: Arc::new(|| {}),
        };
        Side {
            _dir: dir,
            store,
            t,
        }
    }

    fn pop(s: &Side, max: usize) -> Vec<Delivery> {
        let group: &'static GroupConfig = Box::leak(Box::new(GroupConfig::with_defaults("g")));
        let filter = MessageFilter::from_expression(None).unwrap();
        let req = PopRequest {
            group,
            topic: "t",
            queue_ids: &[0],
            filter: &filter,
            max,
            invisible_ms: 60_000,
            renew_until_ms: None,
            attempt_id: None,
            client_id: "c",
            start_after_ms: None,
        };
        s.t.consume.pop(&req, 1_000).unwrap()
    }

    /// (consumer offset, pop offset, in flight) of group g's queue t/0.
    fn progress(s: &Side) -> Option<(u64, u64, usize)> {
        let p = s.t.consume.group_progress("g");
        p.first()
            .map(|q| (q.consumer_offset, q.pop_offset, q.inflight))
    }

    /// The master's snapshot as its replication session sends it.
    fn copy_snapshot(master: &Side, slave: &Side) {
        let batches = master.t.journal.snapshot(2).unwrap();
        let last = batches.len() - 1;
        for (i, ops) in batches.into_iter().enumerate() {
            let batch = StateBatch {
                snapshot_begin: i == 0,
                snapshot_end: i == last,
                ops,
            };
            apply_batch(&slave.t, &batch).unwrap();
        }
    }

    fn forward(rx: &mut tokio::sync::broadcast::Receiver<Arc<Vec<StateOp>>>, slave: &Side) {
        while let Ok(ops) = rx.try_recv() {
            let batch = StateBatch {
                snapshot_begin: false,
                snapshot_end: false,
                ops: ops.as_ref().clone(),
            };
            apply_batch(&slave.t, &batch).unwrap();
        }
    }

    #[tokio::test]
    async fn a_slave_serves_acks_of_deliveries_its_master_made() {
        let (master, slave) = (side().await, side().await);
        let first = pop(&master, 2);
        assert_eq!(first.len(), 2);
        assert!(
            slave
                .t
                .consume
                .ack("g", "t", &first[0].receipt_handle)
                .is_err(),
            "another broker's secret"
        );

        let mut rx = master.t.journal.subscribe();
        copy_snapshot(&master, &slave);
        assert_eq!(progress(&slave), progress(&master));

        // Changes after the snapshot follow through the journal.
        let later = pop(&master, 1);
        master
            .t
            .consume
            .ack("g", "t", &first[1].receipt_handle)
            .unwrap();
        master
            .t
            .topics
            .create(TopicConfig::new("new-topic", 2))
            .unwrap();
        forward(&mut rx, &slave);
        assert_eq!(progress(&slave), Some((0, 3, 2)));
        assert_eq!(progress(&slave), progress(&master));
        assert!(slave.t.topics.get("new-topic").is_some());
        assert_eq!(
            slave.t.topics.data_version(),
            master.t.topics.data_version()
        );

        // The slave knows the master's deliveries: acks work, acked ones are stale.
        let c = &slave.t.consume;
        assert!(c.ack("g", "t", &first[1].receipt_handle).is_err());
        c.ack("g", "t", &first[0].receipt_handle).unwrap();
        c.ack("g", "t", &later[0].receipt_handle).unwrap();
        assert_eq!(progress(&slave), Some((3, 3, 0)));
    }

    #[tokio::test]
    async fn a_queue_deleted_on_the_master_is_dropped_on_the_slave() {
        let (master, slave) = (side().await, side().await);
        pop(&master, 1);
        let mut rx = master.t.journal.subscribe();
        copy_snapshot(&master, &slave);
        assert!(progress(&slave).is_some());
        master.t.consume.forget_group("g").unwrap();
        forward(&mut rx, &slave);
        assert_eq!(progress(&slave), None);
    }

    #[tokio::test]
    async fn a_slave_hands_back_what_it_served_and_the_master_adopts_it() {
        let (master, slave) = (side().await, side().await);
        let d = pop(&master, 3);
        copy_snapshot(&master, &slave);

        // The master goes away; consumers ack two of its deliveries on the slave.
        slave.t.journal.set_master_away(true);
        let c = &slave.t.consume;
        c.ack("g", "t", &d[0].receipt_handle).unwrap();
        c.ack("g", "t", &d[1].receipt_handle).unwrap();
        assert_eq!(progress(&slave), Some((2, 3, 1)));

        // It comes back (restarted, with what it had), and adopts the slave's state.
        let handback = slave.t.journal.take_handback().unwrap();
        assert!(!handback.is_empty());
        let mut other_slaves = master.t.journal.subscribe();
        let n = adopt_handback(&master.t, &handback).unwrap();
        assert_eq!(n, handback.len());
        slave.t.journal.clear_handback().unwrap();
        slave.t.journal.set_master_away(false);
        assert!(slave.t.journal.take_handback().unwrap().is_empty());

        assert_eq!(progress(&master), Some((2, 3, 1)));
        let m = &master.t.consume;
        assert!(
            m.ack("g", "t", &d[0].receipt_handle).is_err(),
            "acked on the slave"
        );
        m.ack("g", "t", &d[2].receipt_handle).unwrap();
        assert_eq!(
            *other_slaves.try_recv().unwrap(),
            handback,
            "other slaves follow the adopted state"
        );
        let offset = master
            .t
            .journal
            .get(
                crate::store::Cf::ConsumerOffset,
                &crate::store::keys::consumer_offset_key("g", "t", 0),
            )
            .unwrap();
        assert_eq!(
            offset,
            Some(crate::store::values::encode_offset(3).to_vec())
        );
    }

    #[tokio::test]
    async fn a_group_first_used_on_the_slave_comes_back_with_its_offsets_not_as_new() {
        let (master, slave) = (side().await, side().await);
        copy_snapshot(&master, &slave);
        // The master goes away; a new group receives on the slave (created there).
        slave.t.journal.set_master_away(true);
        let created = slave
            .t
            .groups
            .resolve_for_receive("g", "t", "c", 0)
            .unwrap();
        assert!(created.created.is_some());
        assert_eq!(pop(&slave, 2).len(), 2);

        // It returns and adopts the handback: the group is one it knows, offsets and all.
        let handback = slave.t.journal.take_handback().unwrap();
        adopt_handback(&master.t, &handback).unwrap();
        assert_eq!(progress(&master), progress(&slave));
        let again = master
            .t
            .groups
            .resolve_for_receive("g", "t", "c", 0)
            .unwrap();
        assert_eq!(again.created, None, "the master created the group again");
        assert_eq!(again.config, created.config);
    }

    #[tokio::test]
    async fn after_a_truncation_no_consume_row_points_past_it_and_the_masters_replace_them() {
        let (master, old) = (side().await, side().await);
        let common = old.store.log_end_offset();
        // The old master went on alone: 3 messages, all consumed and acked there.
        old.store
            .append((100..103).map(message).collect())
            .await
            .unwrap();
        for d in pop(&old, 8) {
            old.t.consume.ack("g", "t", &d.receipt_handle).unwrap();
        }
        assert_eq!(progress(&old), Some((8, 8, 0)));
        // The new master wrote 2 others; a consumer took 2 of the common ones there.
        master
            .store
            .append((200..202).map(message).collect())
            .await
            .unwrap();
        pop(&master, 2);

        // The returning member cuts its log back to the common prefix.
        old.store.truncate_replica(common).await.unwrap();
        assert_eq!(old.store.queue_bounds("t", 0).unwrap(), (0, 5));
        assert_eq!(progress(&old), Some((8, 8, 0)), "rows past the cut");
        forget_consume_progress(&old.t).unwrap();
        assert_eq!(progress(&old), None, "no row points past the cut");

        // It catches up and takes the new master's snapshot.
        let mut at = common;
        while let Some(s) = master.store.read_records(at, 4096).unwrap() {
            at += s.bytes.len() as u64;
            old.store
                .append_replicated(s.offset, s.segment_base, s.bytes)
                .await
                .unwrap();
        }
        copy_snapshot(&master, &old);
        assert_eq!(progress(&old), Some((0, 2, 2)));
        assert_eq!(progress(&old), progress(&master));
        // Queue offsets 5 and 6 are the new master's messages, never consumed on it.
        assert!(old.store.lookup_by_id("ID100").unwrap().is_none());
        assert!(old.store.lookup_by_id("ID200").unwrap().is_some());
        let next = pop(&old, 5);
        let ids: Vec<&str> = next
            .iter()
            .map(|d| d.message.msg.message_id.as_str())
            .collect();
        assert_eq!(ids, ["ID2", "ID3", "ID4", "ID200", "ID201"]);
    }
}

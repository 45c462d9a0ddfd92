//! Unit tests of the journal: what is published, snapshots, apply, the handback.

use super::*;
use crate::store::keys::LOCAL_TAGS_FROM;
use crate::store::MemKv;

const SECRET: &[u8] = MetaKey::ReceiptSecret.key();
const TOPICS_VERSION: &[u8] = MetaKey::TopicsDataVersion.key();
const GROUPS_VERSION: &[u8] = MetaKey::GroupsDataVersion.key();
const LOCAL: &[u8] = MetaKey::HadSlaves.key();
const LOCAL_TOO: &[u8] = MetaKey::DataFormat.key();

fn journal() -> (Arc<MemKv>, JournaledKv) {
    let inner = Arc::new(MemKv::new());
    (inner.clone(), JournaledKv::new(inner))
}

fn put(cf: Cf, key: &[u8], value: &[u8]) -> StateOp {
    op(Kind::Put, cf, key, value, &[])
}

fn all_rows(kv: &dyn KvStore, cf: Cf) -> Vec<KvPair> {
    kv.scan(cf, b"", b"", usize::MAX).unwrap()
}

#[test]
fn only_replicated_rows_are_published_in_write_order() {
    let (_, j) = journal();
    // Nobody listens: nothing is kept for later subscribers.
    let mut b = KvBatch::new();
    b.put(Cf::TopicConfig, b"early", b"1");
    j.write(b).unwrap();
    let mut rx = j.subscribe();

    let q = QueueKey::new("g", "t", 0);
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeQueue, b"derived", b"x");
    b.put(Cf::ConsumeState, q.pop_key(), 5u64.to_be_bytes());
    b.put(Cf::Meta, LOCAL, b"x");
    b.put(Cf::Meta, SECRET, b"s");
    b.delete(Cf::TopicConfig, b"old");
    b.put(Cf::MessageId, b"id", b"x");
    j.write(b).unwrap();
    let mut b = KvBatch::new();
    b.put(Cf::Schedule, b"derived only", b"x");
    j.write(b).unwrap();
    let mut b = KvBatch::new();
    b.put(Cf::GroupConfig, b"g", b"v");
    b.delete_range(Cf::ConsumerOffset, b"a", b"b");
    j.write(b).unwrap();

    let first = rx.try_recv().unwrap();
    assert_eq!(
        *first,
        vec![
            put(Cf::ConsumeState, &q.pop_key(), &5u64.to_be_bytes()),
            put(Cf::Meta, SECRET, b"s"),
            op(Kind::Delete, Cf::TopicConfig, b"old", &[], &[]),
        ]
    );
    let second = rx.try_recv().unwrap();
    assert_eq!(
        *second,
        vec![
            put(Cf::GroupConfig, b"g", b"v"),
            op(Kind::DeleteRange, Cf::ConsumerOffset, b"a", &[], b"b"),
        ]
    );
    assert!(
        rx.try_recv().is_err(),
        "a batch of derived rows publishes nothing"
    );
}

#[test]
fn a_meta_range_delete_is_published_without_the_local_keys() {
    let (_, j) = journal();
    let mut rx = j.subscribe();
    let mut b = KvBatch::new();
    b.delete_range(Cf::Meta, [0x02], [0x90]);
    b.delete_range(Cf::Meta, LOCAL, LOCAL_TOO);
    j.write(b).unwrap();
    assert_eq!(
        *rx.try_recv().unwrap(),
        vec![op(
            Kind::DeleteRange,
            Cf::Meta,
            &[0x02],
            &[],
            &[LOCAL_TAGS_FROM]
        )]
    );
}

#[test]
fn a_snapshot_applied_elsewhere_reproduces_the_replicated_rows_only() {
    let (master_kv, master) = journal();
    let q = QueueKey::new("g", "t", 3);
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, q.pop_key(), 9u64.to_be_bytes());
    b.put(Cf::ConsumeState, q.inflight_key(7), [1u8; 37]);
    b.put(Cf::ConsumerOffset, q.prefix(), 7u64.to_be_bytes());
    b.put(Cf::TopicConfig, b"t", b"topic");
    b.put(Cf::GroupConfig, b"g", b"group");
    b.put(Cf::Meta, SECRET, [4u8; 32]);
    b.put(Cf::Meta, TOPICS_VERSION, 2i64.to_be_bytes());
    b.put(Cf::Meta, LOCAL, [1u8]);
    b.put(Cf::Meta, [0x7f], b"a newer version's kind: not shipped");
    b.put(Cf::ConsumeQueue, b"master derived", b"x");
    master.write(b).unwrap();

    let (slave_kv, slave) = journal();
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, b"pstale", b"x");
    b.put(Cf::TopicConfig, b"gone", b"x");
    b.put(Cf::Meta, GROUPS_VERSION, 1i64.to_be_bytes());
    b.put(Cf::Meta, LOCAL_TOO, b"mine");
    b.put(Cf::ConsumeQueue, b"slave derived", b"y");
    b.put(Cf::Checkpoint, b"c", b"z");
    slave_kv.write(b).unwrap();
    let mut rx = slave.subscribe();

    let batches = master.snapshot(3).unwrap();
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 3));
    let ops: Vec<&StateOp> = batches.iter().flatten().collect();
    assert_eq!(ops.len(), 7, "every replicated row once: {ops:?}");
    assert!(ops.iter().all(|o| o.kind == Kind::Put as i32));

    slave.clear_replicated().unwrap();
    let mut touched = BTreeSet::new();
    for batch in &batches {
        touched.extend(slave.apply(batch).unwrap().queues);
    }
    assert_eq!(touched.into_iter().collect::<Vec<_>>(), vec![q]);
    for cf in [
        Cf::ConsumeState,
        Cf::ConsumerOffset,
        Cf::TopicConfig,
        Cf::GroupConfig,
    ] {
        assert_eq!(
            all_rows(slave_kv.as_ref(), cf),
            all_rows(master_kv.as_ref(), cf),
            "{cf:?}"
        );
    }
    let meta: Vec<Vec<u8>> = all_rows(slave_kv.as_ref(), Cf::Meta)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let expected: Vec<&[u8]> = vec![SECRET, TOPICS_VERSION, LOCAL_TOO];
    assert_eq!(meta, expected);
    assert_eq!(
        all_rows(slave_kv.as_ref(), Cf::ConsumeQueue),
        vec![(b"slave derived".to_vec(), b"y".to_vec())]
    );
    assert_eq!(all_rows(slave_kv.as_ref(), Cf::Checkpoint).len(), 1);
    assert!(rx.try_recv().is_err(), "applied state is not published");
}

#[test]
fn clear_replicated_keeps_local_meta_and_derived_rows() {
    let (kv, j) = journal();
    let mut b = KvBatch::new();
    for cf in REPLICATED_TABLES {
        b.put(cf, b"k", b"v");
    }
    b.put(Cf::Meta, LOCAL, b"v");
    b.put(Cf::Meta, GROUPS_VERSION, b"v");
    b.put(Cf::QueueHead, b"k", b"v");
    j.write(b).unwrap();
    j.clear_replicated().unwrap();
    for cf in [
        Cf::ConsumeState,
        Cf::ConsumerOffset,
        Cf::TopicConfig,
        Cf::GroupConfig,
    ] {
        assert!(all_rows(kv.as_ref(), cf).is_empty(), "{cf:?}");
    }
    assert_eq!(
        all_rows(kv.as_ref(), Cf::Meta),
        vec![(LOCAL.to_vec(), b"v".to_vec())]
    );
    assert_eq!(all_rows(kv.as_ref(), Cf::QueueHead).len(), 1);
}

#[test]
fn apply_refuses_what_does_not_replicate_and_then_applies_nothing() {
    let (kv, j) = journal();
    let good = put(Cf::TopicConfig, b"t", b"v");
    let refused = [
        put(Cf::ConsumeQueue, b"k", b"v"),
        put(Cf::Meta, LOCAL, b"v"),
        put(Cf::Meta, &[0x7f], b"an unregistered kind"),
        op(Kind::DeleteRange, Cf::Meta, &[0x01], &[], &[0x90]),
        op(Kind::DeleteRange, Cf::Meta, b"", &[], b""),
        StateOp {
            table: "no_such_table".into(),
            ..good.clone()
        },
        StateOp {
            kind: Kind::Unspecified as i32,
            ..good.clone()
        },
    ];
    for bad in refused {
        assert!(j.apply(&[good.clone(), bad.clone()]).is_err(), "{bad:?}");
        assert!(j.adopt(&[good.clone(), bad.clone()]).is_err(), "{bad:?}");
        assert!(all_rows(kv.as_ref(), Cf::TopicConfig).is_empty());
    }
    let fx = j
        .apply(&[good, op(Kind::DeleteRange, Cf::Meta, &[0x02], &[], &[0x03])])
        .unwrap();
    assert!(fx.topics && fx.meta && !fx.groups && fx.queues.is_empty());
}

#[test]
fn apply_names_the_queues_touched_and_wide_range_deletes() {
    let (_, j) = journal();
    let q1 = QueueKey::new("g", "t", 1);
    let q2 = QueueKey::new("g", "t", 2);
    let (inflight, inflight_end) = q2.tagged_range(tag::INFLIGHT);
    let fx = j
        .apply(&[
            put(Cf::ConsumeState, &q2.inflight_key(4), &[0u8; 37]),
            op(Kind::Delete, Cf::ConsumerOffset, &q1.prefix(), &[], &[]),
            op(
                Kind::DeleteRange,
                Cf::ConsumeState,
                &inflight,
                &[],
                &inflight_end,
            ),
            put(Cf::GroupConfig, b"g", b"v"),
        ])
        .unwrap();
    assert_eq!(fx.queues, vec![q1.clone(), q2]);
    assert!(!fx.all_queues && fx.groups && !fx.topics && !fx.meta);
    // A range over a whole group is more than one queue.
    let group = crate::store::keys::config_key("g");
    let fx = j
        .apply(&[op(
            Kind::DeleteRange,
            Cf::ConsumerOffset,
            &group,
            &[],
            &prefix_end(&group),
        )])
        .unwrap();
    assert!(fx.all_queues);
}

#[test]
fn a_slave_hands_back_the_queues_it_changed_while_its_master_was_away() {
    let (kv, j) = journal();
    let (q1, q2, q3) = (
        QueueKey::new("g", "t", 1),
        QueueKey::new("g", "t", 2),
        QueueKey::new("g", "u", 0),
    );
    // Before the master went away, and what the master sends: not handed back.
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, q1.pop_key(), 1u64.to_be_bytes());
    j.write(b).unwrap();
    j.set_master_away(true);
    j.apply(&[put(Cf::ConsumeState, &q3.pop_key(), &3u64.to_be_bytes())])
        .unwrap();
    assert!(j.take_handback().unwrap().is_empty());

    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, q2.pop_key(), 8u64.to_be_bytes());
    b.put(Cf::ConsumeState, q2.inflight_key(6), [2u8; 37]);
    b.put(Cf::ConsumerOffset, q2.prefix(), 6u64.to_be_bytes());
    b.put(Cf::QueueHead, b"derived", b"x");
    j.write(b).unwrap();

    let (inflight, inflight_end) = q2.tagged_range(tag::INFLIGHT);
    let expected = vec![
        op(Kind::Delete, Cf::ConsumeState, &q2.pop_key(), &[], &[]),
        op(
            Kind::DeleteRange,
            Cf::ConsumeState,
            &inflight,
            &[],
            &inflight_end,
        ),
        op(Kind::Delete, Cf::ConsumerOffset, &q2.prefix(), &[], &[]),
        put(Cf::ConsumeState, &q2.pop_key(), &8u64.to_be_bytes()),
        put(Cf::ConsumeState, &q2.inflight_key(6), &[2u8; 37]),
        put(Cf::ConsumerOffset, &q2.prefix(), &6u64.to_be_bytes()),
    ];
    assert_eq!(j.take_handback().unwrap(), expected);

    // A restart keeps what is to be handed back.
    let again = JournaledKv::new(kv.clone());
    assert_eq!(again.take_handback().unwrap(), expected);
    again.clear_handback().unwrap();
    assert!(JournaledKv::new(kv.clone())
        .take_handback()
        .unwrap()
        .is_empty());

    // A change after the handback was taken stays for the next one.
    let ops = j.take_handback().unwrap();
    assert!(!ops.is_empty());
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, q1.pop_key(), 2u64.to_be_bytes());
    j.write(b).unwrap();
    j.clear_handback().unwrap();
    let left = j.take_handback().unwrap();
    assert!(left.contains(&put(Cf::ConsumeState, &q1.pop_key(), &2u64.to_be_bytes())));
    assert!(!left.iter().any(|o| o.key == q2.pop_key()));
    j.clear_handback().unwrap();
    j.set_master_away(false);
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, q1.pop_key(), 3u64.to_be_bytes());
    j.write(b).unwrap();
    assert!(j.take_handback().unwrap().is_empty());
    let (from, to) = MetaKey::Handback.range();
    assert!(kv.scan(Cf::Meta, &from, &to, 10).unwrap().is_empty());
}

#[test]
fn a_journal_that_keeps_no_handback_notes_nothing_while_the_master_is_away() {
    let (_kv, j) = journal();
    j.keep_no_handback();
    j.set_master_away(true);
    assert!(!j.master_away());
    let q = QueueKey::new("g", "t", 1);
    let mut b = KvBatch::new();
    b.put(Cf::ConsumeState, q.pop_key(), 8u64.to_be_bytes());
    j.write(b).unwrap();
    assert!(j.take_handback().unwrap().is_empty());
}

//! The derived state dropped and rebuilt from the log (`format.rs`): primary state kept byte
//! for byte, messages served at the same offsets, the format version deciding, a newer format
//! refused untouched, an interrupted rebuild started again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::topics::TopicConfig;
use apogee_proto::auth::acl::SecretSeal;
use apogee_proto::cluster::{AccessRole, AccessUser, AclEntry, AclResourceKind};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::group::GroupConfig;

use super::format::{self, Carry, INDEX_FORMAT_VERSION};
use super::keys::{CK_INDEX_FORMAT, CK_INDEX_REBUILDING};
use super::*;
use crate::access::AccessTable;
use crate::consume::{ConsumeEngine, MessageFilter, PopRequest};
use crate::groups::GroupTable;
use crate::topics::TopicTable;

const TOPICS: [&str; 3] = ["orders", "payments", "audit"];
const QUEUES: u32 = 4;
/// Messages per topic (spread over its queues).
const PER_TOPIC: usize = 1_000;

fn message(topic: &str, queue_id: u32, i: usize) -> NewMessage {
    NewMessage {
        topic: topic.into(),
        queue_id,
        message_id: format!("{topic}-{i:06}"),
        tag: Some(format!("tag{}", i % 3)),
        keys: vec![format!("key{}", i % 50)],
        message_group: None,
        message_type: 1,
        born_timestamp_ms: 0,
        born_host: "127.0.0.1".into(),
        delivery_timestamp_ms: None,
        reconsume_times: 0,
        properties: vec![],
        internal: vec![],
        body: format!("{topic} body {i}").into_bytes().into(),
    }
}

fn seal() -> SecretSeal {
    SecretSeal::new(&ClusterSecret::new(b"0123456789abcdef-cluster").unwrap())
}

fn group(name: &str) -> &'static GroupConfig {
    Box::leak(Box::new(GroupConfig::with_defaults(name)))
}

fn pop<'a>(group: &'a GroupConfig, topic: &'a str, filter: &'a MessageFilter) -> PopRequest<'a> {
    PopRequest {
        group,
        topic,
        queue_ids: &[0, 1, 2, 3],
        filter,
        max: 16,
        invisible_ms: 600_000,
        renew_until_ms: None,
        attempt_id: None,
        client_id: "test-client",
        start_after_ms: None,
    }
}

/// A store holding `PER_TOPIC` messages in each topic, topic and group configs, a user and
/// an ACL, and a group that consumed: some messages acked, some in flight, some untouched.
/// Returns an in-flight receipt handle.
async fn fill(dir: &Path) -> String {
    let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
    let topics = TopicTable::load(store.kv()).unwrap();
    for t in TOPICS {
        topics.create(TopicConfig::new(t, QUEUES)).unwrap();
    }
    let groups = GroupTable::load(store.kv(), false).unwrap();
    groups
        .create(GroupConfig::with_defaults("billing"))
        .unwrap();
    let access = AccessTable::load(store.kv(), Some(seal()), None).unwrap();
    let user = AccessUser {
        access_key: "app".into(),
        sealed_secret: seal().seal("app", "app-secret-1234"),
        role: AccessRole::User as i32,
        updated_ms: 10,
        deleted: false,
    };
    let acl = AclEntry {
        access_key: "app".into(),
        kind: AclResourceKind::Topic as i32,
        pattern: "orders*".into(),
        publish: true,
        updated_ms: 10,
        ..Default::default()
    };
    access.apply(vec![user], vec![acl]).unwrap();
    for t in TOPICS {
        for chunk in (0..PER_TOPIC).collect::<Vec<_>>().chunks(100) {
            let msgs = chunk
                .iter()
                .map(|&i| message(t, (i as u32) % QUEUES, i))
                .collect();
            store.append(msgs).await.unwrap();
        }
    }
    let engine = ConsumeEngine::open(store.clone()).unwrap();
    let all = MessageFilter::from_expression(None).unwrap();
    let g = group("billing");
    let first = engine.pop(&pop(g, "orders", &all), 0).unwrap();
    for d in &first[..10] {
        engine.ack("billing", "orders", &d.receipt_handle).unwrap();
    }
    let in_flight = first[10].receipt_handle.clone();
    store.shutdown();
    in_flight
}

pub(super) fn rows(kv: &dyn KvStore, cf: Cf) -> Vec<KvPair> {
    kv.scan(cf, b"", &[], usize::MAX).unwrap()
}

/// Every primary column family's rows.
fn primary_rows(kv: &dyn KvStore) -> BTreeMap<&'static str, Vec<KvPair>> {
    Cf::ALL
        .into_iter()
        .filter(|cf| !cf.is_derived())
        .map(|cf| (cf.name(), rows(kv, cf)))
        .collect()
}

/// Every column family's rows.
fn all_rows(kv: &dyn KvStore) -> BTreeMap<&'static str, Vec<KvPair>> {
    Cf::ALL
        .into_iter()
        .map(|cf| (cf.name(), rows(kv, cf)))
        .collect()
}

/// What the store serves: per queue its bounds and (queue offset, log offset, id, body) of
/// every message, and the id and key lookups of a few messages.
type Served = (
    Vec<((String, u32), (u64, u64), Vec<(u64, u64, String, Vec<u8>)>)>,
    Vec<Vec<u64>>,
);

fn served(store: &MessageStore) -> Served {
    let mut queues = Vec::new();
    for t in TOPICS {
        for q in 0..QUEUES {
            let bounds = store.queue_bounds(t, q).unwrap();
            let msgs = store
                .read_queue(t, q, 0, usize::MAX, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|m| {
                    (
                        m.queue_offset,
                        m.log_offset,
                        m.msg.message_id,
                        m.msg.body.to_vec(),
                    )
                })
                .collect();
            queues.push(((t.to_string(), q), bounds, msgs));
        }
    }
    let lookups = TOPICS
        .iter()
        .flat_map(|t| {
            let by_id = store.lookup_all_by_id(&format!("{t}-000123"), 10).unwrap();
            let by_key = store.lookup_by_key(t, "key7", 100).unwrap();
            [by_id, by_key]
        })
        .map(|hits| hits.iter().map(|m| m.log_offset).collect())
        .collect();
    (queues, lookups)
}

fn open(dir: &Path, rebuild_index: bool) -> Result<Arc<MessageStore>, StoreError> {
    MessageStore::open_with(
        StoreConfig::for_tests(dir),
        OpenOptions {
            rebuild_index,
            progress: RebuildProgress::new(),
        },
    )
}

/// Opens the index database alone (the store closed), for a look at its rows.
fn index_db(dir: &Path) -> RocksKv {
    RocksKv::open(dir.join("index")).unwrap()
}

fn set_format(dir: &Path, key: &[u8], version: Option<u32>) {
    let kv = index_db(dir);
    let mut b = KvBatch::new();
    match version {
        Some(v) => b.put(Cf::Checkpoint, key, v.to_be_bytes()),
        None => b.delete(Cf::Checkpoint, key),
    }
    kv.write(b).unwrap();
}

#[tokio::test]
async fn a_rebuild_keeps_primary_state_byte_for_byte_and_serves_the_same_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let in_flight = fill(dir.path()).await;
    // A queue retention emptied: its head row is all that is left of it.
    {
        let kv = index_db(dir.path());
        let mut b = KvBatch::new();
        index::put_head(&mut b, "emptied", 2, 500);
        kv.write(b).unwrap();
    }
    let store = open(dir.path(), false).unwrap();
    assert!(store.index_rebuild().is_none(), "a current index is kept");
    let primary_before = primary_rows(store.kv().as_ref());
    let served_before = served(&store);
    assert_eq!(store.queue_bounds("emptied", 2).unwrap(), (500, 500));
    store.shutdown();
    drop(store);

    let store = open(dir.path(), true).unwrap();
    let rebuilt = store.index_rebuild().expect("--rebuild-index rebuilds");
    assert_eq!(rebuilt.records, (TOPICS.len() * PER_TOPIC) as u64);
    assert!(!rebuilt.topic_configs_lost);
    assert_eq!(primary_rows(store.kv().as_ref()), primary_before);
    assert_eq!(served(&store), served_before);
    assert_eq!(
        store.queue_bounds("emptied", 2).unwrap(),
        (500, 500),
        "a queue emptied by retention keeps its next offset"
    );
    assert_eq!(
        store.kv().get(Cf::Checkpoint, CK_INDEX_FORMAT).unwrap(),
        Some(INDEX_FORMAT_VERSION.to_be_bytes().to_vec())
    );
    assert_eq!(
        store.kv().get(Cf::Checkpoint, CK_INDEX_REBUILDING).unwrap(),
        None
    );

    // The consume state still works over the rebuilt queues: the in-flight delivery acks,
    // and the group goes on after what it received.
    let engine = ConsumeEngine::open(store.clone()).unwrap();
    engine.ack("billing", "orders", &in_flight).unwrap();
    let all = MessageFilter::from_expression(None).unwrap();
    let next = engine
        .pop(&pop(group("billing"), "orders", &all), 0)
        .unwrap();
    assert_eq!(next.len(), 16);
    let appended = store
        .append(vec![message("orders", 1, 9_999)])
        .await
        .unwrap();
    assert_eq!(
        appended[0].queue_offset,
        (PER_TOPIC as u64) / u64::from(QUEUES)
    );
    store.shutdown();
}

#[tokio::test]
async fn an_older_or_missing_index_format_triggers_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).await;
    let served_before = {
        let store = open(dir.path(), false).unwrap();
        assert!(store.index_rebuild().is_none());
        served(&store)
    };
    for found in [Some(0), None] {
        set_format(dir.path(), CK_INDEX_FORMAT, found);
        let store = open(dir.path(), false).unwrap();
        let rebuilt = store.index_rebuild().map(|r| r.records);
        assert_eq!(
            rebuilt,
            Some((TOPICS.len() * PER_TOPIC) as u64),
            "format {found:?}"
        );
        assert_eq!(served(&store), served_before, "format {found:?}");
        store.shutdown();
        drop(store);
        // Recorded once done: the next open keeps it.
        let store = open(dir.path(), false).unwrap();
        assert!(store.index_rebuild().is_none(), "format {found:?}");
    }
}

#[tokio::test]
async fn a_newer_index_format_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).await;
    let newer = INDEX_FORMAT_VERSION + 1;
    set_format(dir.path(), CK_INDEX_FORMAT, Some(newer));
    let rows_before = all_rows(&index_db(dir.path()));
    let log_before = log_files(dir.path());

    let err = open(dir.path(), true)
        .err()
        .expect("a newer index format is refused");
    assert!(
        matches!(err, StoreError::IndexFormatNewer { found, supported }
            if found == newer && supported == INDEX_FORMAT_VERSION),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&newer.to_string()) && text.contains(&INDEX_FORMAT_VERSION.to_string()));
    assert_eq!(all_rows(&index_db(dir.path())), rows_before);
    assert_eq!(log_files(dir.path()), log_before);
}

#[tokio::test]
async fn a_rebuild_cut_short_is_started_again_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).await;
    let (primary_before, served_before) = {
        let store = open(dir.path(), false).unwrap();
        (primary_rows(store.kv().as_ref()), served(&store))
    };
    {
        // What a kill leaves mid-rebuild: the derived tables emptied (the marker written),
        // part of the log re-dispatched, no format row.
        let kv = index_db(dir.path());
        format::drop_derived(
            &kv,
            Carry::Marks {
                found: INDEX_FORMAT_VERSION,
            },
            0,
        )
        .unwrap();
        let mut b = KvBatch::new();
        let m = message("orders", 0, 0);
        index::dispatch(&mut b, &m, 0, 0, 40, 1);
        index::put_checkpoint(&mut b, 40);
        kv.write(b).unwrap();
        assert_eq!(kv.get(Cf::Checkpoint, CK_INDEX_FORMAT).unwrap(), None);
    }
    let store = open(dir.path(), false).unwrap();
    assert_eq!(
        store.index_rebuild().map(|r| r.records),
        Some((TOPICS.len() * PER_TOPIC) as u64)
    );
    assert_eq!(primary_rows(store.kv().as_ref()), primary_before);
    assert_eq!(served(&store), served_before);
}

#[tokio::test]
async fn a_deleted_topic_stays_deleted_across_a_rebuild_and_its_new_namesake_keeps_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let new_ids = {
        let store = open(dir.path(), false).unwrap();
        for i in 0..5 {
            store.append(vec![message("gone", 0, i)]).await.unwrap();
        }
        store.append(vec![message("kept", 0, 0)]).await.unwrap();
        store.purge_topic("gone").unwrap();
        // Created again under the same name: its queue starts at offset 0 again.
        let mut ids = Vec::new();
        for i in 100..102 {
            let r = store.append(vec![message("gone", 0, i)]).await.unwrap();
            assert_eq!(r[0].queue_offset, (i - 100) as u64);
            ids.push(format!("gone-{i:06}"));
        }
        ids
    };
    let store = open(dir.path(), true).unwrap();
    assert!(store.index_rebuild().is_some());
    assert_eq!(store.queue_bounds("gone", 0).unwrap(), (0, 2));
    let got: Vec<(u64, String)> = store
        .read_queue("gone", 0, 0, usize::MAX, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| (m.queue_offset, m.msg.message_id))
        .collect();
    assert_eq!(got, vec![(0, new_ids[0].clone()), (1, new_ids[1].clone())]);
    // The old records' key entries are not back either; the other topic is untouched.
    // (old records 0..5 had key0..key4; the new ones key0 and key1.)
    assert!(store.lookup_by_key("gone", "key2", 10).unwrap().is_empty());
    assert_eq!(store.lookup_by_key("gone", "key1", 10).unwrap().len(), 1);
    assert_eq!(store.queue_bounds("kept", 0).unwrap(), (0, 1));
}

#[test]
fn rebuild_progress_reads_as_bytes_done_of_the_total() {
    let progress = RebuildProgress::new();
    assert_eq!(progress.status(), None);
    progress.start(&RebuildCause::Requested, 2_000);
    progress.advance(500);
    assert_eq!(
        progress.status().unwrap(),
        "rebuilding the index from the commit log (requested by --rebuild-index): \
         500 of 2000 bytes of log (25.0%)"
    );
    progress.finish();
    assert_eq!(progress.status(), None);
}

#[test]
fn every_column_family_is_derived_or_primary_as_documented() {
    let derived: Vec<&str> = Cf::ALL
        .into_iter()
        .filter(|cf| cf.is_derived())
        .map(Cf::name)
        .collect();
    assert_eq!(
        derived,
        [
            "consume_queue",
            "queue_head",
            "message_id",
            "message_key",
            "checkpoint",
            "transaction",
            "schedule"
        ]
    );
    for cf in Cf::ALL {
        assert_ne!(cf.is_derived(), Cf::PRIMARY.contains(&cf), "{}", cf.name());
    }
}

/// Each commit-log file's name and bytes.
fn log_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("commitlog"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

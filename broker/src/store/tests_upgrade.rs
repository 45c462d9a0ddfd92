//! The data-format upgrade on real RocksDB directories: a version-0 and a version-1 directory
//! written by hand in their layouts, a fresh one, a newer one, and a second open.

use super::*;
use crate::access::AccessTable;
use crate::groups::GroupTable;
use crate::store::keys::{self, consumer_offset_key};
use crate::store::values::{decode_offset, decode_secret};
use crate::store::{MessageStore, RocksKv, StoreConfig};
use crate::topics::{MessageKind, TopicConfig, TopicPermission, TopicTable};
use apogee_proto::auth::acl::AccessState;
use apogee_proto::cluster::{self, AccessUser, AclEntry};
use apogee_proto::group::GroupConfig;
use std::path::Path;

fn legacy_queue(group: &str, topic: &str, queue_id: u32) -> Vec<u8> {
    [
        group.as_bytes(),
        &[0],
        topic.as_bytes(),
        &[0],
        &queue_id.to_be_bytes(),
    ]
    .concat()
}

/// A topic's config as versions 0 and 1 stored it (the wire's protobuf).
fn topic() -> cluster::TopicConfig {
    cluster::TopicConfig {
        name: "orders".into(),
        queue_count: 8,
        permission: apogee_proto::v2::Permission::Read as i32,
        message_types: vec![2, 6],
        lite_expire_after_secs: 30,
    }
}

/// What [`topic`] means.
fn topic_meant() -> TopicConfig {
    TopicConfig::new("orders", 8)
        .with_permission(TopicPermission::Read)
        .with_kinds(&[MessageKind::Fifo, MessageKind::Priority])
        .with_lite_expiry(Some(std::time::Duration::from_secs(30)))
}

fn user() -> AccessUser {
    AccessUser {
        access_key: "app".into(),
        sealed_secret: vec![7; 40],
        role: 1,
        updated_ms: 11,
        deleted: false,
    }
}

fn acl() -> AclEntry {
    AclEntry {
        access_key: "app".into(),
        kind: 2,
        pattern: "orders*".into(),
        publish: true,
        updated_ms: 12,
        ..Default::default()
    }
}

const SECRET: [u8; 32] = [5; 32];
const RUNTIME: &[u8] = b"\x01{\"transaction.max_checks\":\"7\"}";

/// An inflight entry in the first layout (20 bytes, no version) and the second (37 bytes).
fn inflight_v1() -> Vec<u8> {
    [
        &100i64.to_be_bytes()[..],
        &2u32.to_be_bytes(),
        &99u64.to_be_bytes(),
    ]
    .concat()
}

fn inflight_v2() -> Inflight {
    Inflight {
        visible_at_ms: 200,
        attempt: 0,
        nonce: 0,
        renew_until_ms: 0,
        message_group: 77,
    }
}

/// Writes every kind of primary row in today's main's (version 0) layouts.
fn write_v0(index: &Path) {
    let kv = RocksKv::open(index).unwrap();
    let mut b = KvBatch::new();
    let q = legacy_queue("g1", "orders", 3);
    b.put(Cf::ConsumerOffset, &q, 41u64.to_be_bytes());
    b.put(
        Cf::ConsumeState,
        [b"p", &q[..]].concat(),
        45u64.to_be_bytes(),
    );
    let at = |off: u64| [b"i", &q[..], &off.to_be_bytes()].concat();
    b.put(Cf::ConsumeState, at(42), inflight_v1());
    b.put(Cf::ConsumeState, at(43), inflight_v2().encode());
    b.put(Cf::TopicConfig, b"orders", topic().encode_to_vec());
    let mut group = vec![2u8];
    group.extend(1_000i64.to_be_bytes());
    group.extend(cluster::GroupConfig::from(&GroupConfig::with_defaults("g1")).encode_to_vec());
    b.put(Cf::GroupConfig, b"g1", group);
    b.put(Cf::Meta, v0::SECRET_KEY, SECRET);
    b.put(Cf::Meta, v0::TOPICS_VERSION_KEY, 3i64.to_be_bytes());
    b.put(Cf::Meta, v0::GROUPS_VERSION_KEY, 4i64.to_be_bytes());
    b.put(Cf::Meta, v0::ACCESS_VERSION_KEY, 5i64.to_be_bytes());
    b.put(Cf::Meta, v0::RUNTIME_CONFIG_KEY, RUNTIME);
    let versioned = |proto: Vec<u8>| [&[1u8][..], &proto].concat();
    b.put(
        Cf::Meta,
        b"access/user/app",
        versioned(user().encode_to_vec()),
    );
    let acl_key = b"access/acl/app\x002\x00orders*";
    b.put(Cf::Meta, acl_key, versioned(acl().encode_to_vec()));
    b.put(Cf::Meta, v0::HAD_SLAVES_KEY, [1u8]);
    b.put(Cf::Meta, [v0::HANDBACK_PREFIX, &q[..]].concat(), [1u8]);
    b.put(Cf::Meta, b"zz.not-ours", b"left alone");
    kv.write(b).unwrap();
}

fn primary_rows(kv: &dyn KvStore) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let mut rows = all_rows(kv);
    rows.retain(|(cf, _, _)| Cf::PRIMARY.contains(cf));
    rows
}

#[test]
fn a_version_0_directory_is_upgraded_at_open_and_means_the_same() {
    let dir = tempfile::tempdir().unwrap();
    write_v0(&dir.path().join("index"));
    let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
    let kv = store.kv();
    assert_eq!(
        stored_version(kv.as_ref()).unwrap(),
        Some(DATA_FORMAT_VERSION)
    );

    // Consumer offset and consume state: same offsets, same entries.
    let q = QueueKey::new("g1", "orders", 3);
    let get = |cf, key: &[u8]| kv.get(cf, key).unwrap().expect("row");
    let offset = get(Cf::ConsumerOffset, &consumer_offset_key("g1", "orders", 3));
    assert_eq!(decode_offset(&offset), Some(41));
    assert_eq!(
        decode_offset(&get(Cf::ConsumeState, &q.pop_key())),
        Some(45)
    );
    let first = Inflight::decode(&get(Cf::ConsumeState, &q.inflight_key(42))).unwrap();
    let want = Inflight {
        visible_at_ms: 100,
        attempt: 2,
        nonce: 99,
        renew_until_ms: 0,
        message_group: 0,
    };
    assert_eq!(first, want);
    let second = get(Cf::ConsumeState, &q.inflight_key(43));
    assert_eq!(Inflight::decode(&second), Some(inflight_v2()));
    assert_eq!(second.len(), 37, "rewritten in the current layout");

    // Configs, users and ACLs, read by their own tables.
    let topics = TopicTable::load(kv.clone()).unwrap();
    assert_eq!(topics.get("orders"), Some(topic_meant()));
    assert_eq!(topics.data_version(), 3);
    let groups = GroupTable::load(kv.clone(), false).unwrap();
    assert_eq!(*groups.get("g1").unwrap(), GroupConfig::with_defaults("g1"));
    assert_eq!(groups.start_after_ms("g1", 0), Some(1_000));
    assert_eq!(groups.data_version(), 4);
    let access = AccessTable::load(kv.clone(), None, None).unwrap();
    let mut expected = AccessState::default();
    expected.merge_user(user());
    expected.merge_acl(acl());
    assert_eq!(access.snapshot(), expected);
    assert_eq!(access.data_version(), 5);

    // Meta: the secret, the runtime config and the markers.
    let secret = get(Cf::Meta, MetaKey::ReceiptSecret.key());
    assert_eq!(decode_secret(&secret), Some(SECRET));
    assert_eq!(get(Cf::Meta, MetaKey::RuntimeConfig.key()), RUNTIME);
    assert_eq!(get(Cf::Meta, MetaKey::HadSlaves.key()), MARKER);
    assert_eq!(get(Cf::Meta, &handback_key(&q)), MARKER);
    assert_eq!(get(Cf::Meta, b"zz.not-ours"), b"left alone");

    // No version-0 key is left: every primary row reads in the current layout.
    for (cf, key, _) in primary_rows(kv.as_ref()) {
        let current = match cf {
            Cf::ConsumerOffset => QueueKey::decode_offset_key(&key).is_some(),
            Cf::ConsumeState => QueueKey::decode_state_key(&key).is_some(),
            Cf::TopicConfig | Cf::GroupConfig => keys::decode_config_key(&key).is_some(),
            _ => MetaKey::of(&key).is_some() || key == b"zz.not-ours",
        };
        assert!(current, "{cf:?} {key:02x?}");
    }
    // 15 rewritten, the one left alone, the version row.
    assert_eq!(primary_rows(kv.as_ref()).len(), 17);
}

#[test]
fn the_upgrade_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    write_v0(&index);
    let kv = RocksKv::open(&index).unwrap();
    // 15 rows rewritten; the unknown meta key is not one of them.
    assert_eq!(
        run(&kv).unwrap(),
        Upgrade::From {
            version: 0,
            rows: 15
        }
    );
    let mut after_first = all_rows(&kv);
    assert_eq!(run(&kv).unwrap(), Upgrade::Current);
    assert_eq!(all_rows(&kv), after_first);
    drop(kv);
    // Two real opens (each its own store start) rewrite no primary row either.
    for _ in 0..2 {
        let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
        store.shutdown();
        drop(store);
    }
    let kv = RocksKv::open(&index).unwrap();
    after_first.retain(|(cf, _, _)| Cf::PRIMARY.contains(cf));
    assert_eq!(primary_rows(&kv), after_first);
}

#[test]
fn a_fresh_directory_gets_only_the_version_row() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RocksKv::open(dir.path()).unwrap();
    assert_eq!(run(&kv).unwrap(), Upgrade::Fresh);
    assert_eq!(
        all_rows(&kv),
        vec![(
            Cf::Meta,
            MetaKey::DataFormat.key().to_vec(),
            encode_version(DATA_FORMAT_VERSION).to_vec()
        )]
    );
    assert_eq!(run(&kv).unwrap(), Upgrade::Current);
}

#[test]
fn a_newer_data_format_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let newer = DATA_FORMAT_VERSION + 1;
    {
        let kv = RocksKv::open(dir.path().join("index")).unwrap();
        let mut b = KvBatch::new();
        b.put(Cf::Meta, MetaKey::DataFormat.key(), encode_version(newer));
        b.put(Cf::TopicConfig, b"a newer layout", b"?");
        b.put(Cf::ConsumerOffset, b"g\0t\0\0\0\0\0", 1u64.to_be_bytes());
        kv.write(b).unwrap();
    }
    let before = all_rows(&RocksKv::open(dir.path().join("index")).unwrap());

    let err = MessageStore::open(StoreConfig::for_tests(dir.path()))
        .err()
        .expect("refused");
    assert!(
        matches!(err, StoreError::DataFormatNewer { found, supported }
            if found == newer && supported == DATA_FORMAT_VERSION),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("data format {newer}"))
            && message.contains(&format!("this binary's {DATA_FORMAT_VERSION}")),
        "{message}"
    );
    assert!(!dir.path().join("commitlog").exists(), "no log was created");
    let after = all_rows(&RocksKv::open(dir.path().join("index")).unwrap());
    assert_eq!(after, before);
}

#[test]
fn an_unreadable_version_0_row_stops_the_upgrade_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RocksKv::open(dir.path()).unwrap();
    let mut b = KvBatch::new();
    b.put(Cf::TopicConfig, b"orders", topic().encode_to_vec());
    b.put(Cf::ConsumerOffset, b"no separators", 1u64.to_be_bytes());
    kv.write(b).unwrap();
    let before = all_rows(&kv);
    let err = run(&kv).unwrap_err().to_string();
    assert!(err.contains("version-0 consumer_offset row"), "{err}");
    assert_eq!(all_rows(&kv), before);
}

/// A version-1 directory: the version row says 1, topic configs are a version byte 1 and the
/// protobuf; everything else is already in the current layouts.
fn write_v1(index: &Path) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let kv = RocksKv::open(index).unwrap();
    let mut b = KvBatch::new();
    b.put(Cf::Meta, MetaKey::DataFormat.key(), encode_version(1));
    let v1_topic = [&[v1::TOPIC_CONFIG][..], &topic().encode_to_vec()].concat();
    b.put(Cf::TopicConfig, keys::config_key("orders"), v1_topic);
    b.put(
        Cf::ConsumerOffset,
        consumer_offset_key("g1", "orders", 3),
        encode_offset(41),
    );
    b.put(Cf::Meta, MetaKey::TopicsDataVersion.key(), encode_u64(3));
    kv.write(b).unwrap();
    all_rows(&kv)
}

#[test]
fn a_version_1_directory_gets_its_topic_configs_rewritten_and_means_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let before = write_v1(&index);
    {
        let kv = RocksKv::open(&index).unwrap();
        assert_eq!(
            run(&kv).unwrap(),
            Upgrade::From {
                version: 1,
                rows: 1
            }
        );
        let after = all_rows(&kv);
        // Only the topic config's value and the version row changed.
        let changed: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
        let expected_topic = topic_meant().encode().to_vec();
        assert_eq!(changed.len(), 2, "{changed:02x?}");
        assert!(changed.contains(&&(Cf::TopicConfig, keys::config_key("orders"), expected_topic)));
        assert_eq!(after.len(), before.len());
    }
    let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
    let topics = TopicTable::load(store.kv()).unwrap();
    assert_eq!(topics.get("orders"), Some(topic_meant()));
    assert_eq!(topics.data_version(), 3);
    assert_eq!(
        stored_version(store.kv().as_ref()).unwrap(),
        Some(DATA_FORMAT_VERSION)
    );
}

#[test]
fn a_version_1_topic_config_that_is_not_one_stops_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let kv = RocksKv::open(dir.path()).unwrap();
    let mut b = KvBatch::new();
    b.put(Cf::Meta, MetaKey::DataFormat.key(), encode_version(1));
    let mut bad = topic();
    bad.queue_count = 5000;
    let row = [&[v1::TOPIC_CONFIG][..], &bad.encode_to_vec()].concat();
    b.put(Cf::TopicConfig, keys::config_key("orders"), row);
    kv.write(b).unwrap();
    let before = all_rows(&kv);
    let err = run(&kv).unwrap_err().to_string();
    assert!(err.contains("version-1 topic_config row"), "{err}");
    assert_eq!(all_rows(&kv), before);
}

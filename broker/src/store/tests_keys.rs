//! Round trips of every key kind, name prefixes, and the replicate/local decision of every
//! `meta` key.

use super::*;
use crate::store::kv::{replicated, Cf};

/// Names that stress the encoding: empty, NUL and 0xff-ish bytes, multi-byte UTF-8, and one
/// a prefix of another.
const NAMES: [&str; 5] = ["", "a", "ab", "a\0b", "t\u{ff}é"];

#[test]
fn names_round_trip_and_none_is_a_prefix_of_another_names_keys() {
    for name in NAMES {
        let mut k = Vec::new();
        put_name(&mut k, name);
        k.extend_from_slice(b"rest");
        assert_eq!(read_name(&k), Some((name, &b"rest"[..])));
    }
    // Topic `a`'s rows never start with topic `ab`'s prefix, nor the other way round.
    let a = topic_prefix("a");
    let ab = topic_prefix("ab");
    assert!(!cq_key("ab", 0, 0).starts_with(&a));
    assert!(!cq_key("a", 0, 0).starts_with(&ab));
    // A truncated or non-UTF-8 name is no name.
    assert_eq!(read_name(&[0, 3, b'a']), None);
    assert_eq!(read_name(&[0, 1, 0xff]), None);
    assert_eq!(read_name(&[0]), None);
}

#[test]
fn a_name_longer_than_a_key_holds_is_refused_by_check_name() {
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let err = check_name("an ACL pattern", &long).unwrap_err();
    assert!(
        err.contains("65536 bytes") && err.contains("65535"),
        "{err}"
    );
    assert!(check_name("an ACL pattern", &long[1..]).is_ok());
    let err = check_access_names("k", Some(&long)).unwrap_err();
    assert!(err.contains("ACL pattern"), "{err}");
}

#[test]
fn index_keys_round_trip() {
    for topic in NAMES {
        for (qid, off) in [(0u32, 0u64), (7, 42), (u32::MAX, u64::MAX)] {
            let q = queue_key(topic, qid);
            assert_eq!(decode_queue_key(&q), Some((topic.to_string(), qid)));
            let cq = cq_key(topic, qid, off);
            assert!(cq.starts_with(&q) && cq.starts_with(&topic_prefix(topic)));
            assert_eq!(decode_cq_key(&cq), Some((topic.to_string(), qid, off)));
            assert_eq!(trailing_u64(&cq), Some(off));
            // The batch-buffer writer builds the same bytes.
            let mut built = b"before".to_vec();
            write_cq_key(&mut built, topic, qid, off);
            assert_eq!(&built[6..], &cq[..]);

            let mut id = Vec::new();
            write_id_key(&mut id, topic, off);
            assert!(id.starts_with(&id_prefix(topic)));
            assert_eq!(decode_id_key(&id), Some((topic.to_string(), off)));

            let mut mk = Vec::new();
            write_msg_key(&mut mk, topic, "key\0", off);
            assert!(mk.starts_with(&key_prefix(topic, "key\0")));
            let decoded = (topic.to_string(), "key\0".to_string(), off);
            assert_eq!(decode_msg_key(&mk), Some(decoded));
        }
    }
    // Keys of one queue sort by offset.
    assert!(cq_key("t", 1, 255) < cq_key("t", 1, 256));
    assert_eq!(
        decode_queue_key(&cq_key("t", 1, 2)),
        None,
        "a queue key is exact"
    );
}

#[test]
fn transaction_and_schedule_keys_round_trip() {
    for id in NAMES {
        for t in [tag::HALF, tag::OUTCOME, tag::CHECKS, tag::WAITING] {
            assert_eq!(decode_id_row(&id_row(t, id)), Some((t, id.to_string())));
        }
        for due in [0i64, 1, 1_700_000_000_000, i64::MAX] {
            let k = due_key(due, id);
            assert!(k.starts_with(&due_from(due)));
            assert_eq!(decode_due_key(&k), Some((due, id.to_string())));
            let (from, to) = due_range();
            assert!(from <= k && k < to);
        }
    }
    // A negative due time counts as 0; due keys sort by time first.
    assert_eq!(decode_due_key(&due_key(-5, "x")), Some((0, "x".into())));
    assert!(due_key(1, "zzz") < due_key(2, "a"));
    assert!(due_key(1, "zzz") < due_from(2));
}

#[test]
fn consume_keys_round_trip() {
    for group in NAMES {
        for topic in NAMES {
            let q = QueueKey::new(group, topic, 3);
            let offset_key = consumer_offset_key(group, topic, 3);
            assert_eq!(offset_key, q.prefix());
            assert_eq!(QueueKey::decode_offset_key(&offset_key), Some(q.clone()));
            assert_eq!(
                QueueKey::decode_state_key(&q.pop_key()),
                Some((q.clone(), ConsumeRow::Pop))
            );
            let k = q.inflight_key(u64::MAX - 1);
            assert!(k.starts_with(&q.inflight_prefix()));
            assert_eq!(
                QueueKey::decode_state_key(&k),
                Some((q.clone(), ConsumeRow::Inflight(u64::MAX - 1)))
            );
            let (from, to) = q.tagged_range(tag::INFLIGHT);
            assert!(from <= k && k < to);
            assert!(!(from <= q.pop_key() && q.pop_key() < to));
            assert_eq!(QueueKey::of_row(true, &k), Some(q.clone()));
            assert_eq!(QueueKey::of_row(false, &offset_key), Some(q.clone()));
            let handback = handback_key(&q);
            assert_eq!(MetaKey::of(&handback), Some(MetaKey::Handback));
            assert_eq!(decode_handback_key(&handback), Some(q));
        }
    }
    // Group `g` never sees the rows of group `g\0t` (a separator-based key would).
    let a = QueueKey::new("g", "t", 0);
    let b = QueueKey::new("g\0t", "", 0);
    assert!(!b.prefix().starts_with(&a.prefix()[..3]));
    assert_eq!(QueueKey::decode_state_key(b"x"), None);
    assert_eq!(QueueKey::decode_state_key(&[tag::POP]), None);
}

#[test]
fn config_and_access_keys_round_trip() {
    for name in NAMES {
        assert_eq!(decode_config_key(&config_key(name)), Some(name.to_string()));
        let user = user_key(name);
        assert_eq!(MetaKey::of(&user), Some(MetaKey::AccessUser));
        assert_eq!(decode_user_key(&user), Some(name.to_string()));
        let acl = acl_key(name, -2, "topic*");
        assert_eq!(MetaKey::of(&acl), Some(MetaKey::AccessAcl));
        let decoded = (name.to_string(), -2, "topic*".to_string());
        assert_eq!(decode_acl_key(&acl), Some(decoded));
        let (from, to) = MetaKey::AccessAcl.range();
        assert!(from <= acl && acl < to);
        let purged = topic_purged_key(name);
        assert_eq!(MetaKey::of(&purged), Some(MetaKey::TopicPurged));
        assert_eq!(decode_topic_purged_key(&purged), Some(name.to_string()));
        let deleting = topic_deleting_key(name);
        assert_eq!(MetaKey::of(&deleting), Some(MetaKey::TopicDeleting));
        assert!(!MetaKey::replicates(&deleting));
        assert_eq!(decode_topic_deleting_key(&deleting), Some(name.to_string()));
        assert_eq!(decode_topic_purged_key(&deleting), None);
    }
}

#[test]
fn every_meta_key_has_a_replicate_or_local_decision_and_its_tag_follows_it() {
    use MetaClass::{Local, Replicated};
    let decisions = [
        (MetaKey::ReceiptSecret, Replicated),
        (MetaKey::TopicsDataVersion, Replicated),
        (MetaKey::GroupsDataVersion, Replicated),
        (MetaKey::AccessDataVersion, Replicated),
        (MetaKey::RuntimeConfig, Replicated),
        (MetaKey::AccessUser, Replicated),
        (MetaKey::AccessAcl, Replicated),
        (MetaKey::TopicPurged, Replicated),
        (MetaKey::TierSegment, Replicated),
        (MetaKey::HadSlaves, Local),
        (MetaKey::Handback, Local),
        (MetaKey::DataFormat, Local),
        (MetaKey::TopicDeleting, Local),
    ];
    assert_eq!(
        decisions.len(),
        MetaKey::ALL.len(),
        "every key is decided here"
    );
    let mut tags = std::collections::BTreeSet::new();
    for (kind, class) in decisions {
        assert!(MetaKey::ALL.contains(&kind));
        assert_eq!(kind.class(), class, "{kind:?}");
        assert!(tags.insert(kind.tag()), "{kind:?} shares its tag");
        // The physical range the journal relies on agrees with the registry.
        assert_eq!(kind.tag() >= LOCAL_TAGS_FROM, class == Local, "{kind:?}");
        let mut key = kind.key().to_vec();
        if kind.is_family() {
            key.extend_from_slice(&[0, 1, b'x']);
        }
        assert_eq!(MetaKey::of(&key), Some(kind));
        assert_eq!(replicated(Cf::Meta, &key), class == Replicated, "{kind:?}");
        let (from, to) = meta_replicated_range();
        assert_eq!(from <= key && key < to, class == Replicated, "{kind:?}");
    }
    // Unregistered kinds (a newer version's) and a single key with a tail are not shipped.
    assert!(!replicated(Cf::Meta, &[0x7f]));
    assert!(!replicated(Cf::Meta, &[MetaKey::ReceiptSecret.tag(), 0]));
    assert!(!replicated(Cf::Meta, b""));
}

#[test]
fn meta_ranges_split_at_the_local_keys() {
    let local = [LOCAL_TAGS_FROM];
    assert_eq!(
        meta_replicated_part(b"", b""),
        Some((Vec::new(), local.to_vec()))
    );
    assert_eq!(
        meta_replicated_part(&[0x02], &[0x04]),
        Some((vec![0x02], vec![0x04]))
    );
    assert_eq!(meta_replicated_part(&[0x81], b""), None);
    assert!(meta_range_touches_local(b""));
    assert!(meta_range_touches_local(&[0x80, 0]));
    assert!(!meta_range_touches_local(&[0x80]));
}

#[test]
fn shared_value_layouts_carry_their_version() {
    let v = encode_u64(42);
    assert_eq!(v[0], V1);
    assert_eq!(decode_u64(&v), Some(42));
    assert_eq!(decode_u64(&42u64.to_be_bytes()), None);
    assert_eq!(decode_u64(&[2, 0, 0, 0, 0, 0, 0, 0, 42]), None);
    assert_eq!(MARKER, [V1]);
}

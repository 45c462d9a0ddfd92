//! The admin actions' rules, each over a broker on the in-memory index: what a topic or
//! group change refuses and fills in, how a listing merges groups known only by their lag,
//! when a group is found, how an offset reset is bounded, which queue reads are refused,
//! and what only a master does.

use super::groups::listed;
use super::{OffsetReset, OffsetTarget};
use crate::config::Role;
use crate::consume::lag::LagTotals;
use crate::remoting::clients::tests::{remote, remote_with, GROUP, TOPIC};
use crate::topics::{TopicConfig, TopicPermission};
use apogee_proto::cluster;
use apogee_proto::group::GroupConfig;
use apogee_proto::{names, ApogeeError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A topic config as an operator's request has it: `queue_count` 0 for the default.
fn requested(name: &str, queue_count: i32) -> cluster::TopicConfig {
    cluster::TopicConfig {
        name: name.into(),
        queue_count,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_topic_change_refuses_system_topics_and_fills_in_the_defaults() {
    let r = remote_with(1, |c| c.default_queue_count = 3);
    let broker = &r.broker;
    let payments = broker.requested_topic(requested("payments", 0)).unwrap();
    let created = broker.create_topic(payments, "op").unwrap();
    assert_eq!(created.queues, 3);
    assert_eq!(created.permission, TopicPermission::ReadWrite);
    assert_eq!(broker.topics().get("payments").unwrap().queues, 3);
    let more = broker.requested_topic(requested("payments", 5)).unwrap();
    let updated = broker.update_topic(more, "op").unwrap();
    assert_eq!(updated.queues, 5);
    assert!(broker.requested_topic(requested("payments", 1025)).is_err());

    let dlq = names::dlq_topic(GROUP);
    for refused in [
        broker.create_topic(TopicConfig::new(&dlq, 1), "op"),
        broker.update_topic(TopicConfig::new(&dlq, 1), "op"),
    ] {
        assert!(
            matches!(refused, Err(ApogeeError::Forbidden(_))),
            "{refused:?}"
        );
    }
    assert!(broker.topics().get(&dlq).is_none());

    // A system topic the broker made itself is listed only when asked.
    broker.topics().create(TopicConfig::new(&dlq, 1)).unwrap();
    let names = |include_system| {
        let mut n: Vec<String> = broker
            .list_topics(include_system)
            .into_iter()
            .map(|t| t.name)
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(false), [TOPIC, "payments"]);
    assert_eq!(names(true), [dlq.as_str(), TOPIC, "payments"]);
}

#[tokio::test]
async fn a_topics_queues_show_their_bounds_and_last_store_time() {
    let r = remote(2);
    r.store(1, "t", 3).await;
    let queues = r.broker.topic_queues(TOPIC).unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(
        (
            queues[0].min_offset,
            queues[0].max_offset,
            queues[0].last_store_ms
        ),
        (0, 0, 0)
    );
    assert_eq!((queues[1].min_offset, queues[1].max_offset), (0, 3));
    assert!(queues[1].last_store_ms > 0);
    assert!(matches!(
        r.broker.topic_queues("no-such-topic"),
        Err(ApogeeError::TopicNotFound(_))
    ));
}

#[tokio::test]
async fn an_offset_reset_needs_a_target_clamps_a_time_and_moves_only_when_executed() {
    let r = remote(1);
    r.store(0, "t", 3).await;
    let broker = &r.broker;
    broker
        .create_group(GroupConfig::with_defaults(GROUP), "op")
        .unwrap();
    let reset = |to, execute| OffsetReset {
        group: GROUP,
        topic: TOPIC,
        to,
        execute,
    };
    let nowhere = broker.reset_group_offset(&reset(None, true), "op");
    assert!(
        matches!(nowhere, Err(ApogeeError::BadRequest(_))),
        "{nowhere:?}"
    );

    // A time after every message is the queue's end; one before them its start.
    let future = Some(OffsetTarget::TimestampMs(i64::MAX));
    let plan = broker
        .reset_group_offset(&reset(future, false), "op")
        .unwrap();
    assert_eq!((plan[0].current_offset, plan[0].new_offset), (0, 3));
    assert_eq!(broker.consume().position(GROUP, TOPIC, 0, 0).committed, 0);
    let past = Some(OffsetTarget::TimestampMs(0));
    let plan = broker
        .reset_group_offset(&reset(past, false), "op")
        .unwrap();
    assert_eq!(plan[0].new_offset, 0);

    let done = broker
        .reset_group_offset(&reset(Some(OffsetTarget::Latest), true), "op")
        .unwrap();
    assert_eq!(done[0].new_offset, 3);
    assert_eq!(broker.consume().position(GROUP, TOPIC, 0, 0).committed, 3);
    let back = broker
        .reset_group_offset(&reset(Some(OffsetTarget::Earliest), true), "op")
        .unwrap();
    assert_eq!((back[0].current_offset, back[0].new_offset), (3, 0));
}

#[tokio::test]
async fn a_group_is_deleted_with_its_progress_and_then_is_not_found() {
    let r = remote(1);
    r.store(0, "t", 2).await;
    let broker = &r.broker;
    assert!(matches!(
        broker.delete_group("nobody", "op"),
        Err(ApogeeError::ConsumerGroupNotFound(_))
    ));
    broker
        .create_group(GroupConfig::with_defaults(GROUP), "op")
        .unwrap();
    let latest = OffsetReset {
        group: GROUP,
        topic: TOPIC,
        to: Some(OffsetTarget::Latest),
        execute: true,
    };
    broker.reset_group_offset(&latest, "op").unwrap();
    assert!(!broker.consume().group_progress(GROUP).is_empty());

    broker.delete_group(GROUP, "op").unwrap();
    assert!(broker.groups().get(GROUP).is_none());
    assert!(broker.consume().group_progress(GROUP).is_empty());
    assert!(matches!(
        broker.delete_group(GROUP, "op"),
        Err(ApogeeError::ConsumerGroupNotFound(_))
    ));
}

#[test]
fn a_listing_gives_configured_groups_their_lag_and_adds_the_groups_known_by_lag_only() {
    let configs = vec![
        Arc::new(GroupConfig::with_defaults("a")),
        Arc::new(GroupConfig::with_defaults("b")),
    ];
    let totals = BTreeMap::from([
        (
            "b".to_string(),
            LagTotals {
                lag: 5,
                inflight: 1,
            },
        ),
        (
            "c".to_string(),
            LagTotals {
                lag: 7,
                inflight: 2,
            },
        ),
    ]);
    let rows: Vec<(String, bool, u64, u64)> = listed(configs, totals)
        .into_iter()
        .map(|g| (g.config.name.clone(), g.configured, g.lag, g.inflight))
        .collect();
    assert_eq!(
        rows,
        [
            ("a".to_string(), true, 0, 0),
            ("b".to_string(), true, 5, 1),
            ("c".to_string(), false, 7, 2),
        ]
    );
}

#[tokio::test]
async fn a_group_known_nowhere_is_described_only_for_named_topics_it_would_read() {
    let r = remote(1);
    r.store(0, "t", 2).await;
    let broker = &r.broker;
    assert!(matches!(
        broker.describe_group("stranger", &[]),
        Err(ApogeeError::ConsumerGroupNotFound(_))
    ));
    let described = broker
        .describe_group("stranger", &[TOPIC.to_string()])
        .unwrap();
    assert!(!described.known);
    assert_eq!(*described.config, GroupConfig::with_defaults("stranger"));
    assert_eq!(described.queues.len(), 1);
    assert_eq!(described.queues[0].next_offset, 2);

    broker
        .create_group(GroupConfig::with_defaults("stranger"), "op")
        .unwrap();
    assert!(broker.describe_group("stranger", &[]).unwrap().known);
}

#[tokio::test]
async fn a_queue_read_is_refused_for_an_unknown_topic_or_queue_but_not_for_a_system_topic() {
    let r = remote(1);
    r.store(0, "t", 3).await;
    let broker = &r.broker;
    assert!(matches!(
        broker.read_queue_messages("no-such-topic", 0, 0, 0).await,
        Err(ApogeeError::TopicNotFound(_))
    ));
    assert!(matches!(
        broker.read_queue_messages(TOPIC, 1, 0, 0).await,
        Err(ApogeeError::BadRequest(_))
    ));
    let dlq = broker
        .read_queue_messages(&names::dlq_topic(GROUP), 0, 0, 0)
        .await
        .unwrap();
    assert!(dlq.messages.is_empty());

    let all = broker.read_queue_messages(TOPIC, 0, 0, 0).await.unwrap();
    assert_eq!(all.messages.len(), 3);
    assert_eq!((all.min_offset, all.next_offset), (0, 3));
    let one = broker.read_queue_messages(TOPIC, 0, 1, 1).await.unwrap();
    let offsets: Vec<u64> = one.messages.iter().map(|m| m.record.queue_offset).collect();
    assert_eq!(offsets, [1]);
}

#[tokio::test]
async fn a_message_lookup_needs_its_id_or_key_and_finds_every_record() {
    let r = remote(1);
    r.store(0, "t", 2).await;
    let broker = &r.broker;
    assert!(matches!(
        broker.messages_by_id(" ").await,
        Err(ApogeeError::BadRequest(_))
    ));
    assert!(matches!(
        broker.messages_by_key(TOPIC, "", 0).await,
        Err(ApogeeError::BadRequest(_))
    ));
    let found = broker.messages_by_id("t-1").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].record.queue_offset, 1);
    assert!(found[0].attempts.is_empty());
    assert!(broker.messages_by_id("none").await.unwrap().is_empty());
}

#[tokio::test]
async fn only_a_master_changes_runtime_settings_and_resends_dead_letters() {
    let master = remote(1);
    let (setting, _) = master
        .broker
        .change_runtime_setting("transaction.max_checks", "7", "op")
        .unwrap();
    assert_eq!(setting.value, "7");
    assert_eq!(master.broker.txns().max_checks(), 7);
    assert!(master
        .broker
        .resend_dead_letters(GROUP, None, "op")
        .await
        .unwrap()
        .is_empty());

    let slave = remote_with(1, |c| {
        c.role = Role::Slave;
        c.broker_id = 1;
    });
    let refused = slave
        .broker
        .change_runtime_setting("transaction.max_checks", "7", "op");
    assert!(
        matches!(&refused, Err(ApogeeError::PreconditionFailed(why)) if why.contains("not the master")),
        "{refused:?}"
    );
    assert_ne!(slave.broker.txns().max_checks(), 7);
    let resend = slave.broker.resend_dead_letters(GROUP, None, "op").await;
    assert!(
        matches!(resend, Err(ApogeeError::Forbidden(_))),
        "{resend:?}"
    );
}

#[tokio::test]
async fn the_status_counts_the_tables_and_reads_the_log_and_role() {
    let r = remote(1);
    r.store(0, "t", 1).await;
    let broker = &r.broker;
    broker
        .create_group(GroupConfig::with_defaults(GROUP), "op")
        .unwrap();
    let status = broker.broker_status();
    assert_eq!((status.topic_count, status.group_count), (1, 1));
    assert_eq!(status.log.end, broker.store().log_end_offset());
    assert!(status.log.end > status.log.start);
    assert_eq!(status.role, broker.config().role);
    assert!(status.slaves.is_empty());
    assert!(status.link.is_none());
}

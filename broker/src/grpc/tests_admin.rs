//! Unit tests of the broker's Admin handlers, each called with a tonic `Request` on a broker
//! from `Broker::build` over the in-memory index: topic create, update and delete, group
//! create, offset reset, a runtime setting and the broker status, each with the effect it
//! has and a refused case with its gRPC status.

use super::admin::AdminServer;
use super::tests_messaging::{test_broker, topic_config, TestBroker, GROUP, TOPIC};
use apogee_proto::cluster::{self, admin_server::Admin, reset_group_offset_request::To};
use std::sync::Arc;
use tonic::{Code, Request};

fn admin(t: &TestBroker) -> AdminServer {
    AdminServer::new(t.broker.clone())
}

#[tokio::test]
async fn a_topic_is_created_updated_and_deleted_through_the_admin_service() {
    let t = test_broker();
    let admin = admin(&t);
    let created = admin
        .create_topic(Request::new(cluster::CreateTopicRequest {
            topic: Some(topic_config("payments", 4).to_wire()),
            ..Default::default()
        }))
        .await
        .expect("created")
        .into_inner();
    assert_eq!(created.broker_names, ["broker-a"]);
    assert_eq!(t.broker.topics().get("payments").unwrap().queues, 4);

    admin
        .update_topic(Request::new(cluster::UpdateTopicRequest {
            topic: Some(topic_config("payments", 6).to_wire()),
            ..Default::default()
        }))
        .await
        .expect("updated");
    assert_eq!(t.broker.topics().get("payments").unwrap().queues, 6);

    // Deleting a topic drops its messages too.
    t.send("m-0").await;
    admin
        .delete_topic(Request::new(cluster::DeleteTopicRequest {
            topic: TOPIC.into(),
            ..Default::default()
        }))
        .await
        .expect("deleted");
    assert!(t.broker.topics().get(TOPIC).is_none());
    assert_eq!(t.broker.store().queue_bounds(TOPIC, 0).unwrap().1, 0);
}

#[tokio::test]
async fn topic_changes_are_refused_for_a_duplicate_an_unknown_or_a_system_topic() {
    let t = test_broker();
    let admin = admin(&t);
    let duplicate = admin
        .create_topic(Request::new(cluster::CreateTopicRequest {
            topic: Some(topic_config(TOPIC, 2).to_wire()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists, "{duplicate:?}");

    let unknown = admin
        .update_topic(Request::new(cluster::UpdateTopicRequest {
            topic: Some(topic_config("no-such-topic", 2).to_wire()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let missing = admin
        .create_topic(Request::new(cluster::CreateTopicRequest {
            topic: None,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");

    let system = admin
        .delete_topic(Request::new(cluster::DeleteTopicRequest {
            topic: apogee_proto::names::HALF_TOPIC.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(system.code(), Code::PermissionDenied, "{system:?}");
}

#[tokio::test]
async fn a_group_is_created_and_a_bad_one_is_refused() {
    let t = test_broker();
    let admin = admin(&t);
    let wire = |name: &str, attempts: u32| cluster::GroupConfig {
        name: name.into(),
        max_delivery_attempts: attempts,
        ..Default::default()
    };
    let created = admin
        .create_group(Request::new(cluster::CreateGroupRequest {
            group: Some(wire("billing", 5)),
        }))
        .await
        .expect("created")
        .into_inner();
    assert_eq!(created.broker_names, ["broker-a"]);
    assert_eq!(
        t.broker
            .groups()
            .get("billing")
            .unwrap()
            .max_delivery_attempts,
        5
    );

    let bad = admin
        .create_group(Request::new(cluster::CreateGroupRequest {
            group: Some(wire("auditing", u32::MAX)),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(t.broker.groups().get("auditing").is_none());
}

#[tokio::test]
async fn an_offset_reset_is_planned_then_executed_and_refused_for_an_unknown_topic() {
    let t = test_broker();
    let admin = admin(&t);
    for i in 0..3 {
        t.send(&format!("m-{i}")).await;
    }
    let reset = |execute: bool, topic: &str, to: Option<To>| cluster::ResetGroupOffsetRequest {
        group: GROUP.into(),
        topic: topic.into(),
        execute,
        to,
    };
    let plan = admin
        .reset_group_offset(Request::new(reset(false, TOPIC, Some(To::Latest(true)))))
        .await
        .expect("planned")
        .into_inner();
    assert!(!plan.executed);
    assert_eq!(
        (plan.queues[0].current_offset, plan.queues[0].new_offset),
        (0, 3)
    );
    // A plan moves nothing.
    assert_eq!(t.broker.consume().position(GROUP, TOPIC, 0, 0).committed, 0);

    let done = admin
        .reset_group_offset(Request::new(reset(true, TOPIC, Some(To::Latest(true)))))
        .await
        .expect("executed")
        .into_inner();
    assert!(done.executed);
    assert_eq!(t.broker.consume().position(GROUP, TOPIC, 0, 0).committed, 3);

    let unknown = admin
        .reset_group_offset(Request::new(reset(
            true,
            "no-such-topic",
            Some(To::Earliest(true)),
        )))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let nowhere = admin
        .reset_group_offset(Request::new(reset(true, TOPIC, None)))
        .await
        .unwrap_err();
    assert_eq!(nowhere.code(), Code::InvalidArgument, "{nowhere:?}");
}

#[tokio::test]
async fn a_runtime_setting_is_applied_and_an_unknown_key_refused() {
    let t = test_broker();
    let admin = admin(&t);
    let changed = admin
        .update_broker_config(Request::new(cluster::UpdateBrokerConfigRequest {
            key: "transaction.max_checks".into(),
            value: "7".into(),
        }))
        .await
        .expect("applied")
        .into_inner();
    assert_eq!(changed.setting.unwrap().value, "7");
    assert_eq!(t.broker.txns().max_checks(), 7);

    let unknown = admin
        .update_broker_config(Request::new(cluster::UpdateBrokerConfigRequest {
            key: "data_dir".into(),
            value: "/elsewhere".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
}

#[tokio::test]
async fn the_broker_status_shows_its_name_log_and_tables() {
    let t = Arc::new(test_broker());
    t.send("m-0").await;
    let status = admin(&t)
        .get_broker_status(Request::new(cluster::GetBrokerStatusRequest {}))
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("a status");
    assert_eq!(status.broker_name, "broker-a");
    assert_eq!(status.topic_count, 1);
    assert_eq!(status.group_count, 1);
    assert!(status.log_end_offset > 0);
    assert_eq!(
        status.log_end_offset,
        t.broker.store().log_end_offset() as i64
    );
}

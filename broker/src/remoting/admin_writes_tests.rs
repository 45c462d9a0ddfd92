//! The admin writes over the in-memory broker: what `mqadmin updateTopic`, `deleteTopic`,
//! `updateSubGroup`, `deleteSubGroup` and `resetOffsetByTime` send, what they change and
//! answer, and who is refused (a non-admin user, a slave).

use super::*;
use crate::config::Role as BrokerRole;
use crate::remoting::clients::tests::{remote, remote_with, GROUP, TOPIC};
use apogee_proto::auth::Role;
use apogee_proto::remoting::codes::{request as req, response};

/// A user signed in without the admin role.
fn plain_user() -> Caller {
    Caller {
        identity: Some(Identity::User {
            access_key: "app".into(),
            role: Role::User,
        }),
        acls: None,
    }
}

fn admin() -> Caller {
    Caller {
        identity: Some(Identity::User {
            access_key: "ops".into(),
            role: Role::Admin,
        }),
        acls: None,
    }
}

/// UPDATE_AND_CREATE_TOPIC as `mqadmin updateTopic -t <topic> -r n -w n -p perm` sends it.
fn update_topic(topic: &str, read: i32, write: i32, perm: i32) -> RemotingCommand {
    RemotingCommand::request(req::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", read)
        .with_ext("writeQueueNums", write)
        .with_ext("perm", perm)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", false)
        .with_ext("attributes", "")
}

/// The body `mqadmin updateSubGroup -g <group>` sends (fastjson, its defaults).
fn mqadmin_group_body(group: &str) -> serde_json::Value {
    serde_json::json!({
        "attributes": {}, "brokerId": 0, "consumeBroadcastEnable": false, "consumeEnable": true,
        "consumeFromMinEnable": false, "consumeMessageOrderly": false,
        "consumeTimeoutMinute": 15, "groupName": group,
        "groupRetryPolicy": {"type": "CUSTOMIZED"}, "groupSysFlag": 0,
        "notifyConsumerIdsChangedEnable": true, "retryMaxTimes": 16, "retryQueueNums": 1,
        "whichBrokerWhenConsumeSlowly": 1
    })
}

fn update_group(body: &serde_json::Value) -> RemotingCommand {
    RemotingCommand::request(req::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(body.to_string())
}

fn reset(group: &str, timestamp: i64) -> RemotingCommand {
    RemotingCommand::request(req::INVOKE_BROKER_TO_RESET_OFFSET)
        .with_ext("topic", TOPIC)
        .with_ext("group", group)
        .with_ext("timestamp", timestamp)
        .with_ext("isForce", true)
        .with_ext("offset", -1)
}

#[tokio::test]
async fn update_topic_creates_then_changes_the_topic_keeping_its_types() {
    let r = remote(1);
    let caller = admin();
    let fifo = update_topic("payments", 4, 4, 6).with_ext("attributes", "+message.type=FIFO");
    let answer = update_and_create_topic(&r.broker, &caller, &fifo);
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let made = r.broker.topics().get("payments").unwrap();
    assert_eq!(made.queues, 4);
    assert_eq!(made.permission, TopicPermission::ReadWrite);
    assert_eq!(made.kinds.iter().collect::<Vec<_>>(), [MessageKind::Fifo]);

    // No attributes: more queues, read only, still FIFO.
    let answer = update_and_create_topic(&r.broker, &caller, &update_topic("payments", 8, 8, 4));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let changed = r.broker.topics().get("payments").unwrap();
    assert_eq!(changed.queues, 8);
    assert_eq!(changed.permission, TopicPermission::Read);
    assert_eq!(
        changed.kinds.iter().collect::<Vec<_>>(),
        [MessageKind::Fifo]
    );

    let mixed = update_topic("events", 2, 2, 6).with_ext("attributes", "+message.type=MIXED");
    assert_eq!(
        update_and_create_topic(&r.broker, &caller, &mixed).code,
        response::SUCCESS
    );
    let events = r.broker.topics().get("events").unwrap();
    assert!(events.accepts(MessageKind::Delay) && events.accepts(MessageKind::Transaction));
    let plain = update_topic("plain", 8, 8, 6);
    assert_eq!(
        update_and_create_topic(&r.broker, &caller, &plain).code,
        response::SUCCESS
    );
    let plain = r.broker.topics().get("plain").unwrap();
    assert_eq!(
        plain.kinds.iter().collect::<Vec<_>>(),
        [MessageKind::Normal]
    );
}

#[tokio::test]
async fn update_topic_refuses_what_an_apogee_topic_cannot_be() {
    let r = remote(1);
    let caller = admin();
    let refused = [
        (update_topic("t1", 8, 4, 6), "differ"),
        (update_topic("t1", 4, 4, 7), "inherit"),
        (update_topic("t1", 4, 4, 6).with_ext("order", true), "order"),
        (
            update_topic("t1", 4, 4, 6).with_ext("topicSysFlag", 1),
            "unit",
        ),
        (
            update_topic("t1", 4, 4, 6).with_ext("topicFilterType", "MULTI_TAG"),
            "SINGLE_TAG",
        ),
        (
            update_topic("t1", 4, 4, 6).with_ext("attributes", "+queue.type=BatchCQ"),
            "queue.type",
        ),
        (
            update_topic("t1", 4, 4, 6).with_ext("attributes", "+message.type=BOGUS"),
            "BOGUS",
        ),
        (update_topic("t1", 0, 0, 6), "queue count"),
        (update_topic("%DLQ%readers", 1, 1, 6), "system topic"),
    ];
    for (request, why) in refused {
        let answer = update_and_create_topic(&r.broker, &caller, &request);
        assert_ne!(answer.code, response::SUCCESS, "{why}");
        let remark = answer.remark.unwrap_or_default();
        assert!(remark.contains(why), "{why}: {remark}");
    }
    assert!(r.broker.topics().get("t1").is_none());
    let no_perm = RemotingCommand::request(req::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "t1")
        .with_ext("readQueueNums", 1)
        .with_ext("writeQueueNums", 1);
    let answer = update_and_create_topic(&r.broker, &caller, &no_perm);
    assert_eq!(answer.code, response::INVALID_PARAMETER);
    assert!(answer.remark.unwrap().contains("perm"));
}

#[tokio::test]
async fn a_non_admin_user_changes_nothing() {
    let r = remote(1);
    let user = plain_user();
    let answers = [
        update_and_create_topic(&r.broker, &user, &update_topic("t1", 1, 1, 6)),
        delete_topic(
            &r.broker,
            &user,
            &RemotingCommand::request(req::DELETE_TOPIC_IN_BROKER).with_ext("topic", TOPIC),
        )
        .await,
        update_and_create_group(&r.broker, &user, &update_group(&mqadmin_group_body("g1"))),
        delete_group(
            &r.broker,
            &user,
            &RemotingCommand::request(req::DELETE_SUBSCRIPTIONGROUP).with_ext("groupName", GROUP),
        ),
        reset_offset(&r.broker, &user, &reset(GROUP, -1)),
    ];
    for answer in answers {
        assert_eq!(answer.code, response::NO_PERMISSION, "{:?}", answer.remark);
        assert!(answer.remark.unwrap().contains("admin"));
    }
    assert!(r.broker.topics().get("t1").is_none());
    assert!(r.broker.topics().get(TOPIC).is_some());
    assert!(r.broker.groups().get("g1").is_none());
}

#[tokio::test]
async fn a_slave_refuses_every_write_naming_the_master() {
    let r = remote_with(1, |c| {
        c.role = BrokerRole::Slave;
        c.broker_id = 1;
    });
    let caller = admin();
    let answers = [
        update_and_create_topic(&r.broker, &caller, &update_topic("t1", 1, 1, 6)),
        delete_topic(
            &r.broker,
            &caller,
            &RemotingCommand::request(req::DELETE_TOPIC_IN_BROKER).with_ext("topic", TOPIC),
        )
        .await,
        update_and_create_group(&r.broker, &caller, &update_group(&mqadmin_group_body("g1"))),
        delete_group(
            &r.broker,
            &caller,
            &RemotingCommand::request(req::DELETE_SUBSCRIPTIONGROUP).with_ext("groupName", GROUP),
        ),
        reset_offset(&r.broker, &caller, &reset(GROUP, -1)),
    ];
    for answer in answers {
        assert_ne!(answer.code, response::SUCCESS);
        let remark = answer.remark.unwrap();
        assert!(
            remark.contains("not the master") && remark.contains("its master"),
            "{remark}"
        );
    }
    assert!(r.broker.topics().get(TOPIC).is_some());
    assert!(r.broker.topics().get("t1").is_none());
}

#[tokio::test]
async fn delete_topic_removes_a_hosted_topic_and_takes_an_absent_one() {
    let r = remote(2);
    r.store(0, "a", 2).await;
    let caller = Caller::default();
    let delete = |topic: &str| {
        RemotingCommand::request(req::DELETE_TOPIC_IN_BROKER).with_ext("topic", topic)
    };
    let answer = delete_topic(&r.broker, &caller, &delete(TOPIC)).await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert!(r.broker.topics().get(TOPIC).is_none());
    assert_eq!(r.broker.store().queue_bounds(TOPIC, 0).unwrap().1, 0);
    let again = delete_topic(&r.broker, &caller, &delete(TOPIC)).await;
    assert_eq!(again.code, response::SUCCESS, "{:?}", again.remark);
    // A group's retry or dead-letter topic: nothing to do where it is absent (mqadmin's
    // deleteSubGroup asks), refused where the broker holds it.
    let absent = delete_topic(&r.broker, &caller, &delete("%DLQ%readers")).await;
    assert_eq!(absent.code, response::SUCCESS, "{:?}", absent.remark);
    r.broker
        .topics()
        .ensure_system_topic("%DLQ%readers", 1)
        .unwrap();
    let system = delete_topic(&r.broker, &caller, &delete("%DLQ%readers")).await;
    assert_eq!(system.code, response::NO_PERMISSION);
    assert!(r.broker.topics().get("%DLQ%readers").is_some());
    let missing = delete_topic(
        &r.broker,
        &caller,
        &RemotingCommand::request(req::DELETE_TOPIC_IN_BROKER),
    )
    .await;
    assert_eq!(missing.code, response::INVALID_PARAMETER);
}

#[tokio::test]
async fn mqadmins_group_body_becomes_a_group_with_rocketmqs_retries() {
    let r = remote(1);
    let caller = Caller::default();
    let answer =
        update_and_create_group(&r.broker, &caller, &update_group(&mqadmin_group_body("g1")));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let g = r.broker.groups().get("g1").unwrap();
    assert_eq!(
        g.max_delivery_attempts, 17,
        "16 retries after the first delivery"
    );
    assert!(!g.fifo);
    // RocketMQ's first retry waits its third step (10 s), the last (2 h) repeats.
    assert_eq!(g.retry.backoff_ms(1), 10_000);
    assert_eq!(g.retry.backoff_ms(2), 30_000);
    assert_eq!(g.retry.backoff_ms(40), 7_200_000);

    let mut orderly = mqadmin_group_body("g1");
    orderly["consumeMessageOrderly"] = true.into();
    orderly["retryMaxTimes"] = 3.into();
    orderly["groupRetryPolicy"] = serde_json::json!({
        "type": "EXPONENTIAL",
        "exponentialRetryPolicy": {"initial": 1000, "max": 60000, "multiplier": 2}
    });
    let answer = update_and_create_group(&r.broker, &caller, &update_group(&orderly));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let g = r.broker.groups().get("g1").unwrap();
    assert!(g.fifo);
    assert_eq!(g.max_delivery_attempts, 4);
    assert_eq!(
        g.retry,
        RetryPolicy::Exponential {
            initial_ms: 1000,
            max_ms: 60_000,
            multiplier: 2.0
        }
    );

    let mut custom = mqadmin_group_body("g2");
    custom["groupRetryPolicy"] = serde_json::json!({
        "type": "CUSTOMIZED", "customizedRetryPolicy": {"next": [1000, 2000, 3000, 4000]}
    });
    assert_eq!(
        update_and_create_group(&r.broker, &caller, &update_group(&custom)).code,
        response::SUCCESS
    );
    assert_eq!(
        r.broker.groups().get("g2").unwrap().retry,
        RetryPolicy::Custom(vec![3000, 4000])
    );
}

#[tokio::test]
async fn a_group_setting_apogee_cannot_honour_is_refused_by_name() {
    let r = remote(1);
    let caller = Caller::default();
    let refused = [
        ("consumeEnable", serde_json::json!(false)),
        ("retryQueueNums", serde_json::json!(2)),
        ("brokerId", serde_json::json!(1)),
        ("notifyConsumerIdsChangedEnable", serde_json::json!(false)),
        ("retryMaxTimes", serde_json::json!(-1)),
        ("attributes", serde_json::json!({"+lite.bind.topic": "x"})),
    ];
    for (field, value) in refused {
        let mut body = mqadmin_group_body("g1");
        body[field] = value;
        let answer = update_and_create_group(&r.broker, &caller, &update_group(&body));
        assert_eq!(answer.code, response::INVALID_PARAMETER, "{field}");
        let remark = answer.remark.unwrap();
        assert!(
            remark.contains(field) || remark.contains("lite.bind.topic"),
            "{field}: {remark}"
        );
    }
    let not_json =
        RemotingCommand::request(req::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body("{");
    assert_eq!(
        update_and_create_group(&r.broker, &caller, &not_json).code,
        response::INVALID_PARAMETER
    );
    assert!(r.broker.groups().get("g1").is_none());
}

#[tokio::test]
async fn delete_group_keeps_the_offsets_unless_asked_to_clean_them() {
    let r = remote(1);
    r.store(0, "a", 3).await;
    let caller = Caller::default();
    let made = update_and_create_group(
        &r.broker,
        &caller,
        &update_group(&mqadmin_group_body(GROUP)),
    );
    assert_eq!(made.code, response::SUCCESS);
    assert_eq!(
        reset_offset(&r.broker, &caller, &reset(GROUP, -1)).code,
        response::SUCCESS
    );
    let delete = |clean: bool| {
        RemotingCommand::request(req::DELETE_SUBSCRIPTIONGROUP)
            .with_ext("groupName", GROUP)
            .with_ext("cleanOffset", clean)
    };
    assert_eq!(
        delete_group(&r.broker, &caller, &delete(false)).code,
        response::SUCCESS
    );
    assert!(r.broker.groups().get(GROUP).is_none());
    assert!(
        !r.broker.consume().group_progress(GROUP).is_empty(),
        "offsets kept"
    );
    assert_eq!(
        delete_group(&r.broker, &caller, &delete(true)).code,
        response::SUCCESS
    );
    assert!(
        r.broker.consume().group_progress(GROUP).is_empty(),
        "offsets cleaned"
    );
    let answer = delete_group(&r.broker, &caller, &delete(true));
    assert_eq!(
        answer.code,
        response::SUCCESS,
        "nothing left is no error: {:?}",
        answer.remark
    );
}

#[tokio::test]
async fn reset_moves_every_queue_answers_the_offsets_and_tells_the_consumers() {
    let r = remote(2);
    r.store(0, "a", 3).await;
    r.store(1, "b", 1).await;
    let mut member = r.connect();
    r.beat(&member, "client-1", &[GROUP], "*");
    while member.pushed.try_recv().is_ok() {}
    let caller = Caller::default();

    let answer = reset_offset(&r.broker, &caller, &reset(GROUP, -1));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let expected = "{\"offsetTable\":{\
         {\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"orders\"}:3,\
         {\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"orders\"}:1}}";
    assert_eq!(std::str::from_utf8(&answer.body).unwrap(), expected);
    for queue in 0..2 {
        let at = r.broker.consume().position(GROUP, TOPIC, queue, 0);
        assert_eq!(at.committed, [3, 1][queue as usize]);
    }
    let push = member.pushed.try_recv().expect("the consumer is told");
    assert_eq!(push.code, req::RESET_CONSUMER_CLIENT_OFFSET);
    assert!(push.is_oneway());
    assert_eq!(
        (push.ext("topic"), push.ext("group")),
        (Some(TOPIC), Some(GROUP))
    );
    assert_eq!(std::str::from_utf8(&push.body).unwrap(), expected);

    // A time before every message: back to the start.
    let answer = reset_offset(&r.broker, &caller, &reset(GROUP, 0));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert_eq!(r.broker.consume().position(GROUP, TOPIC, 0, 0).committed, 0);

    let one_queue = reset(GROUP, 0).with_ext("queueId", 0).with_ext("offset", 1);
    let soft = reset(GROUP, 0).with_ext("isForce", false);
    let unknown = RemotingCommand::request(req::INVOKE_BROKER_TO_RESET_OFFSET)
        .with_ext("topic", "nowhere")
        .with_ext("group", GROUP)
        .with_ext("timestamp", 0)
        .with_ext("isForce", true);
    assert_eq!(
        reset_offset(&r.broker, &caller, &one_queue).code,
        response::INVALID_PARAMETER
    );
    assert_eq!(
        reset_offset(&r.broker, &caller, &soft).code,
        response::INVALID_PARAMETER
    );
    assert_eq!(
        reset_offset(&r.broker, &caller, &unknown).code,
        response::TOPIC_NOT_EXIST
    );
}

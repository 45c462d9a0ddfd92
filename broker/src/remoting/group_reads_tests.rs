//! Unit tests of the consumer-group reads of RocketMQ's tools over a broker on the in-memory
//! index: the bodies `mqadmin` parses, for remoting pull, POP and gRPC consumers, and the
//! refusals of callers that may not read them.

use super::*;
use crate::remoting::clients::tests::{remote, Remote, GROUP, TOPIC};
use crate::remoting::pop::{ack_message, pop_message, POP_CK};
use apogee_proto::auth::acl::AclSet;
use apogee_proto::auth::{Identity, Role};
use apogee_proto::cluster::{AclEntry, AclResourceKind};
use apogee_proto::remoting::codes::request as code;
use apogee_proto::remoting::message::MessageExt;
use apogee_proto::v2;

fn stats_request(group: &str) -> RemotingCommand {
    RemotingCommand::request(code::GET_CONSUME_STATS).with_ext("consumerGroup", group)
}

fn connections_request(group: &str) -> RemotingCommand {
    RemotingCommand::request(code::GET_CONSUMER_CONNECTION_LIST).with_ext("consumerGroup", group)
}

fn text(answer: &RemotingCommand) -> String {
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// A caller signed as user `reader`, allowed to consume what `entries` name.
fn reader(entries: &[(AclResourceKind, &str)]) -> Caller {
    let entries: Vec<AclEntry> = entries
        .iter()
        .map(|&(kind, pattern)| AclEntry {
            access_key: "reader".into(),
            kind: kind as i32,
            pattern: pattern.into(),
            subscribe: true,
            ..AclEntry::default()
        })
        .collect();
    Caller {
        identity: Some(Identity::User {
            access_key: "reader".into(),
            role: Role::User,
        }),
        acls: Some(Arc::new(AclSet::of(&entries))),
    }
}

/// `(queue id, broker offset, consumer offset, pull offset, last timestamp)` of `TOPIC`.
fn queues_of(r: &Remote, group: &str) -> Vec<(u32, u64, u64, u64, i64)> {
    r.broker
        .consume_stats(group, &[])
        .unwrap()
        .queues
        .into_iter()
        .filter(|q| q.topic == TOPIC)
        .map(|q| {
            (
                q.queue_id,
                q.broker_offset,
                q.consumer_offset,
                q.pull_offset,
                q.last_timestamp_ms,
            )
        })
        .collect()
}

#[test]
fn consume_stats_are_written_as_rocketmqs_consume_stats_keyed_by_message_queues() {
    let stats = GroupConsumeStats {
        queues: vec![crate::actions::admin::QueueConsumeStats {
            topic: "orders".into(),
            queue_id: 1,
            broker_offset: 10,
            consumer_offset: 4,
            pull_offset: 6,
            last_timestamp_ms: 1_795_000_000_000,
        }],
        consume_tps: 2.5,
    };
    assert_eq!(
        consume_stats_body("broker-a", &stats),
        "{\"consumeTps\":2.5,\"offsetTable\":{\
         {\"brokerName\":\"broker-a\",\"queueId\":1,\"topic\":\"orders\"}:\
         {\"brokerOffset\":10,\"consumerOffset\":4,\"lastTimestamp\":1795000000000,\"pullOffset\":6}}}"
    );
    let none = GroupConsumeStats {
        queues: Vec::new(),
        consume_tps: 0.0,
    };
    assert_eq!(
        consume_stats_body("b", &none),
        "{\"consumeTps\":0.0,\"offsetTable\":{}}"
    );
}

#[tokio::test]
async fn a_remoting_consumers_progress_is_its_committed_offset_never_minus_one() {
    let r = remote(2);
    let c = r.connect();
    r.beat(&c, "c1", &[GROUP], "*");
    r.store(0, "a", 5).await;
    r.store(1, "b", 3).await;
    // Subscribed, nothing committed: where it starts, never -1, no last time.
    assert_eq!(queues_of(&r, GROUP), vec![(0, 5, 0, 0, 0), (1, 3, 0, 0, 0)]);
    crate::consume::offsets::commit_offset(r.broker.store(), GROUP, TOPIC, 0, 2).unwrap();
    let queues = queues_of(&r, GROUP);
    let (_, broker_offset, consumer_offset, pull_offset, last) = queues[0];
    assert_eq!((broker_offset, consumer_offset, pull_offset), (5, 2, 2));
    // The store time of the last message it acknowledged (offset 1), as RocketMQ shows it.
    let stored = r.broker.store().queue_entries(TOPIC, 0, 1, 1).unwrap()[0].store_timestamp_ms;
    assert!(stored > 0);
    assert_eq!(last, stored);

    let answer = consume_stats(&r.broker, &Caller::default(), &stats_request(GROUP));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let body = text(&answer);
    assert!(
        body.contains(&format!(
            "{{\"brokerName\":\"broker-a\",\"queueId\":0,\"topic\":\"orders\"}}:\
             {{\"brokerOffset\":5,\"consumerOffset\":2,\"lastTimestamp\":{stored},\"pullOffset\":2}}"
        )),
        "{body}"
    );
    // A topic named: only its queues; an unknown group: an empty table, as RocketMQ's.
    let other = consume_stats(
        &r.broker,
        &Caller::default(),
        &stats_request(GROUP).with_ext("topic", "elsewhere"),
    );
    assert_eq!(other.code, response::SUCCESS);
    assert!(text(&other).ends_with("\"offsetTable\":{}}"));
    let unknown = consume_stats(&r.broker, &Caller::default(), &stats_request("nobody"));
    assert_eq!(unknown.code, response::SUCCESS);
    assert!(text(&unknown).ends_with("\"offsetTable\":{}}"));
    let missing = consume_stats(
        &r.broker,
        &Caller::default(),
        &RemotingCommand::request(code::GET_CONSUME_STATS),
    );
    assert_eq!(missing.code, response::INVALID_PARAMETER);
}

#[tokio::test]
async fn a_pop_consumers_progress_shows_what_it_acked_holds_and_its_rate() {
    let r = remote(1);
    r.store(0, "a", 4).await;
    let pop = RemotingCommand::request(code::POP_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", 0)
        .with_ext("maxMsgNums", 3)
        .with_ext("invisibleTime", 60_000)
        .with_ext("pollTime", 0)
        .with_ext("bornTime", now_ms())
        .with_ext("initMode", 0)
        .with_ext("expType", "TAG")
        .with_ext("exp", "*")
        .with_ext("order", false);
    let c = r.connect();
    let popped = pop_message(&r.broker, &c.conn, &Caller::default(), &pop).await;
    assert_eq!(popped.code, response::SUCCESS, "{:?}", popped.remark);
    let found = MessageExt::decode_all(popped.body.clone()).unwrap();
    assert_eq!(found.len(), 3);
    let first = &found[0];
    let ack = RemotingCommand::request(code::ACK_MESSAGE)
        .with_ext("consumerGroup", GROUP)
        .with_ext("topic", TOPIC)
        .with_ext("queueId", first.queue_id)
        .with_ext("extraInfo", first.properties[POP_CK].clone())
        .with_ext("offset", first.queue_offset);
    assert_eq!(
        ack_message(&r.broker, &Caller::default(), &ack).code,
        response::SUCCESS
    );
    let stats = r.broker.consume_stats(GROUP, &[]).unwrap();
    let q = stats.queues.iter().find(|q| q.topic == TOPIC).unwrap();
    // One acked, two in flight: the tool prints inflight = pull - consumer = 2.
    assert_eq!(
        (q.broker_offset, q.consumer_offset, q.pull_offset),
        (4, 1, 3)
    );
    assert!(q.last_timestamp_ms > 0, "the last consume time is known");
    assert!(stats.consume_tps > 0.0, "3 messages out within the minute");
}

#[tokio::test]
async fn a_groups_remoting_members_are_its_connections_with_their_subscriptions() {
    let r = remote(1);
    let (a, b) = (r.connect(), r.connect());
    r.beat(&a, "c1", &[GROUP], "x || y");
    r.beat(&b, "c2", &[GROUP], "x || y");
    let answer = consumer_connections(&r.broker, &Caller::default(), &connections_request(GROUP));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    let set = v["connectionSet"].as_array().unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set[0]["clientId"], "c1");
    assert_eq!(set[0]["language"], "JAVA");
    assert_eq!(set[0]["version"], 399);
    assert!(set[0]["clientAddr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(v["consumeType"], "CONSUME_PASSIVELY");
    assert_eq!(v["messageModel"], "CLUSTERING");
    assert_eq!(v["consumeFromWhere"], "CONSUME_FROM_FIRST_OFFSET");
    assert_eq!(v["subscriptionTable"][TOPIC]["subString"], "x || y");
    assert_eq!(v["subscriptionTable"][TOPIC]["subVersion"], 7);

    let nobody = consumer_connections(&r.broker, &Caller::default(), &connections_request("idle"));
    assert_eq!(nobody.code, response::CONSUMER_NOT_ONLINE);
    assert!(nobody.remark.unwrap().contains("idle"));
}

#[tokio::test]
async fn a_grpc_consumer_is_a_connection_with_its_filter_language_and_version() {
    let r = remote(1);
    let settings = v2::Settings {
        client_type: Some(v2::ClientType::PushConsumer as i32),
        user_agent: Some(v2::Ua {
            language: v2::Language::Golang as i32,
            version: "5.0.7".into(),
            ..Default::default()
        }),
        pub_sub: Some(v2::settings::PubSub::Subscription(v2::Subscription {
            group: Some(v2::Resource {
                name: GROUP.into(),
                ..Default::default()
            }),
            subscriptions: vec![v2::SubscriptionEntry {
                topic: Some(v2::Resource {
                    name: TOPIC.into(),
                    ..Default::default()
                }),
                expression: Some(v2::FilterExpression {
                    r#type: v2::FilterType::Tag as i32,
                    expression: "TagA || TagB".into(),
                }),
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let sessions = r.broker.sessions();
    sessions
        .update(
            sessions.next_serial(),
            &settings,
            "go-1",
            "10.0.0.7:5000",
            &tx,
        )
        .unwrap();
    let answer = consumer_connections(&r.broker, &Caller::default(), &connections_request(GROUP));
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        v["connectionSet"],
        json!([{"clientAddr": "10.0.0.7:5000", "clientId": "go-1", "language": "GO", "version": 427}])
    );
    assert_eq!(v["consumeType"], "CONSUME_PASSIVELY");
    assert_eq!(v["messageModel"], "CLUSTERING");
    let sub = &v["subscriptionTable"][TOPIC];
    assert_eq!(sub["subString"], "TagA || TagB");
    assert_eq!(sub["expressionType"], "TAG");
    assert_eq!(sub["tagsSet"], json!(["TagA", "TagB"]));
    assert_eq!(
        sub["codeSet"],
        json!([java_string_hash("TagA"), java_string_hash("TagB")])
    );
}

#[test]
fn versions_and_tag_codes_are_rocketmqs() {
    assert_eq!(rocketmq_version(&ClientVersion::Sdk("5.0.7".into())), 427);
    // RocketMQ 5.3.3's own number (its MQVersion.CURRENT_VERSION).
    assert_eq!(rocketmq_version(&ClientVersion::Sdk("5.3.3".into())), 479);
    assert_eq!(
        rocketmq_version(&ClientVersion::Sdk("".into())),
        ROCKETMQ_V5_0_0
    );
    assert_eq!(rocketmq_version(&ClientVersion::Remoting(399)), 399);
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("a"), 97);
    assert_eq!(java_string_hash("TagA"), 2_598_919);
}

#[tokio::test]
async fn group_and_topic_reads_need_their_resources_and_whole_tables_an_admin() {
    let r = remote(1);
    let c = r.connect();
    r.beat(&c, "c1", &[GROUP], "*");
    let topic_only = reader(&[(AclResourceKind::Topic, TOPIC)]);
    for answer in [
        consume_stats(&r.broker, &topic_only, &stats_request(GROUP)),
        consumer_connections(&r.broker, &topic_only, &connections_request(GROUP)),
        consume_stats(
            &r.broker,
            &reader(&[(AclResourceKind::Group, GROUP)]),
            &stats_request(GROUP).with_ext("topic", TOPIC),
        ),
    ] {
        assert_eq!(answer.code, response::NO_PERMISSION, "{:?}", answer.remark);
    }
    let both = reader(&[
        (AclResourceKind::Topic, TOPIC),
        (AclResourceKind::Group, GROUP),
    ]);
    let allowed = consume_stats(
        &r.broker,
        &both,
        &stats_request(GROUP).with_ext("topic", TOPIC),
    );
    assert_eq!(allowed.code, response::SUCCESS);

    for read in [
        code::GET_ALL_CONSUMER_OFFSET,
        code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        code::GET_ALL_TOPIC_CONFIG,
    ] {
        let request = RemotingCommand::request(read);
        let answer = match read {
            code::GET_ALL_CONSUMER_OFFSET => all_consumer_offsets(&r.broker, &both, &request),
            code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
                all_subscription_groups(&r.broker, &both, &request).await
            }
            _ => all_topic_configs(&r.broker, &both, &request),
        };
        assert_eq!(answer.code, response::NO_PERMISSION, "code {read}");
    }
}

#[tokio::test]
async fn the_whole_tables_are_rocketmqs_offset_group_and_topic_files() {
    let r = remote(2);
    let c = r.connect();
    r.beat(&c, "c1", &[GROUP], "*");
    r.store(0, "a", 5).await;
    r.store(1, "b", 3).await;
    crate::consume::offsets::commit_offset(r.broker.store(), GROUP, TOPIC, 0, 2).unwrap();
    crate::consume::offsets::commit_offset(r.broker.store(), GROUP, TOPIC, 1, 3).unwrap();
    let admin = Caller::default();

    let offsets = all_consumer_offsets(
        &r.broker,
        &admin,
        &RemotingCommand::request(code::GET_ALL_CONSUMER_OFFSET),
    );
    assert_eq!(offsets.code, response::SUCCESS);
    let body = text(&offsets);
    assert!(
        body.starts_with("{\"dataVersion\":{\"counter\":0,"),
        "{body}"
    );
    assert!(
        body.ends_with(",\"offsetTable\":{\"orders@readers\":{0:2,1:3}}}"),
        "{body}"
    );

    let mut fifo = apogee_proto::group::GroupConfig::with_defaults("billing");
    fifo.fifo = true;
    fifo.max_delivery_attempts = 5;
    fifo.retry = RetryPolicy::Exponential {
        initial_ms: 1000,
        max_ms: 60_000,
        multiplier: 2.0,
    };
    r.broker.create_group(fifo, "test").unwrap();
    let groups = all_subscription_groups(
        &r.broker,
        &admin,
        &RemotingCommand::request(code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
    )
    .await;
    assert_eq!(groups.code, response::SUCCESS);
    let v: Value = serde_json::from_slice(&groups.body).unwrap();
    let billing = &v["subscriptionGroupTable"]["billing"];
    assert_eq!(billing["groupName"], "billing");
    assert_eq!(billing["consumeMessageOrderly"], true);
    assert_eq!(billing["retryMaxTimes"], 4);
    assert_eq!(
        billing["groupRetryPolicy"],
        json!({"exponentialRetryPolicy": {"initial": 1000, "max": 60000, "multiplier": 2},
               "type": "EXPONENTIAL"})
    );
    // The heartbeat created the remoting group with the defaults: 16 deliveries, 15 retries.
    assert_eq!(v["subscriptionGroupTable"][GROUP]["retryMaxTimes"], 15);
    assert_eq!(v["forbiddenTable"], json!({}));

    let topics = all_topic_configs(
        &r.broker,
        &admin,
        &RemotingCommand::request(code::GET_ALL_TOPIC_CONFIG),
    );
    assert_eq!(topics.code, response::SUCCESS);
    let v: Value = serde_json::from_slice(&topics.body).unwrap();
    let orders = &v["topicConfigTable"][TOPIC];
    assert_eq!(orders["readQueueNums"], 2);
    assert_eq!(orders["perm"], 6);
    // The group's retry topic, as RocketMQ's broker lists it.
    assert_eq!(v["topicConfigTable"]["%RETRY%readers"]["readQueueNums"], 1);
    assert_eq!(
        v["dataVersion"]["counter"],
        r.broker.topics().data_version()
    );
    assert_eq!(v["topicQueueMappingDetailMap"], json!({}));
}

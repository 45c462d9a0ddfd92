use super::*;

/// A RocketMQ 4.9 broker's topics.json, in substance: its own topics beside two of the user's.
const TOPICS: &str = r#"{
  "dataVersion": {"counter": 7, "timestamp": 1700000000000},
  "topicConfigTable": {
    "TBW102": {"topicName": "TBW102", "readQueueNums": 8, "writeQueueNums": 8, "perm": 7,
               "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": false},
    "SCHEDULE_TOPIC_XXXX": {"topicName": "SCHEDULE_TOPIC_XXXX", "readQueueNums": 18,
               "writeQueueNums": 18, "perm": 6, "topicSysFlag": 0, "order": false},
    "DefaultCluster": {"topicName": "DefaultCluster", "readQueueNums": 16, "writeQueueNums": 16,
               "perm": 7, "topicSysFlag": 0, "order": false},
    "%RETRY%orders-cg": {"topicName": "%RETRY%orders-cg", "readQueueNums": 1,
               "writeQueueNums": 1, "perm": 6, "topicSysFlag": 0, "order": false},
    "orders": {"topicName": "orders", "readQueueNums": 8, "writeQueueNums": 8, "perm": 6,
               "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": false},
    "audit": {"topicName": "audit", "readQueueNums": 4, "writeQueueNums": 2, "perm": 4,
               "topicSysFlag": 0, "order": false},
    "fifo-5": {"topicName": "fifo-5", "readQueueNums": 2, "writeQueueNums": 2, "perm": 6,
               "attributes": {"message.type": "FIFO"}}
  }
}"#;

const GROUPS: &str = r#"{
  "subscriptionGroupTable": {
    "TOOLS_CONSUMER": {"groupName": "TOOLS_CONSUMER", "consumeEnable": true,
                       "retryMaxTimes": 16},
    "orders-cg": {"groupName": "orders-cg", "consumeEnable": true,
                  "consumeMessageOrderly": false, "retryQueueNums": 1, "retryMaxTimes": 3},
    "ledger-cg": {"groupName": "ledger-cg", "consumeEnable": false,
                  "consumeMessageOrderly": true, "retryMaxTimes": 16,
                  "groupRetryPolicy": {"type": "EXPONENTIAL",
                     "exponentialRetryPolicy": {"initial": 500, "max": 60000, "multiplier": 3}}}
  },
  "forbiddenTable": {},
  "dataVersion": {"counter": 2, "timestamp": 1700000000000}
}"#;

/// fastjson writes integer map keys without quotes.
const OFFSETS: &str = r#"{"offsetTable":{"orders@orders-cg":{0:120,1:98,2:-1},
"%RETRY%orders-cg@orders-cg":{0:3},"audit@audit-cg":{0:7}}}"#;

const ACL: &str = "\
accounts:
  - accessKey: app
    secretKey: app-secret-1
    whiteRemoteAddress: 10.0.0.*
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - orders=PUB|SUB
  - accessKey: ops
    secretKey: ops-secret-2
    admin: true
";

fn files(entries: &[(&str, &str)]) -> Files {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn topics(plan: &Plan) -> Vec<&TopicStep> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::CreateTopic(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn rocketmqs_json_with_integer_keys_is_read() {
    assert!(parse_json("consumerOffset.json", OFFSETS).is_ok());
}

#[test]
fn user_topics_are_planned_and_rocketmqs_own_skipped() {
    let plan = plan(&files(&[("topics.json", TOPICS)])).unwrap();
    let planned: Vec<(&str, i32, &str, &str)> = topics(&plan)
        .iter()
        .map(|t| (t.name.as_str(), t.queues, t.permission, t.message_type))
        .collect();
    assert_eq!(
        planned,
        vec![
            ("audit", 4, "r", "mixed"),
            ("fifo-5", 2, "rw", "fifo"),
            ("orders", 8, "rw", "mixed"),
        ]
    );
    let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        skipped,
        vec![
            "%RETRY%orders-cg",
            "DefaultCluster",
            "SCHEDULE_TOPIC_XXXX",
            "TBW102"
        ]
    );
    assert!(
        plan.skipped[1].reason.contains("template"),
        "{:?}",
        plan.skipped
    );
}

#[test]
fn groups_keep_their_retries_and_order() {
    let plan = plan(&files(&[("subscriptionGroup.json", GROUPS)])).unwrap();
    let groups: Vec<&cluster::GroupConfig> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::CreateGroup { config, .. } => Some(config),
            _ => None,
        })
        .collect();
    assert_eq!(groups.len(), 2);
    let ledger = groups.iter().find(|g| g.name == "ledger-cg").unwrap();
    assert!(ledger.fifo);
    assert_eq!(ledger.max_delivery_attempts, 17);
    let ledger_retry = GroupConfig::try_from(*ledger).unwrap().retry;
    assert_eq!(
        ledger_retry,
        RetryPolicy::Exponential {
            initial_ms: 500,
            max_ms: 60_000,
            multiplier: 3.0
        }
    );
    let orders = groups.iter().find(|g| g.name == "orders-cg").unwrap();
    assert!(!orders.fifo);
    assert_eq!(orders.max_delivery_attempts, 4);
    // RocketMQ 4's retries of a push consumer: 10 s first, 16 steps to 2 h.
    match GroupConfig::try_from(*orders).unwrap().retry {
        RetryPolicy::Custom(steps) => {
            assert_eq!(steps.len(), 16);
            assert_eq!((steps[0], steps[15]), (10_000, 7_200_000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(plan.skipped[0].name, "TOOLS_CONSUMER");
    assert!(plan.notes.iter().any(|n| n.contains("ledger-cg")));
}

#[test]
fn consumed_topics_position_their_groups_after_the_groups_exist() {
    let plan = plan(&files(&[
        ("consumerOffset.json", OFFSETS),
        ("subscriptionGroup.json", GROUPS),
    ]))
    .unwrap();
    let order: Vec<String> = plan
        .steps
        .iter()
        .map(|s| format!("{} {}", s.action(), s.subject()))
        .collect();
    assert_eq!(
        order,
        vec![
            "create group ledger-cg",
            "create group orders-cg",
            "create group audit-cg",
            "position group audit-cg on audit",
            "position group orders-cg on orders",
        ]
    );
    let orders = plan.steps.iter().find_map(|s| match s {
        Step::PositionGroup {
            topic,
            rocketmq_offsets,
            ..
        } if topic == "orders" => Some(rocketmq_offsets),
        _ => None,
    });
    assert_eq!(orders.unwrap().get(&1), Some(&98));
    assert!(plan.steps[4]
        .detail()
        .contains("218 messages over 3 queues"));
    assert!(plan
        .skipped
        .iter()
        .any(|k| k.name == "%RETRY%orders-cg@orders-cg" && k.file == "consumerOffset.json"));
}

#[test]
fn accounts_become_users_with_their_secrets_and_entries() {
    let plan = plan(&files(&[("plain_acl.yml", ACL)])).unwrap();
    let shown: Vec<String> = plan
        .steps
        .iter()
        .map(|s| format!("{} {}: {}", s.action(), s.subject(), s.detail()))
        .collect();
    assert_eq!(
        shown,
        vec![
            "create user app: role user, RocketMQ's secret key",
            "create user ops: role admin, RocketMQ's secret key",
            "grant app: allow pub,sub on topic orders",
            "grant app: allow sub on group *",
        ]
    );
    match &plan.steps[0] {
        Step::CreateUser { secret, .. } => assert_eq!(secret.0, "app-secret-1"),
        other => panic!("{other:?}"),
    }
    // Never in what is printed.
    let printed = render(&files(&[("plain_acl.yml", ACL)]), &plan, None);
    let json = serde_json::to_string(&plan).unwrap();
    for text in [&printed, &json, &format!("{plan:?}")] {
        assert!(!text.contains("app-secret-1"), "{text}");
    }
    assert!(plan.notes.iter().any(|n| n.contains("whiteRemoteAddress")));
}

#[test]
fn a_broken_file_is_named() {
    let err = plan(&files(&[("topics.json", "{\"topicConfigTable\": [")])).unwrap_err();
    assert_eq!(err.file, "topics.json");
    let err = plan(&files(&[(
        "consumerOffset.json",
        r#"{"offsetTable":{"x":{}}}"#,
    )]))
    .unwrap_err();
    assert!(err.message.contains("topic@group"), "{err}");
}

#[test]
fn the_directory_must_hold_one_of_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("topics.json"), "{err}");
    std::fs::write(dir.path().join("topics.json"), TOPICS).unwrap();
    let read = read_dir(dir.path()).unwrap();
    assert_eq!(read.keys().collect::<Vec<_>>(), vec!["topics.json"]);
}

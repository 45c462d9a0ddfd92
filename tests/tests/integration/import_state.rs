//! `apogee config import-state` against a running cluster with authentication: the plan of a
//! RocketMQ broker's config/ directory changes nothing; `--apply` creates its topics (queue
//! count, permission, type), groups (retries, order), users (with their RocketMQ secret keys:
//! an imported account signs at once) and ACL entries, and positions groups that had
//! consumed a topic at the topic's end; a second `--apply` finds everything there and fails
//! nothing; the RocketMQ files are left as they were.

use apogee_proto::auth::Credentials;
use apogee_tests::access::cli_as;
use apogee_tests::{BrokerSpec, Cluster};
use serde_json::Value;

const TOPICS: &str = r#"{"topicConfigTable":{
 "TBW102":{"topicName":"TBW102","readQueueNums":8,"writeQueueNums":8,"perm":7},
 "imp-orders":{"topicName":"imp-orders","readQueueNums":3,"writeQueueNums":3,"perm":6},
 "imp-audit":{"topicName":"imp-audit","readQueueNums":2,"writeQueueNums":2,"perm":4},
 "imp-other":{"topicName":"imp-other","readQueueNums":1,"writeQueueNums":1,"perm":6}}}"#;

const GROUPS: &str = r#"{"subscriptionGroupTable":{
 "imp-cg":{"groupName":"imp-cg","consumeMessageOrderly":true,"retryMaxTimes":4}}}"#;

const OFFSETS: &str = r#"{"offsetTable":{"imp-orders@imp-cg":{0:10,1:20,2:30}}}"#;

const ACL: &str = "\
accounts:
  - accessKey: imp-app
    secretKey: imp-app-secret-9
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - imp-orders=PUB|SUB
";

fn topic_names(cluster: &Cluster) -> Vec<String> {
    let listed = cluster
        .cli(&["-o", "json", "topic", "list"])
        .success()
        .json();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rocketmq_brokers_state_is_planned_then_applied() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let dir = cluster.dir().join("rocketmq-config");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("topics.json", TOPICS),
        ("subscriptionGroup.json", GROUPS),
        ("consumerOffset.json", OFFSETS),
        ("plain_acl.yml", ACL),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let dir_arg = dir.display().to_string();

    // The plan: every step, nothing changed, no secret printed.
    let plan = cluster.cli(&["config", "import-state", &dir_arg]).success();
    for line in [
        "create topic",
        "imp-orders",
        "3 queues, perm rw, type mixed",
        "create group",
        "position group",
        "create user",
        "TBW102",
        "nothing changed",
    ] {
        assert!(plan.stdout.contains(line), "{line}:\n{plan}");
    }
    assert!(!plan.stdout.contains("imp-app-secret-9"), "{plan}");
    assert!(!topic_names(&cluster).contains(&"imp-orders".to_string()));

    // Applied: every step done.
    let applied = cluster
        .cli(&["-o", "json", "config", "import-state", &dir_arg, "--apply"])
        .success()
        .json();
    let results: Vec<&Value> = applied["applied"].as_array().unwrap().iter().collect();
    assert_eq!(results.len(), 8, "{applied:#}");
    for r in &results {
        assert_eq!(r["result"], "done", "{applied:#}");
    }
    let topics = cluster
        .cli(&["-o", "json", "topic", "list"])
        .success()
        .json();
    let find = |name: &str| -> Value {
        topics
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {topics:#}"))
    };
    assert_eq!(find("imp-orders")["queues"], 3, "{topics:#}");
    assert_eq!(find("imp-audit")["perm"], "r", "{topics:#}");
    assert_eq!(find("imp-orders")["perm"], "rw", "{topics:#}");
    let groups = cluster
        .cli(&["-o", "json", "group", "list"])
        .success()
        .json();
    let group = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "imp-cg")
        .cloned()
        .unwrap_or_else(|| panic!("{groups:#}"));
    assert_eq!(group["max_delivery_attempts"], 5, "{group:#}");
    assert_eq!(group["fifo"], true, "{group:#}");

    // The imported account signs with its RocketMQ secret and has its entries.
    let app = Credentials::new("imp-app", "imp-app-secret-9").unwrap();
    let sent = cli_as(
        cluster.ns_addr(),
        &app,
        &["send", "--topic", "imp-orders", "--body", "hello"],
    );
    assert_eq!(sent.code, 0, "{sent}");
    let refused = cli_as(
        cluster.ns_addr(),
        &app,
        &["send", "--topic", "imp-other", "--body", "no"],
    );
    assert_ne!(refused.code, 0, "{refused}");
    assert!(refused.stderr.contains("may not"), "{refused}");

    // Again: everything exists, nothing fails.
    let again = cluster
        .cli(&["-o", "json", "config", "import-state", &dir_arg, "--apply"])
        .success()
        .json();
    for r in again["applied"].as_array().unwrap() {
        assert!(
            r["result"] == "exists" || r["result"] == "done",
            "{again:#}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("topics.json")).unwrap(),
        TOPICS
    );
}

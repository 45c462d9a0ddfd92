//! RocketMQ's own admin tool, unchanged, against Apogee: `mqadmin` (rocketmq-tools'
//! `MQAdminStartup`, from the Maven project `tests/mqadmin`) run as an operator runs it, one
//! JVM a command, with `-n` naming an Apogee NameServer. Each command's output, or its effect,
//! is checked against what Apogee itself says (`apogee ... -o json`): the cluster's brokers,
//! one's runtime figures and config, the topics it lists, a topic's route and queue offsets, messages found by key and by id; a topic and a group made,
//! a group's progress, its offsets moved back, both deleted.
//!
//! Without java and mvn the tests print SKIPPED, except under CI (`CI=true`), where they fail.

use super::java_tools::{self, java_usable, tail};
use apogee_tests::{BrokerSpec, Cluster};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The class mqadmin's script runs.
const MQADMIN_MAIN: &str = "org.apache.rocketmq.tools.command.MQAdminStartup";

/// Runs `mqadmin ARGS -n <the cluster's NameServer>` and returns what it printed; fails
/// unless it exited with success.
pub async fn mqadmin(cluster: &Cluster, args: &[&str]) -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let lib = java_tools::built(&BUILT, "mqadmin").await.join("lib");
    let run = tokio::process::Command::new("java")
        .args(["-Xms64m", "-Xmx256m"])
        // Its client logs under the home directory (~/logs): the cluster's directory.
        .arg(format!("-Duser.home={}", cluster.dir().display()))
        .arg("-cp")
        .arg(lib.join("*"))
        .arg(MQADMIN_MAIN)
        .args(args)
        .args(["-n", cluster.ns_addr()])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("mqadmin {args:?} ran for a minute"))
        .expect("running java");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !stdout.contains("Exception"),
        "mqadmin {args:?}: {}\n{stdout}\nstderr (end):\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    stdout
}

/// The rows of mqadmin's table output whose first column is `first`, split on whitespace.
fn rows<'a>(out: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.first() == Some(&first))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_reads_topics_routes_and_messages() {
    if !java_usable("RocketMQ's mqadmin") {
        return;
    }
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic("ops-t", 2).await;
    for i in 0..5 {
        cluster
            .cli(&[
                "send",
                "--topic",
                "ops-t",
                "--key",
                &format!("k{i}"),
                "--body",
                "hello",
            ])
            .success();
    }

    // The broker in the cluster's list, active; its runtime figures and config read.
    let addr = cluster.broker_addr("broker-a").to_string();
    let listed = mqadmin(&cluster, &["clusterList"]).await;
    let row = rows(&listed, "DefaultCluster");
    assert!(
        row.len() == 1 && row[0][1] == "broker-a" && row[0].contains(&addr.as_str()),
        "{listed}"
    );
    assert_eq!(row[0].last(), Some(&"true"), "{listed}");
    let status: String = mqadmin(&cluster, &["brokerStatus", "-b", &addr])
        .await
        .split_whitespace()
        .collect();
    assert!(
        status.contains("brokerActive:true") && status.contains("msgPutTotalTodayNow:"),
        "{status}"
    );
    let config: String = mqadmin(&cluster, &["getBrokerConfig", "-b", &addr])
        .await
        .split_whitespace()
        .collect();
    assert!(config.contains("brokerName=broker-a"), "{config}");

    let topics = mqadmin(&cluster, &["topicList"]).await;
    assert!(topics.lines().any(|l| l.trim() == "ops-t"), "{topics}");

    // fastjson, with number keys (brokerAddrs' broker ids) no JSON parser takes.
    let route = mqadmin(&cluster, &["topicRoute", "-t", "ops-t"]).await;
    let compact: String = route.split_whitespace().collect();
    let addr = format!("\"{}\"", cluster.broker_addr("broker-a"));
    for part in [
        "\"brokerName\":\"broker-a\"",
        "\"readQueueNums\":2",
        addr.as_str(),
    ] {
        assert!(compact.contains(part), "{part} in {route}");
    }

    // Each queue's offsets as `apogee topic status` gives them.
    let status = mqadmin(&cluster, &["topicStatus", "-t", "ops-t"]).await;
    let described = cluster.cli_json(&["topic", "status", "ops-t"]);
    let queues = described.as_array().expect("queues");
    let listed = rows(&status, "broker-a");
    assert_eq!(listed.len(), queues.len(), "{status}\n{described}");
    let mut total = 0;
    for q in queues {
        let id = q["queue"].to_string();
        let row = listed
            .iter()
            .find(|r| r[1] == id)
            .unwrap_or_else(|| panic!("queue {id} in {status}"));
        assert_eq!(row[3], q["max_offset"].to_string(), "{status}\n{described}");
        total += row[3].parse::<u64>().unwrap() - row[2].parse::<u64>().unwrap();
    }
    assert_eq!(total, 5, "{status}");

    // A message by key, then by the id that lookup gave.
    let by_key = mqadmin(&cluster, &["queryMsgByKey", "-t", "ops-t", "-k", "k3"]).await;
    let found: Vec<&str> = by_key
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() >= 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert_eq!(found.len(), 1, "{by_key}");
    let by_id = mqadmin(&cluster, &["queryMsgById", "-t", "ops-t", "-i", found[0]]).await;
    assert!(by_id.contains("k3"), "{by_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_makes_topics_and_groups_reads_progress_moves_offsets_and_deletes() {
    if !java_usable("RocketMQ's mqadmin") {
        return;
    }
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let cluster_name = "DefaultCluster";
    mqadmin(
        &cluster,
        &[
            "updateTopic",
            "-c",
            cluster_name,
            "-t",
            "adm-t",
            "-r",
            "2",
            "-w",
            "2",
        ],
    )
    .await;
    let topic = cluster.cli_json(&["topic", "status", "adm-t"]);
    assert_eq!(topic.as_array().map(Vec::len), Some(2), "{topic}");
    mqadmin(
        &cluster,
        &[
            "updateSubGroup",
            "-c",
            cluster_name,
            "-g",
            "adm-g",
            "-r",
            "3",
        ],
    )
    .await;
    let group = cluster.cli_json(&["group", "describe", "adm-g"]);
    // Three retries: four deliveries.
    assert_eq!(group["max_delivery_attempts"], 4, "{group}");

    cluster
        .cli(&["send", "--topic", "adm-t", "--count", "5", "--body", "m"])
        .success();
    let got = cluster.cli_json(&[
        "consume", "--topic", "adm-t", "--group", "adm-g", "--max", "2", "--wait", "5s",
    ]);
    assert_eq!(got.as_array().map(Vec::len), Some(2), "{got}");

    // The group's progress as `apogee group describe` counts it: 3 of 5 left.
    let lag = |cluster: &Cluster| cluster.cli_json(&["group", "describe", "adm-g"])["lag"].clone();
    assert_eq!(lag(&cluster), 3);
    let progress = mqadmin(&cluster, &["consumerProgress", "-g", "adm-g"]).await;
    let queues = rows(&progress, "adm-t");
    assert_eq!(queues.len(), 2, "{progress}");
    for q in &queues {
        assert_eq!(q[1], "broker-a", "{progress}");
        let (broker, consumer, diff) = (q[3], q[4], q[5]);
        let (broker, consumer): (u64, u64) = (broker.parse().unwrap(), consumer.parse().unwrap());
        assert_eq!(diff, (broker - consumer).to_string(), "{progress}");
    }
    assert!(progress.contains("Consume Diff Total: 3"), "{progress}");

    // Back to the start: all five left again.
    mqadmin(
        &cluster,
        &["resetOffsetByTime", "-g", "adm-g", "-t", "adm-t", "-s", "0"],
    )
    .await;
    assert_eq!(lag(&cluster), 5);

    mqadmin(
        &cluster,
        &["deleteSubGroup", "-c", cluster_name, "-g", "adm-g"],
    )
    .await;
    let groups = cluster.cli_json(&["group", "list"]);
    assert!(!groups.to_string().contains("\"adm-g\""), "{groups}");
    mqadmin(
        &cluster,
        &["deleteTopic", "-c", cluster_name, "-t", "adm-t"],
    )
    .await;
    let topics = cluster.cli_json(&["topic", "list"]);
    assert!(!topics.to_string().contains("\"adm-t\""), "{topics}");
    let listed = mqadmin(&cluster, &["topicList"]).await;
    assert!(!listed.lines().any(|l| l.trim() == "adm-t"), "{listed}");
}

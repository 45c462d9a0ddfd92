//! `apogee consume` and `apogee bench consume` as an operator runs them against a cluster of
//! two broker groups: a consume waiting for a message returns as soon as it has `--max`, not
//! when the other group's long poll ends; and while they run, these consumers are listed by
//! `apogee clients list` and `apogee group describe` like any application's.

use apogee_tests::cli::CliProcess;
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use serde_json::Value;
use std::time::Duration;

/// Well below the 30 s a long poll of the other broker group holds a receive open.
const EXIT_WAIT: Duration = Duration::from_secs(20);

async fn two_groups(topic: &str) -> Cluster {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let groups = cluster.create_topic(topic, 1).await;
    assert_eq!(groups.len(), 2, "{groups:?}");
    cluster
}

/// Waits until `clients list --group <group>` shows one client connected to both broker
/// groups (a consumer that has asked both); returns that client's row.
async fn listed_on_both_groups(cluster: &Cluster, group: &str) -> Value {
    wait_until(
        Duration::from_secs(30),
        &format!("a consumer of {group} listed on both broker groups"),
        || async {
            let out = cluster.cli(&["-o", "json", "clients", "list", "--group", group]);
            let rows = out.json();
            let row = rows.as_array().and_then(|a| a.first()).cloned();
            match row {
                Some(r)
                    if ["broker-a", "broker-b"].iter().all(|b| {
                        r["connected_to"]
                            .as_array()
                            .is_some_and(|c| c.iter().any(|x| x == b))
                    }) =>
                {
                    Ok(r)
                }
                _ => Err(out.to_string()),
            }
        },
    )
    .await
}

/// Waits until `group describe <group>` lists `client_id` among its clients.
async fn described_with(cluster: &Cluster, group: &str, client_id: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("group describe {group} listing {client_id}"),
        || async {
            let d = cluster.cli(&["-o", "json", "group", "describe", group]);
            let listed = d.json()["clients"]
                .as_array()
                .is_some_and(|c| c.iter().any(|x| x["client_id"] == client_id));
            if listed {
                Ok(())
            } else {
                Err(d.to_string())
            }
        },
    )
    .await
}

fn consume_one(cluster: &Cluster, topic: &str, group: &str) -> CliProcess {
    cluster.cli_spawn(&[
        "-o", "json", "consume", "--topic", topic, "--group", group, "--max", "1", "--wait", "1h",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_over_two_broker_groups_returns_once_max_arrived_and_is_listed_meanwhile() {
    let cluster = two_groups("two-t").await;
    let consume = consume_one(&cluster, "two-t", "two-g");
    // Listed while it long-polls, on both groups, as the simple consumer it is.
    let row = listed_on_both_groups(&cluster, "two-g").await;
    assert_eq!(row["kind"], "simple_consumer", "{row}");
    assert_eq!(row["topics"], serde_json::json!(["two-t"]), "{row}");
    let id = row["client_id"].as_str().unwrap().to_string();
    described_with(&cluster, "two-g", &id).await;

    // A message sent now reaches one group; the consume ends with it, without waiting for
    // the other group's long poll (30 s) to run out.
    cluster
        .cli(&["send", "--topic", "two-t", "--body", "late"])
        .success();
    let out = tokio::task::spawn_blocking(move || consume.wait(EXIT_WAIT))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    let got = out.json();
    assert_eq!(got.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(got[0]["body"], "late", "{out}");
    // The client said goodbye: no longer listed.
    wait_until(
        Duration::from_secs(30),
        "the consumer gone from clients list",
        || async {
            let left = cluster.cli_json(&["clients", "list", "--group", "two-g"]);
            if left == serde_json::json!([]) {
                Ok(())
            } else {
                Err(left.to_string())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_consumers_are_listed_while_they_run() {
    let cluster = two_groups("bench-seen-t").await;
    let _bench = cluster.cli_spawn(&[
        "bench",
        "consume",
        "--topic",
        "bench-seen-t",
        "--group",
        "bench-seen-g",
        "--consumers",
        "2",
        "--duration",
        "120",
    ]);
    let row = listed_on_both_groups(&cluster, "bench-seen-g").await;
    assert_eq!(row["kind"], "simple_consumer", "{row}");
    let id = row["client_id"].as_str().unwrap().to_string();
    described_with(&cluster, "bench-seen-g", &id).await;
}

//! mqadmin's command lines, short options and all, against a running cluster: a topic made
//! and updated with `updateTopic -t -c -r -w`, a group with `updateSubGroup -g -r`, a message
//! sent with `sendMessage` and consumed with `consumeMessage`, and a `-c` naming a cluster
//! the NameServers do not know refused with the one they know.

use apogee_tests::{BrokerSpec, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_command_lines_work_with_their_short_options() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let created = cluster.cli_json(&[
        "updateTopic",
        "-t",
        "mq-t",
        "-c",
        "DefaultCluster",
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert_eq!(created["queues"], 4, "{created}");
    // Run again, it updates (as mqadmin's updateTopic does).
    let updated = cluster.cli_json(&["updateTopic", "-t", "mq-t", "-r", "6", "-w", "6"]);
    assert_eq!(updated["queues"], 6, "{updated}");

    let group = cluster.cli_json(&[
        "updateSubGroup",
        "-g",
        "mq-g",
        "-r",
        "2",
        "-c",
        "DefaultCluster",
    ]);
    assert_eq!(group["max_delivery_attempts"], 3, "{group}");

    cluster
        .cli(&[
            "sendMessage",
            "-t",
            "mq-t",
            "-p",
            "hello",
            "-c",
            "TagA",
            "-k",
            "k1",
        ])
        .success();
    let got = cluster.cli_json(&["consumeMessage", "-t", "mq-t", "-g", "mq-g", "-c", "1"]);
    assert_eq!(got[0]["body"], "hello", "{got}");
    assert_eq!(got[0]["tag"], "TagA", "{got}");

    let wrong = cluster.cli(&["updateTopic", "-t", "mq-t2", "-c", "OtherCluster"]);
    assert_eq!(wrong.code, 2, "{wrong}");
    assert!(
        wrong.stderr.contains("OtherCluster") && wrong.stderr.contains("DefaultCluster"),
        "{wrong}"
    );
    let unsupported = cluster.cli(&["updateSubGroup", "-g", "g", "-d", "true"]);
    assert_eq!(unsupported.code, 2, "{unsupported}");
    assert!(unsupported.stderr.contains("broadcast"), "{unsupported}");
}

//! `apogee controller status` and `apogee broker elect` against real NameServers: one with
//! the embedded controller as a single voter answers with itself as the leader and its state
//! confirmed; an election of a group it does not know is refused with the reason; a
//! NameServer without the controller says it is off.

use apogee_tests::{wait_until, Cluster};
use std::time::Duration;

#[tokio::test]
async fn a_single_voter_reports_itself_as_the_leader_and_refuses_an_unknown_election() {
    let cluster = Cluster::builder().controller().start().await;
    let status = wait_until(
        Duration::from_secs(20),
        "the NameServer's controller to lead",
        || async {
            let out = cluster.cli(&["-o", "json", "controller", "status"]);
            if out.code != 0 {
                return Err(out.to_string());
            }
            let json = out.json();
            (json["is_leader"] == true)
                .then_some(json.clone())
                .ok_or(out.to_string())
        },
    )
    .await;
    assert_eq!(status["node_id"], 1, "{status}");
    assert_eq!(status["leader_id"], 1, "{status}");
    assert_eq!(status["stale"], false, "{status}");
    assert_eq!(status["groups"], serde_json::json!([]), "{status}");

    // Its metrics say the same.
    let (code, metrics) =
        apogee_tests::http::get(cluster.nameserver_http_addr(0), "/metrics").await;
    assert_eq!(code, 200, "{metrics}");
    for line in [
        "apogee_controller_is_leader{",
        "apogee_controller_groups_without_master{",
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }
    let leader = metrics
        .lines()
        .find(|l| l.starts_with("apogee_controller_is_leader{"))
        .unwrap();
    assert!(leader.ends_with(" 1"), "{leader}");

    let table = cluster.cli(&["controller", "status"]).success();
    assert!(table.stdout.contains("role          leader\n"), "{table}");
    assert!(
        table
            .stdout
            .contains("state         confirmed by the leader\n"),
        "{table}"
    );

    let refused = cluster.cli(&["broker", "elect", "nowhere", "--member", "2"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains("knows no broker group nowhere"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_nameserver_without_the_controller_says_it_is_off() {
    let cluster = Cluster::builder().start().await;
    let out = cluster.cli(&["controller", "status"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("[controller] enabled = false"), "{out}");
}

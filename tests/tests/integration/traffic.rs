//! The console's two summaries through the CLI: `apogee stats traffic` shows the messages a
//! topic took in and delivered to a group in the current hour (the broker samples its
//! counters when asked, so nothing waits for a 10 s bucket to end), and `apogee group list
//! --lag` shows each group's lag and in-flight count from one call per broker group.

use apogee_proto::v2;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The row of `rows` (a JSON array) for which `matches` holds, if any.
fn row(rows: &Value, matches: impl Fn(&Value) -> bool) -> Option<&Value> {
    rows.as_array().unwrap().iter().find(|r| matches(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_and_group_lag_show_what_was_sent_and_consumed() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("traffic-t", 2).await;
    let messages: Vec<v2::Message> = (0..7)
        .map(|i| rpc::message("traffic-t", 0, format!("m{i}")))
        .collect();
    let sent = rpc::send(&mut rpc::messaging(&addr), messages).await;
    assert_eq!(
        rpc::code(sent.status.as_ref()),
        v2::Code::Ok as i32,
        "{sent:?}"
    );
    let got = rpc::receive_exactly(&addr, "traffic-g", "traffic-t", 3).await;
    let entries: Vec<(String, String)> = got
        .iter()
        .map(|m| (rpc::id_of(m), rpc::handle_of(m)))
        .collect();
    let acked = rpc::ack(
        &mut rpc::messaging(&addr),
        "traffic-g",
        "traffic-t",
        &entries,
    )
    .await;
    assert_eq!(
        rpc::code(acked.status.as_ref()),
        v2::Code::Ok as i32,
        "{acked:?}"
    );

    // Counted when asked: the newest bucket is the current one.
    let rows = cluster
        .cli(&["-o", "json", "stats", "traffic", "--topic", "traffic-t"])
        .success()
        .json();
    let stored = row(&rows, |r| r["direction"] == "in").expect("an in series");
    assert_eq!(stored["topic"], "traffic-t", "{rows:#}");
    assert_eq!(stored["messages_last_hour"], 7, "{rows:#}");
    assert!(
        stored["per_sec_last_minute"].as_f64().unwrap() > 0.0,
        "{rows:#}"
    );
    let delivered = row(&rows, |r| r["direction"] == "out").expect("an out series");
    assert_eq!(delivered["group"], "traffic-g", "{rows:#}");
    assert_eq!(delivered["messages_last_hour"], 3, "{rows:#}");
    // A group filter leaves its deliveries only; the table names the columns.
    let rows = cluster
        .cli(&["-o", "json", "stats", "traffic", "--group", "traffic-g"])
        .success()
        .json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows:#}");
    assert_eq!(rows[0]["direction"], "out", "{rows:#}");
    let table = cluster.cli(&["stats", "traffic"]).success();
    assert!(table.stdout.contains("PER SEC (1M)"), "{table}");

    // 7 stored, 3 acknowledged: a lag of 4, listed once the group is registered.
    let listed = wait_until(WAIT, "group list --lag to show traffic-g", || async {
        let rows = cluster
            .cli(&["-o", "json", "group", "list", "--lag"])
            .success()
            .json();
        match row(&rows, |r| r["group"] == "traffic-g") {
            Some(g) if g["lag"] == 4 => Ok(g.clone()),
            _ => Err(format!("{rows:#}")),
        }
    })
    .await;
    assert_eq!(listed["inflight"], 0, "{listed:#}");
    assert_eq!(
        listed["brokers"],
        serde_json::json!(["broker-a"]),
        "{listed:#}"
    );
    let table = cluster.cli(&["group", "list", "--lag"]).success();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header[..4], ["GROUP", "LAG", "IN", "FLIGHT"], "{table}");
}

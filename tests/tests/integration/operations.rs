//! Operating a running cluster from the CLI, as processes against real servers:
//! `apogee group reset-offset` (a dry-run plan by default, applied with --execute),
//! `apogee clients list`, `apogee broker config get|set` (an allow-list of runtime
//! settings, kept across a restart), and mqadmin's command names as aliases.

use apogee_proto::v2;
use apogee_tests::telemetry::RawSession;
use apogee_tests::{rpc, BrokerSpec, Cluster};
use serde_json::Value;
use std::time::Duration;

/// How many messages a receive of `group` gets now (waiting at most 1 s).
async fn receivable(addr: &str, group: &str, topic: &str) -> usize {
    let (messages, _) = rpc::receive(
        &mut rpc::messaging(addr),
        group,
        topic,
        32,
        Some(apogee_proto::time::duration(Duration::from_secs(300))),
        Duration::from_secs(1),
    )
    .await;
    messages.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offset_prints_a_plan_and_applies_it_only_with_execute() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("reset-t", 2).await;
    rpc::send_numbered(&addr, "reset-t", 20).await;
    rpc::consume_and_ack(&addr, "reset-g", "reset-t", 20).await;
    assert_eq!(receivable(&addr, "reset-g", "reset-t").await, 0);

    // The plan: queue 0 from 20 back to 0; queue 1 (empty) stays at 0. Nothing changes.
    let reset = ["group", "reset-offset", "reset-g", "--topic", "reset-t"];
    let out = cluster
        .cli(&[&reset[..], &["--to-earliest"]].concat())
        .success();
    let q0 = out
        .stdout
        .lines()
        .find(|l| l.starts_with("broker-a") && l.split_whitespace().nth(1) == Some("0"))
        .unwrap_or_else(|| panic!("no row of queue 0:\n{out}"));
    let cells: Vec<&str> = q0.split_whitespace().collect();
    assert_eq!(cells, ["broker-a", "0", "20", "0", "-20", "0"], "{out}");
    assert!(out.stdout.contains("Dry run: nothing changed"), "{out}");
    assert_eq!(receivable(&addr, "reset-g", "reset-t").await, 0);

    // Applied: all 20 are delivered again.
    let args = [&reset[..], &["--to-earliest", "--execute", "-o", "json"]].concat();
    let out = cluster.cli(&args).success();
    let applied = out.json();
    assert_eq!(applied["executed"], true, "{out}");
    assert_eq!(applied["queues"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(applied["queues"][0]["new_offset"], 0, "{out}");
    rpc::consume_and_ack(&addr, "reset-g", "reset-t", 20).await;

    // To the end, with 5 new messages in flight: they are dropped and nothing is left.
    rpc::send_numbered(&addr, "reset-t", 5).await;
    rpc::receive_exactly(&addr, "reset-g", "reset-t", 5).await;
    let args = [&reset[..], &["--to-latest", "--execute", "-o", "json"]].concat();
    let out = cluster.cli(&args).success();
    let q0 = &out.json()["queues"][0];
    assert_eq!(
        (&q0["current_offset"], &q0["new_offset"]),
        (&Value::from(20), &Value::from(25))
    );
    assert_eq!(q0["inflight"], 5, "{out}");
    let described = cluster
        .cli(&["-o", "json", "group", "describe", "reset-g"])
        .success()
        .json();
    assert_eq!(described["lag"], 0, "{described}");
    assert_eq!(described["inflight"], 0, "{described}");

    // Errors: an unknown topic (exit 1), a bad group name and no target (usage, exit 2).
    let missing = cluster.cli(&[
        "group",
        "reset-offset",
        "reset-g",
        "--topic",
        "nope",
        "--to-latest",
    ]);
    assert_eq!(missing.code, 1, "{missing}");
    assert!(
        missing.stderr.contains("topic not found: nope"),
        "{missing}"
    );
    let bad = cluster.cli(&[
        "group",
        "reset-offset",
        "bad group",
        "--topic",
        "reset-t",
        "--to-latest",
    ]);
    assert_eq!(bad.code, 2, "{bad}");
    let no_target = cluster.cli(&reset);
    assert_eq!(no_target.code, 2, "{no_target}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_list_shows_each_connected_client_with_its_address_and_group() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("clients-t", 1).await;
    let _java = RawSession::consumer(
        &addr,
        "c-java",
        "clients-g",
        "clients-t",
        v2::Language::Java,
    )
    .await;
    let ns = cluster.ns_addr().to_string();
    let _py =
        RawSession::consumer(&ns, "c-py", "clients-g", "clients-t", v2::Language::Python).await;

    let out = cluster.cli(&["-o", "json", "clients", "list"]).success();
    let clients = out.json();
    let find = |id: &str| {
        clients
            .as_array()
            .and_then(|a| a.iter().find(|c| c["client_id"] == id).cloned())
            .unwrap_or_else(|| panic!("{id} not listed:\n{out}"))
    };
    let java = find("c-java");
    assert_eq!(java["kind"], "push_consumer");
    assert_eq!(java["language"], "JAVA");
    assert_eq!(java["version"], "5.0.0");
    assert_eq!(java["group"], "clients-g");
    assert_eq!(java["topics"], serde_json::json!(["clients-t"]));
    assert_eq!(java["connected_to"], serde_json::json!(["broker-a"]));
    assert!(
        java["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{java}"
    );
    assert_eq!(
        find("c-py")["connected_to"],
        serde_json::json!(["nameserver"])
    );

    let table = cluster
        .cli(&["clients", "list", "--group", "clients-g"])
        .success();
    for column in [
        "CLIENT ID",
        "KIND",
        "ADDRESS",
        "LANGUAGE",
        "GROUP",
        "CONNECTED TO",
    ] {
        assert!(table.stdout.contains(column), "{table}");
    }
    assert!(table.stdout.contains("c-java"), "{table}");
    let none = cluster
        .cli(&["-o", "json", "clients", "list", "--group", "other-g"])
        .success();
    assert_eq!(none.json(), serde_json::json!([]));
    // mqadmin's name for it.
    let alias = cluster.cli(&["-o", "json", "consumerConnection"]).success();
    assert_eq!(alias.json().as_array().map(Vec::len), Some(2), "{alias}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_config_changes_an_allowed_setting_at_runtime_and_keeps_it() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();

    let out = cluster
        .cli(&["-o", "json", "broker", "config", "get", &addr])
        .success();
    let settings = out.json();
    let setting = |all: &Value, key: &str| {
        all.as_array()
            .and_then(|a| a.iter().find(|s| s["key"] == key).cloned())
            .unwrap_or_else(|| panic!("{key} not listed: {all}"))
    };
    let auto = setting(&settings, "auto_create_topics");
    assert_eq!(
        (&auto["value"], &auto["overridden"]),
        (&Value::from("false"), &Value::from(false))
    );

    // Off: a send to an unknown topic is refused. On at runtime: it creates the topic.
    let send = |topic: &'static str| {
        let addr = addr.clone();
        async move {
            let r = rpc::send(
                &mut rpc::messaging(&addr),
                vec![rpc::message(topic, 0, "x")],
            )
            .await;
            rpc::code(r.status.as_ref())
        }
    };
    assert_eq!(send("auto-t1").await, v2::Code::TopicNotFound as i32);
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "broker",
            "config",
            "set",
            &addr,
            "auto_create_topics",
            "true",
        ])
        .success();
    assert_eq!(out.json()["previous"], "false", "{out}");
    assert_eq!(out.json()["value"], "true", "{out}");
    assert_eq!(send("auto-t1").await, v2::Code::Ok as i32);

    // Kept across a restart, over the config file; the effective config says so.
    cluster.kill_broker("broker-a");
    cluster.restart_broker("broker-a").await;
    assert_eq!(send("auto-t2").await, v2::Code::Ok as i32);
    let full = cluster
        .cli(&["broker", "config", "get", &addr, "--full"])
        .success();
    assert!(full.stdout.contains("auto_create_topics = true"), "{full}");
    let table = cluster.cli(&["broker", "config", "get", &addr]).success();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("auto_create_topics"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("runtime"), "{table}");
    assert!(cluster
        .broker_log("broker-a")
        .contains("auto_create_topics = true (changed at runtime)"));

    // Refused: a key outside the allow-list, a path, a bad value; the NameServer asked.
    for (key, value, says) in [
        ("data_dir", "/tmp/x", "cannot be changed at runtime"),
        ("listen", "0.0.0.0:1", "cannot be changed at runtime"),
        (
            "store.disk_refuse_ratio",
            "1.5",
            "expected a number in (0, 1]",
        ),
        (
            "transaction.max_checks",
            "0",
            "expected a whole number >= 1",
        ),
    ] {
        let out = cluster.cli(&["broker", "config", "set", &addr, key, value]);
        assert_eq!(out.code, 1, "{out}");
        assert!(out.stderr.contains(says), "{key}: {out}");
    }
    let ns = cluster.ns_addr().to_string();
    let out = cluster.cli(&["broker", "config", "get", &ns]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("ask the broker"), "{out}");
    // mqadmin's names.
    let alias = cluster
        .cli(&["-o", "json", "getBrokerConfig", &addr])
        .success();
    assert!(
        alias.json().as_array().is_some_and(|a| a.len() == 6),
        "{alias}"
    );
}

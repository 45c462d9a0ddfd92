//! The `apogee` admin CLI as a user runs it: tables with headers and one row
//! per item, `-o json` that parses with the documented fields, exit code 1
//! with `error:` on stderr for server errors and 2 for usage errors.

use apogee_tests::{BrokerSpec, CliOutput, Cluster};
use serde_json::Value;
use std::collections::BTreeSet;

/// The header line and the data lines of a table.
fn table(out: &CliOutput) -> (String, Vec<String>) {
    let mut lines = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string);
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table printed:\n{out}"));
    (header, lines.collect())
}

fn assert_header(out: &CliOutput, columns: &[&str]) -> Vec<String> {
    let (header, rows) = table(out);
    for c in columns {
        assert!(
            header.contains(c),
            "header {header:?} lacks column {c:?}:\n{out}"
        );
    }
    rows
}

fn array(out: &CliOutput) -> Vec<Value> {
    out.json()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("expected a JSON array:\n{out}"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn find<'a>(items: &'a [Value], key: &str, value: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i[key] == value)
        .unwrap_or_else(|| panic!("no item with {key} = {value:?} in {items:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_print_tables_and_json() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let (a, b) = (
        cluster.broker("broker-a").addr.clone(),
        cluster.broker("broker-b").addr.clone(),
    );
    let both: BTreeSet<String> = ["broker-a".to_string(), "broker-b".to_string()].into();
    let cli = |args: &[&str]| cluster.cli(args);

    // topic create: a table row, and a JSON object.
    let out = cli(&["topic", "create", "cli-topic", "--queues", "3"]).success();
    let rows = assert_header(&out, &["TOPIC", "QUEUES"]);
    assert!(
        rows.iter()
            .any(|r| r.contains("cli-topic") && r.contains('3')),
        "{out}"
    );
    let out = cli(&["-o", "json", "topic", "create", "cli-json", "--queues", "2"]).success();
    let created = out.json();
    assert_eq!(created["topic"], "cli-json", "{out}");
    assert_eq!(created["queues"], 2, "{out}");
    assert_eq!(strings(&created["brokers"]), both, "{out}");

    // topic list
    let out = cli(&["topic", "list"]).success();
    let rows = assert_header(&out, &["TOPIC", "QUEUES", "BROKERS"]);
    assert!(rows.iter().any(|r| r.starts_with("cli-topic")), "{out}");
    assert!(rows.iter().any(|r| r.starts_with("cli-json")), "{out}");
    let out = cli(&["-o", "json", "topic", "list"]).success();
    let topics = array(&out);
    let t = find(&topics, "topic", "cli-topic");
    assert_eq!(t["queues"], 3, "{out}");
    assert_eq!(t["perm"], "rw", "{out}");
    assert_eq!(strings(&t["brokers"]), both, "{out}");

    // topic route
    let out = cli(&["topic", "route", "cli-topic"]).success();
    let rows = assert_header(&out, &["BROKER", "QUEUES", "MASTER"]);
    assert_eq!(rows.len(), 2, "one row per broker group:\n{out}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("broker-a") && r.contains(&a)),
        "{out}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("broker-b") && r.contains(&b)),
        "{out}"
    );
    let out = cli(&["-o", "json", "topic", "route", "cli-topic"]).success();
    let route = array(&out);
    assert_eq!(route.len(), 2, "{out}");
    assert_eq!(
        find(&route, "broker", "broker-a")["master"],
        a.as_str(),
        "{out}"
    );
    assert_eq!(find(&route, "broker", "broker-b")["queues"], 3, "{out}");

    // cluster list
    let out = cli(&["cluster", "list"]).success();
    let rows = assert_header(&out, &["CLUSTER", "BROKER", "ENDPOINT"]);
    assert_eq!(rows.len(), 2, "one row per broker process:\n{out}");
    assert!(
        rows.iter()
            .any(|r| r.contains("broker-a") && r.contains(&a)),
        "{out}"
    );
    let out = cli(&["-o", "json", "cluster", "list"]).success();
    let brokers = array(&out);
    assert_eq!(brokers.len(), 2, "{out}");
    let ba = find(&brokers, "broker", "broker-b");
    assert_eq!(ba["endpoint"], b.as_str(), "{out}");
    assert_eq!(ba["id"], 0, "{out}");
    assert_eq!(ba["role"], "async-master", "{out}");

    // send: table and JSON rows, one per message.
    let out = cli(&[
        "send",
        "--topic",
        "cli-topic",
        "--body",
        "hello-table",
        "--count",
        "5",
        "--tag",
        "T1",
        "--key",
        "K1",
    ])
    .success();
    let rows = assert_header(&out, &["MESSAGE ID", "QUEUE", "OFFSET"]);
    assert_eq!(rows.len(), 5, "{out}");
    let out = cli(&[
        "-o",
        "json",
        "send",
        "--topic",
        "cli-topic",
        "--body",
        "hello-json",
        "--count",
        "3",
    ])
    .success();
    let sent = array(&out);
    assert_eq!(sent.len(), 3, "{out}");
    for s in &sent {
        assert!(
            s["message_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{out}"
        );
        assert!(
            s["queue_id"].as_i64().is_some_and(|q| (0..3).contains(&q)),
            "{out}"
        );
        assert!(
            both.contains(s["broker"].as_str().unwrap_or_default()),
            "{out}"
        );
    }
    let json_ids: BTreeSet<String> = sent
        .iter()
        .filter_map(|s| s["message_id"].as_str().map(str::to_string))
        .collect();

    // consume: all 8 as JSON for one group, as a table for another.
    let out = cli(&[
        "-o",
        "json",
        "consume",
        "--topic",
        "cli-topic",
        "--group",
        "cli-group",
        "--max",
        "8",
        "--wait",
        "5",
    ])
    .success();
    let consumed = array(&out);
    assert_eq!(consumed.len(), 8, "{out}");
    let bodies: Vec<&str> = consumed.iter().filter_map(|c| c["body"].as_str()).collect();
    assert_eq!(
        bodies.iter().filter(|b| **b == "hello-table").count(),
        5,
        "{out}"
    );
    assert_eq!(
        bodies.iter().filter(|b| **b == "hello-json").count(),
        3,
        "{out}"
    );
    let consumed_ids: BTreeSet<String> = consumed
        .iter()
        .filter_map(|c| c["message_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(consumed_ids.len(), 8, "no duplicates:\n{out}");
    assert!(json_ids.is_subset(&consumed_ids), "{out}");
    let tagged = consumed
        .iter()
        .find(|c| c["body"] == "hello-table")
        .unwrap();
    assert_eq!(tagged["tag"], "T1", "{out}");
    assert_eq!(strings(&tagged["keys"]), ["K1".to_string()].into(), "{out}");
    assert_eq!(tagged["delivery_attempt"], 1, "{out}");
    let out = cli(&[
        "consume",
        "--topic",
        "cli-topic",
        "--group",
        "cli-group-2",
        "--max",
        "8",
        "--wait",
        "5",
    ])
    .success();
    let rows = assert_header(&out, &["MESSAGE ID", "BODY"]);
    assert_eq!(rows.len(), 8, "{out}");
    assert_eq!(
        rows.iter().filter(|r| r.contains("hello-table")).count(),
        5,
        "{out}"
    );
    // Everything was acked: the first group gets nothing more.
    let out = cli(&[
        "-o",
        "json",
        "consume",
        "--topic",
        "cli-topic",
        "--group",
        "cli-group",
        "--max",
        "8",
        "--wait",
        "1",
    ])
    .success();
    assert!(array(&out).is_empty(), "acked messages came back:\n{out}");

    // topic update, visible in the route.
    cli(&["topic", "update", "cli-topic", "--queues", "6"]).success();
    let out = cli(&["-o", "json", "topic", "route", "cli-topic"]).success();
    assert!(
        array(&out).iter().all(|r| r["queues"] == 6),
        "queues not updated:\n{out}"
    );

    // topic delete, gone from the list; its route is then an error.
    let out = cli(&["-o", "json", "topic", "delete", "cli-json"]).success();
    assert_eq!(out.json()["topic"], "cli-json", "{out}");
    let out = cli(&["-o", "json", "topic", "list"]).success();
    assert!(
        array(&out).iter().all(|t| t["topic"] != "cli-json"),
        "deleted topic still listed:\n{out}"
    );

    // Errors: server-side (exit 1) and usage (exit 2).
    for topic in ["cli-json", "no-such-topic"] {
        let out = cli(&["topic", "route", topic]);
        assert_eq!(out.code, 1, "route of a missing topic must exit 1:\n{out}");
        assert!(
            out.stderr.contains("error:"),
            "stderr must say error:\n{out}"
        );
    }
    let out = cli(&["topic", "create"]);
    assert_eq!(out.code, 2, "a missing argument is a usage error:\n{out}");
    let out = cluster.cli(&["send", "--topic", "cli-topic"]);
    assert_eq!(out.code, 2, "send without --body is a usage error:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_status_lists_every_queue_of_every_broker_group_with_offsets() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let cli = |args: &[&str]| cluster.cli(args);
    cli(&["topic", "create", "status-topic", "--queues", "2"]).success();
    cli(&[
        "send",
        "--topic",
        "status-topic",
        "--body",
        "x",
        "--count",
        "6",
    ])
    .success();

    let out = cli(&["-o", "json", "topic", "status", "status-topic"]).success();
    let queues = array(&out);
    assert_eq!(queues.len(), 4, "2 broker groups x 2 queues:\n{out}");
    let total: u64 = queues.iter().map(|q| q["messages"].as_u64().unwrap()).sum();
    assert_eq!(total, 6, "{out}");
    for q in &queues {
        let (min, max) = (q["min_offset"].as_u64(), q["max_offset"].as_u64());
        assert_eq!(min, Some(0), "{out}");
        assert_eq!(max, q["messages"].as_u64(), "{out}");
        assert_eq!(q["last_store_time"].is_string(), max > Some(0), "{out}");
    }
    let brokers: BTreeSet<String> = queues
        .iter()
        .map(|q| q["broker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(brokers.len(), 2, "{out}");

    let out = cli(&["topic", "status", "status-topic"]).success();
    let rows = assert_header(
        &out,
        &["BROKER", "QUEUE", "MIN OFFSET", "MAX OFFSET", "MESSAGES"],
    );
    assert_eq!(rows.len(), 4, "{out}");

    let missing = cli(&["topic", "status", "no-such-topic"]);
    assert_eq!(missing.code, 1, "{missing}");
    assert!(missing.stderr.contains("no-such-topic"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_round_trip_through_files_and_are_never_printed_lossily() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic("bin-topic", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, &body).unwrap();
    let input_arg = input.display().to_string();
    cluster
        .cli(&[
            "send",
            "--topic",
            "bin-topic",
            "--body-file",
            &input_arg,
            "--property",
            "k=v",
        ])
        .success();
    cluster
        .cli(&["send", "--topic", "bin-topic", "--body", "plain text"])
        .success();

    // JSON: the binary body whole, as base64 (or hex), never replaced characters.
    let out_dir = dir.path().join("bodies");
    std::fs::create_dir(&out_dir).unwrap();
    let out_arg = out_dir.display().to_string();
    let out = cluster.cli(&[
        "-o",
        "json",
        "consume",
        "--topic",
        "bin-topic",
        "--group",
        "bin-g",
        "--max",
        "2",
        "--wait",
        "5",
        "--body-format",
        "base64",
        "--out-dir",
        &out_arg,
    ]);
    let rows = array(&out.success());
    let binary = rows
        .iter()
        .find(|r| r["body_size"] == 70_000)
        .unwrap_or_else(|| panic!("no binary row: {rows:?}"));
    assert_eq!(binary["body_format"], "base64");
    assert_eq!(binary["properties"]["k"], "v");
    let decoded = base64_decode(binary["body"].as_str().unwrap());
    assert_eq!(decoded, body);
    // The whole body, byte for byte, in the out dir.
    let file = binary["body_file"].as_str().unwrap();
    assert_eq!(std::fs::read(file).unwrap(), body);

    // The default text format: UTF-8 when valid, hex when not; tables show a preview only.
    let send_and_consume_one = |format: &[&str]| {
        cluster
            .cli(&["send", "--topic", "bin-topic", "--body-file", &input_arg])
            .success();
        let consume = [
            "consume",
            "--topic",
            "bin-topic",
            "--group",
            "bin-g",
            "--max",
            "1",
        ];
        cluster
            .cli(&[format, &consume[..], &["--wait", "5"]].concat())
            .success()
    };
    let out = send_and_consume_one(&["-o", "json"]);
    let row = &array(&out)[0];
    assert_eq!(row["body_format"], "hex");
    assert_eq!(row["body"].as_str().unwrap().len(), 140_000);
    assert!(row["body"].as_str().unwrap().starts_with("000102"));
    let table = send_and_consume_one(&[]);
    assert!(
        table.stdout.len() < 2_000,
        "a preview, not the body:\n{table}"
    );

    let missing = cluster.cli(&[
        "consume",
        "--topic",
        "bin-topic",
        "--group",
        "bin-g",
        "--out-dir",
        "/nonexistent/dir",
    ]);
    assert_eq!(missing.code, 2, "{missing}");
}

/// Standard base64 with padding, decoded apart from the CLI's encoder.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend(n.to_be_bytes()[1..].iter().take(data.len() - 1));
    }
    out
}

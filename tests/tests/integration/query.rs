//! Message query with real processes: `apogee message get` (every stored record of an id, from
//! whichever broker group holds it), `message find` (topic + key over every group hosting the
//! topic) and `message print` (a queue range, of one group with `--broker`), JSON checked field
//! by field; the delivery attempts of a group holding a message in flight; clear errors for an
//! unknown id, an unknown topic and a queue the topic does not have.

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::time::now_ms;
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn array(v: &Value) -> Vec<Value> {
    v.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("expected a JSON array: {v:#}"))
}

fn ids(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["message_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The one row of `message get <id> -o json`.
fn get_one(cluster: &Cluster, id: &str) -> Value {
    let rows = array(
        &cluster
            .cli(&["message", "get", id, "-o", "json"])
            .success()
            .json(),
    );
    assert_eq!(rows.len(), 1, "one record of {id} expected: {rows:#?}");
    rows[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_id_key_and_queue() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    cluster.create_topic("orders", 2).await;
    let before = now_ms();

    // Two messages sharing a key, sent with the CLI.
    let send = |body: &str, keys: &[&str], tag: Option<&str>| {
        let mut args = vec!["send", "--topic", "orders", "--body", body, "-o", "json"];
        for k in keys {
            args.extend(["--key", k]);
        }
        if let Some(t) = tag {
            args.extend(["--tag", t]);
        }
        array(&cluster.cli(&args).success().json())[0].clone()
    };
    let first = send("order one", &["order-1", "customer-9"], Some("paid"));
    let second = send("order two", &["customer-9"], None);
    let first_id = first["message_id"].as_str().unwrap().to_string();
    let second_id = second["message_id"].as_str().unwrap().to_string();

    // One with properties and a body that is not UTF-8, sent with the client.
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let binary = producer
        .send(
            Message::builder("orders", vec![0xff, 0x00, 0x10])
                .key("bin-1")
                .property("region", "eu")
                .property("amount", "42")
                .build(),
        )
        .await
        .unwrap();

    // get: every field of the CLI-sent message.
    let row = get_one(&cluster, &first_id);
    assert_eq!(row["message_id"], first_id.as_str());
    assert_eq!(row["topic"], "orders");
    assert_eq!(row["queue_id"], first["queue_id"]);
    assert_eq!(row["queue_offset"], first["offset"]);
    assert_eq!(row["broker"], first["broker"]);
    assert_eq!(row["tag"], "paid");
    assert_eq!(row["keys"], json!(["order-1", "customer-9"]));
    assert_eq!(row["properties"], json!({}));
    assert_eq!(row["body"], "order one");
    assert_eq!(row["body_format"], "utf8");
    assert_eq!(row["body_encoding"], "identity");
    assert_eq!(row["body_size"], 9);
    assert_eq!(row["message_type"], "NORMAL");
    assert_eq!(row["message_group"], Value::Null);
    assert_eq!(row["delivery_attempts"], json!({}));
    let stored = row["store_timestamp_ms"].as_i64().unwrap();
    assert!(
        stored >= before - 1_000 && stored <= now_ms() + 1_000,
        "{row:#}"
    );
    assert!(
        row["store_time"].as_str().unwrap().ends_with('Z'),
        "{row:#}"
    );
    assert!(row["born_timestamp_ms"].as_i64().unwrap() > 0, "{row:#}");
    assert!(row["log_offset"].as_i64().unwrap() >= 0, "{row:#}");

    // get: properties, and the body in hex.
    let row = get_one(&cluster, &binary.message_id);
    assert_eq!(row["properties"], json!({"amount": "42", "region": "eu"}));
    assert_eq!(row["body"], "ff0010");
    assert_eq!(row["body_format"], "hex");
    assert_eq!(row["keys"], json!(["bin-1"]));
    assert_eq!(row["tag"], Value::Null);
    assert_eq!(row["queue_id"], binary.queue_id);
    assert_eq!(row["queue_offset"], binary.offset);
    assert_eq!(row["broker"], binary.broker_name.as_str());

    // get as a table.
    let out = cluster.cli(&["message", "get", &first_id]).success();
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    for col in [
        "MESSAGE ID",
        "TOPIC",
        "QUEUE",
        "OFFSET",
        "KEYS",
        "ATTEMPTS",
        "BODY",
    ] {
        assert!(header.contains(col), "no {col} in {header:?}:\n{out}");
    }
    let line = lines.next().unwrap_or_default();
    assert!(
        line.contains(&first_id) && line.ends_with("order one"),
        "{out}"
    );

    // find: both messages with the shared key, whichever groups hold them.
    let found = array(
        &cluster
            .cli(&[
                "message",
                "find",
                "--topic",
                "orders",
                "--key",
                "customer-9",
                "-o",
                "json",
            ])
            .success()
            .json(),
    );
    assert_eq!(ids(&found), BTreeSet::from([first_id.clone(), second_id]));
    let f = found
        .iter()
        .find(|r| r["message_id"] == first_id.as_str())
        .unwrap();
    assert_eq!(f["body"], "order one");
    let none = cluster
        .cli(&[
            "message", "find", "--topic", "orders", "--key", "nobody", "-o", "json",
        ])
        .success();
    assert!(array(&none.json()).is_empty(), "{none}");

    // print: exactly the binary message, from its group.
    let queue = binary.queue_id.to_string();
    let from = binary.offset.to_string();
    let printed = array(
        &cluster
            .cli(&[
                "message",
                "print",
                "--topic",
                "orders",
                "--queue",
                &queue,
                "--from",
                &from,
                "--count",
                "1",
                "--broker",
                &binary.broker_name,
                "-o",
                "json",
            ])
            .success()
            .json(),
    );
    assert_eq!(printed.len(), 1, "{printed:#?}");
    assert_eq!(printed[0]["message_id"], binary.message_id.as_str());
    assert_eq!(printed[0]["properties"]["region"], "eu");
    // print without --broker: that queue of every group, offsets consecutive from 0.
    let all = array(
        &cluster
            .cli(&[
                "message", "print", "--topic", "orders", "--queue", &queue, "-o", "json",
            ])
            .success()
            .json(),
    );
    assert!(ids(&all).contains(&binary.message_id), "{all:#?}");
    for broker in ["broker-a", "broker-b"] {
        let offsets: Vec<i64> = all
            .iter()
            .filter(|r| r["broker"] == broker)
            .map(|r| r["queue_offset"].as_i64().unwrap())
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "{all:#?}"
        );
        assert!(all.iter().all(|r| r["queue_id"] == binary.queue_id));
    }
    // Past the end: nothing, and a note naming the offsets there are.
    let past = cluster.cli(&[
        "message", "print", "--topic", "orders", "--queue", &queue, "--from", "1000", "-o", "json",
    ]);
    assert!(array(&past.success().json()).is_empty());

    // A group holding the message in flight shows its delivery attempt.
    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        "readers",
        vec![("orders".to_string(), FilterExpression::tag("*"))],
    )
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the binary message to be received",
        || async {
            let got = consumer
                .receive(
                    "orders",
                    16,
                    Duration::from_secs(60),
                    Duration::from_secs(2),
                )
                .await
                .map_err(|e| e.to_string())?;
            if got.iter().any(|m| m.message_id == binary.message_id) {
                Ok(())
            } else {
                Err(format!("received {} others", got.len()))
            }
        },
    )
    .await;
    let row = get_one(&cluster, &binary.message_id);
    assert_eq!(row["delivery_attempts"], json!({"readers": 1}), "{row:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_topics_and_queues_are_clear_errors() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic("orders", 2).await;

    let unknown = "0000000000000000000000000000000000";
    let out = cluster.cli(&["message", "get", unknown]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains("error: message not found") && out.stderr.contains(unknown),
        "{out}"
    );

    let out = cluster.cli(&["message", "find", "--topic", "nowhere", "--key", "k"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("topic not found: nowhere"), "{out}");

    let out = cluster.cli(&[
        "message", "print", "--topic", "orders", "--queue", "5", "--broker", "broker-a",
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("queues 0..1"), "{out}");

    let out = cluster.cli(&[
        "message", "print", "--topic", "orders", "--queue", "0", "--broker", "broker-z",
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("broker-z"), "{out}");

    // Nothing sent yet: an empty answer, and the note says the queue is empty.
    let out = cluster
        .cli(&[
            "message", "print", "--topic", "orders", "--queue", "0", "-o", "json",
        ])
        .success();
    assert!(array(&out.json()).is_empty(), "{out}");
    assert!(out.stderr.contains("broker-a: empty"), "{out}");
}

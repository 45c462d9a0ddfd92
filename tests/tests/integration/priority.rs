//! Priority messages (RocketMQ's RIP-80) with real processes: apogee-client sends priorities
//! to a PRIORITY topic before any consumer exists, and a simple consumer's receives hand the
//! backlog out highest priority first, in send order within one priority.
//!
//! - 10 queues, 1,000 messages of priorities 0-9: received 9 first down to 0, FIFO within
//!   one priority; each stored in queue p (PullMessage reads it there, unreordered) and
//!   delivered with its priority;
//! - 8 queues: priorities 7, 8 and 9 share the top level (queue 7, in send order);
//! - refusals over raw gRPC: a negative priority (ILLEGAL_MESSAGE_PROPERTY_KEY), a priority
//!   on a NORMAL message, PRIORITY without a priority, PRIORITY with a message group, PRIORITY
//!   to a topic that does not accept it (MESSAGE_PROPERTY_CONFLICT_WITH_TYPE); apogee-client
//!   refuses a priority with a message group before sending.
//! - RocketMQ's official Python client (`tests/python/priority.py`) sends priorities 0-9 and
//!   its SimpleConsumer receives them highest first, each with its priority (skipped without
//!   python3 and the package, except under CI).

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::v2::{self, Code, MessageType};
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::time::Duration;

type Client = v2::messaging_service_client::MessagingServiceClient<tonic::transport::Channel>;

const INVISIBLE: Duration = Duration::from_secs(60);

async fn cluster_with(topic: &str, queues: i32) -> Cluster {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster
        .create_typed_topic(topic, queues, &[MessageType::Priority])
        .await;
    cluster
}

/// Sends `per` rounds of priorities 0-9 (one batch of ten per round), bodies `p<p>-<n>`.
async fn send_rounds(cluster: &Cluster, topic: &str, per: usize) {
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    for n in 0..per {
        let batch = (0..10u32)
            .map(|p| {
                Message::builder(topic, format!("p{p}-{n}"))
                    .priority(p)
                    .build()
            })
            .collect();
        producer
            .send_batch(batch)
            .await
            .unwrap_or_else(|e| panic!("round {n}: {e}"));
    }
    producer.shutdown().await;
}

/// Receives (acking each message) until `total` arrived; returns (priority from the body,
/// round, delivered priority, queue) per message in the order received.
async fn receive_all(
    cluster: &Cluster,
    topic: &str,
    group: &str,
    total: usize,
) -> Vec<(u32, usize, Option<i32>, i32)> {
    let subscription = vec![(topic.to_string(), FilterExpression::default())];
    let consumer = SimpleConsumer::connect(cluster.client_config(), group, subscription)
        .await
        .expect("consumer");
    let mut got = Vec::new();
    let mut empty_receives = 0;
    while got.len() < total {
        let batch = consumer
            .receive(topic, 32, INVISIBLE, Duration::from_secs(2))
            .await
            .expect("receive");
        if batch.is_empty() {
            empty_receives += 1;
            assert!(
                empty_receives < 10,
                "only {} of {total} received: {:?}",
                got.len(),
                got.last()
            );
            continue;
        }
        for m in &batch {
            let body = m.body_lossy();
            let (p, n) = body[1..].split_once('-').expect("body p<p>-<n>");
            got.push((
                p.parse().unwrap(),
                n.parse().unwrap(),
                m.priority,
                m.queue_id,
            ));
        }
        for r in consumer.ack_many(&batch).await {
            r.expect("ack");
        }
    }
    consumer.shutdown().await;
    assert_eq!(got.len(), total, "nothing more than was sent");
    got
}

/// Each priority's messages arrived in send order (rounds rising).
fn assert_fifo_within_each_priority(got: &[(u32, usize, Option<i32>, i32)]) {
    for p in 0..10 {
        let rounds: Vec<usize> = got.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
        assert!(
            rounds.windows(2).all(|w| w[0] < w[1]),
            "priority {p} out of send order: {rounds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_of_ten_priorities_is_received_highest_first() {
    let cluster = cluster_with("urgent", 10).await;
    send_rounds(&cluster, "urgent", 100).await;
    // Stored by priority: queue 9 holds the 100 messages of priority 9, in send order, and
    // PullMessage reads them as stored.
    let addr = cluster.broker("broker-a").addr.clone();
    let top = rpc::queue_contents(&addr, "urgent", 9).await;
    let bodies: Vec<String> = top
        .iter()
        .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let expected: Vec<String> = (0..100).map(|n| format!("p9-{n}")).collect();
    assert_eq!(bodies, expected);

    let got = receive_all(&cluster, "urgent", "by-priority", 1_000).await;
    let levels: Vec<u32> = got.iter().map(|m| m.0).collect();
    let want: Vec<u32> = (0..10).rev().flat_map(|p| [p; 100]).collect();
    assert_eq!(levels, want, "highest priority first");
    assert_fifo_within_each_priority(&got);
    for (p, _, delivered, queue) in &got {
        assert_eq!(*delivered, Some(*p as i32), "delivered with its priority");
        assert_eq!(*queue, *p as i32, "priority p is stored in queue p");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_eight_queues_priorities_seven_to_nine_share_the_top_level() {
    let cluster = cluster_with("urgent8", 8).await;
    send_rounds(&cluster, "urgent8", 30).await;
    let got = receive_all(&cluster, "urgent8", "by-priority", 300).await;
    let levels: Vec<u32> = got.iter().map(|m| m.0).collect();
    // The top level is queue 7: priorities 7, 8 and 9 as sent (7, 8, 9 each round).
    let top: Vec<u32> = (0..30).flat_map(|_| [7, 8, 9]).collect();
    assert_eq!(
        levels[..90],
        top[..],
        "7-9 share the top level, in send order"
    );
    let rest: Vec<u32> = (0..7).rev().flat_map(|p| [p; 30]).collect();
    assert_eq!(levels[90..], rest[..]);
    assert_fifo_within_each_priority(&got);
    assert!(got[..90].iter().all(|m| m.3 == 7), "all in queue 7");
    assert!(
        got.iter().all(|m| m.2 == Some(m.0 as i32)),
        "each keeps its own priority"
    );
}

/// A PRIORITY message of `topic` with `priority` (None: the property unset).
fn priority_message(topic: &str, priority: Option<i32>) -> v2::Message {
    let mut m = rpc::message(topic, 0, "x");
    let sp = m.system_properties.as_mut().unwrap();
    sp.message_type = MessageType::Priority as i32;
    sp.priority = priority;
    m
}

async fn assert_refused(client: &mut Client, case: &str, m: v2::Message, want: Code) {
    let resp = rpc::send(client, vec![m]).await;
    let code = rpc::code(resp.status.as_ref());
    assert_eq!(
        code,
        want as i32,
        "{case}: expected {}, got {} ({:?})",
        want.as_str_name(),
        rpc::code_name(code),
        resp.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negative_and_mixed_type_priority_sends_are_refused() {
    let cluster = cluster_with("urgent", 4).await;
    cluster.create_topic("plain", 2).await;
    let addr = cluster.broker("broker-a").addr.clone();
    let mut client = rpc::messaging(&addr);

    assert_refused(
        &mut client,
        "negative priority",
        priority_message("urgent", Some(-1)),
        Code::IllegalMessagePropertyKey,
    )
    .await;
    assert_refused(
        &mut client,
        "PRIORITY without a priority",
        priority_message("urgent", None),
        Code::MessagePropertyConflictWithType,
    )
    .await;
    let mut on_normal = rpc::message("urgent", 0, "x");
    on_normal.system_properties.as_mut().unwrap().priority = Some(3);
    assert_refused(
        &mut client,
        "a priority on a NORMAL message",
        on_normal,
        Code::MessagePropertyConflictWithType,
    )
    .await;
    let mut grouped = priority_message("urgent", Some(3));
    grouped.system_properties.as_mut().unwrap().message_group = Some("g".into());
    assert_refused(
        &mut client,
        "PRIORITY with a message group",
        grouped,
        Code::MessagePropertyConflictWithType,
    )
    .await;
    assert_refused(
        &mut client,
        "PRIORITY to a NORMAL topic",
        priority_message("plain", Some(3)),
        Code::MessagePropertyConflictWithType,
    )
    .await;
    // Nothing refused was stored; a valid one is, in queue min(6, 3) = 3 whatever it named.
    for q in 0..4 {
        assert!(rpc::queue_contents(&addr, "urgent", q).await.is_empty());
    }
    let resp = rpc::send(&mut client, vec![priority_message("urgent", Some(6))]).await;
    assert_eq!(rpc::code(resp.status.as_ref()), Code::Ok as i32, "{resp:?}");
    assert_eq!(rpc::queue_contents(&addr, "urgent", 3).await.len(), 1);

    // apogee-client refuses a priority with a message group before sending.
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let mixed = Message::builder("urgent", "x")
        .priority(1)
        .message_group("g")
        .build();
    let err = producer.send(mixed).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(Code::MessagePropertyConflictWithType),
        "{err}"
    );
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_sends_priorities_received_highest_first() {
    if !crate::official_python::python_client_usable() {
        return;
    }
    const TOPIC: &str = "py-urgent";
    const ROUNDS: usize = 10;
    let cluster = cluster_with(TOPIC, 10).await;
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/priority.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--endpoint", cluster.ns_addr(), "--topic", TOPIC])
        .args(["--group", "py-by-priority", "--rounds", &ROUNDS.to_string()])
        .args(["--timeout", "40"])
        // The client writes its log under $HOME/logs.
        .env("HOME", cluster.dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(55), run)
        .await
        .expect("the script ran over 55 s")
        .expect("starting python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report; stdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(report["error"].is_null(), "{report}\nstderr:\n{stderr}");
    assert_eq!(report["sent"], 10 * ROUNDS, "{report}");
    let got: Vec<(u32, usize, Option<i32>, i32)> = report["received"]
        .as_array()
        .expect("received")
        .iter()
        .map(|m| {
            let body = m["body"].as_str().unwrap_or_default();
            let (p, n) = body[1..].split_once('-').expect("body p<p>-<n>");
            let delivered = m["priority"].as_i64().map(|p| p as i32);
            (p.parse().unwrap(), n.parse().unwrap(), delivered, 0)
        })
        .collect();
    let levels: Vec<u32> = got.iter().map(|m| m.0).collect();
    let want: Vec<u32> = (0..10).rev().flat_map(|p| [p; ROUNDS]).collect();
    assert_eq!(levels, want, "highest priority first: {report}");
    assert_fifo_within_each_priority(&got);
    assert!(
        got.iter().all(|m| m.2 == Some(m.0 as i32)),
        "the Python client reads each message's priority: {report}"
    );
}

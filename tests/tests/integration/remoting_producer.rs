//! apogee-client's producer over remoting frames (`SendTransport::Remoting`) against real
//! servers: what it sends is stored and consumed over gRPC as sent (tag, keys, properties,
//! ids, batch offsets, a scheduled message's recall handle); FIFO messages of the same
//! producer still go over gRPC; with authentication on, a signed send is stored and one
//! signed with a wrong secret is refused, storing nothing; after the broker restarts, the
//! producer dials again; and `apogee bench produce --transport remoting` runs.

use apogee_client::{
    ClientError, FilterExpression, Message, Producer, ReceivedMessage, SendTransport,
    SimpleConsumer,
};
use apogee_proto::ApogeeError;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One broker group of one broker, and `topics` (name, `topic create` options) created on it.
async fn cluster_with(topics: &[(&str, &[&str])]) -> Cluster {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    for (name, options) in topics {
        let mut args = vec!["topic", "create", name];
        args.extend_from_slice(options);
        cluster.cli(&args).success();
    }
    cluster
}

async fn remoting_producer(cluster: &Cluster) -> Producer {
    let config = cluster
        .client_config()
        .with_send_transport(SendTransport::Remoting);
    Producer::connect(config).await.expect("a producer")
}

/// A simple consumer of `group` subscribed to all of `topic` (over gRPC).
async fn consumer(cluster: &Cluster, group: &str, topic: &str) -> SimpleConsumer {
    let subscriptions = vec![(topic.to_string(), FilterExpression::default())];
    SimpleConsumer::connect(cluster.client_config(), group, subscriptions)
        .await
        .expect("a consumer")
}

/// Receives (and acks) until `count` messages of `topic` came, by message id.
async fn receive_all(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    count: usize,
) -> HashMap<String, ReceivedMessage> {
    let consumer = consumer(cluster, group, topic).await;
    let mut got = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} received: {got:?}",
            got.len()
        );
        let batch = consumer
            .receive(topic, 32, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .expect("receive");
        for m in batch {
            consumer.ack(&m).await.expect("ack");
            got.insert(m.message_id.clone(), m);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_remoting_are_stored_and_consumed_as_sent() {
    let cluster = cluster_with(&[
        ("orders", &["--queues", "2"]),
        ("orders-fifo", &["--type", "fifo"]),
        ("orders-later", &["--type", "delay"]),
    ])
    .await;
    let producer = remoting_producer(&cluster).await;

    let one = Message::builder("orders", "first")
        .tag("TagA")
        .keys(["k1", "k2"])
        .property("color", "blue")
        .build();
    let receipt = producer.send(one).await.expect("a send over remoting");
    assert_eq!(receipt.broker_name, "broker-a");
    assert!(receipt.recall_handle.is_empty());

    let batch: Vec<Message> = (0..3)
        .map(|i| Message::new("orders", format!("batch-{i}")))
        .collect();
    let receipts = producer
        .send_batch(batch)
        .await
        .expect("a batch over remoting");
    assert_eq!(receipts.len(), 3);
    for pair in receipts.windows(2) {
        assert_eq!(pair[1].offset, pair[0].offset + 1, "{receipts:?}");
        assert_eq!(pair[1].queue_id, pair[0].queue_id);
    }

    let due = Message::builder("orders-later", "later")
        .deliver_after(Duration::from_secs(1))
        .build();
    let scheduled = producer.send(due).await.expect("a scheduled send");
    assert!(!scheduled.recall_handle.is_empty(), "{scheduled:?}");

    // Remoting cannot express a message group: the same producer sends it over gRPC.
    let fifo = Message::builder("orders-fifo", "in order")
        .message_group("g1")
        .build();
    producer.send(fifo).await.expect("a FIFO send");

    let got = receive_all(&cluster, "readers", "orders", 4).await;
    let first = &got[&receipt.message_id];
    assert_eq!(&first.body[..], b"first");
    assert_eq!(first.tag.as_deref(), Some("TagA"));
    assert_eq!(first.keys, ["k1", "k2"]);
    assert_eq!(
        first.properties.get("color").map(String::as_str),
        Some("blue")
    );
    assert!(
        !first
            .properties
            .keys()
            .any(|k| k == "UNIQ_KEY" || k == "WAIT"),
        "remoting's own properties are not user properties: {:?}",
        first.properties
    );
    for (i, r) in receipts.iter().enumerate() {
        let m = &got[&r.message_id];
        assert_eq!(m.body, format!("batch-{i}").as_bytes());
        assert_eq!((m.queue_id, m.queue_offset), (r.queue_id, r.offset));
    }
    let later = receive_all(&cluster, "readers", "orders-later", 1).await;
    let later = &later[&scheduled.message_id];
    assert!(later.delivery_timestamp_ms.is_some(), "{later:?}");
    let fifo = receive_all(&cluster, "readers", "orders-fifo", 1).await;
    let m = fifo.values().next().unwrap();
    assert_eq!(m.message_group.as_deref(), Some("g1"));

    // A property remoting reserves is refused before anything is sent.
    let reserved = Message::builder("orders", "x")
        .property("TAGS", "y")
        .build();
    let e = producer.send(reserved).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Server(ApogeeError::IllegalProperty(_))),
        "{e}"
    );
    // A topic that does not exist is the server's answer.
    let e = producer
        .send(Message::new("no-such-topic", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Server(ApogeeError::TopicNotFound(_))),
        "{e:?}"
    );
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remoting_send_is_signed_and_a_wrong_secret_stores_nothing() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster
        .cli(&["topic", "create", "signed", "--queues", "1"])
        .success();
    let producer = remoting_producer(&cluster).await;
    let stored = producer
        .send(Message::new("signed", "by the admin"))
        .await
        .expect("a signed send");

    let admin = rpc::admin_credentials();
    let wrong = apogee_proto::auth::Credentials::new(admin.access_key(), "not-the-secret")
        .expect("credentials");
    let config = cluster
        .client_config()
        .with_credentials(wrong)
        .with_send_transport(SendTransport::Remoting);
    let impostor = Producer::connect(config).await.expect("a producer");
    let e = impostor
        .send(Message::new("signed", "forged"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Server(ApogeeError::Forbidden(_))),
        "{e:?}"
    );

    let got = receive_all(&cluster, "readers", "signed", 1).await;
    assert_eq!(got.len(), 1);
    assert!(got.contains_key(&stored.message_id));
    // Nothing more arrives: the forged send stored nothing.
    let consumer = consumer(&cluster, "readers", "signed").await;
    let more = consumer
        .receive(
            "signed",
            32,
            Duration::from_secs(30),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(more.is_empty(), "{more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_dials_again_after_the_broker_restarts() {
    let mut cluster = cluster_with(&[("again", &["--queues", "1"])]).await;
    let producer = remoting_producer(&cluster).await;
    producer
        .send(Message::new("again", "before"))
        .await
        .unwrap();
    cluster.kill_broker("broker-a");
    cluster.restart_broker("broker-a").await;
    let after = wait_until(Duration::from_secs(20), "a send after the restart", || {
        let producer = producer.clone();
        async move {
            producer
                .send(Message::new("again", "after"))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let got = receive_all(&cluster, "readers", "again", 2).await;
    assert!(got.contains_key(&after.message_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_produce_runs_over_remoting() {
    let cluster = cluster_with(&[("bench", &["--queues", "4"])]).await;
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "bench",
            "produce",
            "--topic",
            "bench",
            "--transport",
            "remoting",
            "--connections",
            "2",
            "--inflight",
            "4",
            "--count",
            "400",
        ])
        .success();
    let report = out.json();
    assert_eq!(report["transport"], "remoting", "{out}");
    assert_eq!(report["errors"], 0, "{out}");
    let stored = report["messages"].as_u64().unwrap() + report["warmup_messages"].as_u64().unwrap();
    assert_eq!(stored, 400, "{out}");
    // What it cannot carry is refused up front.
    let refused = cluster.cli(&[
        "bench",
        "produce",
        "--topic",
        "bench",
        "--transport",
        "remoting",
        "--transaction",
    ]);
    assert_ne!(refused.code, 0, "{refused}");
    let bad = cluster.cli(&[
        "bench",
        "produce",
        "--topic",
        "bench",
        "--transport",
        "carrier-pigeon",
    ]);
    assert!(bad.stderr.contains("grpc or remoting"), "{bad}");
}

//! Delivery semantics through the Rust client: fan-out to consumer groups,
//! work sharing inside a group, and redelivery after the invisible duration.

use apogee_client::{FilterExpression, Message, Producer, ReceivedMessage, SimpleConsumer};
use apogee_proto::v2::Code;
use apogee_tests::{BrokerSpec, Cluster};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `count` messages with bodies `msg-<i>` in batches, `parallel`
/// batches in flight; returns message id -> body and the broker groups used.
async fn send_numbered(
    producer: &Producer,
    topic: &str,
    count: usize,
    batch: usize,
    parallel: usize,
) -> (HashMap<String, String>, BTreeSet<String>) {
    let batches: Vec<Vec<usize>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|c| c.to_vec())
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(batches);
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (producer, next, batches, topic) = (
            producer.clone(),
            next.clone(),
            batches.clone(),
            topic.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(numbers) = batches.get(i) else { break };
                let messages: Vec<Message> = numbers
                    .iter()
                    .map(|n| Message::new(&topic, format!("msg-{n}")))
                    .collect();
                let receipts = producer
                    .send_batch(messages)
                    .await
                    .expect("send_batch failed");
                assert_eq!(receipts.len(), numbers.len());
                for (r, n) in receipts.into_iter().zip(numbers) {
                    sent.push((r.message_id, format!("msg-{n}"), r.broker_name));
                }
            }
            sent
        }));
    }
    let (mut ids, mut brokers) = (HashMap::new(), BTreeSet::new());
    for t in tasks {
        for (id, body, broker) in t.await.expect("send task panicked") {
            assert!(
                ids.insert(id.clone(), body).is_none(),
                "message id {id} returned twice by send"
            );
            brokers.insert(broker);
        }
    }
    assert_eq!(ids.len(), count);
    (ids, brokers)
}

/// Receives and acks with `parallel` loops until `expected` messages arrived
/// (or nothing more comes); returns every delivery, duplicates included.
async fn drain(
    consumer: &SimpleConsumer,
    topic: &str,
    expected: usize,
    parallel: usize,
) -> Vec<ReceivedMessage> {
    let seen = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (consumer, seen, topic) = (consumer.clone(), seen.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            receive_loop(&consumer, &topic, &seen, expected, deadline, 64).await
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("receive task panicked"));
    }
    all
}

/// One consumer's loop: receive, ack everything at once, repeat.
async fn receive_loop(
    consumer: &SimpleConsumer,
    topic: &str,
    seen: &AtomicUsize,
    expected: usize,
    deadline: Instant,
    batch: u32,
) -> Vec<ReceivedMessage> {
    let mut got = Vec::new();
    let mut empty_polls = 0;
    while seen.load(Ordering::SeqCst) < expected && Instant::now() < deadline && empty_polls < 5 {
        let messages = consumer
            .receive(
                topic,
                batch,
                Duration::from_secs(30),
                Duration::from_secs(1),
            )
            .await
            .expect("receive failed");
        if messages.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for (m, r) in messages.iter().zip(consumer.ack_many(&messages).await) {
            r.unwrap_or_else(|e| panic!("ack of {} failed: {e}", m.message_id));
        }
        seen.fetch_add(messages.len(), Ordering::SeqCst);
        got.extend(messages);
    }
    got
}

/// Asserts that `deliveries` is exactly `sent`, each once, first attempt.
fn assert_exactly_once(
    group: &str,
    sent: &HashMap<String, String>,
    deliveries: &[ReceivedMessage],
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for d in deliveries {
        *seen.entry(d.message_id.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(
        dups.is_empty(),
        "group {group}: duplicates (id, times): {dups:?}"
    );
    let missing: Vec<_> = sent
        .keys()
        .filter(|id| !seen.contains_key(id.as_str()))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "group {group}: {} of {} messages never arrived, e.g. {missing:?}",
        sent.len() - seen.len().min(sent.len()),
        sent.len()
    );
    let unknown: Vec<_> = seen
        .keys()
        .filter(|id| !sent.contains_key(**id))
        .take(10)
        .collect();
    assert!(
        unknown.is_empty(),
        "group {group}: received messages nobody sent: {unknown:?}"
    );
    for d in deliveries {
        assert_eq!(
            d.body_lossy(),
            sent[&d.message_id].as_str(),
            "group {group}: body of {}",
            d.message_id
        );
        assert_eq!(
            d.delivery_attempt, 1,
            "group {group}: {} was redelivered",
            d.message_id
        );
    }
    assert_eq!(deliveries.len(), sent.len());
}

fn subscribe(topic: &str) -> Vec<(String, FilterExpression)> {
    vec![(topic.to_string(), FilterExpression::default())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_groups_each_receive_all_10000_messages_exactly_once() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let topic = "fanout";
    let placed = cluster.create_topic(topic, 4).await;
    assert_eq!(
        placed.len(),
        2,
        "the topic should be on both broker groups: {placed:?}"
    );
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let (sent, send_brokers) = send_numbered(&producer, topic, 10_000, 50, 8).await;
    assert_eq!(
        send_brokers.len(),
        2,
        "sends should spread over both broker groups: {send_brokers:?}"
    );

    for group in ["group-a", "group-b"] {
        let consumer = SimpleConsumer::connect(cluster.client_config(), group, subscribe(topic))
            .await
            .expect("consumer");
        let deliveries = drain(&consumer, topic, sent.len(), 4).await;
        assert_exactly_once(group, &sent, &deliveries);
        let from: BTreeSet<&str> = deliveries.iter().map(|d| d.broker_name.as_str()).collect();
        assert_eq!(
            from.len(),
            2,
            "group {group} should receive from both broker groups: {from:?}"
        );
        let extra = consumer
            .receive(topic, 64, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(
            extra.is_empty(),
            "group {group} received {} messages after all were acked",
            extra.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_consumers_in_one_group_share_without_duplicates() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let topic = "shared";
    cluster.create_topic(topic, 4).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let (sent, _) = send_numbered(&producer, topic, 2_000, 20, 4).await;

    let seen = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let consumer =
            SimpleConsumer::connect(cluster.client_config(), "sharing-group", subscribe(topic))
                .await
                .expect("consumer");
        let (seen, barrier, expected) = (seen.clone(), barrier.clone(), sent.len());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            receive_loop(&consumer, topic, &seen, expected, deadline, 16).await
        }));
    }
    let mut per_consumer = Vec::new();
    for t in tasks {
        per_consumer.push(t.await.expect("consumer task panicked"));
    }
    let ids = |d: &[ReceivedMessage]| {
        d.iter()
            .map(|m| m.message_id.clone())
            .collect::<HashSet<_>>()
    };
    let (a, b) = (ids(&per_consumer[0]), ids(&per_consumer[1]));
    let both: Vec<_> = a.intersection(&b).take(10).collect();
    assert!(both.is_empty(), "delivered to both consumers: {both:?}");
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both consumers should get work: {} and {}",
        a.len(),
        b.len()
    );
    let all: Vec<ReceivedMessage> = per_consumer.into_iter().flatten().collect();
    assert_exactly_once("sharing-group", &sent, &all);
}

#[tokio::test]
async fn unacked_message_returns_after_invisible_duration_and_backoff_with_attempt_2() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let topic = "invisible";
    cluster.create_topic(topic, 1).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let sent = producer
        .send(Message::new(topic, "come back"))
        .await
        .expect("send");
    let consumer = SimpleConsumer::connect(cluster.client_config(), "slow-group", subscribe(topic))
        .await
        .expect("consumer");
    let invisible = Duration::from_secs(2);

    let first_at = Instant::now();
    let first = consumer
        .receive(topic, 8, invisible, Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1, "first receive: {first:?}");
    let first = &first[0];
    assert_eq!(first.message_id, sent.message_id);
    assert_eq!(first.delivery_attempt, 1);

    let again = consumer
        .receive(topic, 8, invisible, Duration::ZERO)
        .await
        .expect("receive");
    assert!(
        again.is_empty(),
        "redelivered before its invisible duration ended: {again:?}"
    );
    // Still hidden a second in (a long poll that ends before the duration).
    let again = consumer
        .receive(topic, 8, invisible, Duration::from_millis(800))
        .await
        .expect("receive");
    assert!(
        again.is_empty() || first_at.elapsed() >= invisible,
        "redelivered early: {again:?}"
    );

    let second = consumer
        .receive(topic, 8, Duration::from_secs(30), Duration::from_secs(10))
        .await
        .expect("receive");
    let waited = first_at.elapsed();
    assert_eq!(
        second.len(),
        1,
        "the unacked message should come back: {second:?}"
    );
    let second = &second[0];
    // The default retry policy waits 1 s after a failed first attempt.
    let due = invisible + Duration::from_secs(1);
    assert!(
        waited >= due - Duration::from_millis(50),
        "came back after {waited:?}, before {due:?} (invisible time + first backoff)"
    );
    assert_eq!(second.message_id, sent.message_id);
    assert_eq!(&second.body[..], b"come back");
    assert_eq!(second.delivery_attempt, 2);
    assert_ne!(
        second.receipt_handle, first.receipt_handle,
        "a redelivery needs a new receipt handle"
    );

    let stale = consumer
        .ack(first)
        .await
        .expect_err("the old receipt handle must be refused");
    assert_eq!(
        stale.code(),
        Some(Code::InvalidReceiptHandle),
        "stale handle: {stale}"
    );
    consumer
        .ack(second)
        .await
        .expect("the new receipt handle acks");
    let after = consumer
        .receive(topic, 8, Duration::from_secs(2), Duration::from_secs(3))
        .await
        .expect("receive");
    assert!(after.is_empty(), "an acked message came back: {after:?}");
}

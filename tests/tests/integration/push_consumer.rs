//! The Rust client's push consumer against real processes: bounded
//! concurrency with every message handled once, a graceful shutdown that
//! loses nothing, redelivery of failed messages with rising attempts after
//! the group's backoff, invisibility renewal for slow handlers, and FIFO
//! order within message groups (with the producer keeping each message group
//! on one queue).

use apogee_client::{
    BackoffPolicy, ConsumeResult, FilterExpression, Message, Producer, PushConsumer,
    ReceivedMessage, SimpleConsumer,
};
use apogee_proto::v2::MessageType;
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends `count` messages with bodies `msg-<i>`, 4 batches of 100 in
/// flight; returns message id -> body.
async fn send_numbered(producer: &Producer, topic: &str, count: usize) -> HashMap<String, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (producer, next, topic) = (producer.clone(), next.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            loop {
                let start = next.fetch_add(100, Ordering::Relaxed);
                if start >= count {
                    break;
                }
                let bodies: Vec<String> = (start..(start + 100).min(count))
                    .map(|i| format!("msg-{i}"))
                    .collect();
                let messages = bodies.iter().map(|b| Message::new(&topic, b.clone()));
                let receipts = producer
                    .send_batch(messages.collect())
                    .await
                    .expect("send_batch failed");
                sent.extend(receipts.into_iter().map(|r| r.message_id).zip(bodies));
            }
            sent
        }));
    }
    let mut ids = HashMap::new();
    for t in tasks {
        ids.extend(t.await.expect("send task panicked"));
    }
    assert_eq!(ids.len(), count, "every send returns its own id");
    ids
}

/// Per message id, the handler calls by consumer name with their delivery
/// attempt.
type Calls = HashMap<String, Vec<(&'static str, i32)>>;

/// What the listeners saw.
#[derive(Clone, Default)]
struct Log {
    calls: Arc<Mutex<Calls>>,
    /// Messages whose body was not the one sent (a panic in a listener
    /// would only count as a failure).
    wrong_bodies: Arc<Mutex<Vec<String>>>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Log {
    /// A listener that records every call, holds the message for `hold`,
    /// checks the body, and succeeds.
    fn listener(
        &self,
        name: &'static str,
        hold: Duration,
        sent: Arc<HashMap<String, String>>,
    ) -> impl Fn(ReceivedMessage) -> futures::future::BoxFuture<'static, ConsumeResult>
           + Send
           + Sync
           + 'static {
        let log = self.clone();
        move |m: ReceivedMessage| {
            let log = log.clone();
            let sent = sent.clone();
            Box::pin(async move {
                let now = log.running.fetch_add(1, Ordering::SeqCst) + 1;
                log.peak.fetch_max(now, Ordering::SeqCst);
                if hold.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(hold).await;
                }
                if sent.get(&m.message_id).map(String::as_str) != Some(m.body_lossy().as_ref()) {
                    log.wrong_bodies.lock().unwrap().push(m.message_id.clone());
                }
                log.calls
                    .lock()
                    .unwrap()
                    .entry(m.message_id.clone())
                    .or_default()
                    .push((name, m.delivery_attempt));
                log.running.fetch_sub(1, Ordering::SeqCst);
                ConsumeResult::Success
            })
        }
    }

    fn handled(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Every call so far (and checks that every body was the one sent).
    fn snapshot(&self) -> Calls {
        let wrong = self.wrong_bodies.lock().unwrap();
        assert!(
            wrong.is_empty(),
            "bodies differ from what was sent: {wrong:?}"
        );
        self.calls.lock().unwrap().clone()
    }
}

async fn wait_all_handled(log: &Log, count: usize) {
    wait_until(
        Duration::from_secs(180),
        &format!("{count} messages handled"),
        || async {
            match log.handled() {
                n if n >= count => Ok(()),
                n => Err(format!("{n} handled")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_messages_with_concurrency_16_are_each_handled_once() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let topic = "push-all";
    assert_eq!(cluster.create_topic(topic, 4).await.len(), 2);
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let log = Log::default();
    // Bodies are checked against what was sent, so the listener gets the
    // map once it is complete: receiving starts after the sends.
    let sent = Arc::new(send_numbered(&producer, topic, 10_000).await);
    let consumer = PushConsumer::builder(cluster.client_config(), "push-all-group")
        .subscribe(topic, FilterExpression::default())
        .concurrency(16)
        .listener(log.listener("A", Duration::ZERO, sent.clone()))
        .start()
        .await
        .expect("push consumer starts");
    assert!(!consumer.is_fifo());
    wait_all_handled(&log, sent.len()).await;
    consumer.shutdown().await;

    let calls = log.snapshot();
    let twice: Vec<_> = calls
        .iter()
        .filter(|(_, c)| c.len() != 1)
        .take(10)
        .collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let unknown: Vec<_> = calls.keys().filter(|id| !sent.contains_key(*id)).collect();
    assert!(unknown.is_empty(), "handled but never sent: {unknown:?}");
    assert_eq!(calls.len(), sent.len());
    assert!(
        calls.values().all(|c| c[0].1 == 1),
        "every message was handled at its first delivery"
    );
    let peak = log.peak.load(Ordering::SeqCst);
    assert!(
        peak <= 16,
        "{peak} handlers ran at once with concurrency 16"
    );
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_mid_stream_loses_nothing() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let topic = "push-handover";
    let group = "push-handover-group";
    cluster.create_topic(topic, 4).await;
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let sent = Arc::new(send_numbered(&producer, topic, 2_000).await);
    let log = Log::default();
    let start = |name: &'static str, concurrency: usize| {
        PushConsumer::builder(cluster.client_config(), group)
            .subscribe(topic, FilterExpression::default())
            .concurrency(concurrency)
            .invisible_duration(Duration::from_secs(5))
            .listener(log.listener(name, Duration::from_millis(20), sent.clone()))
            .start()
    };

    let a = start("A", 8).await.expect("consumer A starts");
    wait_all_handled(&log, 300).await;
    a.shutdown().await;
    assert_eq!(
        log.running.load(Ordering::SeqCst),
        0,
        "shutdown returned while handlers were still running"
    );
    let by_a: HashSet<String> = log.snapshot().into_keys().collect();
    assert!(
        by_a.len() < sent.len(),
        "consumer A was meant to stop mid-stream"
    );

    let b = start("B", 16).await.expect("consumer B starts");
    wait_all_handled(&log, sent.len()).await;
    b.shutdown().await;

    let calls = log.snapshot();
    let missing = sent.keys().filter(|id| !calls.contains_key(*id)).count();
    assert_eq!(missing, 0, "messages never handled");
    for (id, c) in &calls {
        let a_calls = c.iter().filter(|(n, _)| *n == "A").count();
        assert!(a_calls <= 1, "A handled {id} {a_calls} times");
        assert!(
            !(a_calls == 1 && c.iter().any(|(n, _)| *n == "B")),
            "{id} was handled (and acked) by A, yet came back to B: {c:?}"
        );
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_deliveries_come_back_with_rising_attempts_after_the_backoff() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let (topic, group) = ("push-retry", "push-retry-group");
    cluster.create_topic(topic, 1).await;
    cluster
        .cli(&["group", "create", group, "--retry-custom", "1s,3s"])
        .success();
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let calls: Arc<Mutex<Vec<(i32, Instant)>>> = Arc::default();
    let seen = calls.clone();
    let consumer = PushConsumer::builder(cluster.client_config(), group)
        .subscribe(topic, FilterExpression::default())
        .listener(move |m: ReceivedMessage| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((m.delivery_attempt, Instant::now()));
                match m.delivery_attempt {
                    1 => panic!("the first delivery fails with a panic"),
                    2 => ConsumeResult::Failure,
                    _ => ConsumeResult::Success,
                }
            }
        })
        .start()
        .await
        .expect("push consumer starts");
    producer
        .send(Message::new(topic, "flaky"))
        .await
        .expect("send");
    wait_until(Duration::from_secs(120), "three deliveries", || async {
        match calls.lock().unwrap().len() {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} deliveries")),
        }
    })
    .await;
    let policy = consumer.backoff_policy();
    consumer.shutdown().await;
    assert_eq!(
        policy,
        BackoffPolicy::Customized(vec![Duration::from_secs(1), Duration::from_secs(3)]),
        "the group's backoff reaches the consumer in the Settings"
    );

    let calls = calls.lock().unwrap().clone();
    let attempts: Vec<i32> = calls.iter().map(|c| c.0).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].1 - pair[0].1;
        // A nack asks for at least the protocol's 1 s minimum.
        let backoff = policy.delay(i as u32 + 1).max(Duration::from_secs(1));
        assert!(
            gap + Duration::from_millis(100) >= backoff && gap <= backoff + Duration::from_secs(10),
            "delivery {} came {gap:?} after the previous one; the backoff is {backoff:?} ({policy:?})",
            i + 2
        );
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_handler_keeps_its_message_invisible_by_client_renewals_and_acks_it() {
    slow_handler_keeps_its_message(true).await;
}

/// The default: receives with `auto_renew`, the broker renews (here every second, so a
/// handler of 7 s needs several renewals) until the ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_handler_keeps_its_message_invisible_by_broker_renewals_and_acks_it() {
    slow_handler_keeps_its_message(false).await;
}

async fn slow_handler_keeps_its_message(client_renews: bool) {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("CONSUME__AUTO_RENEW_PERIOD_MS", "1000"))
        .start()
        .await;
    let topic = "push-slow";
    let group = "push-slow-group";
    cluster.create_topic(topic, 1).await;
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let sent = Arc::new(send_numbered(&producer, topic, 1).await);
    let log = Log::default();
    // Held for 3.5 times the invisible duration (client renewals) or 7 renewal
    // periods (broker renewals): without renewals the message would come back
    // (to this consumer, which has free slots) while its first handler still runs.
    let mut builder = PushConsumer::builder(cluster.client_config(), group)
        .subscribe(topic, FilterExpression::default())
        .listener(log.listener("A", Duration::from_secs(7), sent.clone()));
    if client_renews {
        builder = builder.invisible_duration(Duration::from_secs(2));
    }
    let consumer = builder.start().await.expect("push consumer starts");
    wait_all_handled(&log, 1).await;
    consumer.shutdown().await;
    let calls = log.snapshot();
    let c = calls.values().next().unwrap();
    assert_eq!(c, &vec![("A", 1)], "handled once, at the first delivery");

    // The ack used the renewed receipt handle: nothing comes back.
    let check = SimpleConsumer::connect(
        cluster.client_config(),
        group,
        vec![(topic.to_string(), FilterExpression::default())],
    )
    .await
    .unwrap();
    let again = check
        .receive(topic, 16, Duration::from_secs(10), Duration::from_secs(4))
        .await
        .expect("receive");
    assert!(
        again.is_empty(),
        "the acked message came back: {:?}",
        again.iter().map(|m| &m.message_id).collect::<Vec<_>>()
    );
    check.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_mode_handles_each_message_group_in_send_order() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let topic = "push-fifo";
    cluster
        .create_typed_topic(topic, 4, &[MessageType::Fifo])
        .await;
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let (groups, per_group) = (6, 40);
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    let mut queues: HashMap<String, HashSet<(String, i32)>> = HashMap::new();
    for n in 0..per_group {
        for g in 0..groups {
            let group = format!("order-{g}");
            let msg = Message::builder(topic, format!("{group}:{n}"))
                .message_group(&group)
                .build();
            let r = producer.send(msg).await.expect("fifo send");
            expected
                .entry(group.clone())
                .or_default()
                .push(r.message_id);
            queues
                .entry(group)
                .or_default()
                .insert((r.broker_name, r.queue_id));
        }
    }
    for (group, q) in &queues {
        assert_eq!(
            q.len(),
            1,
            "message group {group} went to several queues: {q:?}"
        );
    }

    // Success order per message group; every 7th message fails once.
    let order: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let failed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlaps: Arc<Mutex<Vec<String>>> = Arc::default();
    let (o, f, r, v) = (
        order.clone(),
        failed.clone(),
        running.clone(),
        overlaps.clone(),
    );
    let consumer = PushConsumer::builder(cluster.client_config(), "push-fifo-group")
        .subscribe(topic, FilterExpression::default())
        .concurrency(8)
        .fifo(true)
        .listener(move |m: ReceivedMessage| {
            let (order, failed, running, overlaps) = (o.clone(), f.clone(), r.clone(), v.clone());
            async move {
                let group = m.message_group.clone().unwrap_or_default();
                if !running.lock().unwrap().insert(group.clone()) {
                    overlaps.lock().unwrap().push(group.clone());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                let n: usize = m.body_lossy().rsplit(':').next().unwrap().parse().unwrap();
                let fail = n % 7 == 3 && failed.lock().unwrap().insert(m.message_id.clone());
                running.lock().unwrap().remove(&group);
                if fail {
                    return ConsumeResult::Failure;
                }
                order
                    .lock()
                    .unwrap()
                    .entry(group)
                    .or_default()
                    .push(m.message_id.clone());
                ConsumeResult::Success
            }
        })
        .start()
        .await
        .expect("push consumer starts");
    assert!(consumer.is_fifo());
    let total = groups * per_group;
    wait_until(
        Duration::from_secs(180),
        "every fifo message handled",
        || async {
            match order.lock().unwrap().values().map(Vec::len).sum::<usize>() {
                n if n >= total => Ok(()),
                n => Err(format!("{n} of {total} handled")),
            }
        },
    )
    .await;
    consumer.shutdown().await;
    let overlaps = overlaps.lock().unwrap().clone();
    assert!(
        overlaps.is_empty(),
        "two messages of one group in handlers at once: {overlaps:?}"
    );
    let order = order.lock().unwrap().clone();
    for (group, ids) in &expected {
        assert_eq!(
            order.get(group),
            Some(ids),
            "message group {group}: handled order differs from send order"
        );
    }
    assert!(!failed.lock().unwrap().is_empty());
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifo_group_retries_locally_then_dead_letters_and_moves_on() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let (topic, group) = ("push-fifo-dlq", "push-fifo-dlq-group");
    cluster
        .create_typed_topic(topic, 1, &[MessageType::Fifo])
        .await;
    cluster
        .cli(&[
            "group",
            "create",
            group,
            "--fifo",
            "true",
            "--max-attempts",
            "2",
            "--retry-custom",
            "1s",
        ])
        .success();
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let mut ids = Vec::new();
    for body in ["poison", "second", "third"] {
        let msg = Message::builder(topic, body).message_group("g").build();
        ids.push(producer.send(msg).await.expect("fifo send").message_id);
    }

    // The poison message always fails; the others succeed.
    let calls: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let successes: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c, s) = (calls.clone(), successes.clone());
    let consumer = PushConsumer::builder(cluster.client_config(), group)
        .subscribe(topic, FilterExpression::default())
        .listener(move |m: ReceivedMessage| {
            let (calls, successes) = (c.clone(), s.clone());
            async move {
                let body = m.body_lossy().to_string();
                calls
                    .lock()
                    .unwrap()
                    .push((body.clone(), m.delivery_attempt));
                if body == "poison" {
                    return ConsumeResult::Failure;
                }
                successes.lock().unwrap().push(m.message_id.clone());
                ConsumeResult::Success
            }
        })
        .start()
        .await
        .expect("push consumer starts");
    assert!(
        consumer.is_fifo(),
        "FIFO is learned from the group's Settings"
    );
    assert_eq!(consumer.max_delivery_attempts(), 2);
    wait_until(
        Duration::from_secs(60),
        "both good messages handled",
        || async {
            match successes.lock().unwrap().len() {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} handled")),
            }
        },
    )
    .await;
    let addr = cluster.broker("broker-a").addr.clone();
    let dlq = format!("%DLQ%{group}");
    let dead = wait_until(Duration::from_secs(30), "the dead letter", || {
        let (addr, dlq) = (addr.clone(), dlq.clone());
        async move {
            let mut broker = apogee_tests::rpc::messaging(&addr);
            let dead = apogee_tests::rpc::pull_queue(&mut broker, "dlq-reader", &dlq, 0).await;
            if dead.is_empty() {
                Err("nothing in the dead-letter topic".to_string())
            } else {
                Ok(dead)
            }
        }
    })
    .await;
    consumer.shutdown().await;

    assert_eq!(
        dead.iter()
            .map(apogee_tests::rpc::id_of)
            .collect::<Vec<_>>(),
        vec![ids[0].clone()],
        "the poison message, once, in {dlq}"
    );
    assert_eq!(
        calls.lock().unwrap().clone(),
        vec![
            ("poison".to_string(), 1),
            ("poison".to_string(), 2),
            ("second".to_string(), 1),
            ("third".to_string(), 1),
        ],
        "two attempts of the poison message, then the rest of its group in order"
    );
    assert_eq!(successes.lock().unwrap().clone(), ids[1..].to_vec());
    producer.shutdown().await;
}

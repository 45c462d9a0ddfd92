//! Consumer groups of RocketMQ's Rust remoting client against a real NameServer and broker:
//! two push consumers of one group share the queues and, when one stops, the other takes
//! them over; a listener that keeps failing gets its message back through the group's retry
//! topic and, past the consumer's max reconsume times, the message is dead-lettered in
//! `%DLQ%<group>` (where `apogee dlq list` shows it).

use crate::remoting_support::{
    message, producer, push_consumer, record_concurrently, OrPanic, Record,
};
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer, MQPushConsumer,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sends `<prefix>-<i>` for i in 0..n, message i to queue i % 4.
async fn send_to_every_queue(
    producer: &DefaultMQProducer,
    topic: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..n {
        let body = format!("{prefix}-{i}");
        let selector =
            |queues: &[MessageQueue], _: &Message, i: &usize| queues.get(i % queues.len()).cloned();
        producer
            .send_with_selector(message(topic, "g", &body), selector, i)
            .await
            .or_panic("a send")
            .expect("a send result");
        sent.push(body);
    }
    sent
}

fn queues_of(record: &Record, prefix: &str) -> BTreeSet<i32> {
    record
        .all()
        .into_iter()
        .filter(|c| c.body.starts_with(prefix))
        .map(|c| c.queue_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_two_rebalances_when_one_stops() {
    let topic = "remoting-rebalance";
    let group = "rebalancing-readers";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    cluster.create_topic(topic, 4).await;
    let mut first = push_consumer(&cluster, group).build();
    first.subscribe(topic, "*").await.or_panic("subscribe");
    let first_record = record_concurrently(&mut first);
    first.start().await.or_panic("first consumer start");
    let mut second = push_consumer(&cluster, group).build();
    second.subscribe(topic, "*").await.or_panic("subscribe");
    let second_record = record_concurrently(&mut second);
    second.start().await.or_panic("second consumer start");
    let producer = producer(&cluster, "rebalance-producers").await;

    // Both members get queues: rounds of one message per queue until each consumed some
    // (the second joined after the first took every queue: the group rebalances).
    let mut round = 0;
    wait_until(Duration::from_secs(40), "both members consuming", || {
        round += 1;
        let (producer, first_record, second_record) = (&producer, &first_record, &second_record);
        let prefix = format!("shared-{round}");
        async move {
            send_to_every_queue(producer, topic, &prefix, 4).await;
            let (a, b) = (first_record.all().len(), second_record.all().len());
            if a > 0 && b > 0 {
                Ok(())
            } else {
                Err(format!("first consumed {a}, second {b}"))
            }
        }
    })
    .await;

    // The second stops; what is sent now, to every queue, reaches the first, also from the
    // queues the second had.
    second.shutdown().await;
    let after = send_to_every_queue(&producer, topic, "after", 8).await;
    first_record
        .wait_for(
            &after,
            Duration::from_secs(45),
            "the remaining member's messages from every queue",
        )
        .await;
    assert_eq!(
        queues_of(&first_record, "after"),
        BTreeSet::from([0, 1, 2, 3])
    );
    assert!(
        queues_of(&second_record, "after").is_empty(),
        "a stopped member consumed: {:?}",
        second_record.all()
    );
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_listener_is_retried_then_dead_lettered() {
    let topic = "remoting-retry";
    let group = "failing-readers";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    cluster.create_topic(topic, 2).await;
    let mut producer = producer(&cluster, "retry-producers").await;
    producer
        .send(message(topic, "poison", "never consumed well"))
        .await
        .or_panic("a send")
        .expect("a send result");

    // Every attempt fails; one reconsume allowed, then the dead-letter queue.
    let mut consumer = push_consumer(&cluster, group)
        .max_reconsume_times(1)
        .build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let attempts: Arc<Mutex<Vec<(i32, Instant, String)>>> = Arc::default();
    let seen = attempts.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            for m in msgs {
                let body = m
                    .body()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .push((m.reconsume_times(), Instant::now(), body));
            }
            Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
        },
    );
    consumer.start().await.or_panic("push consumer start");

    let listed = wait_until(
        Duration::from_secs(50),
        "the message in the group's dead-letter queue",
        || async {
            let out = cluster.cli(&["dlq", "list", "--group", group, "-o", "json"]);
            let list: Vec<Value> = out.success().json().as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                Err(format!("attempts so far {:?}", attempts.lock().unwrap()))
            } else {
                Ok(list)
            }
        },
    )
    .await;
    let attempts = attempts.lock().unwrap().clone();
    let times: Vec<i32> = attempts.iter().map(|a| a.0).collect();
    assert_eq!(
        times,
        [0, 1],
        "the first delivery and one retry: {attempts:?}"
    );
    assert!(attempts.iter().all(|a| a.2 == "never consumed well"));
    let backoff = attempts[1].1 - attempts[0].1;
    assert!(
        backoff >= Duration::from_secs(1),
        "the retry came back after {backoff:?}, without a backoff"
    );
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["group"], group);
    assert_eq!(listed[0]["original_topic"], topic);
    assert_eq!(listed[0]["tag"], "poison");

    consumer.shutdown().await;
    producer.shutdown().await;
}

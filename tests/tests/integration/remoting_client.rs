//! RocketMQ's Rust remoting client (`rocketmq-client-rust`, the TCP protocol of RocketMQ 4.x
//! clients) against a real NameServer and broker: a sync send consumed by a push consumer,
//! a batch, ordered sends through a queue selector consumed in order per queue by an
//! orderly consumer, broadcast consumption, a delay level, and messages crossing between
//! remoting and gRPC clients both ways.

use crate::remoting_support::{
    bodies, message, producer, push_consumer, record_concurrently, Consumed, OrPanic, Record,
};
use apogee_client::{FilterExpression, Message as GrpcMessage, Producer, SimpleConsumer};
use apogee_proto::v2::MessageType;
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use rocketmq_client_rust::{
    ConsumeOrderlyContext, ConsumeOrderlyStatus, MQPushConsumer, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn cluster_with_topic(topic: &str, queues: i32) -> Cluster {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    cluster.create_topic(topic, queues).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_send_reaches_a_push_consumer() {
    let topic = "remoting-sync";
    let cluster = cluster_with_topic(topic, 4).await;
    let mut producer = producer(&cluster, "sync-producers").await;
    let result = producer
        .send(message(topic, "greeting", "hello over remoting"))
        .await
        .or_panic("a sync send")
        .expect("a send result");
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
    let sent_id = result.msg_id.clone().expect("a message id").to_string();
    let queue = result.message_queue.clone().expect("the queue it went to");
    assert_eq!(queue.topic_str(), topic);

    let mut consumer = push_consumer(&cluster, "sync-readers").build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let record = record_concurrently(&mut consumer);
    consumer.start().await.or_panic("push consumer start");
    record
        .wait_for(
            &["hello over remoting".to_string()],
            Duration::from_secs(30),
            "the push consumer's message",
        )
        .await;
    let got = &record.all()[0];
    assert_eq!(got.topic, topic);
    assert_eq!(got.tag.as_deref(), Some("greeting"));
    assert_eq!(got.msg_id, sent_id);
    assert_eq!(got.queue_id, queue.queue_id());
    assert_eq!(got.queue_offset as u64, result.queue_offset);
    assert_eq!(got.reconsume_times, 0);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_send_is_consumed_whole() {
    let topic = "remoting-batch";
    let cluster = cluster_with_topic(topic, 2).await;
    let mut producer = producer(&cluster, "batch-producers").await;
    let expected = bodies("batch", 8);
    let batch: Vec<Message> = expected.iter().map(|b| message(topic, "b", b)).collect();
    let result = producer.send_batch(batch).await.or_panic("a batch send");
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
    let ids = result.msg_id.clone().expect("the batch's ids").to_string();
    assert_eq!(ids.split(',').count(), 8, "one id per message: {ids}");

    let mut consumer = push_consumer(&cluster, "batch-readers").build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let record = record_concurrently(&mut consumer);
    consumer.start().await.or_panic("push consumer start");
    record
        .wait_for(&expected, Duration::from_secs(30), "the batch")
        .await;
    let all = record.all();
    assert_eq!(all.len(), 8, "each message once: {all:?}");
    // A batch goes to one queue, at consecutive offsets in send order.
    let queue = all[0].queue_id;
    assert!(all.iter().all(|c| c.queue_id == queue), "{all:?}");
    let mut by_offset = all.clone();
    by_offset.sort_by_key(|c| c.queue_offset);
    let in_offset_order: Vec<String> = by_offset.into_iter().map(|c| c.body).collect();
    assert_eq!(in_offset_order, expected);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_sends_are_consumed_in_order_per_queue() {
    let topic = "remoting-ordered";
    let cluster = cluster_with_topic(topic, 4).await;
    let mut producer = producer(&cluster, "order-producers").await;
    // Ten orders of five steps each, every order's steps through the selector to one queue.
    let mut sent: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for step in 0..5 {
        for order in 0..10usize {
            let body = format!("order-{order}-step-{step}");
            let selector = |queues: &[MessageQueue], _: &Message, order: &usize| {
                queues.get(order % queues.len()).cloned()
            };
            let result = producer
                .send_with_selector(message(topic, "o", &body), selector, order)
                .await
                .or_panic("an ordered send")
                .expect("a send result");
            let queue = result.message_queue.expect("its queue").queue_id();
            assert_eq!(queue as usize, order % 4, "the selector's queue for {body}");
            sent.entry(order).or_default().push(body);
        }
    }

    let mut consumer = push_consumer(&cluster, "order-readers").build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let record = Record::default();
    let inner = record.clone();
    consumer.register_message_listener_orderly(
        move |msgs: &[&MessageExt], _: &mut ConsumeOrderlyContext| {
            for m in msgs {
                inner.push(m);
            }
            Ok(ConsumeOrderlyStatus::Success)
        },
    );
    consumer.start().await.or_panic("orderly consumer start");
    assert!(consumer.is_consume_orderly());
    let expected: Vec<String> = sent.values().flatten().cloned().collect();
    record
        .wait_for(&expected, Duration::from_secs(40), "every ordered message")
        .await;
    let all = record.all();
    for (order, steps) in &sent {
        let seen: Vec<&Consumed> = all
            .iter()
            .filter(|c| c.body.starts_with(&format!("order-{order}-")))
            .collect();
        let seen_bodies: Vec<&str> = seen.iter().map(|c| c.body.as_str()).collect();
        assert_eq!(&seen_bodies, steps, "order {order}: consumed in send order");
        assert!(seen.iter().all(|c| c.queue_id as usize == order % 4));
    }
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_consumers_each_get_every_message() {
    let topic = "remoting-broadcast";
    let cluster = cluster_with_topic(topic, 2).await;
    let mut consumers = Vec::new();
    let mut records = Vec::new();
    for _ in 0..2 {
        let mut c = push_consumer(&cluster, "broadcast-readers")
            .message_model(MessageModel::Broadcasting)
            .build();
        c.subscribe(topic, "*").await.or_panic("subscribe");
        records.push(record_concurrently(&mut c));
        c.start().await.or_panic("broadcast consumer start");
        consumers.push(c);
    }
    let mut producer = producer(&cluster, "broadcast-producers").await;
    let expected = bodies("everyone", 6);
    for b in &expected {
        producer
            .send(message(topic, "all", b))
            .await
            .or_panic("a send")
            .expect("a send result");
    }
    for (i, record) in records.iter().enumerate() {
        record
            .wait_for(
                &expected,
                Duration::from_secs(30),
                &format!("broadcast consumer {i}'s messages"),
            )
            .await;
    }
    for mut c in consumers {
        c.shutdown().await;
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_level_send_is_consumed_after_its_delay() {
    let topic = "remoting-delay";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    cluster
        .create_typed_topic(topic, 2, &[MessageType::Normal, MessageType::Delay])
        .await;
    let mut consumer = push_consumer(&cluster, "delay-readers").build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let record = record_concurrently(&mut consumer);
    consumer.start().await.or_panic("push consumer start");

    let mut producer = producer(&cluster, "delay-producers").await;
    let mut delayed = message(topic, "later", "five seconds later");
    // Level 2 of RocketMQ's levels (1s 5s 10s 30s 1m ...): 5 s.
    delayed.set_delay_time_level(2);
    let sent_at = Instant::now();
    producer
        .send(delayed)
        .await
        .or_panic("a delayed send")
        .expect("a send result");
    producer
        .send(message(topic, "now", "at once"))
        .await
        .or_panic("a send")
        .expect("a send result");
    record
        .wait_for(
            &["at once".to_string()],
            Duration::from_secs(30),
            "the undelayed message",
        )
        .await;
    record
        .wait_for(
            &["five seconds later".to_string()],
            Duration::from_secs(30),
            "the delayed message",
        )
        .await;
    let waited = sent_at.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "delivered {waited:?} after the send, before its 5 s delay"
    );
    let bodies = record.bodies();
    assert_eq!(bodies, ["at once", "five seconds later"]);
    consumer.shutdown().await;
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_between_remoting_and_grpc_clients() {
    let topic = "remoting-cross";
    let cluster = cluster_with_topic(topic, 2).await;

    // Remoting to gRPC: tag, key and a user property survive.
    let mut remoting_producer = producer(&cluster, "cross-producers").await;
    let mut m = Message::builder()
        .topic(topic)
        .tags("from-remoting")
        .key("key-1")
        .body_slice(b"sent over remoting")
        .build_unchecked();
    m.put_user_property("color".into(), "blue".into())
        .expect("a user property");
    let sent = remoting_producer
        .send(m)
        .await
        .or_panic("a remoting send")
        .expect("a send result");
    let sent_id = sent.msg_id.expect("an id").to_string();
    let grpc = SimpleConsumer::connect(
        cluster.client_config(),
        "cross-grpc-readers",
        vec![(topic.to_string(), FilterExpression::tag("from-remoting"))],
    )
    .await
    .or_panic("a gRPC consumer");
    let got = wait_until(
        Duration::from_secs(30),
        "the remoting message over gRPC",
        || async {
            let got = grpc
                .receive(topic, 4, Duration::from_secs(30), Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            got.into_iter()
                .next()
                .ok_or_else(|| "nothing yet".to_string())
        },
    )
    .await;
    grpc.ack(&got).await.or_panic("ack");
    assert_eq!(&got.body[..], b"sent over remoting");
    assert_eq!(got.tag.as_deref(), Some("from-remoting"));
    assert_eq!(got.keys, ["key-1"]);
    assert_eq!(
        got.properties.get("color").map(String::as_str),
        Some("blue")
    );
    assert_eq!(got.message_id, sent_id);

    // gRPC to remoting.
    let grpc_producer = Producer::connect(cluster.client_config())
        .await
        .or_panic("a gRPC producer");
    let receipt = grpc_producer
        .send(
            GrpcMessage::builder(topic, "sent over gRPC")
                .tag("from-grpc")
                .property("size", "9")
                .build(),
        )
        .await
        .or_panic("a gRPC send");
    let mut consumer = push_consumer(&cluster, "cross-remoting-readers").build();
    consumer
        .subscribe(topic, "from-grpc")
        .await
        .or_panic("subscribe");
    let record = record_concurrently(&mut consumer);
    consumer.start().await.or_panic("push consumer start");
    record
        .wait_for(
            &["sent over gRPC".to_string()],
            Duration::from_secs(30),
            "the gRPC message over remoting",
        )
        .await;
    let all = record.all();
    assert_eq!(
        all.len(),
        1,
        "only the gRPC message matches the tag: {all:?}"
    );
    assert_eq!(all[0].tag.as_deref(), Some("from-grpc"));
    assert_eq!(all[0].msg_id, receipt.message_id);
    consumer.shutdown().await;
    remoting_producer.shutdown().await;
}

//! A round trip through RocketMQ's official Rust client, for tests that vary how it connects
//! (TLS, credentials): a producer sends numbered messages with a tag, a simple consumer of a
//! new group receives and acks them.

use apogee_tests::wait_until;
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use std::collections::BTreeSet;
use std::time::Duration;

/// Sends `count` messages tagged `tag` to `topic` with `option`, then receives them as
/// `group`; returns the ids sent and the ids received (within 60 s).
pub async fn send_and_receive(
    option: ClientOption,
    topic: &str,
    group: &str,
    tag: &str,
    count: usize,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut producer_option = ProducerOption::default();
    producer_option.set_topics(vec![topic]);
    let mut producer =
        rocketmq::Producer::new(producer_option, option.clone()).expect("official producer");
    producer.start().await.expect("official producer start");
    let mut sent = BTreeSet::new();
    for i in 0..count {
        let message = MessageBuilder::builder()
            .set_topic(topic)
            .set_tag(tag)
            .set_body(format!("{tag}-{i}").into_bytes())
            .build()
            .expect("message");
        let receipt = producer.send(message).await.expect("official send");
        sent.insert(receipt.message_id().to_string());
    }

    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![topic]);
    consumer_option.set_consumer_group(group);
    let mut consumer =
        rocketmq::SimpleConsumer::new(consumer_option, option).expect("official consumer");
    consumer.start().await.expect("official consumer start");
    let filter = FilterExpression::new(FilterType::Tag, tag);
    let received = std::cell::RefCell::new(BTreeSet::new());
    wait_until(
        Duration::from_secs(60),
        "the official consumer's messages",
        || {
            let (consumer, received, filter) = (&consumer, &received, &filter);
            async move {
                let messages = consumer
                    .receive_with(topic, filter, 16, Duration::from_secs(30))
                    .await
                    .map_err(|e| format!("official receive: {e:?}"))?;
                for m in messages {
                    consumer
                        .ack(&m)
                        .await
                        .map_err(|e| format!("official ack: {e:?}"))?;
                    received.borrow_mut().insert(m.message_id().to_string());
                }
                match received.borrow().len() {
                    n if n >= count => Ok(()),
                    n => Err(format!("{n} of {count}")),
                }
            }
        },
    )
    .await;
    consumer
        .shutdown()
        .await
        .expect("official consumer shutdown");
    producer
        .shutdown()
        .await
        .expect("official producer shutdown");
    (sent, received.into_inner())
}

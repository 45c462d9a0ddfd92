//! RocketMQ's official Rust client (`rocketmq` 5.0.0), configured with the
//! NameServer as its access point, sends, receives and acks through Apogee.
//! Options are the client's defaults (as in its examples) apart from the
//! address, TLS off and the topics to prefetch. Receipts and delivered messages are as
//! RocketMQ's proxy gives them: a receipt's transaction id is the message id (a
//! transaction's own id for a transactional send), a transaction's message carries
//! `__transactionId__` and a FIFO message `__SHARDINGKEY` among its properties.

use apogee_tests::{BrokerSpec, Cluster};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq::{Producer, SimpleConsumer};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const TOPIC: &str = "official";

fn client_option(cluster: &Cluster) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(cluster.ns_addr());
    option.set_enable_tls(false);
    option
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_rocketmq_client_sends_and_receives_through_nameserver() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, 4).await;

    let mut producer_option = ProducerOption::default();
    producer_option.set_topics(vec![TOPIC]);
    let mut producer =
        Producer::new(producer_option, client_option(&cluster)).expect("official producer");
    producer
        .start()
        .await
        .expect("official producer start (QueryRoute through the nameserver)");
    let mut sent = BTreeSet::new();
    for i in 0..10 {
        let message = MessageBuilder::builder()
            .set_topic(TOPIC)
            .set_tag("official-tag")
            .set_keys(vec![format!("key-{i}")])
            .set_body(format!("official-{i}").into_bytes())
            .build()
            .expect("message");
        let receipt = producer
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("official send {i}: {e:?}"));
        assert!(
            !receipt.message_id().is_empty(),
            "send receipt without message id"
        );
        // As RocketMQ's broker: every send's receipt names the message id as transaction id.
        assert_eq!(receipt.transaction_id(), receipt.message_id());
        assert!(
            sent.insert(receipt.message_id().to_string()),
            "duplicate message id {}",
            receipt.message_id()
        );
    }

    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![TOPIC]);
    consumer_option.set_consumer_group("official-group");
    let mut consumer =
        SimpleConsumer::new(consumer_option, client_option(&cluster)).expect("official consumer");
    consumer.start().await.expect("official consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "official-tag");
    let mut received = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < sent.len() && Instant::now() < deadline {
        let messages = consumer
            .receive_with(TOPIC, &filter, 16, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("official receive: {e:?}"));
        for m in messages {
            assert_eq!(m.topic(), TOPIC);
            assert_eq!(m.tag(), Some("official-tag"));
            assert!(m.body().starts_with(b"official-"), "body {:?}", m.body());
            assert_eq!(m.delivery_attempt(), 1);
            consumer
                .ack(&m)
                .await
                .unwrap_or_else(|e| panic!("official ack of {}: {e:?}", m.message_id()));
            assert!(
                received.insert(m.message_id().to_string()),
                "{} received twice",
                m.message_id()
            );
        }
    }
    assert_eq!(
        received, sent,
        "the official consumer must receive exactly what the official producer sent"
    );
    // An empty long poll ends with MESSAGE_NOT_FOUND before the client's
    // deadline (long polling + request timeout; a later answer would be a
    // DEADLINE_EXCEEDED error), which the official client reads as "no message".
    let mut short_poll = client_option(&cluster);
    short_poll.set_long_polling_timeout(Duration::from_secs(2));
    let mut idle_option = SimpleConsumerOption::default();
    idle_option.set_topics(vec![TOPIC]);
    idle_option.set_consumer_group("official-group");
    let mut idle = SimpleConsumer::new(idle_option, short_poll).expect("official consumer");
    idle.start().await.expect("official consumer start");
    let nothing = idle
        .receive(TOPIC, &filter)
        .await
        .unwrap_or_else(|e| panic!("an empty receive must not be an error: {e:?}"));
    assert!(
        nothing.is_empty(),
        "acked messages came back: {} of them",
        nothing.len()
    );
    idle.shutdown().await.expect("official consumer shutdown");
    producer
        .shutdown()
        .await
        .expect("official producer shutdown");
    consumer
        .shutdown()
        .await
        .expect("official consumer shutdown");
}

/// The official transactional producer: a committed message is received once, a rolled-back
/// one never, and a transaction left open is decided by the producer's TransactionChecker
/// when the broker checks back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_transactional_producer_commits_rolls_back_and_answers_check_backs() {
    use rocketmq::model::transaction::{Transaction, TransactionResolution};
    use std::sync::{Arc, Mutex};
    const TXN_TOPIC: &str = "official-txn";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").fast_check_backs())
        .start()
        .await;
    cluster
        .create_typed_topic(TXN_TOPIC, 4, &[apogee_proto::v2::MessageType::Transaction])
        .await;
    let checked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = checked.clone();
    let mut producer_option = ProducerOption::default();
    producer_option.set_topics(vec![TXN_TOPIC]);
    let mut producer = Producer::new_transaction_producer(
        producer_option,
        client_option(&cluster),
        Box::new(move |transaction_id, _message| {
            seen.lock().unwrap().push(transaction_id);
            TransactionResolution::COMMIT
        }),
    )
    .expect("official transactional producer");
    producer.start().await.expect("official producer start");
    let message = |body: &str| {
        MessageBuilder::transaction_message_builder(TXN_TOPIC, body.as_bytes().to_vec())
            .build()
            .expect("message")
    };
    let committed = producer
        .send_transaction_message(message("committed"))
        .await
        .expect("half send");
    let committed_id = committed.message_id().to_string();
    let committed_txn = committed.transaction_id().to_string();
    assert!(!committed_txn.is_empty());
    committed.commit().await.expect("commit");
    let rolled_back = producer
        .send_transaction_message(message("rolled back"))
        .await
        .expect("half send");
    rolled_back.rollback().await.expect("rollback");
    let open = producer
        .send_transaction_message(message("left open"))
        .await
        .expect("half send");
    let (open_id, open_txn) = (
        open.message_id().to_string(),
        open.transaction_id().to_string(),
    );
    drop(open);

    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![TXN_TOPIC]);
    consumer_option.set_consumer_group("official-txn-group");
    let mut consumer =
        SimpleConsumer::new(consumer_option, client_option(&cluster)).expect("official consumer");
    consumer.start().await.expect("official consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "*");
    // Each delivered message with its `__transactionId__` property (RocketMQ's proxy shows
    // it among the user properties): the transaction id its producer was given.
    let mut received = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < 2 && Instant::now() < deadline {
        for m in consumer
            .receive_with(TXN_TOPIC, &filter, 16, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("official receive: {e:?}"))
        {
            consumer.ack(&m).await.expect("ack");
            let txn = m.properties().get("__transactionId__").cloned();
            assert!(
                received.insert(m.message_id().to_string(), txn).is_none(),
                "received twice"
            );
        }
    }
    assert_eq!(
        received,
        BTreeMap::from([
            (committed_id, Some(committed_txn)),
            (open_id, Some(open_txn.clone())),
        ])
    );
    assert!(
        checked.lock().unwrap().contains(&open_txn),
        "the open transaction was decided by the checker"
    );
    producer.shutdown().await.expect("shutdown");
    consumer.shutdown().await.expect("shutdown");
}

/// The official FIFO producer (queue chosen by message group) and the official
/// SimpleConsumer in a FIFO group: each message group arrives in send order,
/// one message at a time, while earlier ones are not yet acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_fifo_producer_and_simple_consumer_keep_message_group_order() {
    const FIFO_TOPIC: &str = "official-fifo";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster
        .create_typed_topic(FIFO_TOPIC, 4, &[apogee_proto::v2::MessageType::Fifo])
        .await;
    cluster
        .cli(&["group", "create", "official-fifo-group", "--fifo", "true"])
        .success();

    let mut producer_option = ProducerOption::default();
    producer_option.set_topics(vec![FIFO_TOPIC]);
    let mut producer =
        Producer::new(producer_option, client_option(&cluster)).expect("official producer");
    producer.start().await.expect("official producer start");
    const PER_GROUP: usize = 20;
    for seq in 0..PER_GROUP {
        for group in ["g1", "g2", "g3"] {
            let message = MessageBuilder::fifo_message_builder(
                FIFO_TOPIC,
                format!("{group}:{seq}").into_bytes(),
                group,
            )
            .build()
            .expect("fifo message");
            producer
                .send(message)
                .await
                .unwrap_or_else(|e| panic!("official FIFO send {group}:{seq}: {e:?}"));
        }
    }

    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![FIFO_TOPIC]);
    consumer_option.set_consumer_group("official-fifo-group");
    let mut consumer =
        SimpleConsumer::new(consumer_option, client_option(&cluster)).expect("official consumer");
    consumer.start().await.expect("official consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let mut order: std::collections::HashMap<String, Vec<usize>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while order.values().map(Vec::len).sum::<usize>() < 3 * PER_GROUP && Instant::now() < deadline {
        let messages = consumer
            .receive_with(FIFO_TOPIC, &filter, 16, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("official receive: {e:?}"));
        let mut groups_in_batch = BTreeSet::new();
        for m in &messages {
            let group = m
                .message_group()
                .expect("a FIFO message keeps its group")
                .to_string();
            assert!(
                groups_in_batch.insert(group.clone()),
                "two messages of {group} handed out at once"
            );
            // RocketMQ's proxy also shows the group as the `__SHARDINGKEY` property.
            assert_eq!(
                m.properties().get("__SHARDINGKEY"),
                Some(&group),
                "{:?}",
                m.properties()
            );
            let body = String::from_utf8(m.body().to_vec()).unwrap();
            let (g, seq) = body.split_once(':').unwrap();
            assert_eq!(g, group);
            order.entry(group).or_default().push(seq.parse().unwrap());
        }
        for m in messages {
            consumer.ack(&m).await.expect("official ack");
        }
    }
    for group in ["g1", "g2", "g3"] {
        assert_eq!(
            order.get(group).cloned().unwrap_or_default(),
            (0..PER_GROUP).collect::<Vec<_>>(),
            "{group} out of order"
        );
    }
    producer.shutdown().await.expect("producer shutdown");
    consumer.shutdown().await.expect("consumer shutdown");
}

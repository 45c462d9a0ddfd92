//! Transactions of RocketMQ's Rust remoting client against a real broker: the local
//! transaction's commit and rollback end the half message at once; an unknown outcome is
//! settled by the broker's check-back (CHECK_TRANSACTION_STATE pushed to the producer's
//! connection), answered by the producer's listener with a commit or a rollback. Consumers
//! see exactly the committed messages.

use crate::remoting_support::{
    client_runtime, message, push_consumer, record_concurrently, OrPanic,
};
use apogee_proto::v2::MessageType;
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use rocketmq_client_rust::{LocalTransactionState, TransactionListener, TransactionMQProducer};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Decides a transaction by the message's body: `commit...` and `rollback...` at once,
/// `unknown...` only when the broker checks back (`unknown-commit...` commits, anything
/// else rolls back). Records the bodies it was asked about.
#[derive(Clone, Default)]
struct ByBody {
    checked: Arc<Mutex<Vec<String>>>,
}

fn body_of(body: Option<bytes::Bytes>) -> String {
    body.map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl TransactionListener for ByBody {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = body_of(msg.get_body().cloned());
        if body.starts_with("commit") {
            LocalTransactionState::CommitMessage
        } else if body.starts_with("rollback") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::Unknown
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = body_of(msg.body());
        self.checked.lock().unwrap().push(body.clone());
        if body.starts_with("unknown-commit") {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::RollbackMessage
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_roll_back_and_are_settled_by_check_backs() {
    let topic = "remoting-txn";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1").fast_check_backs())
        .start()
        .await;
    cluster
        .create_typed_topic(topic, 4, &[MessageType::Normal, MessageType::Transaction])
        .await;
    let listener = ByBody::default();
    let mut producer = TransactionMQProducer::builder(client_runtime("transaction-producer"))
        .producer_group("txn-producers".to_string())
        .name_server_addr(cluster.ns_addr().to_string())
        .send_msg_timeout(10_000)
        .transaction_listener(listener.clone())
        .build();
    producer
        .start()
        .await
        .or_panic("transactional producer start");

    let mut outcomes = Vec::new();
    for body in [
        "commit-1",
        "rollback-1",
        "unknown-commit-1",
        "unknown-rollback-1",
    ] {
        let result = producer
            .send_message_in_transaction::<(), _>(message(topic, "txn", body), None)
            .await
            .unwrap_or_else(|e| panic!("a transactional send of {body}: {e}"));
        assert!(
            result
                .send_result
                .as_ref()
                .and_then(|r| r.msg_id.as_ref())
                .is_some_and(|id| !id.is_empty()),
            "{body}: a half message id: {result:?}"
        );
        outcomes.push((body, result.local_transaction_state));
    }
    assert_eq!(
        outcomes,
        [
            ("commit-1", Some(LocalTransactionState::CommitMessage)),
            ("rollback-1", Some(LocalTransactionState::RollbackMessage)),
            ("unknown-commit-1", Some(LocalTransactionState::Unknown)),
            ("unknown-rollback-1", Some(LocalTransactionState::Unknown)),
        ]
    );

    // The broker asks about both unknown ones; the listener settles them.
    wait_until(
        Duration::from_secs(30),
        "check-backs of both unknown transactions",
        || async {
            let checked = listener.checked.lock().unwrap().clone();
            let both = ["unknown-commit-1", "unknown-rollback-1"]
                .iter()
                .all(|b| checked.iter().any(|c| c == b));
            if both {
                Ok(())
            } else {
                Err(format!("checked {checked:?}"))
            }
        },
    )
    .await;
    let checked = listener.checked.lock().unwrap().clone();
    assert!(
        checked.iter().all(|c| c.starts_with("unknown")),
        "only unknown transactions are checked: {checked:?}"
    );

    // After the outcomes, a marker on every queue: once a consumer read all four, it read
    // everything committed before them.
    let mut marker_producer = crate::remoting_support::producer(&cluster, "txn-markers").await;
    let mut markers = Vec::new();
    for q in 0..4usize {
        let body = format!("marker-{q}");
        let selector = |queues: &[MessageQueue], _: &Message, q: &usize| queues.get(*q).cloned();
        marker_producer
            .send_with_selector(message(topic, "txn", &body), selector, q)
            .await
            .or_panic("a marker send")
            .expect("a send result");
        markers.push(body);
    }
    let mut consumer = push_consumer(&cluster, "txn-readers").build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let record = record_concurrently(&mut consumer);
    consumer.start().await.or_panic("push consumer start");
    let mut expected = markers.clone();
    expected.extend(["commit-1".to_string(), "unknown-commit-1".to_string()]);
    record
        .wait_for(&expected, Duration::from_secs(30), "the committed messages")
        .await;
    let mut consumed = record.bodies();
    consumed.sort();
    expected.sort();
    assert_eq!(consumed, expected, "exactly the committed messages, once");
    consumer.shutdown().await;
    marker_producer.shutdown().await;
    producer.shutdown().await;
}

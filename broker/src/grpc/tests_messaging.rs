//! Unit tests of the MessagingService handlers over a broker built by `Broker::build` on the
//! in-memory index (the commit log in a temp dir): ReceiveMessage with its long poll and
//! AckMessage, PullMessage from an offset. Each call goes through the handler with a tonic
//! `Request`, as the server would make it. [`TestBroker`] is shared with the admin tests.

use super::*;
use crate::config::BrokerConfig;
use crate::services::Foundation;
use crate::topics::TopicConfig;
use apogee_proto::group::GroupConfig;
use apogee_proto::v2::{pull_message_response, receive_message_response, Code};
use futures::StreamExt;
use std::time::Duration;

pub(super) const TOPIC: &str = "orders";
pub(super) const GROUP: &str = "readers";

/// A broker `broker-a` holding topic [`TOPIC`] (one queue) and group [`GROUP`].
pub(super) struct TestBroker {
    _dir: tempfile::TempDir,
    pub broker: Arc<Broker>,
    pub messaging: MessagingServer,
}

pub(super) fn test_broker() -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig {
        broker_name: "broker-a".into(),
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    config.store.segment_bytes = 1 << 20;
    config.store.preallocate_bytes = 0;
    // One waiting receive at a time: a test sees when a receive waits (the place is taken).
    config.limits.max_long_polls = 1;
    let base = Foundation::in_memory(&config).expect("store");
    let broker = Broker::build(config, base).expect("services");
    broker
        .topics()
        .create(topic_config(TOPIC, 1))
        .expect("topic created");
    broker
        .groups()
        .create(GroupConfig::with_defaults(GROUP))
        .expect("group created");
    TestBroker {
        _dir: dir,
        messaging: MessagingServer::new(broker.clone()),
        broker,
    }
}

pub(super) fn topic_config(name: &str, queues: u32) -> TopicConfig {
    TopicConfig::new(name, queues)
}

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource {
        name: name.into(),
        ..Default::default()
    })
}

fn queue(topic: &str, id: i32) -> Option<v2::MessageQueue> {
    Some(v2::MessageQueue {
        topic: resource(topic),
        id,
        ..Default::default()
    })
}

impl TestBroker {
    /// Sends one NORMAL message with id `id` to [`TOPIC`]; returns its queue offset.
    pub(super) async fn send(&self, id: &str) -> i64 {
        let message = v2::Message {
            topic: resource(TOPIC),
            system_properties: Some(v2::SystemProperties {
                message_id: id.into(),
                message_type: v2::MessageType::Normal as i32,
                body_encoding: v2::Encoding::Identity as i32,
                ..Default::default()
            }),
            body: format!("body of {id}").into(),
            ..Default::default()
        };
        let response = self
            .messaging
            .send_message(Request::new(v2::SendMessageRequest {
                messages: vec![message],
            }))
            .await
            .expect("a v2 answer")
            .into_inner();
        let entry = &response.entries[0];
        assert_eq!(code(entry.status.as_ref()), Code::Ok, "{response:?}");
        entry.offset
    }

    async fn receive(&self, topic: &str, long_poll: Duration) -> Vec<v2::ReceiveMessageResponse> {
        self.receive_with(v2::ReceiveMessageRequest {
            group: resource(GROUP),
            message_queue: queue(topic, 0),
            batch_size: 16,
            invisible_duration: Some(duration(30_000)),
            long_polling_timeout: Some(apogee_proto::time::duration(long_poll)),
            ..Default::default()
        })
        .await
    }

    async fn receive_with(
        &self,
        req: v2::ReceiveMessageRequest,
    ) -> Vec<v2::ReceiveMessageResponse> {
        self.messaging
            .receive_message(Request::new(req))
            .await
            .expect("a v2 answer")
            .into_inner()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| r.expect("a stream entry"))
            .collect()
    }

    async fn pull(&self, queue_id: i32, offset: i64) -> Vec<v2::PullMessageResponse> {
        self.messaging
            .pull_message(Request::new(v2::PullMessageRequest {
                group: resource(GROUP),
                message_queue: queue(TOPIC, queue_id),
                offset,
                batch_size: 32,
                ..Default::default()
            }))
            .await
            .expect("a v2 answer")
            .into_inner()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| r.expect("a stream entry"))
            .collect()
    }
}

/// A protobuf duration of `ms` milliseconds.
fn duration(ms: i64) -> prost_types::Duration {
    apogee_proto::time::duration(Duration::from_millis(ms as u64))
}

fn code(status: Option<&v2::Status>) -> Code {
    Code::try_from(status.expect("a status").code).expect("a known code")
}

/// The messages of a receive stream and its one status (the last entry).
fn received(responses: &[v2::ReceiveMessageResponse]) -> (Vec<v2::Message>, Code) {
    use receive_message_response::Content;
    let mut messages = Vec::new();
    let mut status = None;
    for r in responses {
        match r.content.as_ref() {
            Some(Content::Message(m)) => messages.push(m.clone()),
            Some(Content::Status(s)) => status = Some(code(Some(s))),
            _ => {}
        }
    }
    let last_is_status = matches!(
        responses.last().and_then(|r| r.content.as_ref()),
        Some(Content::Status(_))
    );
    assert!(
        last_is_status,
        "the stream ends with its status: {responses:?}"
    );
    (messages, status.expect("one status"))
}

/// The messages' queue offsets, the next offset and the status of a pull stream.
fn pulled(responses: &[v2::PullMessageResponse]) -> (Vec<i64>, Option<i64>, Code) {
    use pull_message_response::Content;
    let mut offsets = Vec::new();
    let (mut next, mut status) = (None, None);
    for r in responses {
        match r.content.as_ref() {
            Some(Content::Message(m)) => offsets.push(
                m.system_properties
                    .as_ref()
                    .and_then(|p| p.queue_offset)
                    .expect("a queue offset"),
            ),
            Some(Content::NextOffset(n)) => next = Some(*n),
            Some(Content::Status(s)) => status = Some(code(Some(s))),
            None => {}
        }
    }
    (offsets, next, status.expect("a status"))
}

#[tokio::test]
async fn a_sent_message_is_received_and_an_ack_removes_it() {
    let t = test_broker();
    t.send("m-1").await;

    let (messages, status) = received(&t.receive(TOPIC, Duration::ZERO).await);
    assert_eq!(status, Code::Ok);
    assert_eq!(messages.len(), 1);
    let props = messages[0].system_properties.clone().unwrap();
    assert_eq!(props.message_id, "m-1");
    assert_eq!(messages[0].body.as_ref(), b"body of m-1");
    let position = t.broker.consume().position(GROUP, TOPIC, 0, 0);
    assert_eq!((position.committed, position.inflight), (0, 1));

    let ack = t
        .messaging
        .ack_message(Request::new(v2::AckMessageRequest {
            group: resource(GROUP),
            topic: resource(TOPIC),
            entries: vec![v2::AckMessageEntry {
                message_id: "m-1".into(),
                receipt_handle: props.receipt_handle.expect("a receipt handle"),
                ..Default::default()
            }],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(ack.status.as_ref()), Code::Ok, "{ack:?}");
    let position = t.broker.consume().position(GROUP, TOPIC, 0, 0);
    assert_eq!((position.committed, position.inflight), (1, 0));
    // Nothing is left to receive.
    let (messages, status) = received(&t.receive(TOPIC, Duration::ZERO).await);
    assert_eq!((messages.len(), status), (0, Code::MessageNotFound));
}

#[tokio::test(start_paused = true)]
async fn an_empty_queue_waits_for_the_long_polling_time_then_answers_not_found() {
    let t = test_broker();
    let started = tokio::time::Instant::now();
    let (messages, status) = received(&t.receive(TOPIC, Duration::from_secs(5)).await);
    assert_eq!((messages.len(), status), (0, Code::MessageNotFound));
    // On tokio's paused clock: the poll waited its whole time, not less.
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[tokio::test]
async fn a_message_sent_during_the_long_poll_wakes_the_receive() {
    let t = Arc::new(test_broker());
    let waiting = {
        let t = t.clone();
        tokio::spawn(async move { t.receive(TOPIC, Duration::from_secs(20)).await })
    };
    // The receive waits (it holds the one long-poll place) before the send. On this
    // one-thread runtime it runs until it waits, so holding the place means waiting.
    while t.broker.quotas().long_poll().is_ok() {
        tokio::task::yield_now().await;
    }
    t.send("m-late").await;
    let (messages, status) = received(&waiting.await.unwrap());
    assert_eq!(status, Code::Ok);
    let ids: Vec<_> = messages
        .iter()
        .map(|m| m.system_properties.as_ref().unwrap().message_id.clone())
        .collect();
    assert_eq!(ids, ["m-late"]);
}

#[tokio::test]
async fn a_receive_is_refused_for_an_unknown_topic_or_a_bad_invisible_time() {
    let t = test_broker();
    let (_, status) = received(&t.receive("no-such-topic", Duration::ZERO).await);
    assert_eq!(status, Code::TopicNotFound);

    let (_, status) = received(
        &t.receive_with(v2::ReceiveMessageRequest {
            group: resource(GROUP),
            message_queue: queue(TOPIC, 0),
            invisible_duration: Some(duration(10)),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(status, Code::IllegalInvisibleTime);
}

#[tokio::test]
async fn a_pull_reads_from_its_offset_and_answers_the_next_offset() {
    let t = test_broker();
    for i in 0..3 {
        assert_eq!(t.send(&format!("m-{i}")).await, i);
    }
    assert_eq!(pulled(&t.pull(0, 1).await), (vec![1, 2], Some(3), Code::Ok));
    assert_eq!(
        pulled(&t.pull(0, 0).await),
        (vec![0, 1, 2], Some(3), Code::Ok)
    );
    // At the end, without long polling: where to pull next, and nothing found.
    assert_eq!(
        pulled(&t.pull(0, 3).await),
        (vec![], Some(3), Code::MessageNotFound)
    );
}

#[tokio::test]
async fn a_pull_is_refused_beyond_the_queue_end_before_zero_or_on_a_missing_queue() {
    let t = test_broker();
    t.send("m-0").await;
    assert_eq!(
        pulled(&t.pull(0, 5).await),
        (vec![], None, Code::IllegalOffset)
    );
    assert_eq!(
        pulled(&t.pull(0, -1).await),
        (vec![], None, Code::IllegalOffset)
    );
    assert_eq!(
        pulled(&t.pull(3, 0).await),
        (vec![], None, Code::BadRequest)
    );
}

//! The pop consumption of RocketMQ 5.x remoting clients (POP_MESSAGE, ACK_MESSAGE), by frames
//! written by hand to a real broker: RocketMQ's Rust client pops only when the broker's
//! QUERY_ASSIGNMENT answers the pop mode, which Apogee does not serve, so it never pops
//! against Apogee by itself. A message sent over gRPC is popped, acknowledged by the extra
//! info of its `POP_CK` property and not popped again; one not acknowledged is popped again
//! after its invisible time, as a reconsume. A remoting producer's `flag` is read back as
//! sent by a pop and by a pulling (push) consumer.

use crate::remoting_support::{
    producer, push_consumer, read_reply, record_concurrently, request_frame, OrPanic, Reply, JSON,
};
use apogee_client::{Message, Producer};
use apogee_proto::remoting::message::MessageExt;
use apogee_tests::{BrokerSpec, Cluster};
use rocketmq_client_rust::SendStatus;
use rocketmq_model::common::message::message_single::Message as RemotingMessage;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const POP_MESSAGE: i32 = 200_050;
const ACK_MESSAGE: i32 = 200_051;
const SUCCESS: i32 = 0;
const PULL_NOT_FOUND: i32 = 19;
const GROUP: &str = "pop-readers";

/// One request on `conn` and its reply.
async fn call(conn: &mut TcpStream, code: i32, opaque: i32, ext: &[(&str, &str)]) -> Reply {
    conn.write_all(&request_frame(JSON, code, opaque, ext, &[]))
        .await
        .or_panic("a request written");
    let reply = read_reply(conn).await;
    assert_eq!(reply.opaque, opaque);
    reply
}

/// A pop of one message of any queue of `topic`, held up to `poll_ms`.
async fn pop(
    conn: &mut TcpStream,
    opaque: i32,
    topic: &str,
    invisible_ms: u64,
    poll_ms: u64,
) -> Reply {
    let (invisible, poll) = (invisible_ms.to_string(), poll_ms.to_string());
    call(
        conn,
        POP_MESSAGE,
        opaque,
        &[
            ("consumerGroup", GROUP),
            ("topic", topic),
            ("queueId", "-1"),
            ("maxMsgNums", "1"),
            ("invisibleTime", &invisible),
            ("pollTime", &poll),
            ("bornTime", "0"),
            ("initMode", "0"),
            ("expType", "TAG"),
            ("exp", "*"),
        ],
    )
    .await
}

fn popped(reply: &Reply) -> MessageExt {
    assert_eq!(reply.code, SUCCESS, "a pop that found a message: {reply:?}");
    let mut found = MessageExt::decode_all(reply.body.clone().into()).or_panic("stored layout");
    assert_eq!(found.len(), 1);
    found.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popped_message_acked_is_done_and_one_not_acked_comes_back() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    let topic = "popped";
    cluster.create_topic(topic, 2).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .or_panic("producer");
    let mut conn = TcpStream::connect(cluster.broker_addr("b1"))
        .await
        .or_panic("a remoting connection");

    producer
        .send(Message::new(topic, "acked"))
        .await
        .or_panic("a gRPC send");
    let first = popped(&pop(&mut conn, 1, topic, 1_000, 5_000).await);
    assert_eq!(&first.body[..], b"acked");
    let extra = first.properties["POP_CK"].clone();
    let queue = first.queue_id.to_string();
    let offset = first.queue_offset.to_string();
    let ack = call(
        &mut conn,
        ACK_MESSAGE,
        2,
        &[
            ("consumerGroup", GROUP),
            ("topic", topic),
            ("queueId", &queue),
            ("extraInfo", &extra),
            ("offset", &offset),
        ],
    )
    .await;
    assert_eq!(ack.code, SUCCESS, "{ack:?}");

    producer
        .send(Message::new(topic, "not acked"))
        .await
        .or_panic("a gRPC send");
    let second = popped(&pop(&mut conn, 3, topic, 1_000, 5_000).await);
    assert_eq!(&second.body[..], b"not acked");
    assert_eq!(second.reconsume_times, 0);
    // Held until the unacknowledged one is visible again (1 s, then the first backoff of
    // 1 s); the acknowledged one, whose invisible time (1 s) ended before, is not handed out
    // again, or it would come first.
    let again = popped(&pop(&mut conn, 4, topic, 30_000, 20_000).await);
    assert_eq!(&again.body[..], b"not acked");
    assert_eq!(again.reconsume_times, 1);
    assert_eq!(
        (again.queue_id, again.queue_offset),
        (second.queue_id, second.queue_offset)
    );
    let empty = pop(&mut conn, 5, topic, 30_000, 200).await;
    assert_eq!(empty.code, PULL_NOT_FOUND, "{empty:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remoting_producers_flag_is_read_back_by_pop_and_pull_consumers() {
    const FLAG: i32 = 0x5A5;
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    let topic = "flagged";
    cluster.create_topic(topic, 1).await;
    let mut remoting = producer(&cluster, "flag-producers").await;
    let message = RemotingMessage::builder()
        .topic(topic)
        .tags("flagged")
        .body_slice(b"with a flag")
        .flag_bits(FLAG)
        .build_unchecked();
    let sent = remoting
        .send(message)
        .await
        .or_panic("a remoting send")
        .expect("a send result");
    assert_eq!(sent.send_status, SendStatus::SendOk, "{sent:?}");

    let mut conn = TcpStream::connect(cluster.broker_addr("b1"))
        .await
        .or_panic("a remoting connection");
    let popped = popped(&pop(&mut conn, 1, topic, 30_000, 5_000).await);
    assert_eq!(&popped.body[..], b"with a flag");
    assert_eq!(popped.flag, FLAG, "the popped message's flag");

    let mut consumer = push_consumer(&cluster, "flag-readers").build();
    consumer.subscribe(topic, "*").await.or_panic("subscribe");
    let record = record_concurrently(&mut consumer);
    consumer.start().await.or_panic("push consumer start");
    record
        .wait_for(
            &["with a flag".to_string()],
            Duration::from_secs(30),
            "the pulled message",
        )
        .await;
    assert_eq!(record.all()[0].flag, FLAG, "the pulled message's flag");
    consumer.shutdown().await;
    remoting.shutdown().await;
}

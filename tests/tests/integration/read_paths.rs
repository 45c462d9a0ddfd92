//! The broker's one read rule over real sockets, once per transport: a topic that is not
//! readable on its broker is refused on every read path (gRPC ReceiveMessage and
//! PullMessage, remoting POP_MESSAGE and PULL_MESSAGE, written by hand), and made readable
//! again it is served on all four. The rule's table of cases runs over the in-memory broker
//! (`actions::tests` in the broker crate); this is the process-level pass.

use crate::remoting_support::{read_reply, request_frame, OrPanic, Reply, JSON};
use apogee_client::{Message, Producer};
use apogee_proto::v2::{self, pull_message_response};
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PULL_MESSAGE: i32 = 11;
const POP_MESSAGE: i32 = 200_050;
const SUCCESS: i32 = 0;
const NO_PERMISSION: i32 = 16;
const TOPIC: &str = "read-rule";

/// What each of the four paths answered, as (path, transport code, messages read).
async fn read_all(cluster: &Cluster, group: &str) -> Vec<(&'static str, String, usize)> {
    let addr = cluster.broker_addr("b1");
    let mut grpc = rpc::messaging(addr);
    let (messages, status) = rpc::receive(
        &mut grpc,
        group,
        TOPIC,
        16,
        Some(apogee_proto::time::duration(Duration::from_secs(30))),
        Duration::ZERO,
    )
    .await;
    let receive = (
        "grpc receive",
        rpc::code_name(rpc::code(status.as_ref())),
        messages.len(),
    );

    let mut stream = grpc
        .pull_message(v2::PullMessageRequest {
            group: rpc::resource(group),
            message_queue: Some(v2::MessageQueue {
                topic: rpc::resource(TOPIC),
                id: 0,
                ..Default::default()
            }),
            offset: 0,
            batch_size: 16,
            ..Default::default()
        })
        .await
        .or_panic("PullMessage")
        .into_inner();
    let (mut pulled, mut pull_status) = (0, None);
    while let Some(item) = stream.message().await.or_panic("PullMessage stream") {
        match item.content {
            Some(pull_message_response::Content::Message(_)) => pulled += 1,
            Some(pull_message_response::Content::Status(s)) => pull_status = Some(s),
            _ => {}
        }
    }
    let pull = (
        "grpc pull",
        rpc::code_name(rpc::code(pull_status.as_ref())),
        pulled,
    );

    let mut conn = TcpStream::connect(addr)
        .await
        .or_panic("a remoting connection");
    let pop = remoting(
        &mut conn,
        POP_MESSAGE,
        1,
        &[
            ("consumerGroup", group),
            ("topic", TOPIC),
            ("queueId", "0"),
            ("maxMsgNums", "16"),
            ("invisibleTime", "30000"),
            ("pollTime", "0"),
            ("bornTime", "0"),
            ("initMode", "0"),
            ("expType", "TAG"),
            ("exp", "*"),
        ],
    )
    .await;
    let remote_pull = remoting(
        &mut conn,
        PULL_MESSAGE,
        2,
        &[
            ("consumerGroup", group),
            ("topic", TOPIC),
            ("queueId", "0"),
            ("queueOffset", "0"),
            ("maxMsgNums", "16"),
            ("sysFlag", "4"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subscription", "*"),
            ("subVersion", "0"),
            ("expressionType", "TAG"),
        ],
    )
    .await;
    vec![
        receive,
        pull,
        ("remoting pop", pop.code.to_string(), count(&pop)),
        (
            "remoting pull",
            remote_pull.code.to_string(),
            count(&remote_pull),
        ),
    ]
}

async fn remoting(conn: &mut TcpStream, code: i32, opaque: i32, ext: &[(&str, &str)]) -> Reply {
    conn.write_all(&request_frame(JSON, code, opaque, ext, &[]))
        .await
        .or_panic("a request written");
    read_reply(conn).await
}

fn count(reply: &Reply) -> usize {
    if reply.code != SUCCESS {
        return 0;
    }
    apogee_proto::remoting::message::MessageExt::decode_all(reply.body.clone().into())
        .or_panic("stored-message layout")
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_not_readable_is_refused_on_every_read_path_of_both_transports() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    cluster.create_topic(TOPIC, 1).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .or_panic("producer");
    producer
        .send(Message::new(TOPIC, "kept"))
        .await
        .or_panic("a send");

    cluster
        .cli(&["topic", "update", TOPIC, "--perm", "w"])
        .success();
    let refused = read_all(&cluster, "write-only-readers").await;
    let forbidden = rpc::code_name(v2::Code::Forbidden as i32);
    assert_eq!(
        refused,
        vec![
            ("grpc receive", forbidden.clone(), 0),
            ("grpc pull", forbidden, 0),
            ("remoting pop", NO_PERMISSION.to_string(), 0),
            ("remoting pull", NO_PERMISSION.to_string(), 0),
        ],
        "a write-only topic"
    );

    cluster
        .cli(&["topic", "update", TOPIC, "--perm", "rw"])
        .success();
    let ok = rpc::code_name(v2::Code::Ok as i32);
    for (i, (path, code, read)) in read_all(&cluster, "readers").await.into_iter().enumerate() {
        // The pop before the remoting pop took the message invisible for the group; every
        // path that can see it reads it once.
        let expected = match i {
            0 | 1 => (ok.clone(), 1),
            2 => ("19".to_string(), 0),
            _ => (SUCCESS.to_string(), 1),
        };
        assert_eq!((code, read), expected, "{path} of the topic readable again");
    }
}

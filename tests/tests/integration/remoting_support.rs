//! What the remoting tests share: raw remoting frames written and read by hand (JSON and
//! RocketMQ's binary header), and RocketMQ's Rust remoting client (`rocketmq-client-rust`)
//! set up against a test cluster, with a listener that records what it consumed.
//!
//! The remoting client names the NameServer by its gRPC address: one port serves both
//! protocols.

use apogee_tests::{wait_until, Cluster};
use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQProducer, DefaultMQPushConsumer, DefaultMQPushConsumerBuilder, MQPushConsumer,
    TelemetryHandle,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `expect` with the error's `Display` (the remoting client's `Debug` of an error hides its
/// message).
pub trait OrPanic<T> {
    fn or_panic(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrPanic<T> for Result<T, E> {
    fn or_panic(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// Serialization type of a JSON header (the top byte of the frame's second int32).
pub const JSON: u8 = 0;
/// Serialization type of RocketMQ's binary header.
pub const BINARY: u8 = 1;
/// A request code no server serves.
pub const UNKNOWN_CODE: i32 = 9_999;
/// RocketMQ's response code for a request code a server does not serve.
pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
/// The language number of JAVA in a binary header.
const JAVA: u8 = 0;

/// One request frame: `code` with `opaque`, extension fields and a body, in `serialization`.
pub fn request_frame(
    serialization: u8,
    code: i32,
    opaque: i32,
    ext: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let header = match serialization {
        JSON => {
            let fields: BTreeMap<&str, &str> = ext.iter().copied().collect();
            serde_json::to_vec(&json!({
                "code": code,
                "language": "JAVA",
                "version": 401,
                "opaque": opaque,
                "flag": 0,
                "extFields": fields,
                "serializeTypeCurrentRPC": "JSON",
            }))
            .expect("a JSON header")
        }
        BINARY => binary_header(code, opaque, ext),
        other => panic!("no header encoding for serialization {other}"),
    };
    frame_with_header_word(
        (u32::from(serialization) << 24) | header.len() as u32,
        &header,
        body,
    )
}

/// A frame with a header word given as is (for malformed ones): total length, the word, the
/// header, the body.
pub fn frame_with_header_word(word: u32, header: &[u8], body: &[u8]) -> Vec<u8> {
    let total = 4 + header.len() + body.len();
    let mut frame = Vec::with_capacity(4 + total);
    frame.extend_from_slice(&(total as u32).to_be_bytes());
    frame.extend_from_slice(&word.to_be_bytes());
    frame.extend_from_slice(header);
    frame.extend_from_slice(body);
    frame
}

/// RocketMQ's binary header: code i16, language u8, version i16, opaque i32, flag i32, the
/// remark (i32 length then bytes; none here: length 0), then the extension fields (i32 total
/// length, each an i16 key length, the key, an i32 value length, the value).
fn binary_header(code: i32, opaque: i32, ext: &[(&str, &str)]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&(code as i16).to_be_bytes());
    h.push(JAVA);
    h.extend_from_slice(&401i16.to_be_bytes());
    h.extend_from_slice(&opaque.to_be_bytes());
    h.extend_from_slice(&0i32.to_be_bytes());
    h.extend_from_slice(&0i32.to_be_bytes());
    let mut fields = Vec::new();
    for (k, v) in ext {
        fields.extend_from_slice(&(k.len() as i16).to_be_bytes());
        fields.extend_from_slice(k.as_bytes());
        fields.extend_from_slice(&(v.len() as i32).to_be_bytes());
        fields.extend_from_slice(v.as_bytes());
    }
    h.extend_from_slice(&(fields.len() as i32).to_be_bytes());
    h.extend_from_slice(&fields);
    h
}

/// A decoded response header (either serialization) with its body.
#[derive(Debug)]
pub struct Reply {
    pub serialization: u8,
    pub code: i32,
    pub opaque: i32,
    pub flag: i32,
    pub body: Vec<u8>,
}

/// Reads one frame from `stream` (failing the test on a malformed one or after 10 s).
pub async fn read_reply(stream: &mut TcpStream) -> Reply {
    let read = async {
        let total = stream.read_u32().await? as usize;
        let word = stream.read_u32().await?;
        let mut rest = vec![0; total - 4];
        stream.read_exact(&mut rest).await?;
        Ok::<_, std::io::Error>((word, rest))
    };
    let (word, rest) = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .or_panic("a reply within 10 s")
        .expect("a whole reply frame");
    let serialization = (word >> 24) as u8;
    let header_len = (word & 0x00ff_ffff) as usize;
    let (header, body) = rest.split_at(header_len);
    let mut reply = match serialization {
        JSON => {
            let h: Value = serde_json::from_slice(header).expect("a JSON reply header");
            Reply {
                serialization,
                code: h["code"].as_i64().expect("code") as i32,
                opaque: h["opaque"].as_i64().expect("opaque") as i32,
                flag: h["flag"].as_i64().unwrap_or(0) as i32,
                body: Vec::new(),
            }
        }
        BINARY => decode_binary_header(header),
        other => panic!("a reply in serialization {other}"),
    };
    reply.body = body.to_vec();
    reply
}

fn decode_binary_header(h: &[u8]) -> Reply {
    let i16_at = |at: usize| i16::from_be_bytes([h[at], h[at + 1]]);
    let i32_at = |at: usize| i32::from_be_bytes(h[at..at + 4].try_into().expect("4 bytes"));
    Reply {
        serialization: BINARY,
        code: i32::from(i16_at(0)),
        opaque: i32_at(5),
        flag: i32_at(9),
        body: Vec::new(),
    }
}

/// Sends an unknown request code on `stream` and checks the answer: REQUEST_CODE_NOT_SUPPORTED
/// as a response with the request's opaque, in the request's serialization.
pub async fn assert_unknown_code_answered(stream: &mut TcpStream, serialization: u8, opaque: i32) {
    let frame = request_frame(serialization, UNKNOWN_CODE, opaque, &[("k", "v")], b"");
    stream.write_all(&frame).await.or_panic("writing a request");
    let reply = read_reply(stream).await;
    assert_eq!(reply.code, REQUEST_CODE_NOT_SUPPORTED, "{reply:?}");
    assert_eq!(reply.opaque, opaque, "{reply:?}");
    assert_eq!(reply.flag & 1, 1, "the response flag: {reply:?}");
    assert_eq!(reply.serialization, serialization, "{reply:?}");
}

/// Whether the server closed `stream` (end of file or a reset) within 10 s; whatever it
/// wrote before closing is returned.
pub async fn closed_by_server(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(()) => Ok(seen),
        Err(_) => Err(format!(
            "still open after 10 s, {} bytes received",
            seen.len()
        )),
    }
}

/// The tests' one owner of the remoting client's runtimes.
static RUNTIME_OWNER: LazyLock<RuntimeOwner> = LazyLock::new(|| {
    RuntimeOwner::plan(RuntimeConfig {
        thread_name: "remoting-client-test".to_string(),
        ..Default::default()
    })
    .expect("a valid runtime configuration")
    .build()
    .expect("the remoting client's runtime owner")
});

/// A client runtime of its own for each client (each has its own client instance); `scope`
/// names the kind of client.
pub fn client_runtime(scope: &'static str) -> Arc<ClientRuntime> {
    ClientRuntime::try_new(
        RUNTIME_OWNER.root_context().component(scope),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .expect("a remoting client runtime")
}

/// A started remoting producer of `group`.
pub async fn producer(cluster: &Cluster, group: &str) -> DefaultMQProducer {
    let mut producer = DefaultMQProducer::builder(client_runtime("producer"))
        .producer_group(group.to_string())
        .name_server_addr(cluster.ns_addr().to_string())
        .send_msg_timeout(10_000)
        .build();
    producer.start().await.or_panic("remoting producer start");
    producer
}

/// A message with a tag and a text body.
pub fn message(topic: &str, tag: &str, body: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags(tag)
        .body_slice(body.as_bytes())
        .build_unchecked()
}

/// A push consumer of `group` reading from the first offset (new groups start at the
/// beginning, so what was sent before it started is consumed too), small thread pools and
/// one message per listener call.
pub fn push_consumer(cluster: &Cluster, group: &str) -> DefaultMQPushConsumerBuilder {
    DefaultMQPushConsumer::builder(client_runtime("push-consumer"))
        .consumer_group(group.to_string())
        .name_server_addr(cluster.ns_addr().to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_min(1)
        .consume_thread_max(2)
        .consume_message_batch_max_size(1)
        .pull_batch_size(16)
}

/// One message a listener consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    pub topic: String,
    pub body: String,
    pub tag: Option<String>,
    /// The id a producer was given (RocketMQ's `UNIQ_KEY` property, as `MessageClientExt`
    /// reads it), else the stored-message id.
    pub msg_id: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub reconsume_times: i32,
    /// The producer's `flag`.
    pub flag: i32,
}

impl Consumed {
    pub fn of(m: &MessageExt) -> Consumed {
        Consumed {
            topic: m.topic().to_string(),
            body: m
                .body()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            tag: m.get_tags().map(|t| t.to_string()),
            msg_id: m
                .properties()
                .iter()
                .find(|(k, _)| k.as_str() == "UNIQ_KEY")
                .map(|(_, id)| id.to_string())
                .unwrap_or_else(|| m.msg_id().to_string()),
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
            reconsume_times: m.reconsume_times(),
            flag: m.flag(),
        }
    }
}

/// What a listener consumed, in the order it consumed it.
#[derive(Clone, Default)]
pub struct Record(Arc<Mutex<Vec<Consumed>>>);

impl Record {
    pub fn push(&self, m: &MessageExt) {
        self.0.lock().unwrap().push(Consumed::of(m));
    }

    pub fn all(&self) -> Vec<Consumed> {
        self.0.lock().unwrap().clone()
    }

    /// The bodies consumed so far.
    pub fn bodies(&self) -> Vec<String> {
        self.all().into_iter().map(|c| c.body).collect()
    }

    /// Waits until every body of `expected` was consumed (within `timeout`).
    pub async fn wait_for(&self, expected: &[String], timeout: Duration, what: &str) {
        wait_until(timeout, what, || async {
            let got = self.bodies();
            let missing: Vec<&String> = expected.iter().filter(|b| !got.contains(b)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}; consumed {got:?}"))
            }
        })
        .await
    }
}

/// Registers a concurrent listener on `consumer` that records every message and succeeds.
pub fn record_concurrently(consumer: &mut DefaultMQPushConsumer) -> Record {
    let record = Record::default();
    let inner = record.clone();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            for m in msgs {
                inner.push(m);
            }
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    record
}

/// Numbered bodies `<prefix>-0` .. `<prefix>-<n-1>`.
pub fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

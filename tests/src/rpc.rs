//! Raw gRPC access to the servers, for tests that must see exactly what a
//! server answers (the client library validates some inputs locally).
//!
//! Clients allow 64 MiB messages both ways so oversized requests reach the
//! server. The `*_with` forms take the TLS of a TLS cluster
//! ([`crate::Cluster::client_tls`]). Helpers build NORMAL messages with fresh ids and wrap
//! SendMessage, PullMessage (a whole queue), ReceiveMessage and AckMessage.

use apogee_client::ClientTls;
use apogee_proto::cluster::admin_client::AdminClient;
use apogee_proto::cluster::registry_client::RegistryClient;
use apogee_proto::v2::messaging_service_client::MessagingServiceClient;
use apogee_proto::v2::{self, pull_message_response, receive_message_response};
use apogee_proto::{message_id, time};
use std::time::Duration;
use tonic::transport::Channel;

/// Largest gRPC message our raw clients send or accept.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The admin credentials the harness signs its own calls with: servers started with
/// `security.authentication` and this admin (see [`admin_security_env`]) admit them, the
/// others ignore the header.
pub const ADMIN_ACCESS_KEY: &str = "harness-admin";
pub const ADMIN_SECRET_KEY: &str = "harness-admin-secret";

/// The harness's admin credentials.
pub fn admin_credentials() -> apogee_proto::auth::Credentials {
    apogee_proto::auth::Credentials::new(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY)
        .expect("valid credentials")
}

/// `message` as a request signed with the harness's admin credentials.
pub fn signed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    admin_credentials().sign(request.metadata_mut());
    request
}

/// The `[security]` environment overrides (without the `APOGEE_<SERVER>_` prefix) that turn
/// authentication on with the harness's admin, whose secret is written into `dir`, and the
/// cluster secret `cluster_secret_file`.
pub fn admin_security_env(
    dir: &std::path::Path,
    cluster_secret_file: &str,
) -> Vec<(String, String)> {
    let secret = dir.join("harness-admin.secret");
    std::fs::write(&secret, ADMIN_SECRET_KEY).expect("writing the admin secret");
    [
        ("SECURITY__AUTHENTICATION", "true".to_string()),
        ("SECURITY__ADMIN_ACCESS_KEY", ADMIN_ACCESS_KEY.to_string()),
        ("SECURITY__ADMIN_SECRET_FILE", secret.display().to_string()),
        (
            "SECURITY__CLUSTER_SECRET_FILE",
            cluster_secret_file.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A lazily connecting channel to `host:port`.
pub fn channel(addr: &str) -> Channel {
    channel_with(addr, None)
}

/// A lazily connecting channel to `host:port`, over TLS with `tls`.
pub fn channel_with(addr: &str, tls: Option<&ClientTls>) -> Channel {
    apogee_proto::tls::endpoint(addr, tls)
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(40))
        .connect_lazy()
}

pub fn messaging(addr: &str) -> MessagingServiceClient<Channel> {
    messaging_with(addr, None)
}

pub fn messaging_with(addr: &str, tls: Option<&ClientTls>) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(channel_with(addr, tls))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

pub fn admin(addr: &str) -> AdminClient<Channel> {
    admin_with(addr, None)
}

pub fn admin_with(addr: &str, tls: Option<&ClientTls>) -> AdminClient<Channel> {
    AdminClient::new(channel_with(addr, tls))
}

pub fn registry(addr: &str) -> RegistryClient<Channel> {
    registry_with(addr, None)
}

pub fn registry_with(addr: &str, tls: Option<&ClientTls>) -> RegistryClient<Channel> {
    RegistryClient::new(channel_with(addr, tls))
}

pub fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource {
        resource_namespace: String::new(),
        name: name.to_string(),
    })
}

/// The code of an optional status (0 when absent).
pub fn code(status: Option<&v2::Status>) -> i32 {
    status.map(|s| s.code).unwrap_or(0)
}

/// A human-readable code name for assertion messages.
pub fn code_name(code: i32) -> String {
    v2::Code::try_from(code)
        .map(|c| c.as_str_name().to_string())
        .unwrap_or_else(|_| format!("unknown code {code}"))
}

/// A NORMAL message with a fresh id for `queue_id` of `topic`.
pub fn message(topic: &str, queue_id: i32, body: impl Into<Vec<u8>>) -> v2::Message {
    v2::Message {
        topic: resource(topic),
        user_properties: Default::default(),
        system_properties: Some(v2::SystemProperties {
            message_id: message_id::new_message_id(),
            message_type: v2::MessageType::Normal as i32,
            body_encoding: v2::Encoding::Identity as i32,
            born_timestamp: Some(time::timestamp(time::now_ms())),
            born_host: "apogee-tests".into(),
            queue_id,
            ..Default::default()
        }),
        body: bytes::Bytes::from(body.into()),
    }
}

/// The message id a message carries.
pub fn id_of(m: &v2::Message) -> String {
    m.system_properties
        .as_ref()
        .map(|s| s.message_id.clone())
        .unwrap_or_default()
}

/// (message id, queue offset, body) of every message a queue serves, in order (pulled with
/// the group `verify-group`, which commits nothing).
pub async fn queue_contents(addr: &str, topic: &str, queue: i32) -> Vec<(String, i64, Vec<u8>)> {
    let mut client = messaging(addr);
    pull_queue(&mut client, "verify-group", topic, queue)
        .await
        .into_iter()
        .map(|m| {
            let offset = m
                .system_properties
                .as_ref()
                .and_then(|s| s.queue_offset)
                .unwrap_or(-1);
            (id_of(&m), offset, m.body.to_vec())
        })
        .collect()
}

/// SendMessage; panics on a transport error.
pub async fn send(
    client: &mut MessagingServiceClient<Channel>,
    messages: Vec<v2::Message>,
) -> v2::SendMessageResponse {
    client
        .send_message(v2::SendMessageRequest { messages })
        .await
        .expect("SendMessage transport error")
        .into_inner()
}

/// Reads a whole queue with PullMessage from offset 0; returns the messages
/// in the order served. Panics on any status but OK / MESSAGE_NOT_FOUND.
pub async fn pull_queue(
    client: &mut MessagingServiceClient<Channel>,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Vec<v2::Message> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let req = v2::PullMessageRequest {
            group: resource(group),
            message_queue: Some(v2::MessageQueue {
                topic: resource(topic),
                id: queue_id,
                permission: v2::Permission::ReadWrite as i32,
                broker: None,
                accept_message_types: vec![],
            }),
            offset,
            batch_size: 64,
            filter_expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag as i32,
                expression: "*".into(),
            }),
            long_polling_timeout: Some(time::duration(Duration::ZERO)),
        };
        let mut stream = client
            .pull_message(req)
            .await
            .expect("PullMessage transport error")
            .into_inner();
        let (mut got, mut next, mut status) = (0, None, None);
        while let Some(item) = stream.message().await.expect("PullMessage stream error") {
            match item.content {
                Some(pull_message_response::Content::Message(m)) => {
                    got += 1;
                    out.push(m);
                }
                Some(pull_message_response::Content::NextOffset(n)) => next = Some(n),
                Some(pull_message_response::Content::Status(s)) => status = Some(s),
                None => {}
            }
        }
        let c = code(status.as_ref());
        if c == v2::Code::MessageNotFound as i32 {
            return out;
        }
        assert_eq!(
            c,
            v2::Code::Ok as i32,
            "PullMessage {topic}/{queue_id}@{offset}: {status:?}"
        );
        let next = next.expect("PullMessage answered OK without a next offset");
        assert!(
            next > offset || got == 0,
            "PullMessage did not advance from {offset}"
        );
        if next <= offset {
            return out;
        }
        offset = next;
    }
}

/// A ReceiveMessage of queue 0 of `topic` for `group`, every tag, waiting at most `wait`.
pub fn receive_request(
    group: &str,
    topic: &str,
    batch: i32,
    invisible: Option<prost_types::Duration>,
    wait: Duration,
) -> v2::ReceiveMessageRequest {
    v2::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(v2::MessageQueue {
            topic: resource(topic),
            id: 0,
            permission: v2::Permission::ReadWrite as i32,
            broker: None,
            accept_message_types: vec![],
        }),
        filter_expression: Some(v2::FilterExpression {
            r#type: v2::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: batch,
        invisible_duration: invisible,
        auto_renew: false,
        long_polling_timeout: Some(time::duration(wait)),
        attempt_id: None,
    }
}

/// One ReceiveMessage: the messages and the final status.
pub async fn receive(
    client: &mut MessagingServiceClient<Channel>,
    group: &str,
    topic: &str,
    batch: i32,
    invisible: Option<prost_types::Duration>,
    wait: Duration,
) -> (Vec<v2::Message>, Option<v2::Status>) {
    let req = receive_request(group, topic, batch, invisible, wait);
    let (messages, status) = receive_contents(client.receive_message(req).await).await;
    assert!(status.is_some(), "ReceiveMessage ended without a status");
    (messages, status)
}

/// What a ReceiveMessage call answered: its messages and its status, checking the protocol's
/// shape on the way (messages, then exactly one status, last).
pub async fn receive_contents(
    answer: Result<tonic::Response<tonic::Streaming<v2::ReceiveMessageResponse>>, tonic::Status>,
) -> (Vec<v2::Message>, Option<v2::Status>) {
    let mut stream = answer.expect("ReceiveMessage transport error").into_inner();
    let (mut messages, mut status) = (Vec::new(), None);
    while let Some(item) = stream.message().await.expect("ReceiveMessage stream error") {
        assert!(
            status.is_none(),
            "ReceiveMessage sent {:?} after its status {status:?}",
            item.content
        );
        match item.content {
            Some(receive_message_response::Content::Message(m)) => messages.push(m),
            Some(receive_message_response::Content::Status(s)) => status = Some(s),
            _ => {}
        }
    }
    (messages, status)
}

/// The receipt handle a received message carries.
pub fn handle_of(m: &v2::Message) -> String {
    m.system_properties
        .as_ref()
        .and_then(|s| s.receipt_handle.clone())
        .unwrap_or_default()
}

/// AckMessage for (message id, receipt handle) pairs.
pub async fn ack(
    client: &mut MessagingServiceClient<Channel>,
    group: &str,
    topic: &str,
    entries: &[(String, String)],
) -> v2::AckMessageResponse {
    let req = v2::AckMessageRequest {
        group: resource(group),
        topic: resource(topic),
        entries: entries
            .iter()
            .map(|(id, handle)| v2::AckMessageEntry {
                message_id: id.clone(),
                receipt_handle: handle.clone(),
                lite_topic: None,
            })
            .collect(),
    };
    client
        .ack_message(req)
        .await
        .expect("AckMessage transport error")
        .into_inner()
}

/// Acknowledges every one of `messages` (received for `group`) on the broker at `addr`;
/// panics unless the broker answers OK.
pub async fn ack_all(addr: &str, group: &str, topic: &str, messages: &[v2::Message]) {
    let entries: Vec<(String, String)> =
        messages.iter().map(|m| (id_of(m), handle_of(m))).collect();
    let acked = ack(&mut messaging(addr), group, topic, &entries).await;
    assert_eq!(
        code(acked.status.as_ref()),
        v2::Code::Ok as i32,
        "{acked:?}"
    );
}

/// Receives exactly `count` messages of `topic` for `group` on the broker at `addr` and
/// acknowledges them.
pub async fn consume_and_ack(addr: &str, group: &str, topic: &str, count: usize) {
    let got = receive_exactly(addr, group, topic, count).await;
    ack_all(addr, group, topic, &got).await;
}

/// A TRANSACTION message with a fresh id for `queue_id` of `topic`.
pub fn txn_message(topic: &str, queue_id: i32, body: impl Into<Vec<u8>>) -> v2::Message {
    let mut m = message(topic, queue_id, body);
    if let Some(sp) = m.system_properties.as_mut() {
        sp.message_type = v2::MessageType::Transaction as i32;
    }
    m
}

/// Sends one TRANSACTION message; returns (message id, transaction id). Panics unless OK.
pub async fn send_half(
    client: &mut MessagingServiceClient<Channel>,
    message: v2::Message,
) -> (String, String) {
    let r = send(client, vec![message]).await;
    assert_eq!(
        code(r.status.as_ref()),
        v2::Code::Ok as i32,
        "half send: {r:?}"
    );
    let e = &r.entries[0];
    assert!(!e.transaction_id.is_empty(), "no transaction id: {r:?}");
    (e.message_id.clone(), e.transaction_id.clone())
}

/// EndTransaction from the producer; returns the status code.
pub async fn end_transaction(
    client: &mut MessagingServiceClient<Channel>,
    topic: &str,
    ids: &(String, String),
    resolution: v2::TransactionResolution,
) -> i32 {
    let r = client
        .end_transaction(v2::EndTransactionRequest {
            topic: resource(topic),
            message_id: ids.0.clone(),
            transaction_id: ids.1.clone(),
            resolution: resolution as i32,
            source: v2::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        })
        .await
        .expect("EndTransaction transport error")
        .into_inner();
    code(r.status.as_ref())
}

/// Receives and acks everything `group` gets from `topic` until a receive of `quiet` brings
/// nothing; returns the messages in the order received.
pub async fn drain(
    client: &mut MessagingServiceClient<Channel>,
    group: &str,
    topic: &str,
    quiet: Duration,
) -> Vec<v2::Message> {
    let mut all = Vec::new();
    loop {
        let (messages, status) = receive(
            client,
            group,
            topic,
            32,
            Some(time::duration(Duration::from_secs(30))),
            quiet,
        )
        .await;
        if messages.is_empty() {
            let c = code(status.as_ref());
            assert_eq!(c, v2::Code::MessageNotFound as i32, "receive: {status:?}");
            return all;
        }
        let entries: Vec<(String, String)> =
            messages.iter().map(|m| (id_of(m), handle_of(m))).collect();
        let acked = ack(client, group, topic, &entries).await;
        assert_eq!(
            code(acked.status.as_ref()),
            v2::Code::Ok as i32,
            "ack: {acked:?}"
        );
        all.extend(messages);
    }
}

/// A DELAY message with a fresh id for `queue_id` of `topic`, due at `due_ms`.
pub fn delay_message(
    topic: &str,
    queue_id: i32,
    body: impl Into<Vec<u8>>,
    due_ms: i64,
) -> v2::Message {
    let mut m = message(topic, queue_id, body);
    if let Some(sp) = m.system_properties.as_mut() {
        sp.message_type = v2::MessageType::Delay as i32;
        sp.delivery_timestamp = Some(time::timestamp(due_ms));
    }
    m
}

/// The delivery timestamp a message carries (ms), 0 when none.
pub fn delivery_ms(m: &v2::Message) -> i64 {
    m.system_properties
        .as_ref()
        .and_then(|s| s.delivery_timestamp.as_ref())
        .map_or(0, time::timestamp_ms)
}

/// RecallMessage; returns the response. Panics on a transport error.
pub async fn recall(
    client: &mut MessagingServiceClient<Channel>,
    topic: &str,
    handle: &str,
) -> v2::RecallMessageResponse {
    client
        .recall_message(v2::RecallMessageRequest {
            topic: resource(topic),
            recall_handle: handle.to_string(),
        })
        .await
        .expect("RecallMessage transport error")
        .into_inner()
}

/// Sends `count` NORMAL messages (bodies `m-0`, `m-1`, ...) to queue 0 of `topic`, ten per
/// request; panics unless each send is OK.
pub async fn send_numbered(addr: &str, topic: &str, count: usize) {
    let mut client = messaging(addr);
    for chunk in (0..count).collect::<Vec<_>>().chunks(10) {
        let messages = chunk
            .iter()
            .map(|i| message(topic, 0, format!("m-{i}")))
            .collect();
        let resp = send(&mut client, messages).await;
        assert_eq!(code(resp.status.as_ref()), v2::Code::Ok as i32, "{resp:?}");
    }
}

/// A 4 KiB body that names message `i`.
pub fn numbered_body(i: usize) -> Vec<u8> {
    format!("{i:08}").repeat(512).into_bytes()
}

/// Sends messages `from..to` with [`numbered_body`] bodies to `topic`, message `i` to queue
/// `i % sent.len()`, in batches of 10, each acknowledged; appends each queue's (message id,
/// body) pairs to `sent[queue]`.
pub async fn send_numbered_spread(
    addr: &str,
    topic: &str,
    from: usize,
    to: usize,
    sent: &mut [Vec<(String, Vec<u8>)>],
) {
    let mut client = messaging(addr);
    let queues = sent.len();
    for chunk in (from..to).collect::<Vec<_>>().chunks(10) {
        let messages: Vec<_> = chunk
            .iter()
            .map(|&i| message(topic, (i % queues) as i32, numbered_body(i)))
            .collect();
        for (m, &i) in messages.iter().zip(chunk) {
            sent[i % queues].push((id_of(m), m.body.to_vec()));
        }
        let resp = send(&mut client, messages).await;
        assert_eq!(code(resp.status.as_ref()), v2::Code::Ok as i32, "{resp:?}");
    }
}

/// Receives exactly `count` messages for `group` (in several receives if need be), each
/// invisible for 300 s; panics when a receive brings nothing.
pub async fn receive_exactly(
    addr: &str,
    group: &str,
    topic: &str,
    count: usize,
) -> Vec<v2::Message> {
    let mut client = messaging(addr);
    let mut got = Vec::new();
    while got.len() < count {
        let (messages, status) = receive(
            &mut client,
            group,
            topic,
            (count - got.len()) as i32,
            Some(time::duration(Duration::from_secs(300))),
            Duration::from_secs(5),
        )
        .await;
        assert!(
            !messages.is_empty(),
            "no message after {} of {count}: {status:?}",
            got.len()
        );
        got.extend(messages);
    }
    assert_eq!(got.len(), count);
    got
}

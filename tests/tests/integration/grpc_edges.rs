//! The gRPC server at its edges, driven over raw HTTP/2 (the h2 crate) where a well-behaved
//! client library would not go:
//! - a deadline: a long poll longer than the client's `grpc-timeout` is shortened to end
//!   before it (an answer, not a timeout), and a send still waiting for a stopped slave when
//!   the deadline passes is answered DEADLINE_EXCEEDED by the broker;
//! - a cancelled stream: a long poll the client resets (RST_STREAM CANCEL) takes nothing, so
//!   the next message goes to the next poll, and its connection serves on;
//! - a client that stops reading a receive's answer (its HTTP/2 window full) holds up no
//!   other client, and what it was handed comes back to its group;
//! - a burst of streams opened and reset at once (the "rapid reset" attack) ends that
//!   connection with GOAWAY ENHANCE_YOUR_CALM while other clients are served.
//!
//! A request over the size limit is refused from its length prefix (quotas.rs).

use apogee_proto::time::duration;
use apogee_proto::v2::{self, receive_message_response::Content, Code};
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codegen::http;

const SEND: &str = "/apache.rocketmq.v2.MessagingService/SendMessage";
const RECEIVE: &str = "/apache.rocketmq.v2.MessagingService/ReceiveMessage";

/// One gRPC message: the 5-byte prefix (not compressed, length) and the encoded request.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.encoded_len());
    frame.put_u8(0);
    frame.put_u32(message.encoded_len() as u32);
    message
        .encode(&mut frame)
        .expect("encodes into a sized buffer");
    frame.freeze()
}

/// The headers of a gRPC call to `path`, with the client's `grpc-timeout` when given.
fn grpc_request(addr: &str, path: &str, timeout: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-mq-client-id", "grpc-edges");
    if let Some(t) = timeout {
        request = request.header("grpc-timeout", t);
    }
    request.body(()).expect("a valid request")
}

/// A raw HTTP/2 connection to `addr` made with `builder`; its connection task's handle
/// ends with the connection (an error names a GOAWAY's reason).
async fn connect(
    addr: &str,
    builder: h2::client::Builder,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    tcp.set_nodelay(true).unwrap();
    let (send, connection) = builder.handshake(tcp).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(connection))
}

/// Starts a call: headers, then the one request message with END_STREAM.
async fn start_call(
    client: &mut h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    message: &impl prost::Message,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut ready = client.clone().ready().await.expect("a stream slot");
    let (response, mut body) = ready.send_request(request, false).expect("sends headers");
    body.send_data(grpc_frame(message), true)
        .expect("sends the request");
    (response, body)
}

/// The messages a call answered and the `grpc-status` it ended with (trailers-only
/// answers included), reading and releasing its data as it comes.
async fn call_answers<M: prost::Message + Default>(
    response: h2::client::ResponseFuture,
) -> (Vec<M>, String) {
    let response = response.await.expect("response headers");
    if let Some(status) = response.headers().get("grpc-status") {
        return (Vec::new(), status.to_str().unwrap().to_string());
    }
    let mut body = response.into_body();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response data");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let mut messages = Vec::new();
    while data.len() >= 5 {
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        assert_eq!(data[0], 0, "an uncompressed message");
        let frame = data.split_to(5 + len);
        messages.push(M::decode(&frame[5..]).expect("a valid message"));
    }
    assert!(data.is_empty(), "a partial message at the end: {data:?}");
    let trailers = body.trailers().await.expect("trailers").expect("some");
    let status = trailers
        .get("grpc-status")
        .expect("grpc-status in the trailers")
        .to_str()
        .unwrap()
        .to_string();
    (messages, status)
}

/// A broker with the topic `edges` (one queue).
async fn broker() -> (Cluster, String) {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic("edges", 1).await;
    let addr = cluster.broker_addr("broker-a").to_string();
    (cluster, addr)
}

/// Sends one message with body `body` to `edges`; returns its id.
async fn send_one(addr: &str, body: impl Into<Vec<u8>>) -> String {
    let message = rpc::message("edges", 0, body);
    let id = rpc::id_of(&message);
    let answer = rpc::send(&mut rpc::messaging(addr), vec![message]).await;
    assert_eq!(
        rpc::code(answer.status.as_ref()),
        Code::Ok as i32,
        "{answer:?}"
    );
    id
}

/// What one receive of `group` gets within `wait` (invisible for 60 s).
async fn receive_ids(addr: &str, group: &str, wait: Duration) -> Vec<String> {
    let (messages, _) = rpc::receive(
        &mut rpc::messaging(addr),
        group,
        "edges",
        32,
        Some(duration(Duration::from_secs(60))),
        wait,
    )
    .await;
    messages.iter().map(rpc::id_of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_longer_than_its_deadline_is_answered_before_it_and_takes_nothing() {
    let (_cluster, addr) = broker().await;
    let (mut client, _connection) = connect(&addr, h2::client::Builder::new()).await;
    // A 20 s long poll with a 2 s deadline (a client whose timeout is shorter than its long
    // poll): the broker shortens the poll to end before the deadline, so the client gets
    // an answer (MESSAGE_NOT_FOUND, gRPC OK), not a DEADLINE_EXCEEDED from the layer below.
    let poll = rpc::receive_request(
        "late",
        "edges",
        16,
        Some(duration(Duration::from_secs(60))),
        Duration::from_secs(20),
    );
    let request = grpc_request(&addr, RECEIVE, Some("2S"));
    let (response, _body) = start_call(&mut client, request, &poll).await;
    let (answers, status) = call_answers::<v2::ReceiveMessageResponse>(response).await;
    assert_eq!(status, "0");
    let statuses: Vec<i32> = answers
        .iter()
        .filter_map(|a| match &a.content {
            Some(Content::Status(s)) => Some(s.code),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![Code::MessageNotFound as i32], "{answers:?}");

    // The poll ended with its call: the next message is the next poll's.
    let id = send_one(&addr, "after the deadline").await;
    assert_eq!(
        receive_ids(&addr, "late", Duration::from_secs(5)).await,
        vec![id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_still_waiting_for_its_slave_at_the_deadline_is_answered_deadline_exceeded() {
    // A SYNC_MASTER whose sends wait up to 30 s for the slave, and the slave stopped.
    let member = |id, role| {
        BrokerSpec::member("dg", id)
            .role(role)
            .env("REPLICATION__SYNC_TIMEOUT_MS", "30000")
    };
    let mut cluster = Cluster::builder()
        .broker(member(0, "sync_master"))
        .broker(member(1, "slave"))
        .start()
        .await;
    cluster.create_topic("edges", 1).await;
    let master = cluster.broker("dg-0").addr.clone();
    // Sends wait for the slave once the master counts it in sync: until then they are
    // answered at once, stored but not replicated.
    wait_until(
        Duration::from_secs(60),
        "a send replicated to the slave",
        || {
            let master = master.clone();
            async move {
                let message = rpc::message("edges", 0, "replicated");
                let answer = rpc::send(&mut rpc::messaging(&master), vec![message]).await;
                let code = rpc::code(answer.status.as_ref());
                (code == Code::Ok as i32)
                    .then_some(())
                    .ok_or(rpc::code_name(code))
            }
        },
    )
    .await;
    cluster.pause_broker("dg-1");

    let (mut client, _connection) = connect(&master, h2::client::Builder::new()).await;
    let message = rpc::message("edges", 0, "waits for a stopped slave");
    let request = v2::SendMessageRequest {
        messages: vec![message],
    };
    let (response, _body) = start_call(
        &mut client,
        grpc_request(&master, SEND, Some("1S")),
        &request,
    )
    .await;
    let (answers, status) = call_answers::<v2::SendMessageResponse>(response).await;
    assert_eq!(
        status,
        (tonic::Code::DeadlineExceeded as i32).to_string(),
        "{answers:?}"
    );

    // The slave back, the group takes sends again.
    cluster.resume_broker("dg-1");
    let answer = rpc::send(
        &mut rpc::messaging(&master),
        vec![rpc::message("edges", 0, "after")],
    )
    .await;
    assert_eq!(
        rpc::code(answer.status.as_ref()),
        Code::Ok as i32,
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_long_poll_takes_nothing_and_its_connection_serves_on() {
    let (_cluster, addr) = broker().await;
    let (mut client, connection) = connect(&addr, h2::client::Builder::new()).await;
    let poll = rpc::receive_request(
        "cancelled",
        "edges",
        16,
        Some(duration(Duration::from_secs(60))),
        Duration::from_secs(20),
    );
    let (response, mut body) =
        start_call(&mut client, grpc_request(&addr, RECEIVE, None), &poll).await;
    // Time for the broker to park the poll (were it kept after the reset, the next message
    // would go to it and stay invisible for a minute).
    tokio::time::sleep(Duration::from_millis(500)).await;
    body.send_reset(h2::Reason::CANCEL);
    drop(response);

    // On the same connection (so after the reset): a send, then a poll that gets it.
    let message = rpc::message("edges", 0, "after the cancel");
    let id = rpc::id_of(&message);
    let (sent, _) = start_call(
        &mut client,
        grpc_request(&addr, SEND, None),
        &v2::SendMessageRequest {
            messages: vec![message],
        },
    )
    .await;
    assert_eq!(call_answers::<v2::SendMessageResponse>(sent).await.1, "0");
    assert_eq!(
        receive_ids(&addr, "cancelled", Duration::from_secs(5)).await,
        vec![id]
    );
    assert!(!connection.is_finished(), "the connection serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_up_no_one_and_gets_its_messages_back() {
    let (_cluster, addr) = broker().await;
    // Twenty 200 KiB messages: far more than an HTTP/2 window of 64 KiB.
    let mut ids = BTreeSet::new();
    for i in 0..20u8 {
        ids.insert(send_one(&addr, vec![b'a' + i; 200 << 10]).await);
    }
    let (mut client, connection) = connect(&addr, h2::client::Builder::new()).await;
    let invisible = Duration::from_secs(3);
    let poll = rpc::receive_request(
        "stalled",
        "edges",
        32,
        Some(duration(invisible)),
        Duration::from_secs(1),
    );
    let (response, _body) =
        start_call(&mut client, grpc_request(&addr, RECEIVE, None), &poll).await;
    // The answer starts; this client reads none of its data, so the broker's writes stop
    // when the window is full.
    let response = response.await.expect("the receive's headers");
    assert_eq!(response.status(), http::StatusCode::OK);

    // Meanwhile another group, on another connection, receives all twenty.
    assert_eq!(receive_all(&addr, "reader", &ids).await, ids);

    // The stalled client goes away; what it was handed comes back to its group once invisible.
    drop(response);
    drop(client);
    connection.abort();
    assert_eq!(receive_all(&addr, "stalled", &ids).await, ids);
}

/// Receives for `group` until it has had every one of `expected` (or 30 s pass).
async fn receive_all(addr: &str, group: &str, expected: &BTreeSet<String>) -> BTreeSet<String> {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    wait_until(
        Duration::from_secs(30),
        &format!("{group} to receive them all"),
        || {
            let seen = seen.clone();
            async move {
                let got = receive_ids(addr, group, Duration::from_secs(1)).await;
                let mut seen = seen.lock().unwrap();
                seen.extend(got);
                if seen.len() >= expected.len() {
                    Ok(seen.clone())
                } else {
                    Err(format!("{} of {}", seen.len(), expected.len()))
                }
            }
        },
    )
    .await
}

/// Streams of the rapid-reset burst.
const BURST: usize = 200;

/// Bursts tried on fresh connections until one ends with the server's reason.
const BURST_TRIES: usize = 5;

/// One rapid-reset burst on a new connection: streams opened and reset at once, as fast as
/// the client can write them, more than h2's limit of 20 reset before the server took them
/// up. Returns every error the client saw once the connection ended (it must end).
async fn rapid_reset_burst(addr: &str) -> Vec<h2::Error> {
    let (client, connection) = connect(addr, h2::client::Builder::new()).await;
    let mut errors = Vec::new();
    for _ in 0..BURST {
        let sent = match client.clone().ready().await {
            Ok(mut ready) => ready.send_request(grpc_request(addr, SEND, None), false),
            Err(e) => Err(e),
        };
        match sent {
            Ok((_response, mut body)) => body.send_reset(h2::Reason::CANCEL),
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(20), connection)
        .await
        .expect("the attacking connection ends")
        .expect("its task");
    errors.extend(ended.err());
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_burst_ends_its_connection_and_others_are_served() {
    let (_cluster, addr) = broker().await;
    // Every burst's connection must end. The server's GOAWAY reaches the client only when
    // the client was not still writing as the server closed (writing then fails with a broken
    // pipe first, and that is all h2 reports): a burst that saw only that is tried again on
    // a fresh connection, and one of them must show the reason.
    let calmed = |errors: &Vec<h2::Error>| {
        errors
            .iter()
            .any(|e| e.is_go_away() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
    };
    let mut seen = Vec::new();
    while seen.len() < BURST_TRIES && !seen.last().is_some_and(calmed) {
        seen.push(rapid_reset_burst(&addr).await);
    }
    assert!(
        seen.last().is_some_and(calmed),
        "a connection ends with GOAWAY ENHANCE_YOUR_CALM: {seen:?}"
    );

    // Other clients are served, and nothing of the burst was stored.
    let id = send_one(&addr, "after the burst").await;
    let stored = rpc::queue_contents(&addr, "edges", 0).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, id);
}

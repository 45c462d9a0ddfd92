//! Invalid requests, sent as raw gRPC so every case reaches the broker, get
//! their specific protocol status; the broker keeps serving and loses nothing.
//! Each kind of refused send is here once, end to end (the wire mapping); every
//! send validation and admission case is a unit test of `apogee_broker::produce`.

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::time::duration;
use apogee_proto::v2::{self, Code};
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::transport::Channel;

type Client = v2::messaging_service_client::MessagingServiceClient<Channel>;

const TOPIC: &str = "guarded";
const QUEUES: i32 = 2;

/// The broker still answers (checked after every case).
async fn assert_serving(client: &mut Client, after: &str) {
    let r = client
        .heartbeat(v2::HeartbeatRequest {
            group: None,
            client_type: v2::ClientType::Producer as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("broker stopped serving after {after}: {e}"));
    assert_eq!(
        rpc::code(r.get_ref().status.as_ref()),
        Code::Ok as i32,
        "heartbeat after {after}"
    );
}

fn assert_code(case: &str, got: Option<&v2::Status>, want: Code) {
    let code = rpc::code(got);
    assert_eq!(
        code,
        want as i32,
        "{case}: expected {}, got {} ({got:?})",
        want.as_str_name(),
        rpc::code_name(code)
    );
}

/// Sends one message and checks the request status and its entry.
async fn send_expect(client: &mut Client, case: &str, message: v2::Message, want: Code) {
    let id = rpc::id_of(&message);
    let resp = rpc::send(client, vec![message]).await;
    assert_code(case, resp.status.as_ref(), want);
    assert_eq!(
        resp.entries.len(),
        1,
        "{case}: one result entry per message: {resp:?}"
    );
    assert_code(
        &format!("{case} (entry)"),
        resp.entries[0].status.as_ref(),
        want,
    );
    assert_eq!(
        resp.entries[0].message_id, id,
        "{case}: the entry must echo the message id"
    );
    assert_serving(client, case).await;
}

/// Receives `n` messages for `group`, invisible for 30 s.
async fn receive_n(client: &mut Client, group: &str, n: usize) -> Vec<v2::Message> {
    let mut got = Vec::new();
    for _ in 0..10 {
        let (m, status) = rpc::receive(
            client,
            group,
            TOPIC,
            16,
            Some(duration(Duration::from_secs(30))),
            Duration::from_secs(1),
        )
        .await;
        assert!(
            matches!(rpc::code(status.as_ref()), c if c == Code::Ok as i32 || c == Code::MessageNotFound as i32),
            "receive for {group}: {status:?}"
        );
        got.extend(m);
        if got.len() >= n {
            break;
        }
    }
    assert_eq!(got.len(), n, "group {group} should receive {n} messages");
    got
}

async fn ack_expect(
    client: &mut Client,
    case: &str,
    group: &str,
    m: &v2::Message,
    handle: &str,
    want: Code,
) {
    let resp = rpc::ack(client, group, TOPIC, &[(rpc::id_of(m), handle.to_string())]).await;
    assert_eq!(
        resp.entries.len(),
        1,
        "{case}: one ack entry per request entry: {resp:?}"
    );
    assert_code(case, resp.entries[0].status.as_ref(), want);
    assert_serving(client, case).await;
}

async fn change_invisible(
    client: &mut Client,
    group: &str,
    m: &v2::Message,
    handle: &str,
    d: Duration,
) -> v2::ChangeInvisibleDurationResponse {
    client
        .change_invisible_duration(v2::ChangeInvisibleDurationRequest {
            group: rpc::resource(group),
            topic: rpc::resource(TOPIC),
            receipt_handle: handle.to_string(),
            invisible_duration: Some(duration(d)),
            message_id: rpc::id_of(m),
            lite_topic: None,
            suspend: None,
        })
        .await
        .expect("ChangeInvisibleDuration transport error")
        .into_inner()
}

#[tokio::test]
async fn bad_input_gets_specific_status_codes_and_broker_keeps_serving() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let addr = cluster.broker("broker-a").addr.clone();
    let mut client = rpc::messaging(&addr);

    // Accepted before the bad input: must all survive it.
    let mut accepted = BTreeSet::new();
    for i in 0..3 {
        let m = rpc::message(TOPIC, i % QUEUES, format!("accepted-{i}"));
        accepted.insert(rpc::id_of(&m));
        let resp = rpc::send(&mut client, vec![m]).await;
        assert_code("normal send", resp.status.as_ref(), Code::Ok);
    }

    // --- Sends ---
    send_expect(
        &mut client,
        "topic with bad characters",
        rpc::message("bad topic!", 0, "x"),
        Code::IllegalTopic,
    )
    .await;
    let huge = vec![b'x'; 4 * 1024 * 1024 + 1];
    send_expect(
        &mut client,
        "body over 4 MiB",
        rpc::message(TOPIC, 0, huge),
        Code::MessageBodyTooLarge,
    )
    .await;
    let mut property = rpc::message(TOPIC, 0, "x");
    property
        .user_properties
        .insert(String::new(), "no key".into());
    send_expect(
        &mut client,
        "property with an empty key",
        property,
        Code::IllegalMessagePropertyKey,
    )
    .await;
    let mut txn = rpc::message(TOPIC, 0, "half");
    txn.system_properties.as_mut().unwrap().message_type = v2::MessageType::Transaction as i32;
    send_expect(
        &mut client,
        "TRANSACTION message to a topic that accepts only NORMAL",
        txn,
        Code::MessagePropertyConflictWithType,
    )
    .await;

    // --- Transactions ---
    let end = client
        .end_transaction(v2::EndTransactionRequest {
            topic: rpc::resource(TOPIC),
            message_id: "0123456789ABCDEF0123456789ABCDEF01".into(),
            transaction_id: "some-transaction".into(),
            resolution: v2::TransactionResolution::Commit as i32,
            source: v2::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        })
        .await
        .expect("EndTransaction transport error")
        .into_inner();
    assert_code(
        "EndTransaction of an unknown transaction",
        end.status.as_ref(),
        Code::InvalidTransactionId,
    );
    assert_serving(&mut client, "EndTransaction").await;

    // --- Consumer group names and invisible durations ---
    let long_group = "g".repeat(121);
    let (m, status) = rpc::receive(
        &mut client,
        &long_group,
        TOPIC,
        1,
        Some(duration(Duration::from_secs(30))),
        Duration::ZERO,
    )
    .await;
    assert!(m.is_empty());
    assert_code(
        "receive with a 121-character group",
        status.as_ref(),
        Code::IllegalConsumerGroup,
    );
    let (m, status) = rpc::receive(
        &mut client,
        "g1",
        TOPIC,
        1,
        Some(duration(Duration::ZERO)),
        Duration::ZERO,
    )
    .await;
    assert!(m.is_empty(), "a refused receive handed out messages: {m:?}");
    assert_code(
        "receive with invisible duration 0",
        status.as_ref(),
        Code::IllegalInvisibleTime,
    );
    assert_serving(&mut client, "bad receives").await;

    // --- Receipt handles ---
    let got = receive_n(&mut client, "g1", 3).await;
    let handles: Vec<String> = got.iter().map(rpc::handle_of).collect();
    assert!(
        handles.iter().all(|h| !h.is_empty()),
        "every delivery needs a receipt handle"
    );
    ack_expect(
        &mut client,
        "long group in ack",
        &long_group,
        &got[0],
        &handles[0],
        Code::IllegalConsumerGroup,
    )
    .await;
    ack_expect(
        &mut client,
        "forged handle",
        "g1",
        &got[0],
        "deadbeef.00112233445566778899aabbccddeeff",
        Code::InvalidReceiptHandle,
    )
    .await;
    let mut tampered = handles[0].clone().into_bytes();
    tampered[4] = if tampered[4] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    ack_expect(
        &mut client,
        "tampered handle",
        "g1",
        &got[0],
        &tampered,
        Code::InvalidReceiptHandle,
    )
    .await;
    ack_expect(
        &mut client,
        "handle from another group",
        "g2",
        &got[0],
        &handles[0],
        Code::InvalidReceiptHandle,
    )
    .await;
    ack_expect(
        &mut client,
        "first ack",
        "g1",
        &got[0],
        &handles[0],
        Code::Ok,
    )
    .await;
    ack_expect(
        &mut client,
        "stale handle (already acked)",
        "g1",
        &got[0],
        &handles[0],
        Code::InvalidReceiptHandle,
    )
    .await;
    let changed = change_invisible(
        &mut client,
        "g1",
        &got[1],
        &handles[1],
        Duration::from_secs(30),
    )
    .await;
    assert_code(
        "change invisible duration",
        changed.status.as_ref(),
        Code::Ok,
    );
    ack_expect(
        &mut client,
        "stale handle (replaced by a change)",
        "g1",
        &got[1],
        &handles[1],
        Code::InvalidReceiptHandle,
    )
    .await;
    ack_expect(
        &mut client,
        "handle from the change",
        "g1",
        &got[1],
        &changed.receipt_handle,
        Code::Ok,
    )
    .await;
    let zero = change_invisible(&mut client, "g1", &got[2], &handles[2], Duration::ZERO).await;
    assert_code(
        "change invisible duration to 0",
        zero.status.as_ref(),
        Code::IllegalInvisibleTime,
    );
    assert_serving(&mut client, "change invisible duration to 0").await;
    ack_expect(
        &mut client,
        "ack after a refused change",
        "g1",
        &got[2],
        &handles[2],
        Code::Ok,
    )
    .await;

    // --- Still a working broker that lost nothing and stored nothing refused ---
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let last = producer
        .send(Message::new(TOPIC, "after the bad input"))
        .await
        .expect("normal send");
    accepted.insert(last.message_id.clone());
    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        "fresh-group",
        vec![(TOPIC.into(), FilterExpression::default())],
    )
    .await
    .expect("consumer");
    let mut received = BTreeSet::new();
    for _ in 0..10 {
        let batch = consumer
            .receive(TOPIC, 16, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .expect("receive");
        for m in &batch {
            consumer.ack(m).await.expect("ack");
            assert!(
                received.insert(m.message_id.clone()),
                "{} received twice",
                m.message_id
            );
        }
        if received.len() >= accepted.len() {
            break;
        }
    }
    assert_eq!(
        received, accepted,
        "a fresh group must receive exactly the accepted messages"
    );
    let mut stored = BTreeSet::new();
    for q in 0..QUEUES {
        stored.extend(
            rpc::pull_queue(&mut client, "audit", TOPIC, q)
                .await
                .iter()
                .map(rpc::id_of),
        );
    }
    assert_eq!(
        stored, accepted,
        "the queues must hold exactly the accepted messages"
    );
}

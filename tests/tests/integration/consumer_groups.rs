//! Consumer-group policies on real processes: retries with the group's
//! backoff, FIFO message groups, auto-renew receives (push consumers),
//! ForwardMessageToDeadLetterQueue, and message fidelity (body encoding,
//! digest, message type).

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::v2::{self, Code};
use apogee_proto::{message_id, time};
use apogee_tests::wait::wait_until;
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn one_broker(env: &[(&str, &str)]) -> Cluster {
    let mut spec = BrokerSpec::new("b1");
    for (k, v) in env {
        spec = spec.env(k, *v);
    }
    Cluster::builder().broker(spec).start().await
}

fn subscribe(topic: &str) -> Vec<(String, FilterExpression)> {
    vec![(topic.to_string(), FilterExpression::tag("*"))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_deliveries_come_back_with_attempts_1_2_3_after_the_group_backoff() {
    let cluster = one_broker(&[]).await;
    cluster.create_topic("retry-topic", 1).await;
    cluster
        .cli(&[
            "group",
            "create",
            "retry-group",
            "--max-attempts",
            "5",
            "--retry-custom",
            "1s,2s",
        ])
        .success();
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    producer
        .send(Message::new("retry-topic", "fails twice"))
        .await
        .unwrap();
    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        "retry-group",
        subscribe("retry-topic"),
    )
    .await
    .unwrap();
    let invisible = Duration::from_secs(1);
    let mut seen: Vec<(i32, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 3 && Instant::now() < deadline {
        let got = consumer
            .receive("retry-topic", 1, invisible, Duration::from_secs(5))
            .await
            .unwrap();
        for m in got {
            seen.push((m.delivery_attempt, Instant::now()));
            // The handler "fails" twice (no ack), then succeeds.
            if seen.len() == 3 {
                consumer.ack(&m).await.unwrap();
            }
        }
    }
    let attempts: Vec<i32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // Gap = invisible time + the backoff of the failed attempt (1 s, then 2 s),
    // with room for a slow machine above and for clock granularity below.
    for (i, expected) in [(1, Duration::from_secs(2)), (2, Duration::from_secs(3))] {
        let gap = seen[i].1 - seen[i - 1].1;
        assert!(
            gap + Duration::from_millis(100) >= expected
                && gap <= expected + Duration::from_secs(2),
            "gap before attempt {} was {gap:?}, the policy says {expected:?}",
            i + 1
        );
    }
    // Acked: never again.
    assert!(consumer
        .receive("retry-topic", 1, invisible, Duration::from_secs(4))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifo_message_groups_are_handed_out_in_send_order_to_two_consumers_one_flaky() {
    const GROUPS: usize = 10;
    const PER_GROUP: usize = 200;
    let cluster = one_broker(&[]).await;
    cluster
        .create_typed_topic("fifo-topic", 4, &[v2::MessageType::Fifo])
        .await;
    cluster
        .cli(&["group", "create", "fifo-group", "--fifo", "true"])
        .success();
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let mut senders = Vec::new();
    for g in 0..GROUPS {
        let producer = producer.clone();
        senders.push(tokio::spawn(async move {
            for seq in 0..PER_GROUP {
                producer
                    .send(
                        Message::builder("fifo-topic", format!("{g}:{seq}"))
                            .message_group(format!("order-{g}"))
                            .build(),
                    )
                    .await
                    .expect("FIFO send");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }

    // What each consumer was handed, in the order handed (recorded before
    // the ack, so the next message of a group is always recorded after it).
    let handed: Arc<Mutex<HashMap<usize, Vec<usize>>>> = Arc::default();
    let acked: Arc<Mutex<HashSet<(usize, usize)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for flaky in [false, true] {
        let consumer = SimpleConsumer::connect(
            cluster.client_config(),
            "fifo-group",
            subscribe("fifo-topic"),
        )
        .await
        .unwrap();
        let (handed, acked, done) = (handed.clone(), acked.clone(), done.clone());
        consumers.push(tokio::spawn(async move {
            let mut fails = 0;
            while !done.load(Ordering::Relaxed) {
                let got = consumer
                    .receive(
                        "fifo-topic",
                        32,
                        Duration::from_secs(10),
                        Duration::from_secs(1),
                    )
                    .await
                    .expect("FIFO receive");
                for m in got {
                    let body = m.body_lossy().to_string();
                    let (g, seq) = body.split_once(':').unwrap();
                    let (g, seq): (usize, usize) = (g.parse().unwrap(), seq.parse().unwrap());
                    handed.lock().unwrap().entry(g).or_default().push(seq);
                    if flaky && m.delivery_attempt == 1 && seq % 29 == 5 {
                        fails += 1;
                        consumer
                            .change_invisible_duration(&m, Duration::from_secs(1))
                            .await
                            .expect("nack");
                        continue;
                    }
                    consumer.ack(&m).await.expect("FIFO ack");
                    acked.lock().unwrap().insert((g, seq));
                }
            }
            fails
        }));
    }
    wait_until(Duration::from_secs(180), "every FIFO message acked", || {
        let n = acked.lock().unwrap().len();
        async move {
            if n == GROUPS * PER_GROUP {
                Ok(())
            } else {
                Err(format!("{n} acked"))
            }
        }
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let mut fails = 0;
    for c in consumers {
        fails += c.await.unwrap();
    }
    assert!(
        fails > 0,
        "the flaky consumer never failed: the test proves nothing"
    );
    for (g, seqs) in handed.lock().unwrap().iter() {
        assert_eq!(seqs.first(), Some(&0), "group {g} did not start at 0");
        assert_eq!(
            seqs.last(),
            Some(&(PER_GROUP - 1)),
            "group {g} did not end last"
        );
        for w in seqs.windows(2) {
            assert!(
                w[1] == w[0] || w[1] == w[0] + 1,
                "group {g}: {} handed out after {} (order or gap broken): {seqs:?}",
                w[1],
                w[0]
            );
        }
    }
}

/// Receives (30 s invisible) until something comes back to `group`, within `timeout`.
async fn received_again(
    addr: &str,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Vec<v2::Message> {
    wait_until(timeout, "a message back", || async move {
        let req = receive_request(group, topic, Some(Duration::from_secs(30)), false);
        let (m, _) = receive_raw(addr, req).await;
        if m.is_empty() {
            Err("nothing yet".into())
        } else {
            Ok(m)
        }
    })
    .await
}

/// A raw receive request for queue 0 of `topic`.
fn receive_request(
    group: &str,
    topic: &str,
    invisible: Option<Duration>,
    auto_renew: bool,
) -> v2::ReceiveMessageRequest {
    v2::ReceiveMessageRequest {
        group: rpc::resource(group),
        message_queue: Some(v2::MessageQueue {
            topic: rpc::resource(topic),
            id: 0,
            permission: v2::Permission::ReadWrite as i32,
            broker: None,
            accept_message_types: vec![],
        }),
        filter_expression: None,
        batch_size: 8,
        invisible_duration: invisible.map(time::duration),
        auto_renew,
        long_polling_timeout: Some(time::duration(Duration::from_secs(2))),
        attempt_id: None,
    }
}

async fn receive_raw(addr: &str, req: v2::ReceiveMessageRequest) -> (Vec<v2::Message>, i32) {
    receive_as(addr, "raw-client", req).await
}

/// A receive carrying `client_id` in `x-mq-client-id`, as clients send it.
async fn receive_as(
    addr: &str,
    client_id: &str,
    req: v2::ReceiveMessageRequest,
) -> (Vec<v2::Message>, i32) {
    let mut request = tonic::Request::new(req);
    request
        .metadata_mut()
        .insert("x-mq-client-id", client_id.parse().unwrap());
    let answer = rpc::messaging(addr).receive_message(request).await;
    let (messages, status) = rpc::receive_contents(answer).await;
    (messages, status.map_or(-1, |s| s.code))
}

/// A broker renewing auto-renew deliveries every second, at most `max_auto_renew_ms`, with
/// one-queue `topic` holding `bodies`; returns it and its address.
async fn renewing_broker(
    max_auto_renew_ms: &str,
    topic: &str,
    bodies: &[&str],
) -> (Cluster, String) {
    let cluster = one_broker(&[
        ("CONSUME__AUTO_RENEW_PERIOD_MS", "1000"),
        ("CONSUME__MAX_AUTO_RENEW_MS", max_auto_renew_ms),
    ])
    .await;
    cluster.create_topic(topic, 1).await;
    let addr = cluster.broker("b1").addr.clone();
    let mut client = rpc::messaging(&addr);
    for body in bodies {
        let r = rpc::send(&mut client, vec![rpc::message(topic, 0, *body)]).await;
        assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
    }
    (cluster, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_renew_receives_keep_messages_until_acked_within_the_operator_bound() {
    let (_cluster, addr) = renewing_broker("6000", "renew-topic", &["acked", "abandoned"]).await;
    let mut client = rpc::messaging(&addr);
    // The official push consumers' receive: auto_renew, no invisible duration.
    let (got, code) = receive_raw(&addr, receive_request("push", "renew-topic", None, true)).await;
    assert_eq!(code, Code::Ok as i32);
    assert_eq!(got.len(), 2);
    // Well past several renewal periods, nobody else in the group gets them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (again, _) = receive_raw(
        &addr,
        receive_request("push", "renew-topic", Some(Duration::from_secs(30)), false),
    )
    .await;
    assert!(again.is_empty(), "renewed messages were handed out again");
    let acked = got.iter().find(|m| m.body[..] == b"acked"[..]).unwrap();
    let r = rpc::ack(
        &mut client,
        "push",
        "renew-topic",
        &[(rpc::id_of(acked), rpc::handle_of(acked))],
    )
    .await;
    assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
    // The other one comes back once the operator's bound (6 s) is over.
    let back = received_again(&addr, "push", "renew-topic", Duration::from_secs(20)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(&back[0].body[..], b"abandoned");
    assert_eq!(
        back[0].system_properties.as_ref().unwrap().delivery_attempt,
        Some(2)
    );
    // Without auto_renew, an invisible duration is still required.
    let (_, code) = receive_raw(&addr, receive_request("push", "renew-topic", None, false)).await;
    assert_eq!(code, Code::IllegalInvisibleTime as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auto_renew_deliveries_come_back_soon_after_their_client_terminates() {
    // Renewal periods of 1 s, a bound of 10 minutes: only the client's
    // termination can bring the message back within the test.
    let (_cluster, addr) = renewing_broker("600000", "leave-topic", &["orphan"]).await;
    let mut client = rpc::messaging(&addr);
    let (got, _) = receive_as(
        &addr,
        "leaver",
        receive_request("push", "leave-topic", None, true),
    )
    .await;
    assert_eq!(got.len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (none, _) = receive_raw(
        &addr,
        receive_request("push", "leave-topic", Some(Duration::from_secs(30)), false),
    )
    .await;
    assert!(none.is_empty(), "renewed while its client is there");
    let mut bye = tonic::Request::new(v2::NotifyClientTerminationRequest {
        group: rpc::resource("push"),
    });
    bye.metadata_mut()
        .insert("x-mq-client-id", "leaver".parse().unwrap());
    client.notify_client_termination(bye).await.unwrap();
    let back = received_again(&addr, "push", "leave-topic", Duration::from_secs(15)).await;
    assert_eq!(&back[0].body[..], b"orphan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_keep_their_encoding_digests_are_md5_and_unknown_types_are_refused() {
    let cluster = one_broker(&[]).await;
    cluster.create_topic("fidelity", 1).await;
    let addr = cluster.broker("b1").addr.clone();
    let mut client = rpc::messaging(&addr);
    // Bytes as a producer that compressed them sends them (the broker never
    // decompresses: the consumer does, told by the encoding).
    let compressed = vec![0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5];
    let mut gz = rpc::message("fidelity", 0, compressed.clone());
    gz.system_properties.as_mut().unwrap().body_encoding = v2::Encoding::Gzip as i32;
    let plain = rpc::message("fidelity", 0, "plain text");
    let r = rpc::send(&mut client, vec![gz.clone()]).await;
    assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
    let r = rpc::send(&mut client, vec![plain.clone()]).await;
    assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);

    let mut unknown = rpc::message("fidelity", 0, "x");
    unknown.system_properties.as_mut().unwrap().message_type = 42;
    let r = rpc::send(&mut client, vec![unknown]).await;
    assert_eq!(
        rpc::code(r.status.as_ref()),
        Code::BadRequest as i32,
        "{r:?}"
    );
    let mut bad_encoding = rpc::message("fidelity", 0, "x");
    bad_encoding
        .system_properties
        .as_mut()
        .unwrap()
        .body_encoding = 9;
    let r = rpc::send(&mut client, vec![bad_encoding]).await;
    assert_eq!(
        rpc::code(r.status.as_ref()),
        Code::BadRequest as i32,
        "{r:?}"
    );

    let (got, code) = receive_raw(
        &addr,
        receive_request("g", "fidelity", Some(Duration::from_secs(30)), false),
    )
    .await;
    assert_eq!(code, Code::Ok as i32);
    assert_eq!(got.len(), 2, "only the two valid messages were stored");
    for (m, sent, encoding, md5) in [
        (&got[0], &gz, v2::Encoding::Gzip, md5_hex(&compressed)),
        (
            &got[1],
            &plain,
            v2::Encoding::Identity,
            md5_hex(b"plain text"),
        ),
    ] {
        let sp = m.system_properties.as_ref().unwrap();
        assert_eq!(sp.message_id, rpc::id_of(sent));
        assert_eq!(m.body, sent.body);
        assert_eq!(sp.body_encoding, encoding as i32);
        let digest = sp.body_digest.as_ref().unwrap();
        assert_eq!(digest.r#type, v2::DigestType::Md5 as i32);
        assert_eq!(digest.checksum, md5);
    }
}

/// MD5 as upper-case hex, computed independently of the broker.
fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode_upper(Md5::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forward_to_dead_letter_queue_stores_once_and_answers_ok_when_repeated() {
    let cluster = one_broker(&[]).await;
    cluster.create_topic("fwd-topic", 1).await;
    let addr = cluster.broker("b1").addr.clone();
    let mut client = rpc::messaging(&addr);
    let mut sent = rpc::message("fwd-topic", 0, "give up");
    sent.user_properties.insert("k".into(), "v".into());
    rpc::send(&mut client, vec![sent.clone()]).await;
    let (got, _) = receive_raw(
        &addr,
        receive_request(
            "fwd-group",
            "fwd-topic",
            Some(Duration::from_secs(30)),
            false,
        ),
    )
    .await;
    assert_eq!(got.len(), 1);
    let forward = v2::ForwardMessageToDeadLetterQueueRequest {
        group: rpc::resource("fwd-group"),
        topic: rpc::resource("fwd-topic"),
        receipt_handle: rpc::handle_of(&got[0]),
        message_id: rpc::id_of(&got[0]),
        delivery_attempt: 1,
        max_delivery_attempts: 16,
        lite_topic: None,
    };
    for _ in 0..2 {
        let r = client
            .forward_message_to_dead_letter_queue(forward.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
    }
    let mut forged = forward.clone();
    forged.receipt_handle = "not-a-handle".into();
    forged.message_id = message_id::new_message_id();
    let r = client
        .forward_message_to_dead_letter_queue(forged)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rpc::code(r.status.as_ref()),
        Code::InvalidReceiptHandle as i32
    );

    // The dead letter is in %DLQ%fwd-group once, with its id and properties,
    // and the group does not get the message again.
    let dead = rpc::pull_queue(&mut client, "fwd-group-reader", "%DLQ%fwd-group", 0).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(rpc::id_of(&dead[0]), rpc::id_of(&sent));
    assert_eq!(
        dead[0].user_properties.get("k").map(String::as_str),
        Some("v")
    );
    assert_eq!(&dead[0].body[..], b"give up");
    let (again, _) = receive_raw(
        &addr,
        receive_request(
            "fwd-group",
            "fwd-topic",
            Some(Duration::from_secs(30)),
            false,
        ),
    )
    .await;
    assert!(again.is_empty());
}

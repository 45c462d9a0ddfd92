//! A broker group's slave as the official clients meet it: routes present the group as
//! broker id 0 with the serving member's address first and every other member's after it; a
//! slave passes sends, receives and acks to its master while it can reach it (stored once,
//! delivered once), answers reads itself and refuses writes with HA_NOT_AVAILABLE while the
//! master is away, and ends a call its master does not answer with UNAVAILABLE naming it.

use apogee_proto::v2::{self, Code};
use apogee_tests::member_status::{wait_caught_up, wait_link};
use apogee_tests::{http, rpc, wait_until, BrokerSpec, Cluster};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

const TOPIC: &str = "served";
const QUEUES: i32 = 4;

fn member(id: i64, role: &str) -> BrokerSpec {
    BrokerSpec::member("sg", id)
        .role(role)
        .env("HEARTBEAT_INTERVAL_SECS", "1")
        .env("REPLICATION__RECONNECT_MS", "200")
}

/// A group "sg" of an ASYNC_MASTER and its slave, the topic on it and the slave linked;
/// (cluster, master address, slave address).
async fn group() -> (Cluster, String, String) {
    let cluster = Cluster::builder()
        .nameserver_env("BROKER_EXPIRY_SECS", "3")
        .broker(member(0, "async_master"))
        .broker(member(1, "slave"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let (master, slave) = (
        cluster.broker("sg-0").addr.clone(),
        cluster.broker("sg-1").addr.clone(),
    );
    wait_link(&slave, true).await;
    (cluster, master, slave)
}

/// Calls of `method` a server counted in `rocketmq_rpc_latency` (any status).
async fn calls(http_addr: &str, method: &str) -> f64 {
    let (_, body) = http::get(http_addr, "/metrics").await;
    let label = format!("request_code=\"{method}\"");
    body.lines()
        .filter(|l| l.starts_with("rocketmq_rpc_latency_count{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// (broker id, addresses) of the route's queues of `topic`, as the NameServer answers.
/// The route's queues as a client of `language` (its `x-mq-language`) is told them: (broker
/// id, permission, addresses).
async fn route_for(cluster: &Cluster, language: &str) -> Vec<(i32, i32, Vec<String>)> {
    let mut ns = rpc::messaging(cluster.ns_addr());
    let mut request = tonic::Request::new(v2::QueryRouteRequest {
        topic: rpc::resource(TOPIC),
        endpoints: None,
    });
    request
        .metadata_mut()
        .insert("x-mq-language", language.parse().expect("ASCII"));
    let r = ns
        .query_route(request)
        .await
        .expect("QueryRoute")
        .into_inner();
    r.message_queues
        .iter()
        .map(|q| {
            let b = q.broker.as_ref().expect("a queue names its broker");
            let addresses = b
                .endpoints
                .as_ref()
                .map(|e| {
                    e.addresses
                        .iter()
                        .map(|a| format!("{}:{}", a.host, a.port))
                        .collect()
                })
                .unwrap_or_default();
            (b.id, q.permission, addresses)
        })
        .collect()
}

/// The route as a Rust client sees it (every member's address, by default).
async fn route(cluster: &Cluster) -> Vec<(i32, i32, Vec<String>)> {
    route_for(cluster, "RUST").await
}

fn official_option(cluster: &Cluster) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(cluster.ns_addr());
    option.set_enable_tls(false);
    option.set_timeout(Duration::from_secs(3));
    option.set_long_polling_timeout(Duration::from_secs(2));
    option
}

async fn official_producer(cluster: &Cluster) -> rocketmq::Producer {
    let mut option = ProducerOption::default();
    option.set_topics(vec![TOPIC]);
    let mut producer = rocketmq::Producer::new(option, official_option(cluster)).expect("producer");
    producer.start().await.expect("official producer start");
    producer
}

async fn official_consumer(cluster: &Cluster, group: &str) -> rocketmq::SimpleConsumer {
    let mut option = SimpleConsumerOption::default();
    option.set_topics(vec![TOPIC]);
    option.set_consumer_group(group);
    let mut consumer =
        rocketmq::SimpleConsumer::new(option, official_option(cluster)).expect("consumer");
    consumer.start().await.expect("official consumer start");
    consumer
}

fn official_message(body: String) -> impl rocketmq::model::message::Message {
    MessageBuilder::builder()
        .set_topic(TOPIC)
        .set_tag("t")
        .set_body(body.into_bytes())
        .build()
        .expect("message")
}

/// Receives (each message invisible for `invisible`) and acks with the official consumer until
/// `done` holds for the distinct ids received so far or `limit` passed; errors (a dead member
/// of the route) are retried, and a message whose ack failed comes again after `invisible`.
/// Returns every message id received, repeats included, and the ids acked.
async fn official_receive_until(
    consumer: &rocketmq::SimpleConsumer,
    invisible: Duration,
    done: impl Fn(&BTreeSet<String>) -> bool,
    limit: Duration,
) -> (Vec<String>, BTreeSet<String>) {
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let mut got = Vec::new();
    let mut acked = BTreeSet::new();
    let mut distinct = BTreeSet::new();
    let deadline = Instant::now() + limit;
    while !done(&distinct) && Instant::now() < deadline {
        let Ok(batch) = consumer.receive_with(TOPIC, &filter, 16, invisible).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for m in batch {
            let id = m.message_id().to_string();
            // An ack whose answer is lost may still have applied: received counts.
            if consumer.ack(&m).await.is_ok() {
                acked.insert(id.clone());
            }
            distinct.insert(id.clone());
            got.push(id);
        }
    }
    (got, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_route_shows_id_0_with_every_member_serving_one_first() {
    let (mut cluster, master, slave) = group().await;
    let queues = route(&cluster).await;
    assert_eq!(queues.len(), QUEUES as usize, "{queues:?}");
    for (id, permission, addresses) in &queues {
        assert_eq!(*id, 0);
        assert_eq!(*permission, v2::Permission::ReadWrite as i32);
        assert_eq!(addresses, &[master.clone(), slave.clone()]);
    }
    // The clients that fetch routes again (Java, Go, Python, Node) get the serving member
    // alone by default (`route_addresses = "auto"`).
    for language in ["JAVA", "GOLANG", "PYTHON", "NODE_JS"] {
        for (id, _, addresses) in route_for(&cluster, language).await {
            assert_eq!((id, addresses), (0, vec![master.clone()]), "{language}");
        }
    }

    cluster.kill_broker("sg-0");
    wait_until(
        Duration::from_secs(60),
        "the route to show the slave serving",
        || async {
            let queues = route(&cluster).await;
            let served = queues.iter().all(|(id, permission, addresses)| {
                *id == 0
                    && *permission == v2::Permission::Read as i32
                    && *addresses == [slave.clone()]
            });
            (!queues.is_empty() && served)
                .then_some(())
                .ok_or(format!("{queues:?}"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_to_the_slave_is_acknowledged_and_stored_on_the_master() {
    let (_cluster, master, slave) = group().await;
    let mut on_slave = rpc::messaging(&slave);
    let m = rpc::message(TOPIC, 1, "through the slave");
    let id = rpc::id_of(&m);
    let r = rpc::send(&mut on_slave, vec![m]).await;
    assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
    let on_master: Vec<String> = rpc::queue_contents(&master, TOPIC, 1)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(
        on_master,
        std::slice::from_ref(&id),
        "the master stored the send once"
    );
    // The slave has it only as the master's copy.
    wait_caught_up(&master, &slave).await;
    let on_slave_log: Vec<String> = rpc::queue_contents(&slave, TOPIC, 1)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(on_slave_log, [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receive_and_an_ack_through_the_slave_leave_nothing_to_deliver_on_the_master() {
    let (_cluster, master, slave) = group().await;
    let mut on_master = rpc::messaging(&master);
    let mut sent = HashSet::new();
    for n in 0..20 {
        let m = rpc::message(TOPIC, 0, format!("m{n}"));
        sent.insert(rpc::id_of(&m));
        let r = rpc::send(&mut on_master, vec![m]).await;
        assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
    }
    wait_caught_up(&master, &slave).await;
    let group = "through-the-slave";
    let mut on_slave = rpc::messaging(&slave);
    let got: HashSet<String> = rpc::drain(&mut on_slave, group, TOPIC, Duration::from_secs(1))
        .await
        .iter()
        .map(rpc::id_of)
        .collect();
    assert_eq!(got, sent, "the slave passed on every message once");
    let again = rpc::drain(&mut on_master, group, TOPIC, Duration::from_secs(2)).await;
    let again: Vec<String> = again.iter().map(rpc::id_of).collect();
    assert!(
        again.is_empty(),
        "the master delivers again what was acked through the slave: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_crate_gets_every_message_once_with_calls_spread_over_both_members() {
    let (cluster, _master, _slave) = group().await;
    let slave_http = cluster.broker_http_addr("sg-1").to_string();
    let producer = official_producer(&cluster).await;
    let mut sent = BTreeSet::new();
    for n in 0..60 {
        let receipt = producer
            .send(official_message(format!("spread-{n}")))
            .await
            .unwrap_or_else(|e| panic!("official send {n}: {e:?}"));
        sent.insert(receipt.message_id().to_string());
    }
    let consumer = official_consumer(&cluster, "spread-group").await;
    let (got, acked) = official_receive_until(
        &consumer,
        Duration::from_secs(30),
        |a| a.len() >= sent.len(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(acked, sent, "every message received");
    assert_eq!(got.len(), sent.len(), "no message received twice");
    // The crate spreads its calls over both addresses of the route at random (tonic's
    // balance_list): of 60 sends and 60 acks the slave took some (receives are too few to
    // count on).
    assert!(calls(&slave_http, "SendMessage").await > 0.0);
    assert!(calls(&slave_http, "AckMessage").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_master_killed_the_official_crate_reads_the_rest_from_the_slave() {
    let (mut cluster, master, slave) = group().await;
    let producer = official_producer(&cluster).await;
    let consumer = official_consumer(&cluster, "after-kill").await;
    let mut sent = BTreeSet::new();
    for n in 0..40 {
        let receipt = producer
            .send(official_message(format!("before-{n}")))
            .await
            .unwrap_or_else(|e| panic!("official send {n}: {e:?}"));
        sent.insert(receipt.message_id().to_string());
    }
    let (first, _) = official_receive_until(
        &consumer,
        Duration::from_secs(30),
        |a| a.len() >= 10,
        Duration::from_secs(60),
    )
    .await;
    wait_caught_up(&master, &slave).await;

    cluster.kill_broker("sg-0");
    wait_link(&slave, false).await;
    // The crate keeps the route it stored (id 0, master then slave) and finds the slave.
    // Half of its acks go to the dead master and fail: those messages come again soon.
    let first: BTreeSet<String> = first.into_iter().collect();
    let (rest, _) = official_receive_until(
        &consumer,
        Duration::from_secs(2),
        |r| r.union(&first).count() >= sent.len(),
        Duration::from_secs(120),
    )
    .await;
    let got: BTreeSet<String> = first.iter().chain(&rest).cloned().collect();
    let missing: Vec<&String> = sent.difference(&got).collect();
    assert!(missing.is_empty(), "never received: {missing:?}");

    // Sends reach the slave (or the dead master) and fail; the slave's answer is the
    // retriable HA_NOT_AVAILABLE.
    let mut errors = Vec::new();
    for n in 0..20 {
        match producer.send(official_message(format!("after-{n}"))).await {
            Ok(r) => panic!("a send succeeded with the group's master dead: {r:?}"),
            Err(e) => errors.push(format!("{e}")),
        }
    }
    assert!(
        errors.iter().any(|e| e.contains("HA_NOT_AVAILABLE")),
        "{errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_master_away_the_slave_serves_reads_and_refuses_writes_retriably() {
    let (mut cluster, master, slave) = group().await;
    let mut on_master = rpc::messaging(&master);
    let m = rpc::message(TOPIC, 0, "stored");
    let id = rpc::id_of(&m);
    rpc::send(&mut on_master, vec![m]).await;
    wait_caught_up(&master, &slave).await;
    cluster.kill_broker("sg-0");
    wait_link(&slave, false).await;

    let mut on_slave = rpc::messaging(&slave);
    let r = rpc::send(&mut on_slave, vec![rpc::message(TOPIC, 0, "refused")]).await;
    assert_eq!(
        rpc::code(r.status.as_ref()),
        Code::HaNotAvailable as i32,
        "{r:?}"
    );
    let message = &r.status.as_ref().unwrap().message;
    assert!(
        message.contains("slave") && message.contains(&master),
        "{message}"
    );
    // Refused before the slave looks at what they name.
    let half = (
        "any-message-id".to_string(),
        "any-transaction-id".to_string(),
    );
    let ended = rpc::end_transaction(
        &mut on_slave,
        TOPIC,
        &half,
        v2::TransactionResolution::Commit,
    )
    .await;
    assert_eq!(ended, Code::HaNotAvailable as i32);
    let recalled = rpc::recall(&mut on_slave, TOPIC, "any-handle").await;
    assert_eq!(
        rpc::code(recalled.status.as_ref()),
        Code::HaNotAvailable as i32
    );
    // Reads go on from the slave's copy.
    let got: Vec<String> = rpc::drain(&mut on_slave, "while-away", TOPIC, Duration::from_secs(1))
        .await
        .iter()
        .map(rpc::id_of)
        .collect();
    assert_eq!(got, [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_the_paused_master_does_not_answer_ends_unavailable_naming_it() {
    let (mut cluster, master, slave) = group().await;
    cluster.pause_broker("sg-0");
    let mut on_slave = rpc::messaging(&slave);
    let mut request = tonic::Request::new(v2::SendMessageRequest {
        messages: vec![rpc::message(TOPIC, 0, "unanswered")],
    });
    request.set_timeout(Duration::from_secs(2));
    let answer = on_slave.send_message(request).await;
    cluster.resume_broker("sg-0");
    let status = answer.expect_err("the paused master cannot answer");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains(&master), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_master_killed_the_official_crates_next_send_goes_to_the_other_group() {
    let mut cluster = Cluster::builder()
        .broker(member(0, "async_master"))
        .broker(member(1, "slave"))
        .broker(BrokerSpec::member("og", 0).role("async_master"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let slave = cluster.broker("sg-1").addr.clone();
    wait_link(&slave, true).await;
    let producer = official_producer(&cluster).await;
    // The crate opens its session with each group on its first send there, and panics when
    // that fails (client.rs unwraps it): it meets both groups before the kill.
    for n in 0..(2 * QUEUES) {
        producer
            .send(official_message(format!("before-{n}")))
            .await
            .unwrap_or_else(|e| panic!("official send {n}: {e:?}"));
    }
    cluster.kill_broker("sg-0");
    wait_link(&slave, false).await;

    // The crate keeps its route (both groups, sg at its dead master and its slave) and does
    // not retry; an application that sends again on a failure gets the next queue, and every
    // message is stored within a few tries.
    let (mut stored, mut errors) = (0, Vec::new());
    for n in 0..20 {
        for _attempt in 0..8 {
            match producer.send(official_message(format!("after-{n}"))).await {
                Ok(_) => {
                    stored += 1;
                    break;
                }
                Err(e) => errors.push(format!("{e}")),
            }
        }
    }
    assert_eq!(stored, 20, "{errors:#?}");
    assert!(!errors.is_empty(), "no send went to sg");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("HA_NOT_AVAILABLE") || e.contains("onnect")),
        "{errors:#?}"
    );
}

//! Scheduled delivery with real processes: DELAY messages are delivered once, not before their
//! time and at most a second after it (also across a SIGKILL of the broker); limits; recall
//! through the broker and the NameServer; the official client's delay send; the CLI's
//! scheduled send, list and recall; a delivery time in milliseconds in the timestamp's
//! seconds field (as the official Python client sends it).

use apogee_proto::time::now_ms;
use apogee_proto::v2::{self, Code};
use apogee_tests::rpc::{self, code, code_name, delay_message, delivery_ms, id_of};
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

type Client = apogee_proto::v2::messaging_service_client::MessagingServiceClient<Channel>;

const QUEUES: i32 = 4;

async fn delay_topic(cluster: &Cluster, topic: &str) {
    cluster
        .create_typed_topic(topic, QUEUES, &[v2::MessageType::Delay])
        .await;
}

/// Sends `n` DELAY messages due 1 to 20 s from now, in batches; returns id -> due ms.
async fn send_random(client: &mut Client, topic: &str, n: usize) -> BTreeMap<String, i64> {
    let mut rng = rand::thread_rng();
    let mut due = BTreeMap::new();
    let messages: Vec<v2::Message> = (0..n)
        .map(|i| {
            let at = now_ms() + rng.gen_range(1_000..=20_000);
            let m = delay_message(topic, rng.gen_range(0..QUEUES), format!("m{i}"), at);
            due.insert(id_of(&m), at);
            m
        })
        .collect();
    for batch in messages.chunks(50) {
        let r = rpc::send(client, batch.to_vec()).await;
        assert_eq!(code(r.status.as_ref()), Code::Ok as i32, "send: {r:?}");
        assert!(r.entries.iter().all(|e| !e.recall_handle.is_empty()));
    }
    due
}

/// One received message: its id, its delivery timestamp and when it arrived (ms).
#[derive(Clone, Debug)]
struct Arrival {
    id: String,
    due_ms: i64,
    store_ms: i64,
    at_ms: i64,
}

/// Receives (long polling) and acks until `expected` messages arrived, then waits `quiet`
/// more for duplicates; returns every arrival.
async fn receive_all(
    client: &Client,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Arrival> {
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let receive_once = |wait: Duration| {
        let (mut client, arrivals) = (client.clone(), arrivals.clone());
        async move {
            let (messages, _) = rpc::receive(
                &mut client,
                "scheduled",
                topic,
                32,
                Some(apogee_proto::time::duration(Duration::from_secs(60))),
                wait,
            )
            .await;
            let at_ms = now_ms();
            let entries: Vec<(String, String)> = messages
                .iter()
                .map(|m| (id_of(m), rpc::handle_of(m)))
                .collect();
            if !entries.is_empty() {
                rpc::ack(&mut client, "scheduled", topic, &entries).await;
            }
            let mut all = arrivals.lock().unwrap();
            all.extend(messages.iter().map(|m| {
                Arrival {
                    id: id_of(m),
                    due_ms: delivery_ms(m),
                    store_ms: m
                        .system_properties
                        .as_ref()
                        .and_then(|s| s.store_timestamp.as_ref())
                        .map_or(0, apogee_proto::time::timestamp_ms),
                    at_ms,
                }
            }));
            all.len()
        }
    };
    wait_until(timeout, "every scheduled message", || async {
        let n = receive_once(Duration::from_secs(2)).await;
        if n >= expected {
            Ok(())
        } else {
            Err(format!("{n} of {expected} received"))
        }
    })
    .await;
    // Nothing more may come (a second delivery would).
    receive_once(Duration::from_secs(2)).await;
    let all = arrivals.lock().unwrap().clone();
    all
}

/// Checks exactly-once and "not early"; returns the lateness (ms) of every arrival.
fn check_once_not_early(sent: &BTreeMap<String, i64>, arrivals: &[Arrival]) -> Vec<i64> {
    let mut seen = BTreeSet::new();
    for a in arrivals {
        assert!(seen.insert(a.id.clone()), "{} delivered twice", a.id);
        assert_eq!(
            sent.get(&a.id),
            Some(&a.due_ms),
            "delivery timestamp of {}",
            a.id
        );
        assert!(
            a.store_ms >= a.due_ms && a.at_ms >= a.due_ms,
            "{} published at {} / received at {}, before its time {}",
            a.id,
            a.store_ms,
            a.at_ms,
            a.due_ms
        );
    }
    assert_eq!(seen.len(), sent.len(), "every message delivered");
    arrivals.iter().map(|a| a.at_ms - a.due_ms).collect()
}

fn report(what: &str, lateness: &mut [i64]) {
    lateness.sort_unstable();
    let pick = |q: f64| lateness[((lateness.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "{what}: lateness of {} deliveries (receive time - delivery time): median {} ms, \
         p99 {} ms, worst {} ms",
        lateness.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_delayed_messages_are_delivered_once_on_time() {
    const TOPIC: &str = "delayed";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    delay_topic(&cluster, TOPIC).await;
    let mut client = rpc::messaging(&cluster.broker("broker-a").addr);
    let sent = send_random(&mut client, TOPIC, 1000).await;
    let arrivals = receive_all(&client, TOPIC, sent.len(), Duration::from_secs(40)).await;
    let mut lateness = check_once_not_early(&sent, &arrivals);
    report("1,000 delayed messages", &mut lateness);
    let worst = *lateness.last().unwrap();
    assert!(worst <= 1_000, "a delivery was {worst} ms late");

    let listed = rpc::admin(cluster.ns_addr())
        .list_scheduled(apogee_proto::cluster::ListScheduledRequest::default())
        .await
        .expect("ListScheduled")
        .into_inner();
    assert!(listed.messages.is_empty(), "{:?}", listed.messages);
    let stats = &listed.stats[0];
    assert_eq!((stats.delivered, stats.waiting), (1000, 0), "{stats:?}");
    eprintln!(
        "broker side (publish time - due time): mean {} ms, worst {} ms, {} over 1 s",
        stats.lateness_sum_ms / stats.delivered,
        stats.lateness_max_ms,
        stats.late_over_1s
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_survive_sigkill_and_are_delivered_once() {
    const TOPIC: &str = "delayed-crash";
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("STORE__FLUSH", "sync"))
        .start()
        .await;
    delay_topic(&cluster, TOPIC).await;
    let addr = cluster.broker("broker-a").addr.clone();
    let mut client = rpc::messaging(&addr);
    let sent = send_random(&mut client, TOPIC, 1000).await;
    // Some are delivered before the crash, some come due while the broker is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill_broker("broker-a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart_broker("broker-a").await;
    let restarted = now_ms();
    let client = rpc::messaging(&addr);
    let arrivals = receive_all(&client, TOPIC, sent.len(), Duration::from_secs(40)).await;
    let mut lateness = check_once_not_early(&sent, &arrivals);
    report(
        "1,000 delayed messages across a SIGKILL (all)",
        &mut lateness,
    );
    // Those due after the broker was back are on time; earlier ones right after the start.
    let mut after: Vec<i64> = arrivals
        .iter()
        .filter(|a| a.due_ms > restarted + 1_000)
        .map(|a| a.at_ms - a.due_ms)
        .collect();
    report("... of them due after the restart", &mut after);
    let worst = *after.last().unwrap();
    assert!(
        worst <= 1_000,
        "a delivery due after the restart was {worst} ms late"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_past_times_and_recall() {
    const TOPIC: &str = "reminders";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster
        .create_typed_topic(
            TOPIC,
            QUEUES,
            &[v2::MessageType::Normal, v2::MessageType::Delay],
        )
        .await;
    let mut broker = rpc::messaging(&cluster.broker("broker-a").addr);
    let mut nameserver = rpc::messaging(cluster.ns_addr());

    // Beyond the maximum (7 days by default).
    let too_late = delay_message(TOPIC, 0, "x", now_ms() + 8 * 24 * 3600 * 1000);
    let r = rpc::send(&mut broker, vec![too_late]).await;
    assert_eq!(
        code(r.status.as_ref()),
        Code::IllegalDeliveryTime as i32,
        "{}: {r:?}",
        code_name(code(r.status.as_ref()))
    );

    let send_one = |m: v2::Message| {
        let mut broker = broker.clone();
        async move {
            let r = rpc::send(&mut broker, vec![m]).await;
            assert_eq!(code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
            r.entries[0].clone()
        }
    };
    let due = now_ms() + 3_000;
    let past = send_one(delay_message(TOPIC, 1, "past", now_ms() - 60_000)).await;
    let kept = send_one(delay_message(TOPIC, 0, "kept", due)).await;
    let recalled = send_one(delay_message(TOPIC, 2, "recalled", due)).await;
    let via_ns = send_one(delay_message(TOPIC, 3, "recalled via ns", due)).await;
    let via_cli = send_one(delay_message(TOPIC, 3, "recalled via the cli", due)).await;

    // The CLI sends scheduled messages too, printing their recall handles.
    let cli_sent = cluster
        .cli(&[
            "-o",
            "json",
            "send",
            "--topic",
            TOPIC,
            "--body",
            "cli",
            "--delay-level",
            "2",
        ])
        .success()
        .json();
    let cli_id = cli_sent[0]["message_id"]
        .as_str()
        .expect("message id")
        .to_string();
    assert!(
        cli_sent[0]["recall_handle"]
            .as_str()
            .is_some_and(|h| h.starts_with("R1-")),
        "{cli_sent}"
    );

    // The CLI lists the waiting ones by due time.
    let listed = cluster
        .cli(&["-o", "json", "schedule", "list", "--topic", TOPIC])
        .success()
        .json();
    let listed_ids: BTreeSet<String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    assert!(listed_ids.contains(&kept.message_id), "{listed}");
    let dues: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["due_ms"].as_i64().unwrap())
        .collect();
    assert!(
        dues.windows(2).all(|w| w[0] <= w[1]),
        "by due time: {listed}"
    );

    let r = rpc::recall(&mut broker, TOPIC, &recalled.recall_handle).await;
    assert_eq!(code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
    assert_eq!(r.message_id, recalled.message_id);
    let r = rpc::recall(&mut nameserver, TOPIC, &via_ns.recall_handle).await;
    assert_eq!(code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
    assert_eq!(r.message_id, via_ns.message_id);
    let recalled_by_cli = cluster
        .cli(&[
            "-o",
            "json",
            "message",
            "recall",
            "--topic",
            TOPIC,
            &via_cli.recall_handle,
        ])
        .success()
        .json();
    assert_eq!(recalled_by_cli["message_id"], via_cli.message_id.as_str());
    assert_eq!(recalled_by_cli["state"], "RECALLED");
    let unknown = apogee_proto::routed_id::new_recall_handle("broker-a");
    let r = rpc::recall(&mut nameserver, TOPIC, &unknown).await;
    assert_eq!(
        code(r.status.as_ref()),
        Code::MessageNotFound as i32,
        "{r:?}"
    );

    // The past one comes at once; the kept one at its time; the recalled ones never.
    let arrivals = receive_all(&broker, TOPIC, 3, Duration::from_secs(20)).await;
    let got: BTreeMap<String, i64> = arrivals.iter().map(|a| (a.id.clone(), a.at_ms)).collect();
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([past.message_id.clone(), kept.message_id.clone(), cli_id])
    );
    assert!(got[&past.message_id] < due, "the past message waited");
    assert!(got[&kept.message_id] >= due);

    // Recalling a delivered message is refused, through the broker or the NameServer.
    for client in [&mut broker, &mut nameserver] {
        let r = rpc::recall(client, TOPIC, &kept.recall_handle).await;
        assert_eq!(
            code(r.status.as_ref()),
            Code::PreconditionFailed as i32,
            "{r:?}"
        );
    }
    let out = cluster.cli(&["message", "recall", "--topic", TOPIC, &past.recall_handle]);
    assert_ne!(out.code, 0, "recall of a delivered message:\n{out}");
    assert!(out.stderr.contains("already delivered"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_delay_message_arrives_after_its_time() {
    use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
    use rocketmq::model::common::{FilterExpression, FilterType};
    use rocketmq::model::message::MessageBuilder;
    use rocketmq::{Producer, SimpleConsumer};
    const TOPIC: &str = "official-delay";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    delay_topic(&cluster, TOPIC).await;
    let client_option = || {
        let mut option = ClientOption::default();
        option.set_access_url(cluster.ns_addr());
        option.set_enable_tls(false);
        option
    };
    let mut producer_option = ProducerOption::default();
    producer_option.set_topics(vec![TOPIC]);
    let mut producer = Producer::new(producer_option, client_option()).expect("producer");
    producer.start().await.expect("producer start");
    // The official client sends whole seconds.
    let due_secs = now_ms() / 1000 + 3;
    let message = MessageBuilder::delay_message_builder(TOPIC, b"later".to_vec(), due_secs).build();
    let receipt = producer
        .send(message.expect("message"))
        .await
        .expect("delay send");

    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![TOPIC]);
    consumer_option.set_consumer_group("official-delay-group");
    let mut consumer = SimpleConsumer::new(consumer_option, client_option()).expect("consumer");
    consumer.start().await.expect("consumer start");
    let filter = FilterExpression::new(FilterType::Tag, "*");
    let consumer = Arc::new(tokio::sync::Mutex::new(consumer));
    let (m, at_ms) = wait_until(Duration::from_secs(30), "the delay message", || {
        let (consumer, filter) = (consumer.clone(), &filter);
        async move {
            let consumer = consumer.lock().await;
            let got = consumer
                .receive_with(TOPIC, filter, 16, Duration::from_secs(30))
                .await
                .map_err(|e| format!("{e:?}"))?;
            let at_ms = now_ms();
            match got.into_iter().next() {
                Some(m) => {
                    consumer.ack(&m).await.expect("ack");
                    Ok((m, at_ms))
                }
                None => Err("nothing yet".into()),
            }
        }
    })
    .await;
    assert_eq!(m.message_id(), receipt.message_id());
    assert_eq!(m.delivery_timestamp(), Some(due_secs));
    assert!(
        at_ms >= due_secs * 1000,
        "received at {at_ms}, before its time {}",
        due_secs * 1000
    );
    producer.shutdown().await.expect("shutdown");
    Arc::try_unwrap(consumer)
        .unwrap_or_else(|_| panic!("one owner"))
        .into_inner()
        .shutdown()
        .await
        .expect("shutdown");
}

/// A DELAY message whose delivery timestamp is (`seconds`, `nanos`): rocketmq-python-client
/// 5.1.2 puts its millisecond delivery time in `seconds`, with no nanos.
fn with_delivery_timestamp(body: &str, seconds: i64, nanos: i32) -> v2::Message {
    let mut m = delay_message(TOPIC_MS_IN_SECONDS, 0, body, 0);
    if let Some(sp) = m.system_properties.as_mut() {
        sp.delivery_timestamp = Some(prost_types::Timestamp { seconds, nanos });
    }
    m
}

const TOPIC_MS_IN_SECONDS: &str = "ms-in-seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milliseconds_in_the_seconds_field_are_read_as_milliseconds() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    delay_topic(&cluster, TOPIC_MS_IN_SECONDS).await;
    let mut broker = rpc::messaging(&cluster.broker("broker-a").addr);

    // Out of range however it is read: refused, nothing stored.
    const EIGHT_DAYS_MS: i64 = 8 * 24 * 3600 * 1000;
    let now = now_ms();
    for (what, seconds, nanos) in [
        ("8 days ahead in milliseconds", now + EIGHT_DAYS_MS, 0),
        ("8 days ahead in seconds", (now + EIGHT_DAYS_MS) / 1000, 0),
        ("year 6000 in seconds (1974 in ms)", 127_174_000_000, 0),
        ("the largest seconds", i64::MAX, 0),
        // Saturating, not wrapped around into the past.
        ("the largest seconds and nanos", i64::MAX, 999_000_000),
    ] {
        let m = with_delivery_timestamp("refused", seconds, nanos);
        let r = rpc::send(&mut broker, vec![m]).await;
        assert_eq!(
            code(r.status.as_ref()),
            Code::IllegalDeliveryTime as i32,
            "{what}: {}: {r:?}",
            code_name(code(r.status.as_ref()))
        );
    }

    // A delivery time 3 s ahead, in milliseconds: accepted, delivered once, not before it.
    let due = now_ms() + 3_000;
    let m = with_delivery_timestamp("python", due, 0);
    let id = id_of(&m);
    let r = rpc::send(&mut broker, vec![m]).await;
    assert_eq!(code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
    assert!(!r.entries[0].recall_handle.is_empty(), "{r:?}");
    let arrivals = receive_all(&broker, TOPIC_MS_IN_SECONDS, 1, Duration::from_secs(20)).await;
    check_once_not_early(&BTreeMap::from([(id, due)]), &arrivals);
}

//! RocketMQ's official Rust client (`rocketmq` 5.0.0) across an automatic failover, without
//! a restart: a controller-mode group of three members, the crate's Producer and
//! SimpleConsumer sending and receiving through it, the master SIGKILLed mid-stream.
//!
//! The crate fetches a topic's route once and never again, and spreads each call over every
//! address of the queue's endpoints (one balanced channel). The NameServer lists every member
//! of the group for Rust clients (`nameserver::grpc::route`), so after the kill the crate's
//! stored route still names two live members: the new master serves, the other slave passes
//! calls to the new master (`broker::grpc::forward`). A call that lands on the dead member
//! fails once (the crate does not try another address); the application's next call goes on.
//! Every acknowledged message is received, and the time from the kill to the first
//! acknowledged send and the first received message is printed.

use apogee_proto::v2;
use apogee_tests::commitlog::logged_ids;
use apogee_tests::failover::{
    assert_all_logged, controller_group, member, member_name, send_one, start_group_of_two,
    StartedGroup,
};
use apogee_tests::{rpc, wait_until, Cluster};
use rocketmq::conf::{ClientOption, ProducerOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::model::message::MessageBuilder;
use rocketmq::{Producer, SimpleConsumer};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GROUP: &str = "ofo";
const TOPIC: &str = "official-failover";
const QUEUES: i32 = 4;
/// How long a received message stays invisible: one whose ack went to the dead member comes
/// back this soon.
const INVISIBLE: Duration = Duration::from_secs(5);
/// The pause of a sender or receiver task after a failed call (a call to the dead member
/// fails at once: without it the task would spin).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What the client tasks saw, each event with its time.
#[derive(Default)]
struct Seen {
    acked: Mutex<Vec<(String, Instant)>>,
    send_errors: Mutex<Vec<(String, Instant)>>,
    received: Mutex<Vec<(String, Instant)>>,
    receive_errors: Mutex<Vec<(String, Instant)>>,
}

impl Seen {
    fn acked_ids(&self) -> BTreeSet<String> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn received_ids(&self) -> BTreeSet<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn acked_after(&self, t: Instant) -> usize {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .count()
    }

    /// The first time after `t` an event of `events` happened, as a duration since `t`.
    fn first_after(events: &Mutex<Vec<(String, Instant)>>, t: Instant) -> Option<Duration> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .map(|(_, at)| *at - t)
            .min()
    }

    fn errors_after(events: &Mutex<Vec<(String, Instant)>>, t: Instant) -> Vec<String> {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .map(|(e, _)| e.clone())
            .collect()
    }
}

/// Failed calls by kind: (refused with HA_NOT_AVAILABLE by a member that is not the master
/// yet, failed to reach a member, anything else).
fn error_kinds(errors: &[String]) -> (usize, usize, Vec<&String>) {
    let (mut refused, mut unreachable, mut other) = (0, 0, Vec::new());
    for e in errors {
        let lower = e.to_lowercase();
        if e.contains("HA_NOT_AVAILABLE") {
            refused += 1;
        } else if ["connect", "transport", "unavailable"]
            .iter()
            .any(|w| lower.contains(w))
        {
            unreachable += 1;
        } else {
            other.push(e);
        }
    }
    (refused, unreachable, other)
}

fn client_option(cluster: &Cluster) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(cluster.ns_addr());
    option.set_enable_tls(false);
    option.set_timeout(Duration::from_secs(3));
    option.set_long_polling_timeout(Duration::from_secs(2));
    option
}

/// The addresses each queue of the route lists, as the NameServer tells a Rust client.
async fn rust_route_addresses(cluster: &Cluster) -> Result<Vec<Vec<String>>, String> {
    let mut ns = rpc::messaging(cluster.ns_addr());
    let mut request = tonic::Request::new(v2::QueryRouteRequest {
        topic: rpc::resource(TOPIC),
        endpoints: None,
    });
    request
        .metadata_mut()
        .insert("x-mq-language", "RUST".parse().expect("ASCII"));
    let route = ns
        .query_route(request)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    Ok(route
        .message_queues
        .iter()
        .map(|q| {
            q.broker
                .as_ref()
                .and_then(|b| b.endpoints.as_ref())
                .map(|e| {
                    e.addresses
                        .iter()
                        .map(|a| format!("{}:{}", a.host, a.port))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect())
}

/// Sends with the crate's producer until `stop`, one message at a time.
fn spawn_sender(
    producer: Arc<Producer>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let message = MessageBuilder::builder()
                .set_topic(TOPIC)
                .set_tag("t")
                .set_body(format!("official-failover-{n}").into_bytes())
                .build()
                .expect("message");
            n += 1;
            match producer.send(message).await {
                Ok(receipt) => seen
                    .acked
                    .lock()
                    .unwrap()
                    .push((receipt.message_id().to_string(), Instant::now())),
                Err(e) => {
                    seen.send_errors
                        .lock()
                        .unwrap()
                        .push((e.to_string(), Instant::now()));
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    })
}

/// Receives and acks with the crate's simple consumer until `stop`.
fn spawn_receiver(
    consumer: Arc<SimpleConsumer>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let filter = FilterExpression::new(FilterType::Tag, "*");
        while !stop.load(Ordering::SeqCst) {
            match consumer.receive_with(TOPIC, &filter, 16, INVISIBLE).await {
                Ok(batch) => {
                    for m in batch {
                        seen.received
                            .lock()
                            .unwrap()
                            .push((m.message_id().to_string(), Instant::now()));
                        // An ack that goes to the dead member fails: the message comes back
                        // after INVISIBLE and is received again.
                        let _ = consumer.ack(&m).await;
                    }
                }
                Err(e) => {
                    seen.receive_errors
                        .lock()
                        .unwrap()
                        .push((e.to_string(), Instant::now()));
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_rust_client_produces_and_consumes_across_a_failover() {
    let mut cluster = Cluster::builder()
        .controller()
        .broker(member(GROUP, 1))
        .broker(member(GROUP, 2))
        .broker(member(GROUP, 3))
        .start()
        .await;
    let before = wait_until(
        Duration::from_secs(60),
        "a master with three members in sync",
        || async {
            let g = controller_group(&cluster, GROUP).await?;
            (g.master != 0 && g.in_sync.len() == 3)
                .then_some(g.clone())
                .ok_or(format!("{g:?}"))
        },
    )
    .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    // The crate stores the route it is given at start: wait until it lists every member.
    wait_until(
        Duration::from_secs(30),
        "the route to list the three members",
        || async {
            let queues = rust_route_addresses(&cluster).await?;
            (queues.len() == QUEUES as usize && queues.iter().all(|a| a.len() == 3))
                .then_some(())
                .ok_or(format!("{queues:?}"))
        },
    )
    .await;

    let mut producer_option = ProducerOption::default();
    producer_option.set_topics(vec![TOPIC]);
    let mut producer = Producer::new(producer_option, client_option(&cluster)).expect("producer");
    producer.start().await.expect("official producer start");
    let mut consumer_option = SimpleConsumerOption::default();
    consumer_option.set_topics(vec![TOPIC]);
    consumer_option.set_consumer_group("official-failover");
    let mut consumer =
        SimpleConsumer::new(consumer_option, client_option(&cluster)).expect("consumer");
    consumer.start().await.expect("official consumer start");
    let (producer, consumer) = (Arc::new(producer), Arc::new(consumer));

    let seen = Arc::new(Seen::default());
    let (stop_sending, stop_receiving) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let sender = spawn_sender(producer.clone(), seen.clone(), stop_sending.clone());
    let receiver = spawn_receiver(consumer.clone(), seen.clone(), Arc::clone(&stop_receiving));
    wait_until(
        Duration::from_secs(60),
        "sends and receives before the kill",
        || async {
            let (a, r) = (seen.acked_ids().len(), seen.received_ids().len());
            (a >= 100 && r >= 50)
                .then_some(())
                .ok_or(format!("{a} acknowledged, {r} received"))
        },
    )
    .await;

    let old = member_name(GROUP, before.master);
    cluster.kill_broker(&old);
    let killed_at = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the same producer's sends to be acknowledged after the kill",
        || async {
            let n = seen.acked_after(killed_at);
            (n >= 100).then_some(()).ok_or(format!(
                "{n} acknowledged since the kill; send errors since: {:?}",
                Seen::errors_after(&seen.send_errors, killed_at).last()
            ))
        },
    )
    .await;
    stop_sending.store(true, Ordering::SeqCst);
    sender.await.expect("the sender task panicked");
    let acked = seen.acked_ids();
    wait_until(
        Duration::from_secs(60),
        "the same consumer to receive every acknowledged message",
        || async {
            let received = seen.received_ids();
            let missing = acked.difference(&received).count();
            (missing == 0).then_some(()).ok_or(format!(
                "{missing} of {} acknowledged not received; receive errors since the kill: {:?}",
                acked.len(),
                Seen::errors_after(&seen.receive_errors, killed_at).last()
            ))
        },
    )
    .await;
    stop_receiving.store(true, Ordering::SeqCst);
    receiver.await.expect("the receiver task panicked");

    // Another member was elected; the slave left passes a send to the NEW master.
    let after = controller_group(&cluster, GROUP).await.unwrap();
    assert!(
        after.master != before.master && after.master_epoch > before.master_epoch,
        "before {before:?}, after {after:?}"
    );
    let new_master = member_name(GROUP, after.master);
    let slave = (1..=3)
        .map(|id| member_name(GROUP, id))
        .find(|name| *name != old && *name != new_master)
        .unwrap();
    let slave_addr = cluster.broker(&slave).addr.clone();
    let through_slave = wait_until(
        Duration::from_secs(30),
        "a send through the slave left",
        || async { send_one(&slave_addr, TOPIC, 0, "through-the-slave".into()).await },
    )
    .await;
    let new_dir = cluster.broker(&new_master).data_dir.clone();
    wait_until(
        Duration::from_secs(10),
        "the send through the slave on the new master",
        || async {
            logged_ids(&new_dir)
                .contains(&through_slave)
                .then_some(())
                .ok_or("not in the new master's log".to_string())
        },
    )
    .await;

    let first_ack = Seen::first_after(&seen.acked, killed_at).unwrap();
    let first_receive = Seen::first_after(&seen.received, killed_at).unwrap();
    let send_errors = Seen::errors_after(&seen.send_errors, killed_at);
    let receive_errors = Seen::errors_after(&seen.receive_errors, killed_at);
    // After the new master answered, a failed send is one the crate's balanced channel gave
    // the dead member (the crate does not try another address for it).
    let dead_member_sends = Seen::errors_after(&seen.send_errors, killed_at + first_ack);
    let (send_refused, send_unreachable, send_other) = error_kinds(&send_errors);
    let (receive_refused, receive_unreachable, receive_other) = error_kinds(&receive_errors);
    eprintln!(
        "official Rust crate across a SIGKILL of the master: {} acknowledged, every one \
         received ({} receipts); first acknowledged send {} ms after the kill, first received \
         message {} ms after; since the kill: sends failed {} times (refused {}, member \
         unreachable {}, other {:?}), receives failed {} times (refused {}, member unreachable \
         {}, other {:?}); after the first acknowledged send {} sends failed ({} unreachable)",
        acked.len(),
        seen.received.lock().unwrap().len(),
        first_ack.as_millis(),
        first_receive.as_millis(),
        send_errors.len(),
        send_refused,
        send_unreachable,
        send_other.first(),
        receive_errors.len(),
        receive_refused,
        receive_unreachable,
        receive_other.first(),
        dead_member_sends.len(),
        error_kinds(&dead_member_sends).1,
    );
}

/// RocketMQ's official Python client's Producer (5.1.2, `tests/python/producer_failover.py`)
/// across the same failover in a group of two: it keeps its route until its own refresh
/// (every 30 s, the first 10 s after it starts; the route gives it the serving member's
/// address alone), so it follows within one refresh. Skipped without python3 and the
/// package, except under CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_python_producer_follows_a_failover_by_its_route_refresh() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    if !crate::official_python::python_client_usable() {
        return;
    }
    const PY_GROUP: &str = "pyfo";
    const PY_TOPIC: &str = "python-failover";
    let StartedGroup {
        mut cluster,
        master: old,
        slave: new,
        ..
    } = start_group_of_two(PY_GROUP, PY_TOPIC, QUEUES).await;
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/producer_failover.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .args(["--endpoint", cluster.ns_addr(), "--topic", PY_TOPIC])
        .args(["--before", "20", "--after", "20", "--timeout", "60"])
        // The client writes its log under $HOME/logs.
        .env("HOME", cluster.dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stdin = child.stdin.take().expect("stdin");
    let ready = tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await;
    assert!(
        matches!(&ready, Ok(Ok(Some(l))) if l == "ready"),
        "the script did not get its first sends acknowledged: {ready:?}"
    );

    cluster.kill_broker(&old);
    let kill_ms = apogee_proto::time::now_ms();
    stdin
        .write_all(format!("{kill_ms}\n").as_bytes())
        .await
        .expect("the kill time to the script");
    stdin.flush().await.expect("flush");
    let line = tokio::time::timeout(Duration::from_secs(90), stdout.next_line())
        .await
        .expect("the script's report within 90 s")
        .expect("the script's stdout")
        .expect("a report line");
    let report: serde_json::Value = serde_json::from_str(&line).expect("a JSON report");
    let acked: Vec<(String, i64)> = report["acked"]
        .as_array()
        .expect("acked")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_string(),
                a["at_ms"].as_i64().expect("at_ms"),
            )
        })
        .collect();
    let after: Vec<i64> = acked
        .iter()
        .filter(|(_, at)| *at > kill_ms)
        .map(|(_, at)| at - kill_ms)
        .collect();
    let failures = report["failures"].as_array().expect("failures");
    assert!(
        after.len() >= 20,
        "the same Python producer got {} sends acknowledged after the kill; the last failure: \
         {:?}",
        after.len(),
        failures.last()
    );
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    assert_all_logged(&ids, &cluster.broker(&new).data_dir, "the new master");
    eprintln!(
        "official Python producer across a SIGKILL of the master: first acknowledged send {} ms \
         after the kill (its route refresh), {} failed sends meanwhile (the first: {:?})",
        after.iter().min().unwrap(),
        failures.len(),
        failures.first().map(|f| &f["error"])
    );
    let _ = child.wait().await;
}

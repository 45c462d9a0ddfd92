//! Losing NameServers: with every NameServer down, running producers and
//! consumers go on with the routes they have and brokers register again by
//! themselves once the NameServers return; with one of two down, neither
//! running nor newly started clients notice; a NameServer restarted under running clients
//! breaks none of them and knows the broker again. And a broker whose group and id
//! another live broker holds is refused at start, naming both endpoints.

use apogee_client::route::ROUTE_TTL;
use apogee_client::{ClientConfig, FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::cluster::{GetClusterInfoRequest, GetRouteRequest};
use apogee_tests::process::free_port;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

const TOPIC: &str = "ns-loss";
const QUEUES: i32 = 4;
/// How long every NameServer stays down.
const OUTAGE: Duration = Duration::from_secs(30);
/// Generous deadlines for a loaded CI machine (nothing is timed against them).
const SETTLE: Duration = Duration::from_secs(60);

/// A broker that beats every second and registers in full only when a
/// NameServer asks (or its topics change), so a re-registration is its
/// session's doing.
fn heartbeating(name: &str) -> BrokerSpec {
    BrokerSpec::new(name)
        .env("HEARTBEAT_INTERVAL_MS", "1000")
        .env("REGISTER_INTERVAL_SECS", "3600")
}

/// What a workload's clients did.
#[derive(Default)]
struct Seen {
    sent: HashSet<String>,
    received: HashSet<String>,
    /// Every error the application saw (after the client's own retries).
    errors: Vec<String>,
}

/// A producer and a consumer (its own group) running continuously on one topic.
struct Workload {
    label: String,
    seen: Arc<Mutex<Seen>>,
    stop_producing: Arc<AtomicBool>,
    stop_consuming: Arc<AtomicBool>,
    producer: JoinHandle<()>,
    consumer: JoinHandle<()>,
}

impl Workload {
    /// Connects both clients (which must work at once) and starts their loops.
    async fn start(config: ClientConfig, topic: &str, label: &str) -> Workload {
        let producer = Producer::connect(config.clone())
            .await
            .unwrap_or_else(|e| panic!("{label}: producer: {e}"));
        let consumer = SimpleConsumer::connect(
            config,
            format!("{label}-group"),
            vec![(topic.to_string(), FilterExpression::default())],
        )
        .await
        .unwrap_or_else(|e| panic!("{label}: consumer: {e}"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop_producing = Arc::new(AtomicBool::new(false));
        let stop_consuming = Arc::new(AtomicBool::new(false));
        let producer = tokio::spawn(produce(
            producer,
            topic.to_string(),
            label.to_string(),
            seen.clone(),
            stop_producing.clone(),
        ));
        let consumer = tokio::spawn(consume(
            consumer,
            topic.to_string(),
            seen.clone(),
            stop_consuming.clone(),
        ));
        Workload {
            label: label.to_string(),
            seen,
            stop_producing,
            stop_consuming,
            producer,
            consumer,
        }
    }

    /// (sent, received of its own) so far.
    fn counts(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        let own = seen.sent.intersection(&seen.received).count();
        (seen.sent.len(), own)
    }

    fn errors(&self) -> Vec<String> {
        self.seen.lock().unwrap().errors.clone()
    }

    /// Waits until more than `sent` messages were sent and more than `received` of
    /// them arrived.
    async fn wait_beyond(&self, sent: usize, received: usize) {
        let what = format!(
            "{}: messages flowing past {sent} sent, {received} received",
            self.label
        );
        wait_until(SETTLE, &what, || async {
            let (s, r) = self.counts();
            if s > sent && r > received {
                Ok(())
            } else {
                Err(format!(
                    "{s} sent, {r} received; errors {:?}",
                    self.errors()
                ))
            }
        })
        .await;
    }

    /// Stops producing, waits until everything sent arrived, stops consuming.
    async fn finish(self) -> Seen {
        self.stop_producing.store(true, Ordering::SeqCst);
        self.producer.await.expect("the producer task panicked");
        let what = format!("{}: every message sent to arrive", self.label);
        wait_until(SETTLE, &what, || async {
            let seen = self.seen.lock().unwrap();
            let missing = seen.sent.difference(&seen.received).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {} missing", seen.sent.len()))
            }
        })
        .await;
        self.stop_consuming.store(true, Ordering::SeqCst);
        self.consumer.await.expect("the consumer task panicked");
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn produce(
    producer: Producer,
    topic: String,
    label: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let body = format!("{label}-{n}");
        n += 1;
        match producer.send(Message::new(&topic, body.clone())).await {
            Ok(_) => {
                seen.lock().unwrap().sent.insert(body);
            }
            Err(e) => seen
                .lock()
                .unwrap()
                .errors
                .push(format!("send {body}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn consume(
    consumer: SimpleConsumer,
    topic: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let wait = Duration::from_secs(1);
        let messages = match consumer
            .receive(&topic, 16, Duration::from_secs(30), wait)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                seen.lock().unwrap().errors.push(format!("receive: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acks = consumer.ack_many(&messages).await;
        let mut seen = seen.lock().unwrap();
        for (m, ack) in messages.iter().zip(acks) {
            if let Err(e) = ack {
                seen.errors.push(format!("ack {}: {e}", m.message_id));
            }
            seen.received.insert(m.body_lossy().into_owned());
        }
    }
}

fn assert_clean(label: &str, seen: &Seen) {
    assert!(
        seen.errors.is_empty(),
        "{label}: the application saw {} errors: {:?}",
        seen.errors.len(),
        seen.errors
    );
    assert!(!seen.sent.is_empty(), "{label}: nothing was sent");
}

/// Whether `ns` lists broker group `broker` with a member at `endpoint` and routes
/// `topic` to it.
async fn serves_broker(ns: &str, broker: &str, endpoint: &str, topic: &str) -> Result<(), String> {
    let mut registry = rpc::registry(ns);
    let info = registry
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .map_err(|e| format!("GetClusterInfo: {e}"))?
        .into_inner();
    let listed = info
        .groups
        .iter()
        .any(|g| g.broker_name == broker && g.members.iter().any(|m| m.endpoint == endpoint));
    if !listed {
        return Err(format!("cluster info {info:?}"));
    }
    let route = registry
        .get_route(GetRouteRequest {
            topic: topic.into(),
        })
        .await
        .map_err(|e| format!("GetRoute: {e}"))?
        .into_inner();
    if route
        .placements
        .iter()
        .any(|p| p.group.as_ref().is_some_and(|g| g.broker_name == broker))
    {
        Ok(())
    } else {
        Err(format!("route {route:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_nameservers_down_for_30s_clients_keep_working_and_brokers_reregister() {
    let mut cluster = Cluster::builder()
        .nameservers(2)
        .broker(heartbeating("loss"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let work = Workload::start(cluster.client_config(), TOPIC, "through").await;
    work.wait_beyond(20, 20).await;

    cluster.kill_nameserver(0);
    cluster.kill_nameserver(1);
    let (sent, received) = work.counts();
    // Longer than the route TTL: the clients' refreshes fail during the outage.
    assert!(OUTAGE >= ROUTE_TTL);
    tokio::time::sleep(OUTAGE).await;
    let (sent_after, received_after) = work.counts();
    assert!(
        sent_after > sent && received_after > received,
        "no progress while the NameServers were down: {sent} -> {sent_after} sent, \
         {received} -> {received_after} received; errors {:?}",
        work.errors()
    );

    cluster.restart_nameserver(0).await;
    cluster.restart_nameserver(1).await;
    let broker = cluster.broker_addr("loss").to_string();
    for ns in cluster.ns_addrs() {
        wait_until(
            Duration::from_secs(30),
            &format!("the broker registered again with {ns}"),
            || serves_broker(&ns, "loss", &broker, TOPIC),
        )
        .await;
    }
    work.wait_beyond(sent_after, received_after).await;
    let seen = work.finish().await;
    assert_clean("through the outage", &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_nameservers_down_is_not_noticed_by_clients() {
    let mut cluster = Cluster::builder()
        .nameservers(2)
        .broker(heartbeating("half"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let running = Workload::start(cluster.client_config(), TOPIC, "running").await;
    running.wait_beyond(10, 10).await;

    // The first NameServer, the one clients ask first.
    cluster.kill_nameserver(0);
    // Clients started now look routes up afresh, for an old topic and for one
    // only the live NameServer has heard of.
    cluster.create_topic("after-kill", QUEUES).await;
    let fresh_old = Workload::start(cluster.client_config(), TOPIC, "fresh-old").await;
    let fresh_new = Workload::start(cluster.client_config(), "after-kill", "fresh-new").await;
    fresh_old.wait_beyond(10, 10).await;
    fresh_new.wait_beyond(10, 10).await;
    // Long enough for every client's route to expire and be fetched again.
    tokio::time::sleep(ROUTE_TTL + Duration::from_secs(5)).await;
    let (s, r) = running.counts();
    running.wait_beyond(s, r).await;

    for work in [running, fresh_old, fresh_new] {
        let label = work.label.clone();
        let seen = work.finish().await;
        assert_clean(&label, &seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_broker_with_the_same_name_and_id_is_refused_at_start() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("dup"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let first = cluster.broker_addr("dup").to_string();
    // A NameServer the first broker does not know (it keeps the ones it started with).
    let unknown_to_first = cluster.add_nameserver().await;

    // Same group and id, another port: NameServer 0 refuses it (the added one knows
    // no "dup" and accepts, then is told to forget it).
    let port = free_port();
    let second = format!("127.0.0.1:{port}");
    let (status, log) = cluster
        .broker_start_failure(BrokerSpec::member("dup", 0).port(port))
        .await;
    assert_eq!(status.code(), Some(1), "{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.starts_with("error: ")
            && last.contains("refused to register")
            && last.contains(cluster.ns_addr())
            && last.contains(&first)
            && last.contains(&second),
        "the last line must give the reason with both endpoints: {last:?}\n{log}"
    );

    let mut added = rpc::registry(&unknown_to_first);
    let info = added
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.groups.is_empty(),
        "the refused broker must take back its registration: {info:?}"
    );

    // The first one keeps working, and stays the one registered.
    serves_broker(cluster.ns_addr(), "dup", &first, TOPIC)
        .await
        .unwrap();
    let work = Workload::start(cluster.client_config(), TOPIC, "after-clash").await;
    work.wait_beyond(10, 10).await;
    let seen = work.finish().await;
    assert_clean("after the clash", &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_nameserver_does_not_break_running_clients() {
    // The only NameServer restarts empty; the broker's session reconnects and the
    // NameServer asks it for a registration (a broker registers in full only then).
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("quiet").env("REGISTER_INTERVAL_SECS", "3600"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let work = Workload::start(cluster.client_config(), TOPIC, "cached").await;
    work.wait_beyond(10, 10).await;
    cluster.kill_nameserver(0);
    cluster.restart_nameserver(0).await;
    let endpoint = cluster.broker_addr("quiet").to_string();
    wait_until(
        SETTLE,
        "the restarted NameServer to know the broker",
        || serves_broker(cluster.ns_addr(), "quiet", &endpoint, TOPIC),
    )
    .await;
    // Long enough for the clients' routes to expire and be fetched again.
    tokio::time::sleep(ROUTE_TTL + Duration::from_secs(5)).await;
    let (s, r) = work.counts();
    work.wait_beyond(s, r).await;
    let seen = work.finish().await;
    assert_clean("with an empty nameserver", &seen);
}

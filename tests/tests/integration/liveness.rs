//! Broker failures noticed in seconds, with the default settings (a beat every 1000 ms on
//! each broker's session with a NameServer, dropped after 2 missed beats or at once when
//! the session closes):
//!
//! - a master SIGKILLed leaves the routes within 3 s of the kill;
//! - a master SIGSTOPped leaves them within 3 s, and is routed again after SIGCONT;
//! - a NameServer restarted on its port knows every broker again within 3 s of its return;
//! - a beat stays a few bytes with 10,000 topics, and no full registration comes between
//!   changes (counted by the NameServer's metrics).
//!
//! "Within 3 s" is polled with `wait_until`, its deadline counted from the fault.

use apogee_proto::cluster::{CreateTopicRequest, GetClusterInfoRequest, TopicConfig};
use apogee_proto::v2;
use apogee_tests::{http, rpc, wait_until, BrokerSpec, Cluster};
use futures::StreamExt;
use std::time::{Duration, Instant};

const TOPIC: &str = "liveness";
const QUEUES: i32 = 4;
/// How soon after a fault the routes must show it.
const NOTICED: Duration = Duration::from_secs(3);
/// How soon a broker that can talk again must be routed again (about a second of
/// reconnecting and registering, with room for a loaded machine).
const BACK: Duration = Duration::from_secs(5);

/// The time left of `NOTICED` since `fault`.
fn left_since(fault: Instant) -> Duration {
    NOTICED.saturating_sub(fault.elapsed())
}

/// Every address the NameServer's QueryRoute gives for [`TOPIC`] (none when it fails).
async fn routed_addresses(ns: &str) -> Result<Vec<String>, String> {
    let answer = rpc::messaging(ns)
        .query_route(v2::QueryRouteRequest {
            topic: rpc::resource(TOPIC),
            endpoints: None,
        })
        .await
        .map_err(|e| format!("QueryRoute: {e}"))?
        .into_inner();
    Ok(answer
        .message_queues
        .iter()
        .filter_map(|q| q.broker.as_ref()?.endpoints.as_ref())
        .flat_map(|e| e.addresses.iter().map(|a| format!("{}:{}", a.host, a.port)))
        .collect())
}

/// The member endpoints GetClusterInfo lists.
async fn members(ns: &str) -> Result<Vec<String>, String> {
    let info = rpc::registry(ns)
        .get_cluster_info(rpc::signed(GetClusterInfoRequest {}))
        .await
        .map_err(|e| format!("GetClusterInfo: {e}"))?
        .into_inner();
    Ok(info
        .groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.endpoint.clone()))
        .collect())
}

/// Whether `endpoint` is in neither the route nor the cluster info of `ns`.
async fn gone(ns: &str, endpoint: &str) -> Result<(), String> {
    let (routed, members) = (routed_addresses(ns).await?, members(ns).await?);
    if routed.iter().chain(&members).any(|a| a == endpoint) {
        return Err(format!("routed: {routed:?}, members: {members:?}"));
    }
    Ok(())
}

/// Whether every one of `endpoints` is both routed and listed by `ns`.
async fn known(ns: &str, endpoints: &[String]) -> Result<(), String> {
    let (routed, members) = (routed_addresses(ns).await?, members(ns).await?);
    let missing: Vec<_> = endpoints
        .iter()
        .filter(|e| !routed.contains(e) || !members.contains(e))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {missing:?}; routed: {routed:?}, members: {members:?}"
        ));
    }
    Ok(())
}

/// Two broker groups with default liveness settings, [`TOPIC`] on both.
async fn two_groups() -> Cluster {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("live-a"))
        .broker(BrokerSpec::new("live-b"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    cluster
}

/// Waits (within 3 s of `fault`) until the broker at `gone_addr` left the routes while the
/// one at `stays` is still routed, and checks that the NameServer logged the drop.
async fn wait_dropped(cluster: &Cluster, fault: Instant, gone_addr: &str, stays: &str, what: &str) {
    let ns = cluster.ns_addr().to_string();
    wait_until(left_since(fault), what, || gone(&ns, gone_addr)).await;
    known(&ns, &[stays.to_string()]).await.unwrap();
    let log = cluster.nameserver_log(0);
    assert!(
        log.contains(&format!("at {gone_addr} dropped from routes")),
        "the NameServer names the dropped broker:\n{log}"
    );
}

/// The NameServer's address and the two brokers' of [`two_groups`].
fn addresses(cluster: &Cluster) -> (String, String, String) {
    (
        cluster.ns_addr().to_string(),
        cluster.broker_addr("live-a").to_string(),
        cluster.broker_addr("live-b").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_leaves_the_routes_within_3_s() {
    let mut cluster = two_groups().await;
    let (ns, a, b) = addresses(&cluster);
    let both = [a.clone(), b.clone()];
    known(&ns, &both).await.unwrap();

    cluster.kill_broker("live-a");
    let fault = Instant::now();
    wait_dropped(
        &cluster,
        fault,
        &a,
        &b,
        "the killed master to leave the routes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_master_leaves_the_routes_within_3_s_and_returns_after_sigcont() {
    let mut cluster = two_groups().await;
    let (ns, a, b) = addresses(&cluster);
    let both = [a.clone(), b.clone()];

    cluster.pause_broker("live-a");
    let fault = Instant::now();
    wait_dropped(
        &cluster,
        fault,
        &a,
        &b,
        "the stopped master to leave the routes",
    )
    .await;

    cluster.resume_broker("live-a");
    wait_until(BACK, "the resumed master to be routed again", || {
        known(&ns, &both)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_nameserver_knows_the_brokers_again_within_3_s_of_its_return() {
    let mut cluster = two_groups().await;
    let (ns, a, b) = addresses(&cluster);
    let both = [a.clone(), b.clone()];
    cluster.kill_nameserver(0);
    // Long enough for the brokers' reconnection backoff to reach its longest pause.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart_nameserver(0).await;
    let returned = Instant::now();
    wait_until(
        left_since(returned),
        "the restarted NameServer to route both brokers",
        || known(&ns, &both),
    )
    .await;
}

/// A counter's value in a Prometheus text exposition (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// (registrations, registration bytes, beats, beat bytes) the NameServer counted.
async fn liveness_counts(cluster: &Cluster) -> [u64; 4] {
    let (status, body) = http::get(cluster.nameserver_http_addr(0), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    [
        "apogee_nameserver_registrations_total",
        "apogee_nameserver_registration_bytes_total",
        "apogee_nameserver_session_beats_total",
        "apogee_nameserver_session_beat_bytes_total",
    ]
    .map(|name| counter(&body, name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beats_stay_small_with_10000_topics_and_bring_no_registration() {
    const TOPICS: usize = 10_000;
    // Beats every 50 ms so that many come quickly; full registrations only on changes.
    let cluster = Cluster::builder()
        .broker(
            BrokerSpec::new("many")
                .env("HEARTBEAT_INTERVAL_MS", "50")
                .env("REGISTER_INTERVAL_SECS", "3600"),
        )
        .start()
        .await;
    let broker = cluster.broker_addr("many").to_string();
    futures::stream::iter(0..TOPICS)
        .map(|n| {
            let mut admin = rpc::admin(&broker);
            async move {
                let topic = TopicConfig {
                    name: format!("many-{n:05}"),
                    queue_count: 1,
                    ..Default::default()
                };
                admin
                    .create_topic(rpc::signed(CreateTopicRequest {
                        topic: Some(topic),
                        broker_names: vec![],
                    }))
                    .await
                    .unwrap_or_else(|e| panic!("creating topic {n}: {e}"));
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let ns = cluster.ns_addr().to_string();
    wait_until(
        Duration::from_secs(60),
        "the NameServer to know every topic",
        || async {
            let info = rpc::registry(&ns)
                .get_cluster_info(rpc::signed(GetClusterInfoRequest {}))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let count = info
                .groups
                .iter()
                .flat_map(|g| &g.members)
                .map(|m| m.topic_count as usize)
                .max()
                .unwrap_or(0);
            (count >= TOPICS)
                .then_some(())
                .ok_or(format!("{count} topics registered"))
        },
    )
    .await;

    // A change made while the last registration was read is registered once more: wait
    // until the registrations stop while beats go on.
    let last = std::cell::Cell::new(liveness_counts(&cluster).await);
    let before = wait_until(Duration::from_secs(30), "registrations to stop", || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = liveness_counts(&cluster).await;
        let previous = last.replace(now);
        (now[0] == previous[0] && now[2] >= previous[2] + 5)
            .then_some(now)
            .ok_or(format!("counts {previous:?} -> {now:?}"))
    })
    .await;
    let at_least = before[2] + 40;
    let after = wait_until(Duration::from_secs(30), "40 more beats", || async {
        let now = liveness_counts(&cluster).await;
        (now[2] >= at_least)
            .then_some(now)
            .ok_or(format!("counts {now:?}"))
    })
    .await;
    let (beats, beat_bytes) = (after[2] - before[2], after[3] - before[3]);
    assert_eq!(
        after[0], before[0],
        "no registration between changes: {before:?} -> {after:?}"
    );
    assert!(
        beat_bytes <= beats * 16,
        "{beats} beats took {beat_bytes} bytes: a beat must not grow with the topics"
    );
    // The registrations did carry the topics (what a beat must not do).
    let per_registration = before[1] / before[0].max(1);
    eprintln!(
        "with {TOPICS} topics: {beats} beats took {beat_bytes} bytes ({:.1} a beat); {} \
         registrations took {} bytes ({per_registration} each on average)",
        beat_bytes as f64 / beats.max(1) as f64,
        before[0],
        before[1]
    );
    assert!(
        before[1] >= (TOPICS as u64) * 10,
        "registrations took {} bytes in all ({per_registration} each)",
        before[1]
    );
}

//! Faults on real processes in Linux network namespaces (the harness in
//! `apogee_tests::netns`), judged by the checker (`apogee_tests::checker`) from what
//! producers and consumers of apogee-client and of the official crate saw.
//!
//! - The harness deletes its network, also when the test panics.
//! - The checker's own correctness on real processes: messages deleted behind a broker's
//!   back (its data dir wiped while it was down) are reported lost, exactly those.
//! - A SYNC_MASTER killed under load loses no acknowledged message, and consumers of both
//!   clients read its group from the slave within 3 s of the kill (the NameServer drops a
//!   broker whose session closed at once; routes present the slave).
//! - A master SIGSTOPped: the NameServer drops it within 3 s (missed heartbeats), its group
//!   is read from the slave while it hangs, sends to the other group go on being
//!   acknowledged, and it is routed again after SIGCONT.
//! - Every NameServer restarted: each routes every broker group again within 3 s of
//!   answering again.
//! - A master's links down: sends to the other group go on being acknowledged.
//! - A broker cut off from the NameServer only: dropped from the routes, still serving.
//! - A SYNC_MASTER whose disk fills: its store fails, it stops and leaves the routes, the
//!   slave serves its group's reads, and after space returns and it restarts nothing
//!   acknowledged is lost.
//! - Every load also sends FIFO messages in message groups, so the checker judges their
//!   order per group (reported; a group whose queues leave the routes moves its messages
//!   to other queues, which RocketMQ's FIFO does not promise to order).
//! - `fault_rounds` (ignored; `tools/fault-runs.sh` runs it): rounds of each fault kind
//!   under load, and the figures per kind; the failover scenarios (controller mode) and
//!   their tests are in `faults_failover`.
//!
//! Every test skips with a printed reason where namespaces cannot be made, and fails
//! instead under CI.

use apogee_proto::cluster::{BrokerStatus, GetBrokerStatusRequest, GetClusterInfoRequest};
use apogee_proto::v2::Code;
use apogee_tests::checker::{Checker, Outcome, Report, Summary};
use apogee_tests::netns::{self, network, NetCluster, Network};
use apogee_tests::workload::Workload;
use apogee_tests::{rpc, wait_until, BrokerSpec};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const TOPIC: &str = "faults";
pub(crate) const QUEUES: i32 = 4;
/// The consumer group every consumer of a run shares.
pub(crate) const GROUP: &str = "fault-checkers";
/// A FIFO topic and the FIFO consumer group that reads it.
pub(crate) const FIFO_TOPIC: &str = "faults-fifo";
pub(crate) const FIFO_GROUP: &str = "fault-fifo-checkers";
/// Message groups of the FIFO producer.
const MESSAGE_GROUPS: usize = 4;
/// Within this long of a fault, the NameServer's routes show it (the default heartbeat
/// interval and missed-heartbeat count notice a hung broker in 2 s).
const NOTICED: Duration = Duration::from_secs(3);
/// Sends a second per producer.
pub(crate) const RATE: u32 = 100;
/// How long consumers may take to receive every acknowledged message after the load.
pub(crate) const DRAIN: Duration = Duration::from_secs(90);

/// A member of `group` (default heartbeats) that finds its master quickly.
fn member(group: &str, id: i64, role: &str) -> BrokerSpec {
    BrokerSpec::member(group, id)
        .role(role)
        .env("STORE__SEGMENT_BYTES", "1048576")
        .env("REPLICATION__RECONNECT_MS", "200")
}

/// One NameServer with its default failure detection; group `fa` (a master of `role` with
/// a slave, or alone) and group `fb` (a master alone); the topic and the FIFO topic on
/// both groups.
async fn two_groups(role: &str, with_slave: bool) -> NetCluster {
    let mut builder = NetCluster::builder().broker(member("fa", 0, role));
    if with_slave {
        builder = builder.broker(member("fa", 1, "slave"));
    }
    let cluster = builder
        .broker(member("fb", 0, "async_master"))
        .start()
        .await;
    if with_slave {
        wait_in_sync(&cluster.broker("fa-0").addr).await;
    }
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    cluster
        .create_fifo_topic(FIFO_TOPIC, QUEUES, FIFO_GROUP)
        .await;
    cluster
}

async fn status(addr: &str) -> Option<BrokerStatus> {
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        rpc::admin(addr).get_broker_status(GetBrokerStatusRequest {}),
    )
    .await;
    r.ok()?.ok()?.into_inner().status
}

/// Waits until the master at `master` has a slave in sync.
async fn wait_in_sync(master: &str) {
    wait_until(Duration::from_secs(60), "a slave in sync", || async {
        let st = status(master).await.ok_or("the master does not answer")?;
        st.slaves
            .iter()
            .any(|s| s.in_sync)
            .then_some(())
            .ok_or(format!("slaves: {:?}", st.slaves))
    })
    .await
}

/// Producers and consumers of both clients on [`TOPIC`], and FIFO ones of apogee-client on
/// [`FIFO_TOPIC`]; the consumers take half of what the producers send while they run (a
/// quarter of [`RATE`] each), so a backlog builds in every group also when a loaded machine
/// slows the producers down.
pub(crate) fn full_load(cluster: &NetCluster, checker: &Arc<Checker>) -> Workload {
    let mut load = Workload::new(checker.clone());
    load.throttle_consumers(RATE / 4);
    let access_url = cluster.ns_addrs()[0].clone();
    load.apogee_consumer("c-apogee", cluster.client_config(), GROUP, TOPIC);
    load.official_consumer("c-official", &access_url, GROUP, TOPIC);
    load.apogee_consumer("c-fifo", cluster.client_config(), FIFO_GROUP, FIFO_TOPIC);
    load.apogee_producer("p-apogee", cluster.client_config(), TOPIC, RATE);
    load.official_producer("p-official", &access_url, TOPIC, RATE / 2);
    load.apogee_fifo_producer(
        "p-fifo",
        cluster.client_config(),
        FIFO_TOPIC,
        MESSAGE_GROUPS,
        RATE / 2,
    );
    load
}

/// Waits until `consumer` (any consumer: `None`) received a message of broker group `group`
/// after `since`, and returns how long after `since` the first one came.
async fn first_read(
    checker: &Checker,
    since: Duration,
    group: &str,
    consumer: Option<&str>,
) -> Duration {
    wait_until(
        Duration::from_secs(60),
        &format!("{} to read group {group}", consumer.unwrap_or("a consumer")),
        || async {
            checker
                .first_read_after(since, Some(group), consumer)
                .ok_or_else(|| "nothing read yet".to_string())
        },
    )
    .await
}

/// Waits until `ns` lists (`true`) or no longer lists (`false`) the broker at `addr` in
/// group `group`, and returns when it did, on `checker`'s clock.
async fn wait_listed(
    checker: &Checker,
    ns: &str,
    group: &str,
    addr: &str,
    listed: bool,
) -> Duration {
    let what = if listed { "to list" } else { "to drop" };
    wait_until(
        Duration::from_secs(60),
        &format!("the NameServer {what} {addr}"),
        || async {
            (registered(ns, group, addr).await? == listed)
                .then(|| checker.now())
                .ok_or_else(|| format!("listed: {}", !listed))
        },
    )
    .await
}

/// Messages of a group that may be received and not yet recorded, or handed out by a receive
/// whose answer a fault loses (they come back only after their invisible time): the
/// consumers' batches.
const IN_FLIGHT: usize = 3 * 16;

/// Waits until more than [`IN_FLIGHT`] acknowledged messages of broker group `group` wait
/// unread (and `n` more), so a fault of that group finds messages no receive has taken yet,
/// for its consumers to read elsewhere.
async fn wait_unread(checker: &Checker, group: &str, n: usize) {
    wait_until(Duration::from_secs(60), "unread messages", || async {
        let unread = checker.unread(group);
        (unread >= IN_FLIGHT + n)
            .then_some(())
            .ok_or(format!("{unread} unread on {group}"))
    })
    .await
}

/// Waits until `checker` saw `n` acknowledged sends to broker group `group`.
pub(crate) async fn wait_acknowledged(checker: &Checker, group: &str, n: usize) {
    wait_until(
        Duration::from_secs(60),
        "sends to be acknowledged",
        || async {
            let acked = checker.acknowledged_since(Duration::ZERO, Some(group));
            (acked >= n)
                .then_some(())
                .ok_or(format!("{acked} acknowledged on {group}"))
        },
    )
    .await
}

/// Waits until `producer` made `n` send attempts after `since`.
async fn wait_sends(checker: &Checker, producer: &str, since: Duration, n: usize) {
    wait_until(
        Duration::from_secs(60),
        &format!("{n} sends of {producer}"),
        || async {
            let sent = checker
                .sends()
                .iter()
                .filter(|s| s.producer == producer && s.at >= since)
                .count();
            (sent >= n).then_some(()).ok_or(format!("{sent} sends"))
        },
    )
    .await
}

/// Stops the producers, drains, prints the checker's report under `what` and asserts that
/// every acknowledged message was received and nothing unsent was; returns the report.
pub(crate) async fn finish_without_loss(
    load: &mut Workload,
    checker: &Checker,
    what: &str,
) -> Report {
    load.stop_producers().await;
    let missing = load.drain(0, DRAIN).await;
    let report = checker.report();
    eprintln!("{what}:\n{report}");
    assert_eq!(missing, 0, "{report}");
    assert!(report.lost.is_empty(), "{report}");
    assert!(report.unexpected.is_empty(), "{report}");
    report
}

/// Asserts that every send `producer` made between `from` and `to` was acknowledged.
fn assert_all_acknowledged(checker: &Checker, producer: &str, from: Duration, to: Duration) {
    let sends: Vec<_> = checker
        .sends()
        .into_iter()
        .filter(|s| s.producer == producer && s.at >= from && s.at <= to)
        .collect();
    let not_acked: Vec<_> = sends
        .iter()
        .filter(|s| s.outcome != Outcome::Acknowledged)
        .collect();
    assert!(
        not_acked.is_empty(),
        "{} of {} sends of {producer} were not acknowledged: {not_acked:?}",
        not_acked.len(),
        sends.len()
    );
}

/// Whether NameServer `ns` lists broker `name` (by its address) in group `group`.
async fn registered(ns: &str, group: &str, addr: &str) -> Result<bool, String> {
    let info = rpc::registry(ns)
        .get_cluster_info(rpc::signed(GetClusterInfoRequest {}))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(info
        .groups
        .iter()
        .any(|g| g.broker_name == group && g.members.iter().any(|m| m.endpoint == addr)))
}

fn link_exists(name: &str) -> bool {
    network::run("ip", &["link", "show", name]).is_ok()
}

fn netns_exists(name: &str) -> bool {
    network::run("ip", &["netns", "list"]).is_ok_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    })
}

#[test]
fn a_test_network_is_deleted_on_drop_also_when_the_test_panics() {
    if !netns::available("a_test_network_is_deleted_on_drop_also_when_the_test_panics") {
        return;
    }
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut net = Network::create();
        net.add_member("one");
        net.add_member("two");
        let gateway = net.gateway().octets();
        assert_eq!(gateway[0], 198);
        assert!(gateway[1] == 18 || gateway[1] == 19, "{gateway:?}");
        assert_eq!(gateway[3], 1);
        for m in net.members() {
            assert_eq!(
                m.ip.octets()[..3],
                gateway[..3],
                "{} is on the bridge's /24",
                m.name
            );
            assert!(netns_exists(&m.netns), "namespace {}", m.netns);
            assert!(link_exists(&m.veth), "veth {}", m.veth);
        }
        names = net.object_names();
        panic!("a planted panic");
    }));
    assert!(outcome.is_err(), "the closure panicked");
    assert_eq!(names.len(), 5, "{names:?}");
    for name in &names {
        assert!(
            !link_exists(name) && !netns_exists(name),
            "{name} is still there after the network was dropped"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_reports_messages_deleted_behind_the_brokers_back_as_lost() {
    if !netns::available("the_checker_reports_messages_deleted_behind_the_brokers_back_as_lost") {
        return;
    }
    let mut cluster = NetCluster::builder()
        .broker(member("solo", 0, "async_master"))
        .start()
        .await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    let checker = Arc::new(Checker::new());

    // Acknowledged, then wiped with the broker's data dir while it was down.
    let mut load = Workload::new(checker.clone());
    load.apogee_producer("before", cluster.client_config(), TOPIC, RATE);
    wait_acknowledged(&checker, "solo", 50).await;
    load.stop_producers().await;
    // Nobody received anything yet: every acknowledged message is missing.
    let wiped = checker.report().lost;
    assert!(wiped.len() >= 50, "{}", checker.report());
    cluster.kill("solo-0");
    checker.record_fault("wipe", "solo-0", Some("solo"));
    cluster.wipe_data("solo-0");
    cluster.restart("solo-0").await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;

    // Sent after the wipe and received, together with whatever the broker still has.
    let mut load = Workload::new(checker.clone());
    load.apogee_consumer("consumer", cluster.client_config(), GROUP, TOPIC);
    load.apogee_producer("after", cluster.client_config(), TOPIC, RATE);
    wait_acknowledged(&checker, "solo", wiped.len() + 50).await;
    load.stop_producers().await;
    let missing = load.drain(wiped.len(), DRAIN).await;

    let report = checker.report();
    eprintln!("{report}");
    assert_eq!(missing, wiped.len(), "{report}");
    assert_eq!(report.lost, wiped, "exactly the wiped messages are lost");
    assert!(report.unexpected.is_empty(), "{report}");
    assert!(report.lost.iter().all(|k| k.starts_with("before-")));
    assert!(report.received >= 50, "{report}");
    assert!(report.faults[0].to_read.is_some(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_killed_under_load_loses_no_acknowledged_message() {
    if !netns::available("sync_master_killed_under_load_loses_no_acknowledged_message") {
        return;
    }
    let mut cluster = two_groups("sync_master", true).await;
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    wait_acknowledged(&checker, "fa", 100).await;
    wait_unread(&checker, "fa", 20).await;
    cluster.kill("fa-0");
    checker.record_fault("kill", "fa-0", Some("fa"));
    let killed_at = checker.now();
    // The group's unread messages are read from the slave by both clients: apogee-client
    // through the routes it fetches again, the official crate through the slave's address
    // in the route it stored before the kill.
    let apogee = first_read(&checker, killed_at, "fa", Some("c-apogee")).await;
    let official = first_read(&checker, killed_at, "fa", Some("c-official")).await;
    eprintln!("after the kill, fa read by apogee-client in {apogee:?}, by the official crate in {official:?}");
    assert!(
        apogee <= NOTICED,
        "apogee-client read fa {apogee:?} after the kill"
    );
    assert!(
        official <= NOTICED,
        "the official crate read fa {official:?} after the kill"
    );
    // The load goes on against the other group and the slave.
    wait_until(
        Duration::from_secs(60),
        "sends to the other group",
        || async {
            let n = checker.acknowledged_since(killed_at, Some("fb"));
            (n >= 200).then_some(()).ok_or(format!("{n} acknowledged"))
        },
    )
    .await;
    let report = finish_without_loss(&mut load, &checker, "SYNC_MASTER killed under load").await;
    assert!(report.acknowledged >= 300, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_to_the_other_group_are_acknowledged_while_a_master_is_cut_off() {
    if !netns::available("sends_to_the_other_group_are_acknowledged_while_a_master_is_cut_off") {
        return;
    }
    const ONLY_B: &str = "only-b";
    let cluster = two_groups("async_master", false).await;
    cluster.create_topic_on(ONLY_B, QUEUES, &["fb"]).await;
    let checker = Arc::new(Checker::new());
    let mut load = Workload::new(checker.clone());
    load.apogee_consumer("c-spread", cluster.client_config(), GROUP, TOPIC);
    load.apogee_consumer("c-only-b", cluster.client_config(), GROUP, ONLY_B);
    load.apogee_producer("p-spread", cluster.client_config(), TOPIC, RATE);
    load.apogee_producer("p-only-b", cluster.client_config(), ONLY_B, RATE / 2);
    wait_acknowledged(&checker, "fa", 50).await;

    cluster.links_down("fa-0");
    checker.record_fault("links-down", "fa-0", Some("fa"));
    let cut_at = checker.now();
    // While fa's master is unreachable, the producer of fb's topic keeps being answered.
    wait_sends(&checker, "p-only-b", cut_at, 100).await;
    let healed_at = checker.now();
    cluster.links_up("fa-0");
    checker.record_fault("links-up", "fa-0", Some("fa"));
    wait_acknowledged(
        &checker,
        "fa",
        checker.acknowledged_since(Duration::ZERO, Some("fa")) + 20,
    )
    .await;
    finish_without_loss(&mut load, &checker, "a master's links down and up").await;
    assert_all_acknowledged(&checker, "p-only-b", cut_at, healed_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_cut_off_from_the_nameserver_only_leaves_the_routes_and_still_serves() {
    if !netns::available(
        "a_broker_cut_off_from_the_nameserver_only_leaves_the_routes_and_still_serves",
    ) {
        return;
    }
    let cluster = NetCluster::builder()
        .broker(member("fa", 0, "async_master"))
        .start()
        .await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    let ns = cluster.ns_addrs()[0].clone();
    let addr = cluster.broker("fa-0").addr.clone();

    cluster.cut_off("fa-0", &["ns-0"]);
    wait_until(
        Duration::from_secs(60),
        "the NameServer to drop the cut-off broker",
        || async {
            match registered(&ns, "fa", &addr).await? {
                false => Ok(()),
                true => Err("still registered".into()),
            }
        },
    )
    .await;
    // The test process (not cut off) still reaches it: a send is stored.
    let mut client = rpc::messaging(&addr);
    let r = rpc::send(&mut client, vec![rpc::message(TOPIC, 0, "through the cut")]).await;
    assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32, "{r:?}");

    cluster.reconnect("fa-0");
    wait_until(
        Duration::from_secs(60),
        "the broker to register again",
        || async {
            match registered(&ns, "fa", &addr).await? {
                true => Ok(()),
                false => Err("not registered".into()),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_master_leaves_the_routes_within_3_s_and_the_other_group_is_unaffected() {
    if !netns::available(
        "a_paused_master_leaves_the_routes_within_3_s_and_the_other_group_is_unaffected",
    ) {
        return;
    }
    const ONLY_B: &str = "only-b";
    let mut cluster = two_groups("async_master", true).await;
    cluster.create_topic_on(ONLY_B, QUEUES, &["fb"]).await;
    let (ns, fa) = (
        cluster.ns_addrs()[0].clone(),
        cluster.broker("fa-0").addr.clone(),
    );
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    load.apogee_producer("p-only-b", cluster.client_config(), ONLY_B, RATE / 2);
    load.apogee_consumer("c-only-b", cluster.client_config(), GROUP, ONLY_B);
    wait_acknowledged(&checker, "fa", 50).await;
    wait_unread(&checker, "fa", 20).await;

    cluster.pause("fa-0");
    checker.record_fault("pause", "fa-0", Some("fa"));
    let paused_at = checker.now();
    let dropped_at = wait_listed(&checker, &ns, "fa", &fa, false).await;
    eprintln!(
        "the paused master left the routes {:?} after the SIGSTOP",
        dropped_at - paused_at
    );
    assert!(
        dropped_at - paused_at <= NOTICED,
        "the paused master left the routes {:?} after the SIGSTOP",
        dropped_at - paused_at
    );
    // While it hangs its group is read from the slave, which stops forwarding to a master
    // silent for 3 s.
    let read = first_read(&checker, paused_at, "fa", None).await;
    eprintln!("the paused master's group was read {read:?} after the SIGSTOP");
    // While it hangs, the producer of fb's topic keeps being answered.
    wait_sends(&checker, "p-only-b", paused_at, 100).await;
    let resumed_at = checker.now();
    cluster.resume("fa-0");
    checker.record_fault("resume", "fa-0", Some("fa"));
    let listed_at = wait_listed(&checker, &ns, "fa", &fa, true).await;
    eprintln!(
        "the resumed master was routed again {:?} after the SIGCONT",
        listed_at - resumed_at
    );
    finish_without_loss(&mut load, &checker, "a master paused and resumed").await;
    assert_all_acknowledged(&checker, "p-only-b", paused_at, resumed_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_nameservers_route_every_group_again_within_3_s() {
    if !netns::available("restarted_nameservers_route_every_group_again_within_3_s") {
        return;
    }
    let mut cluster = NetCluster::builder()
        .nameservers(2)
        .broker(member("fa", 0, "async_master"))
        .broker(member("fa", 1, "slave"))
        .broker(member("fb", 0, "async_master"))
        .start()
        .await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    let members: Vec<(&str, String)> = ["fa-0", "fa-1", "fb-0"]
        .into_iter()
        .map(|m| (m, cluster.broker(m).addr.clone()))
        .collect();
    let checker = Checker::new();

    cluster.restart_nameservers().await;
    // Every NameServer answers again (empty: it knows no broker until they come back).
    let back_at = checker.now();
    for ns in cluster.ns_addrs() {
        for (name, addr) in &members {
            let group = cluster.broker_group(name).expect("a broker's group");
            let listed_at = wait_listed(&checker, &ns, group, addr, true).await;
            assert!(
                listed_at - back_at <= NOTICED,
                "{ns} listed {name} {:?} after answering again",
                listed_at - back_at
            );
        }
        // And routes the topic to both groups again.
        let route = rpc::registry(&ns)
            .get_route(rpc::signed(apogee_proto::cluster::GetRouteRequest {
                topic: TOPIC.into(),
            }))
            .await
            .expect("GetRoute")
            .into_inner();
        let mut groups: Vec<String> = route
            .placements
            .iter()
            .filter_map(|p| p.group.as_ref().map(|g| g.broker_name.clone()))
            .collect();
        groups.sort();
        assert_eq!(groups, ["fa", "fb"], "{ns}: {route:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_whose_disk_fills_stops_its_slave_serves_and_nothing_acknowledged_is_lost() {
    if !netns::available(
        "a_master_whose_disk_fills_stops_its_slave_serves_and_nothing_acknowledged_is_lost",
    ) {
        return;
    }
    let mut cluster = NetCluster::builder()
        .broker(member("fa", 0, "sync_master"))
        .broker(member("fa", 1, "slave"))
        .broker(member("fb", 0, "async_master"))
        .small_disk("fa-0", 64 << 20)
        .start()
        .await;
    wait_in_sync(&cluster.broker("fa-0").addr).await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    let ns = cluster.ns_addrs()[0].clone();
    let fa = cluster.broker("fa-0").addr.clone();
    let checker = Arc::new(Checker::new());
    let mut load = Workload::new(checker.clone());
    load.throttle_consumers(RATE / 4);
    load.apogee_consumer("c-apogee", cluster.client_config(), GROUP, TOPIC);
    load.apogee_producer("p-apogee", cluster.client_config(), TOPIC, RATE);
    wait_acknowledged(&checker, "fa", 100).await;
    wait_unread(&checker, "fa", 20).await;

    cluster.fill_disk("fa-0");
    checker.record_fault("disk-full", "fa-0", Some("fa"));
    let filled_at = checker.now();
    // The next index write fails: the master stops, with the reason, and leaves the routes.
    let status = cluster
        .wait_exit("fa-0", Duration::from_secs(60))
        .expect("the master stops once its disk is full");
    assert!(!status.success(), "{status:?}");
    let log = cluster.log("fa-0");
    assert!(log.contains("the store failed, the broker stops"), "{log}");
    let dropped_at = wait_listed(&checker, &ns, "fa", &fa, false).await;
    eprintln!(
        "the master left the routes {:?} after its disk filled",
        dropped_at - filled_at
    );
    // Its group is read from the slave meanwhile.
    let read = first_read(&checker, dropped_at, "fa", Some("c-apogee")).await;
    assert!(
        read <= NOTICED,
        "fa read {read:?} after the master left the routes"
    );

    cluster.free_disk("fa-0");
    cluster.restart("fa-0").await;
    checker.record_fault("restart", "fa-0", Some("fa"));
    wait_acknowledged(
        &checker,
        "fa",
        checker.acknowledged_since(Duration::ZERO, Some("fa")) + 20,
    )
    .await;
    finish_without_loss(&mut load, &checker, "a master's disk filled").await;
}

/// An environment knob: its value parsed, or `default`.
pub(crate) fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One round of `scenario` on a fresh cluster: load, the fault held for `hold`, healed,
/// `after` more of load, then every acknowledged message drained.
async fn round(scenario: &str, hold: Duration, after: Duration) -> Report {
    let mut builder = NetCluster::builder()
        .broker(member("fa", 0, "sync_master"))
        .broker(member("fa", 1, "slave"))
        .broker(member("fb", 0, "async_master"));
    if scenario == "disk-full" {
        builder = builder.small_disk("fa-0", 64 << 20);
    }
    let mut cluster = builder.start().await;
    wait_in_sync(&cluster.broker("fa-0").addr).await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    cluster
        .create_fifo_topic(FIFO_TOPIC, QUEUES, FIFO_GROUP)
        .await;
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    wait_acknowledged(&checker, "fa", 100).await;
    let fa = Some("fa");
    match scenario {
        "kill" => cluster.kill("fa-0"),
        "pause" => cluster.pause("fa-0"),
        "links-down" => cluster.links_down("fa-0"),
        "cut-from-nameserver" => cluster.cut_off("fa-0", &["ns-0"]),
        "disk-full" => {
            cluster.fill_disk("fa-0");
        }
        "nameservers-restart" => cluster.restart_nameservers().await,
        other => panic!("unknown scenario {other}"),
    }
    // Restarting the NameServers hits no one group: its times are those of any group.
    let (member, group) = if scenario == "nameservers-restart" {
        ("every NameServer", None)
    } else {
        ("fa-0", fa)
    };
    checker.record_fault(scenario, member, group);
    tokio::time::sleep(hold).await;
    match scenario {
        "kill" => cluster.restart("fa-0").await,
        "pause" => cluster.resume("fa-0"),
        "links-down" => cluster.links_up("fa-0"),
        "cut-from-nameserver" => cluster.reconnect("fa-0"),
        "disk-full" => {
            cluster.free_disk("fa-0");
            // A broker whose store failed stopped: its supervisor starts it again.
            if !cluster.is_running("fa-0") {
                cluster.restart("fa-0").await;
            }
        }
        _ => {}
    }
    tokio::time::sleep(after).await;
    load.stop_producers().await;
    load.drain(0, DRAIN).await;
    let report = checker.report();
    if !report.lost.is_empty() {
        // What the faulted member logged: why acknowledged messages stayed unreadable.
        let log = cluster.log(if scenario == "nameservers-restart" {
            "ns-0"
        } else {
            "fa-0"
        });
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("-- {scenario}: the end of the faulted member's log");
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
    report
}

/// The scenarios of static roles [`round`] runs.
const STATIC_SCENARIOS: &[&str] = &[
    "kill",
    "pause",
    "links-down",
    "cut-from-nameserver",
    "nameservers-restart",
    "disk-full",
];

/// Rounds of fault scenarios under load; prints each round's report and the figures per
/// scenario. Knobs: `FAULT_ROUNDS` (20), `FAULT_SCENARIOS` (comma-separated: those of
/// static roles, kill, pause, links-down, cut-from-nameserver, nameservers-restart,
/// disk-full, and the failover ones of `faults_failover::SCENARIOS`; default all),
/// `FAULT_HOLD_SECS` (how long the fault lasts, 5), `FAULT_AFTER_SECS` (load after it
/// healed, 5) and `FAULT_SUMMARY_FILE` (where the figures are also written). Fails at the
/// end when a failover round's controller elected other than its scenario expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by tools/fault-runs.sh"]
async fn fault_rounds() {
    if !netns::available("fault_rounds") {
        return;
    }
    let rounds: usize = knob("FAULT_ROUNDS", 20);
    let all: Vec<&str> = STATIC_SCENARIOS
        .iter()
        .chain(crate::faults_failover::SCENARIOS)
        .copied()
        .collect();
    let scenarios: String = knob("FAULT_SCENARIOS", all.join(","));
    let hold = Duration::from_secs(knob("FAULT_HOLD_SECS", 5));
    let after = Duration::from_secs(knob("FAULT_AFTER_SECS", 5));
    let mut summary = Summary::new();
    let mut wrong_elections = Vec::new();
    for scenario in scenarios
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        assert!(
            all.contains(&scenario),
            "unknown scenario {scenario}; known: {}",
            all.join(", ")
        );
        for n in 1..=rounds {
            let report = if STATIC_SCENARIOS.contains(&scenario) {
                round(scenario, hold, after).await
            } else {
                let round = crate::faults_failover::round(scenario, hold, after).await;
                if let Err(e) = round.elections {
                    eprintln!("-- {e}");
                    wrong_elections.push(format!("round {n}: {e}"));
                }
                round.report
            };
            eprintln!("== {scenario}, round {n} of {rounds}\n{report}");
            summary.add(scenario, &report);
        }
    }
    let text = format!("fault rounds (hold {hold:?}, load after healing {after:?}):\n{summary}");
    println!("{text}");
    if let Ok(path) = std::env::var("FAULT_SUMMARY_FILE") {
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
    assert!(
        wrong_elections.is_empty(),
        "elections other than expected:\n{}",
        wrong_elections.join("\n")
    );
}

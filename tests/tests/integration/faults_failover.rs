//! Automatic failover under faults, in Linux network namespaces (`apogee_tests::netns`),
//! judged by the checker from what producers and consumers of apogee-client and of the
//! official crate saw: three NameServers running the controller (its Raft voters) and a
//! broker group `fa` of controlled members (ids 1..n, a master beats every 250 ms for the 2 s lease).
//!
//! - An isolated master (cut off from every server, still reached by the clients)
//!   acknowledges no send and hands out no message once its lease ended (the checker's lease
//!   rule; a send straight to it is refused), the other member is elected, and after the
//!   cut heals the old master rejoins as a slave and no acknowledged message is missing.
//! - A master SIGKILLed under load: the other member is elected, writes and reads resume,
//!   the old master restarts and rejoins as a slave, nothing acknowledged is lost.
//! - The negative control: with `controller.unclean_election = true`, a slave cut off from
//!   its master (so out of date, dropped from the in-sync set) is elected when the master
//!   dies; the checker reports exactly messages acknowledged while the slave was cut off as
//!   lost, so a checker that finds nothing would fail this test.
//! - A round of each of the controller voter's and the planned handover's scenarios (a
//!   paused or isolated controller leader, an isolated follower, a SIGTERMed master,
//!   `apogee broker elect`, `apogee cluster rolling-restart`; [`CI_SCENARIOS`]), short
//!   holds: nothing lost, writes and reads
//!   go on, no election after a controller voter's fault and exactly one after a planned
//!   stop or switch; the failed calls and the longest write and read pauses are printed.
//! - [`round`]: one round of each failover scenario for `faults::fault_rounds` (run by
//!   `tools/fault-runs.sh`), see [`SCENARIOS`].
//!
//! Every test skips with a printed reason where namespaces cannot be made, and fails
//! instead under CI.

use crate::faults::{
    finish_without_loss, full_load, wait_acknowledged, DRAIN, FIFO_GROUP, FIFO_TOPIC, QUEUES, RATE,
    TOPIC,
};
use apogee_proto::cluster::ControllerGroupStatus;
use apogee_tests::checker::{Checker, Outcome, Report, SendEvent, Summary, LEASE_AND_MARGIN};
use apogee_tests::failover::send_one;
use apogee_tests::netns::{self, controlled_member, NetCluster};
use apogee_tests::restart_requests::RestartRequests;
use apogee_tests::wait_until;
use apogee_tests::workload::Workload;
use apogee_tests::BrokerSpec;
use std::sync::Arc;
use std::time::Duration;

/// The broker group every scenario hits, the cluster's only one: faults are recorded
/// without a group, so the time to the first write and read after one counts every client
/// (the official crate does not say which group stored or served a message).
const FA: &str = "fa";

/// The failover scenarios of `faults::fault_rounds` (all but `async` in controller mode):
/// - `master-kill`: the master SIGKILLed, restarted after the hold (it rejoins as a slave);
/// - `master-pause`: the master SIGSTOPped, SIGCONTed after the hold;
/// - `master-isolated`: the master cut off from every server (clients still reach it), the
///   lease rule checked;
/// - `master-cut-from-controller`: the master cut off from the controller's leader and one
///   more NameServer (a majority), not from its slave, another NameServer or the clients,
///   the lease rule checked;
/// - `controller-leader-kill`: the NameServer whose controller leads SIGKILLed, restarted
///   after the hold (no election expected);
/// - `controller-leader-pause`: that NameServer SIGSTOPped, SIGCONTed after the hold (no
///   election expected);
/// - `controller-leader-isolated`, `controller-follower-isolated`: the NameServer whose
///   controller leads, or one whose controller follows, cut off from every other server
///   (NameServers and brokers; clients still reach it), reconnected after the hold (no
///   election expected);
/// - `master-sigterm`: the master SIGTERMed (a planned stop), started again once it exited,
///   after the hold; it rejoins as a slave (one election expected);
/// - `planned-elect`: `apogee broker elect fa` (one election expected, nothing to heal);
/// - `rolling-restart`: `apogee cluster rolling-restart` of every member, with a restart
///   command this test serves (SIGTERM, exit after the drain, start again): the slave
///   first, then the master after a planned switch (one election expected);
/// - `slave-kill-during-failover`: a group of three; the master SIGKILLed, one slave
///   SIGKILLed a second later while the election runs, both restarted after the hold;
/// - `nameservers-restart-controller`: every NameServer SIGKILLed and started again;
/// - `unclean-lagging` (negative control, loss expected): `controller.unclean_election =
///   true`, the slave cut off from its master until it leaves the in-sync set, then the
///   master SIGKILLed: the lagging slave is elected;
/// - `async` (negative control, loss expected; static roles: controller mode has no
///   master-only acknowledgement on main): an ASYNC_MASTER whose slave is cut off from it,
///   SIGKILLed; the slave restarted as the group's master on its own data.
pub(crate) const SCENARIOS: &[&str] = &[
    "master-kill",
    "master-pause",
    "master-isolated",
    "master-cut-from-controller",
    "controller-leader-kill",
    "controller-leader-pause",
    "controller-leader-isolated",
    "controller-follower-isolated",
    "master-sigterm",
    "planned-elect",
    "rolling-restart",
    "slave-kill-during-failover",
    "nameservers-restart-controller",
    "unclean-lagging",
    "async",
];

/// How long after the master's SIGKILL `slave-kill-during-failover` kills a slave: within
/// the controller's wait of a lease and its margin (2.5 s) before it elects.
const SLAVE_KILL_DELAY: Duration = Duration::from_secs(1);

/// How long a round waits for its group to settle again (every member back in the in-sync
/// set) before it goes on anyway (and the report shows what that cost).
const SETTLE: Duration = Duration::from_secs(45);

/// How long a negative control's consumers read after its load: what they have not read by
/// then is reported lost (the lost messages never come, so the drain always takes this long).
const CONTROL_DRAIN: Duration = Duration::from_secs(20);

/// A controller-mode cluster: three NameServers (the controller's voters, with
/// `controller.unclean_election` when `unclean`), group [`FA`] of `members` controlled
/// members, and the topics; waits until the group has a master and every member in sync.
async fn controlled(members: i64, unclean: bool) -> (NetCluster, ControllerGroupStatus) {
    let mut builder = NetCluster::builder().nameservers(3).controller();
    if unclean {
        builder = builder.nameserver_env("CONTROLLER__UNCLEAN_ELECTION", "true");
    }
    for id in 1..=members {
        builder = builder.broker(controlled_member(FA, id));
    }
    let cluster = builder.start().await;
    let state = cluster.wait_master(FA, 0, members as usize).await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    cluster
        .create_fifo_topic(FIFO_TOPIC, QUEUES, FIFO_GROUP)
        .await;
    (cluster, state)
}

/// The process name of member `id` of [`FA`].
fn name_of(id: u64) -> String {
    format!("{FA}-{id}")
}

/// The process names of the members of a group of `members` other than `master`.
fn others(members: i64, master: u64) -> Vec<String> {
    (1..=members as u64)
        .filter(|id| *id != master)
        .map(name_of)
        .collect()
}

/// Waits until `checker` saw `n` acknowledged sends whose acknowledgement came after
/// `since` (the cluster's only group is [`FA`]; the official crate does not say where a
/// send was stored, so its sends count too).
async fn wait_acknowledged_after(checker: &Checker, since: Duration, n: usize, what: &str) {
    wait_until(Duration::from_secs(60), what, || async {
        let acked = checker.acknowledged_since(since, None);
        (acked >= n)
            .then_some(())
            .ok_or(format!("{acked} acknowledged"))
    })
    .await
}

/// Sends one message straight to `addr` (the test process reaches an isolated member) and
/// records it as a send of unknown outcome whatever the answer (a refused send may still
/// have been stored); whether it was acknowledged.
async fn probe_send(checker: &Checker, addr: &str, key: &str) -> Result<String, String> {
    let answer = send_one(addr, TOPIC, 0, key.to_string()).await;
    checker.record_send(SendEvent {
        key: key.to_string(),
        message_group: None,
        broker_group: Some(FA.into()),
        producer: "probe".into(),
        at: checker.now(),
        outcome: Outcome::Unknown,
        served_by: Some(addr.to_string()),
    });
    answer
}

/// Prints how long after `since` each producer of [`full_load`] had a send acknowledged.
fn print_first_writes(checker: &Checker, since: Duration) {
    for producer in ["p-apogee", "p-official", "p-fifo"] {
        eprintln!(
            "{producer}: first send acknowledged {:?} after the fault",
            checker.first_write_after(since, None, Some(producer))
        );
    }
}

/// Prints the end of `member`'s log under `what`.
fn print_log_tail(cluster: &mut NetCluster, member: &str, what: &str) {
    let log = cluster.log(member);
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    eprintln!("-- {what}: the end of {member}'s log");
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_master_serves_nothing_after_its_lease_and_nothing_acknowledged_is_lost() {
    if !netns::available(
        "an_isolated_master_serves_nothing_after_its_lease_and_nothing_acknowledged_is_lost",
    ) {
        return;
    }
    let (cluster, before) = controlled(2, false).await;
    let master = name_of(before.master);
    let old_addr = cluster.broker(&master).addr.clone();
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    wait_acknowledged(&checker, FA, 100).await;

    let everyone = cluster.everyone_but(&master);
    let peers: Vec<&str> = everyone.iter().map(String::as_str).collect();
    cluster.cut_off(&master, &peers);
    checker.record_fault("master-isolated", &master, None);
    checker.record_isolation(&master, &old_addr, LEASE_AND_MARGIN);
    let cut_at = checker.now();
    // The other member is elected and takes the load, past the old master's lease.
    let elected = cluster.wait_master(FA, before.master_epoch, 1).await;
    assert_ne!(elected.master, before.master, "{elected:?}");
    wait_acknowledged_after(
        &checker,
        cut_at + LEASE_AND_MARGIN,
        50,
        "sends acknowledged by the new master",
    )
    .await;
    // The old master is reached straight and refuses: its lease ended.
    let probe = probe_send(&checker, &old_addr, "probe-isolated").await;
    assert!(
        probe.is_err(),
        "the isolated master acknowledged a send after its lease: {probe:?}"
    );
    eprintln!("the isolated master answered a send after its lease: {probe:?}");

    cluster.reconnect(&master);
    checker.record_isolation_healed(&master);
    // The old master rejoins as a slave of the new one.
    let rejoined = cluster.wait_master(FA, before.master_epoch, 2).await;
    assert_eq!(rejoined.master, elected.master, "{rejoined:?}");
    wait_acknowledged_after(&checker, checker.now(), 20, "sends after the heal").await;
    let report = finish_without_loss(&mut load, &checker, "an isolated master").await;
    print_first_writes(&checker, cut_at);
    assert!(report.lease_violations.is_empty(), "{report}");
    let fault = &report.faults[0];
    assert!(
        fault.to_write.is_some() && fault.to_read.is_some(),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_under_load_rejoins_as_a_slave_and_nothing_is_lost() {
    if !netns::available(
        "a_killed_master_is_replaced_under_load_rejoins_as_a_slave_and_nothing_is_lost",
    ) {
        return;
    }
    let (mut cluster, before) = controlled(2, false).await;
    let master = name_of(before.master);
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    wait_acknowledged(&checker, FA, 100).await;

    cluster.kill(&master);
    checker.record_fault("master-kill", &master, None);
    let killed_at = checker.now();
    let elected = cluster.wait_master(FA, before.master_epoch, 1).await;
    assert_ne!(elected.master, before.master, "{elected:?}");
    wait_acknowledged_after(&checker, killed_at, 50, "sends to the new master").await;

    cluster.restart(&master).await;
    let rejoined = cluster.wait_master(FA, before.master_epoch, 2).await;
    assert_eq!(rejoined.master, elected.master, "{rejoined:?}");
    wait_acknowledged_after(&checker, checker.now(), 20, "sends after the rejoin").await;
    let report = finish_without_loss(&mut load, &checker, "a master killed").await;
    print_first_writes(&checker, killed_at);
    let fault = &report.faults[0];
    eprintln!(
        "master-kill: writes resumed after {:?}, reads after {:?}",
        fault.to_write, fault.to_read
    );
    assert!(
        fault.to_write.is_some() && fault.to_read.is_some(),
        "{report}"
    );
}

/// The negative control's fault: cuts `slave` off from `master` until the controller drops
/// it from the in-sync set and 50 sends were acknowledged without it, then SIGKILLs the
/// master; returns when the slave was cut off.
async fn lag_and_kill(
    cluster: &mut NetCluster,
    checker: &Checker,
    master: &str,
    slave: &str,
) -> Duration {
    cluster.cut_off(slave, &[master]);
    let cut_at = checker.now();
    wait_until(
        Duration::from_secs(30),
        "the lagging slave to leave the in-sync set",
        || async {
            let g = cluster.controller_group(FA).await?;
            (g.in_sync.len() == 1).then_some(()).ok_or(format!("{g:?}"))
        },
    )
    .await;
    wait_acknowledged_after(checker, checker.now(), 50, "sends without the slave").await;
    cluster.kill(master);
    checker.record_fault("unclean-lagging", master, None);
    cut_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unclean_election_of_a_lagging_slave_loses_acknowledged_messages_and_the_checker_says_so(
) {
    if !netns::available(
        "an_unclean_election_of_a_lagging_slave_loses_acknowledged_messages_and_the_checker_says_so",
    ) {
        return;
    }
    let (mut cluster, before) = controlled(2, true).await;
    let master = name_of(before.master);
    let slave = others(2, before.master).remove(0);
    let checker = Arc::new(Checker::new());
    let mut load = Workload::new(checker.clone());
    load.throttle_consumers(RATE / 4);
    load.apogee_consumer("c-apogee", cluster.client_config(), "control", TOPIC);
    load.apogee_producer("p-apogee", cluster.client_config(), TOPIC, RATE);
    wait_acknowledged(&checker, FA, 100).await;

    let cut_at = lag_and_kill(&mut cluster, &checker, &master, &slave).await;
    let elected = cluster.wait_master(FA, before.master_epoch, 1).await;
    assert_eq!(
        name_of(elected.master),
        slave,
        "the lagging slave is elected"
    );
    wait_acknowledged_after(&checker, checker.now(), 20, "sends to the elected slave").await;
    // The old master comes back as a slave of the lagging one: what only it had is gone.
    cluster.reconnect(&slave);
    cluster.restart(&master).await;
    load.stop_producers().await;
    load.drain(0, CONTROL_DRAIN).await;
    let report = checker.report();
    eprintln!("an unclean election of a lagging slave:\n{report}");
    assert!(!report.lost.is_empty(), "the loss is reported: {report}");
    let sends = checker.sends();
    for key in &report.lost {
        let send = sends
            .iter()
            .find(|s| &s.key == key && s.outcome == Outcome::Acknowledged)
            .expect("a lost key was acknowledged");
        assert!(
            send.at >= cut_at,
            "{key} was acknowledged at {:?}, before the slave was cut off at {cut_at:?}: \
             the slave had it",
            send.at
        );
    }
}

/// How long a SIGTERMed master may take to exit (its handover and drain included).
const STOPPED: Duration = Duration::from_secs(60);

/// How many times the controller elects a master of [`FA`] in `scenario` (`None`: not
/// checked): none when a controller voter fails, one for a planned stop or switch.
fn expected_elections(scenario: &str) -> Option<u64> {
    match scenario {
        "controller-leader-kill"
        | "controller-leader-pause"
        | "controller-leader-isolated"
        | "controller-follower-isolated" => Some(0),
        "master-sigterm" | "planned-elect" | "rolling-restart" => Some(1),
        _ => None,
    }
}

/// Whether the controller elected [`FA`]'s master as often as `scenario` expects, from
/// `before` to `after` (one election: another member leads the next epoch); if not, how.
fn check_elections(
    scenario: &str,
    before: &ControllerGroupStatus,
    after: &ControllerGroupStatus,
) -> Result<(), String> {
    let (master, epoch) = (before.master, before.master_epoch);
    let another = after.master != master;
    let as_expected = match expected_elections(scenario) {
        None => true,
        Some(0) => !another && after.master_epoch == epoch,
        Some(n) => another && after.master_epoch == epoch + n,
    };
    if as_expected {
        return Ok(());
    }
    Err(format!(
        "{scenario}: master {master} at epoch {epoch} before, master {} at epoch {} after; \
         {:?} election(s) of another member expected",
        after.master,
        after.master_epoch,
        expected_elections(scenario)
    ))
}

/// What one round showed.
pub(crate) struct Round {
    /// The checker's judgement.
    pub report: Report,
    /// Where the controller elected [`FA`]'s master other than the scenario expects, how.
    pub elections: Result<(), String>,
}

/// The NameServer (`ns-<i>`) whose controller leads, or with `follower` one whose
/// controller follows.
async fn controller_voter(cluster: &NetCluster, follower: bool) -> String {
    let leader = cluster.controller_leader().await;
    let index = if follower {
        (leader + 1) % cluster.ns_addrs().len()
    } else {
        leader
    };
    format!("ns-{index}")
}

/// The scenarios CI runs a round of each of
/// (`controller_faults_and_planned_handovers_lose_nothing_and_elect_as_expected`).
const CI_SCENARIOS: &[&str] = &[
    "controller-leader-pause",
    "controller-leader-isolated",
    "controller-follower-isolated",
    "master-sigterm",
    "planned-elect",
    "rolling-restart",
];

/// The scenarios in which a member exits after its drain.
const STOPS_A_MEMBER: &[&str] = &["master-sigterm", "rolling-restart"];

/// CI's hold: longer than a master's 2 s lease, so a lease the controller fails to renew
/// shows.
const CI_HOLD: Duration = Duration::from_secs(3);

/// CI's load after the heal.
const CI_AFTER: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_faults_and_planned_handovers_lose_nothing_and_elect_as_expected() {
    if !netns::available(
        "controller_faults_and_planned_handovers_lose_nothing_and_elect_as_expected",
    ) {
        return;
    }
    let mut summary = Summary::new();
    let mut wrong = Vec::new();
    for scenario in CI_SCENARIOS {
        let started = std::time::Instant::now();
        let Round { report, elections } = round(scenario, CI_HOLD, CI_AFTER).await;
        eprintln!("== {scenario} ({:?})\n{report}", started.elapsed());
        if !report.lost.is_empty() || !report.unexpected.is_empty() {
            wrong.push(format!("{scenario}: lost or unexpected messages"));
        }
        let fault = &report.faults[0];
        if fault.to_write.is_none() || fault.to_read.is_none() {
            wrong.push(format!("{scenario}: writes or reads did not go on"));
        }
        // A controller's loss and a planned switch are not noticed: no send fails. Not
        // asserted where a member stops (`master-sigterm`, `rolling-restart`): its drain
        // here (`failover::DRAIN_MS`) is shorter than the official crate's 30 s route
        // refresh, so that producer still sends to the old address when the member exits
        // (the default drain outlasts the refresh); `failover_ops` asserts that no send
        // through a draining member fails.
        if !STOPS_A_MEMBER.contains(scenario) && fault.failed_sends > 0 {
            wrong.push(format!(
                "{scenario}: {} sends failed (or their outcome is unknown)",
                fault.failed_sends
            ));
        }
        wrong.extend(elections.err());
        summary.add(scenario, &report);
    }
    eprintln!("{summary}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What a scenario's fault left to heal.
struct Injected {
    /// The NameServer killed, paused or cut off (the `controller-*` scenarios).
    nameserver: Option<String>,
}

/// Injects `scenario`'s fault into a group whose master is `master` (its other members
/// `others`) and records it.
async fn inject(
    cluster: &mut NetCluster,
    checker: &Checker,
    scenario: &str,
    master: &str,
    others: &[String],
) -> Injected {
    let mut injected = Injected { nameserver: None };
    let addr = cluster.broker(master).addr.clone();
    match scenario {
        "master-kill" => cluster.kill(master),
        "master-pause" => cluster.pause(master),
        "master-isolated" => {
            let everyone = cluster.everyone_but(master);
            let peers: Vec<&str> = everyone.iter().map(String::as_str).collect();
            cluster.cut_off(master, &peers);
            checker.record_isolation(master, &addr, LEASE_AND_MARGIN);
        }
        "master-cut-from-controller" => {
            let leader = cluster.controller_leader().await;
            let follower = (leader + 1) % cluster.ns_addrs().len();
            let majority = [format!("ns-{leader}"), format!("ns-{follower}")];
            cluster.cut_off(master, &[&majority[0], &majority[1]]);
            checker.record_isolation(master, &addr, LEASE_AND_MARGIN);
        }
        "controller-leader-kill"
        | "controller-leader-pause"
        | "controller-leader-isolated"
        | "controller-follower-isolated" => {
            let ns = controller_voter(cluster, scenario == "controller-follower-isolated").await;
            match scenario {
                "controller-leader-kill" => cluster.kill(&ns),
                "controller-leader-pause" => cluster.pause(&ns),
                _ => {
                    let everyone = cluster.everyone_but(&ns);
                    let peers: Vec<&str> = everyone.iter().map(String::as_str).collect();
                    cluster.cut_off(&ns, &peers);
                }
            }
            checker.record_fault(scenario, &ns, None);
            injected.nameserver = Some(ns);
            return injected;
        }
        "master-sigterm" => cluster.terminate(master),
        "planned-elect" => {
            // The switch costs from the moment it is asked for.
            checker.record_fault(scenario, master, None);
            cluster.cli(&["broker", "elect", FA]).await.success();
            return injected;
        }
        "rolling-restart" => {
            checker.record_fault(scenario, "every member", None);
            rolling_restart(cluster, 1 + others.len()).await;
            return injected;
        }
        "slave-kill-during-failover" => {
            cluster.kill(master);
            checker.record_fault(scenario, master, None);
            // The fault's schedule: the slave dies while the controller waits to elect.
            tokio::time::sleep(SLAVE_KILL_DELAY).await;
            cluster.kill(&others[0]);
            checker.record_fault("slave-kill", &others[0], None);
            return injected;
        }
        "nameservers-restart-controller" => {
            checker.record_fault(scenario, "every NameServer", None);
            cluster.restart_nameservers().await;
            return injected;
        }
        "unclean-lagging" => {
            lag_and_kill(cluster, checker, master, &others[0]).await;
            return injected;
        }
        other => panic!("unknown failover scenario {other}"),
    }
    checker.record_fault(scenario, master, None);
    injected
}

/// The longest `rolling-restart`'s run may take: per member a switch, a drain, a start and
/// a return to the in-sync set.
const ROLLING_RESTART_LIMIT: Duration = Duration::from_secs(240);

/// Runs `apogee cluster rolling-restart` over [`FA`] (`members` members) and serves its
/// restart command: SIGTERM, the exit after the drain, a start; asserts it restarted every
/// member once and ended well.
async fn rolling_restart(cluster: &mut NetCluster, members: usize) {
    let requests = RestartRequests::new(cluster.dir().join("restart-requests"));
    let command = requests.command();
    let mut cli = cluster.cli_spawn(&["cluster", "rolling-restart", "--restart-command", &command]);
    let deadline = std::time::Instant::now() + ROLLING_RESTART_LIMIT;
    let mut restarted = Vec::new();
    while !cli.exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "the rolling restart still runs after {ROLLING_RESTART_LIMIT:?}"
        );
        if let Some(request) = requests.take() {
            let name = name_of(request.member);
            cluster.terminate(&name);
            assert!(
                cluster.wait_stopped(&name, STOPPED).await,
                "{name} did not exit within {STOPPED:?} of its SIGTERM"
            );
            cluster.restart(&name).await;
            restarted.push(request.member);
            requests.answer();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli.wait(Duration::from_secs(5)).success();
    restarted.sort_unstable();
    assert_eq!(
        restarted,
        (1..=members as u64).collect::<Vec<_>>(),
        "each member once:\n{out}"
    );
}

/// Heals what [`inject`] did.
async fn heal(
    cluster: &mut NetCluster,
    checker: &Checker,
    scenario: &str,
    master: &str,
    others: &[String],
    injected: Injected,
) {
    match scenario {
        "master-kill" => cluster.restart(master).await,
        "master-pause" => cluster.resume(master),
        "master-isolated" | "master-cut-from-controller" => {
            cluster.reconnect(master);
            checker.record_isolation_healed(master);
        }
        "controller-leader-kill"
        | "controller-leader-pause"
        | "controller-leader-isolated"
        | "controller-follower-isolated" => {
            let ns = injected.nameserver.expect("the faulted NameServer");
            match scenario {
                "controller-leader-kill" => cluster.restart(&ns).await,
                "controller-leader-pause" => cluster.resume(&ns),
                _ => cluster.reconnect(&ns),
            }
        }
        "master-sigterm" => {
            assert!(
                cluster.wait_stopped(master, STOPPED).await,
                "the SIGTERMed master {master} did not exit within {STOPPED:?}"
            );
            cluster.restart(master).await;
        }
        "slave-kill-during-failover" => {
            cluster.restart(master).await;
            cluster.restart(&others[0]).await;
        }
        "unclean-lagging" => {
            cluster.reconnect(&others[0]);
            cluster.restart(master).await;
        }
        _ => {}
    }
}

/// One round of failover scenario `scenario` (one of [`SCENARIOS`]) on a fresh cluster:
/// load, the fault held for `hold`, healed, the group settled again (every member in
/// sync, for at most [`SETTLE`]), `after` more of load, the elections checked where the
/// scenario expects a number ([`expected_elections`]), then every acknowledged message
/// drained.
pub(crate) async fn round(scenario: &str, hold: Duration, after: Duration) -> Round {
    if scenario == "async" {
        return Round {
            report: async_round(hold, after).await,
            elections: Ok(()),
        };
    }
    let members = if scenario == "slave-kill-during-failover" {
        3
    } else {
        2
    };
    let (mut cluster, before) = controlled(members, scenario == "unclean-lagging").await;
    let master = name_of(before.master);
    let others = others(members, before.master);
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    wait_acknowledged(&checker, FA, 100).await;
    let injected = inject(&mut cluster, &checker, scenario, &master, &others).await;
    // The fault's length: a knob of the run.
    tokio::time::sleep(hold).await;
    heal(&mut cluster, &checker, scenario, &master, &others, injected).await;
    let settled = tokio::time::timeout(SETTLE, cluster.wait_master(FA, 0, members as usize)).await;
    if settled.is_err() {
        eprintln!("-- {scenario}: the group did not get every member in sync within {SETTLE:?}");
    }
    tokio::time::sleep(after).await;
    let elections = match expected_elections(scenario) {
        None => Ok(()),
        Some(_) => tokio::time::timeout(SETTLE, cluster.wait_master(FA, 0, members as usize))
            .await
            .map_err(|_| format!("{scenario}: no master of {FA} with every member in sync"))
            .and_then(|now| check_elections(scenario, &before, &now)),
    };
    load.stop_producers().await;
    load.drain(0, DRAIN).await;
    let report = checker.report();
    if !report.lost.is_empty() || !report.lease_violations.is_empty() {
        print_log_tail(&mut cluster, &master, scenario);
    }
    Round { report, elections }
}

/// The `async` negative control (static roles): an ASYNC_MASTER `fa-0` with a slave `fa-1`
/// cut off from it; after 50 sends acknowledged without the slave the master is SIGKILLed
/// (and stays down) and the slave is restarted as the group's master on its own data after
/// `hold`; `after` more of load, then a drain.
async fn async_round(hold: Duration, after: Duration) -> Report {
    let static_member = |id: i64, role: &str| {
        BrokerSpec::member(FA, id)
            .role(role)
            .env("STORE__SEGMENT_BYTES", "1048576")
            .env("REPLICATION__RECONNECT_MS", "200")
    };
    let mut cluster = NetCluster::builder()
        .broker(static_member(0, "async_master"))
        .broker(static_member(1, "slave"))
        .start()
        .await;
    cluster.create_topic_on(TOPIC, QUEUES, &[]).await;
    cluster
        .create_fifo_topic(FIFO_TOPIC, QUEUES, FIFO_GROUP)
        .await;
    let checker = Arc::new(Checker::new());
    let mut load = full_load(&cluster, &checker);
    wait_acknowledged(&checker, FA, 100).await;
    cluster.cut_off("fa-1", &["fa-0"]);
    wait_acknowledged_after(&checker, checker.now(), 50, "sends without the slave").await;
    cluster.kill("fa-0");
    checker.record_fault("async", "fa-0", None);
    tokio::time::sleep(hold).await;
    // The slave, promoted by hand: restarted as the master on its own data.
    cluster.kill("fa-1");
    cluster.reconnect("fa-1");
    let data_dir = cluster.broker("fa-1").data_dir.clone();
    let promoted = BrokerSpec {
        name: "fa-1-promoted".into(),
        ..static_member(0, "async_master").data_dir(data_dir)
    };
    cluster.add_broker(promoted).await;
    tokio::time::sleep(after).await;
    load.stop_producers().await;
    load.drain(0, CONTROL_DRAIN).await;
    checker.report()
}

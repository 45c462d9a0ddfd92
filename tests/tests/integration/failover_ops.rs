//! Automatic failover in operation (controller mode), beyond the killed master of
//! [`super::failover`]:
//!
//! - a planned switch with `apogee broker elect` under load: the master hands over (sends
//!   wait, none fails), the other in-sync member leads the next epoch, the old master
//!   follows it, nothing acknowledged is lost; electing the master itself is refused;
//! - the SIGTERM of the master under load: it hands over before it stops, passes sends to
//!   the new master during its drain, and no send fails or is lost;
//! - the SIGTERM of a slave under load: it leaves the routes at once and passes the sends it
//!   still gets to the master until its drain ends; none fails, the master stays;
//! - the controller's Raft leader SIGKILLed under load: another NameServer leads before the
//!   master's lease ends and keeps granting it, so no send fails and no broker election
//!   happens; the NameServer comes back and follows the same leader;
//! - a committed transaction and a scheduled message across the SIGKILL of the master: the
//!   new master serves the first and publishes the second when it comes due;
//! - a runtime setting (`apogee broker config set <group>`) is the group's: every member
//!   runs with it, a member elected master keeps it, a change on the new master reaches the
//!   old one, and a restart keeps it; a slave refuses a change, naming its master.

use apogee_proto::time::{self, now_ms};
use apogee_proto::v2::{Code, MessageType, TransactionResolution};
use apogee_tests::commitlog::{assert_log_prefix, logged_ids};
use apogee_tests::failover::{
    assert_all_logged, controller_group, controller_status, member, member_name, receive_id,
    registered_members, send_message, send_one, settle_group_of_two, wait_for_full_in_sync_set,
    wait_routed_master, Load, OnFailure, DRAIN_MS,
};
use apogee_tests::rpc::{self, delay_message, delivery_ms};
use apogee_tests::{wait_until, Cluster};
use std::time::{Duration, Instant};

const GROUP: &str = "fo";
const TOPIC: &str = "failover";
const QUEUES: i32 = 4;

/// The controller's defaults: a lease of 2 s, and a margin of 0.5 s before a new leader
/// elects anything. An acknowledgement this long after the old leader died was covered by
/// a lease the new leader granted.
const LEASE_AND_MARGIN: Duration = Duration::from_millis(2500);

/// A controller cluster (`nameservers` NameServers) with a group of two controlled members,
/// a master elected with both in sync, and the topic [`TOPIC`]; the master's and the other
/// member's process names.
async fn group_of_two(nameservers: usize) -> (Cluster, String, String) {
    let cluster = Cluster::builder()
        .nameservers(nameservers)
        .controller()
        .broker(member(GROUP, 1))
        .broker(member(GROUP, 2))
        .start()
        .await;
    let group = settle_group_of_two(cluster, GROUP, TOPIC, QUEUES).await;
    (group.cluster, group.master, group.slave)
}

/// Waits until the old master's commit log holds exactly the new master's ids and is a
/// record-for-record prefix of it (what the old master wrote past the switch is cut back).
async fn wait_caught_up(cluster: &Cluster, master: &str, follower: &str) {
    let (master_dir, follower_dir) = (
        cluster.broker(master).data_dir.clone(),
        cluster.broker(follower).data_dir.clone(),
    );
    wait_until(
        Duration::from_secs(20),
        "the old master to hold the new master's log",
        || async {
            let (m, f) = (logged_ids(&master_dir), logged_ids(&follower_dir));
            (m == f).then_some(()).ok_or(format!(
                "{} ids on the master, {} on the follower",
                m.len(),
                f.len()
            ))
        },
    )
    .await;
    assert_log_prefix(&master_dir, &follower_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planned_switch_moves_the_master_under_load_and_loses_nothing() {
    let (cluster, old, new) = group_of_two(1).await;
    let before = controller_group(&cluster, GROUP).await.unwrap();
    let (old_addr, new_addr) = (
        cluster.broker(&old).addr.clone(),
        cluster.broker(&new).addr.clone(),
    );

    // Electing the master itself is refused, and changes nothing.
    let master_id = before.master.to_string();
    let refused = cluster.cli(&["broker", "elect", GROUP, "--member", &master_id]);
    assert_ne!(refused.code, 0, "electing the master must fail:\n{refused}");
    assert!(
        refused
            .stderr
            .contains(&format!("member {master_id} is the master already")),
        "the refusal names the reason:\n{refused}"
    );
    let unchanged = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (unchanged.master, unchanged.master_epoch),
        (before.master, before.master_epoch),
        "a refused election changes nothing"
    );

    // The switch, while a sender runs against the old master.
    let started = Instant::now();
    let load = Load::start(&old_addr, TOPIC, QUEUES, 2, "switch", OnFailure::Retry);
    load.wait_acked_after(
        started,
        100,
        Duration::from_secs(30),
        "sends before the switch",
    )
    .await;
    let elected = cluster
        .cli(&["-o", "json", "broker", "elect", GROUP])
        .success();
    let switched_at = Instant::now();
    let answer = elected.json();
    let new_id = if before.master == 1 { 2 } else { 1 };
    assert_eq!(
        (answer["master"].as_u64(), answer["master_epoch"].as_u64()),
        (Some(new_id), Some(before.master_epoch + 1)),
        "the other in-sync member leads the next epoch: {answer}"
    );
    let (master_now, follower) =
        wait_for_full_in_sync_set(&cluster, GROUP, before.master_epoch).await;
    assert_eq!(
        (master_now.as_str(), follower.as_str()),
        (new.as_str(), old.as_str()),
        "the old master follows the new one and is in sync again"
    );
    wait_routed_master(&cluster, GROUP, &new_addr).await;
    // The sender to the old address goes on: the old master passes sends to the new one.
    load.wait_acked_after(
        switched_at,
        50,
        Duration::from_secs(20),
        "sends through the old master after the switch",
    )
    .await;
    let gap = load.longest_gap();
    let (mut acked, failures) = load.stop().await;
    for n in 0..50 {
        let sent = send_one(&new_addr, TOPIC, n % QUEUES, format!("after-{n}")).await;
        acked.push(sent.expect("a send to the new master"));
    }

    let group = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (member_name(GROUP, group.master), group.master_epoch),
        (new.clone(), before.master_epoch + 1),
        "no further election"
    );
    assert_all_logged(&acked, &cluster.broker(&new).data_dir, "the new master");
    wait_caught_up(&cluster, &new, &old).await;
    // `cluster list` ends with the controller's leader and when the new master took over.
    let listed = cluster.cli(&["cluster", "list"]).success();
    let line = format!(
        "{GROUP}: master member {new_id}, epoch {}, in sync ",
        before.master_epoch + 1
    );
    assert!(
        listed.stdout.contains("controller: leader node ") && listed.stdout.contains(&line),
        "{listed}"
    );
    assert!(listed.stdout.contains("; master since "), "{listed}");
    eprintln!(
        "planned switch: {} acknowledged, 0 lost; {} sends failed during the switch (e.g. \
         {:?}), acknowledgements paused at most {} ms",
        acked.len(),
        failures.len(),
        failures.first(),
        gap.as_millis()
    );
    assert!(
        failures.is_empty(),
        "the master handed over: sends waited and none failed: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_stopped_with_sigterm_hands_over_and_no_send_fails() {
    let (mut cluster, old, new) = group_of_two(1).await;
    let before = controller_group(&cluster, GROUP).await.unwrap();
    let (old_addr, new_addr) = (
        cluster.broker(&old).addr.clone(),
        cluster.broker(&new).addr.clone(),
    );
    let started = Instant::now();
    let load = Load::start(&old_addr, TOPIC, QUEUES, 2, "sigterm", OnFailure::Retry);
    load.wait_acked_after(
        started,
        100,
        Duration::from_secs(30),
        "sends before SIGTERM",
    )
    .await;
    cluster.broker_mut(&old).process().terminate();
    let stopped_at = Instant::now();
    let (master_now, _) = wait_for_full_in_sync_set(&cluster, GROUP, before.master_epoch).await;
    assert_eq!(
        master_now, new,
        "the other in-sync member leads the next epoch"
    );
    let elected_in = stopped_at.elapsed();
    // The old master still answers (its drain), passing the sends to the new master.
    let gap = load.longest_gap();
    let (mut acked, failures) = sends_through_the_drain(load, stopped_at).await;
    let log = exit_after_drain(&mut cluster, &old);
    assert!(log.contains("handed the master's role over"), "{log}");
    assert!(log.contains("drain over"), "{log}");
    for n in 0..20 {
        let sent = send_one(&new_addr, TOPIC, n % QUEUES, format!("after-{n}")).await;
        acked.push(sent.expect("a send to the new master"));
    }
    assert_all_logged(&acked, &cluster.broker(&new).data_dir, "the new master");
    eprintln!(
        "SIGTERM of the master: successor elected {} ms after the signal; {} acknowledged, 0 \
         lost; {} sends failed (e.g. {:?}), acknowledgements paused at most {} ms",
        elected_in.as_millis(),
        acked.len(),
        failures.len(),
        failures.first(),
        gap.as_millis()
    );
    assert!(
        failures.is_empty(),
        "sends waited through the handover and were passed on during the drain: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slave_stopped_with_sigterm_leaves_the_routes_and_no_send_through_it_fails() {
    let (mut cluster, master, slave) = group_of_two(1).await;
    let before = controller_group(&cluster, GROUP).await.unwrap();
    let slave_addr = cluster.broker(&slave).addr.clone();
    let started = Instant::now();
    let load = Load::start(
        &slave_addr,
        TOPIC,
        QUEUES,
        2,
        "slave-sigterm",
        OnFailure::Retry,
    );
    load.wait_acked_after(
        started,
        100,
        Duration::from_secs(30),
        "sends through the slave before SIGTERM",
    )
    .await;
    cluster.broker_mut(&slave).process().terminate();
    let stopped_at = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the slave to leave the routes",
        || async {
            match registered_members(&cluster, GROUP).await {
                Some(members) if members.iter().all(|(_, e)| *e != slave_addr) => Ok(()),
                seen => Err(format!("registered: {seen:?}")),
            }
        },
    )
    .await;
    let (acked, failures) = sends_through_the_drain(load, stopped_at).await;
    let log = exit_after_drain(&mut cluster, &slave);
    assert!(log.contains("draining"), "{log}");
    let after = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (after.master, after.master_epoch),
        (before.master, before.master_epoch),
        "a slave's SIGTERM elects nobody"
    );
    assert_all_logged(&acked, &cluster.broker(&master).data_dir, "the master");
    assert!(
        failures.is_empty(),
        "the draining slave passed every send on: {failures:?}"
    );
}

/// Lets `load` go on until 50 more sends were acknowledged through a member draining since
/// `stopped_at` (its SIGTERM), and stops it within the drain; what it acknowledged and what
/// failed.
async fn sends_through_the_drain(load: Load, stopped_at: Instant) -> (Vec<String>, Vec<String>) {
    load.wait_acked_after(
        Instant::now(),
        50,
        Duration::from_secs(20),
        "sends through the draining member",
    )
    .await;
    let stopped = load.stop().await;
    assert!(
        stopped_at.elapsed() < Duration::from_millis(DRAIN_MS),
        "the load ended within the drain (else sends would fail when it exits)"
    );
    stopped
}

/// Waits for broker `name`'s clean exit after its SIGTERM and drain; its log.
fn exit_after_drain(cluster: &mut Cluster, name: &str) -> String {
    let status = cluster
        .broker_mut(name)
        .process()
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{name} still runs 30 s after its drain began"));
    assert!(status.success(), "exit status {status} after SIGTERM");
    cluster.broker_log(name)
}

/// The index (in start order) of the NameServer whose controller leads, once the
/// NameServers at `live` agree on a leader among them.
async fn agreed_leader(cluster: &Cluster, live: &[usize]) -> usize {
    let addrs = cluster.ns_addrs();
    wait_until(
        Duration::from_secs(20),
        "the controllers to agree on a leader",
        || async {
            let mut seen = Vec::new();
            for &i in live {
                let s = controller_status(&addrs[i], true).await?;
                seen.push((i, s.node_id, s.leader_id, s.is_leader));
            }
            let leader = seen[0].2.ok_or(format!("no leader known: {seen:?}"))?;
            let leading: Vec<usize> = seen
                .iter()
                .filter(|(_, node, _, is_leader)| *is_leader && *node == leader)
                .map(|(i, ..)| *i)
                .collect();
            let agree = seen.iter().all(|s| s.2 == Some(leader));
            match leading.as_slice() {
                [i] if agree => Ok(*i),
                _ => Err(format!("(index, node, leader, is_leader): {seen:?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_leader_lost_under_load_elects_no_new_master() {
    let (mut cluster, master, _) = group_of_two(3).await;
    let before = controller_group(&cluster, GROUP).await.unwrap();
    let leader = agreed_leader(&cluster, &[0, 1, 2]).await;
    assert_eq!(
        controller_status(&cluster.ns_addrs()[leader], true)
            .await
            .unwrap()
            .node_id,
        leader as u64 + 1,
        "node ids are 1..=3 in NameServer order"
    );

    let started = Instant::now();
    let load = Load::start(
        cluster.broker_addr(&master),
        TOPIC,
        QUEUES,
        2,
        "steady",
        OnFailure::Retry,
    );
    load.wait_acked_after(
        started,
        100,
        Duration::from_secs(30),
        "sends before the kill",
    )
    .await;
    cluster.kill_nameserver(leader);
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = agreed_leader(&cluster, &survivors).await;
    let leader_known = Instant::now();
    // Past the old leader's last possible lease, acknowledgements need the new leader's;
    // and a new leader that wrongly replaced a live master would have done so a lease +
    // margin after it began to lead.
    load.wait_acked_after(
        leader_known + LEASE_AND_MARGIN,
        100,
        Duration::from_secs(30),
        "sends under a lease from the new controller leader",
    )
    .await;
    let after = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (after.master, after.master_epoch),
        (before.master, before.master_epoch),
        "the master keeps its place: no election"
    );

    // The NameServer comes back, follows the leader the others follow and holds the group's
    // state.
    cluster.restart_nameserver(leader).await;
    let leader_after = agreed_leader(&cluster, &[0, 1, 2]).await;
    let returned = &cluster.ns_addrs()[leader];
    wait_until(
        Duration::from_secs(20),
        "the returned NameServer to follow the leader with the group's state",
        || async {
            let s = controller_status(returned, true).await?;
            let group = s.groups.iter().find(|g| g.broker_name == GROUP);
            let state = group.map(|g| (g.master, g.master_epoch));
            (s.leader_id == Some(leader_after as u64 + 1)
                && state == Some((before.master, before.master_epoch)))
            .then_some(())
            .ok_or(format!("leader {:?}, group {state:?}", s.leader_id))
        },
    )
    .await;
    let gap = load.longest_gap();
    let (acked, failures) = load.stop().await;
    assert_all_logged(&acked, &cluster.broker(&master).data_dir, "the master");
    eprintln!(
        "controller leader lost: NameServer {leader} killed, {new_leader} leads (known {} ms \
         after the kill); {} sends \
         acknowledged, {} failed (e.g. {:?}), acknowledgements paused at most {} ms",
        (leader_known - killed_at).as_millis(),
        acked.len(),
        failures.len(),
        failures.first(),
        gap.as_millis()
    );
    assert!(
        failures.is_empty(),
        "the master's lease outlasts the change of controller leader: {failures:?}"
    );
}

const PAYMENTS: &str = "payments";
const REMINDERS: &str = "reminders";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_committed_transaction_and_a_scheduled_message_survive_the_masters_death() {
    let (mut cluster, old, new) = group_of_two(1).await;
    cluster
        .create_typed_topic(
            PAYMENTS,
            QUEUES,
            &[MessageType::Normal, MessageType::Transaction],
        )
        .await;
    cluster
        .create_typed_topic(REMINDERS, QUEUES, &[MessageType::Delay])
        .await;
    let new_addr = cluster.broker(&new).addr.clone();
    let mut client = rpc::messaging(&cluster.broker(&old).addr);

    // A transaction committed on the first master.
    let committed = rpc::send_half(&mut client, rpc::txn_message(PAYMENTS, 1, "charge 42")).await;
    let ended = rpc::end_transaction(
        &mut client,
        PAYMENTS,
        &committed,
        TransactionResolution::Commit,
    )
    .await;
    assert_eq!(ended, Code::Ok as i32, "commit: {}", rpc::code_name(ended));
    // A message due about 5 s after the master dies.
    let due_ms = now_ms() + 5_000;
    let scheduled = delay_message(REMINDERS, 2, "remind", due_ms);
    let scheduled_id = send_message(cluster.broker_addr(&old), scheduled)
        .await
        .expect("the scheduled send");

    cluster.kill_broker(&old);
    wait_until(
        Duration::from_secs(30),
        "writes on the survivor",
        || async { send_one(&new_addr, PAYMENTS, 0, "after".into()).await },
    )
    .await;
    let elected_ms = now_ms();
    let (m, _) = receive_id(
        &new_addr,
        "billing",
        PAYMENTS,
        &committed.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(&m.body[..], b"charge 42");

    let (m, received_ms) = receive_id(
        &new_addr,
        "reminding",
        REMINDERS,
        &scheduled_id,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(delivery_ms(&m), due_ms, "the delivery time is kept");
    let stored_ms = m
        .system_properties
        .as_ref()
        .and_then(|s| s.store_timestamp.as_ref())
        .map_or(0, time::timestamp_ms);
    assert!(
        stored_ms >= due_ms && received_ms >= due_ms,
        "published at {stored_ms}, received at {received_ms}: before its time {due_ms}"
    );
    // Delivered once: nothing more comes.
    let mut client = rpc::messaging(&new_addr);
    let (more, _) = rpc::receive(
        &mut client,
        "reminding",
        REMINDERS,
        16,
        None,
        Duration::from_secs(2),
    )
    .await;
    assert!(more.is_empty(), "delivered again: {more:?}");
    eprintln!(
        "transaction and schedule across failover: the survivor took writes {} ms before the \
         scheduled message's time, and it was received {} ms after it",
        due_ms - elected_ms,
        received_ms - due_ms
    );
}

/// The value of runtime setting `key` the broker at `addr` reports (`broker config get`).
fn runtime_setting(cluster: &Cluster, addr: &str, key: &str) -> String {
    let out = cluster
        .cli(&["-o", "json", "broker", "config", "get", addr])
        .success();
    let all = out.json();
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["key"] == key))
        .and_then(|s| s["value"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{key} not listed: {out}"))
}

/// Waits (at most 10 s) until the broker at `addr` runs with `key` = `value`.
async fn wait_runtime_setting(cluster: &Cluster, addr: &str, key: &str, value: &str) {
    wait_until(
        Duration::from_secs(10),
        &format!("{addr} to run with {key} = {value}"),
        || async {
            let now = runtime_setting(cluster, addr, key);
            (now == value).then_some(()).ok_or(format!("{key} = {now}"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runtime_setting_is_the_groups_across_an_election_and_a_restart() {
    const KEY: &str = "store.retention_hours";
    let (mut cluster, old, new) = group_of_two(1).await;
    let (old_addr, new_addr) = (
        cluster.broker(&old).addr.clone(),
        cluster.broker(&new).addr.clone(),
    );
    assert_eq!(runtime_setting(&cluster, &new_addr, KEY), "72");

    // Set through the group's name, on its master; every member runs with it.
    let set = cluster
        .cli(&["-o", "json", "broker", "config", "set", GROUP, KEY, "48"])
        .success();
    assert_eq!(set.json()["value"], "48", "{set}");
    let mut members: Vec<(String, String)> = set.json()["members"]
        .as_array()
        .unwrap_or_else(|| panic!("{set}"))
        .iter()
        .map(|m| (m["address"].as_str(), m["value"].as_str()))
        .map(|(a, v)| (a.unwrap_or("").to_string(), v.unwrap_or("").to_string()))
        .collect();
    members.sort();
    let mut expected: Vec<(String, String)> = [&old_addr, &new_addr]
        .iter()
        .map(|a| (a.to_string(), "48".to_string()))
        .collect();
    expected.sort();
    assert_eq!(
        members, expected,
        "the CLI shows every member running with it"
    );
    for addr in [&old_addr, &new_addr] {
        wait_runtime_setting(&cluster, addr, KEY, "48").await;
    }
    // A slave takes the group's settings from its master and says where to set them.
    let refused = cluster.cli(&["broker", "config", "set", &new_addr, KEY, "24"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(
        refused.stderr.contains("is not the master") && refused.stderr.contains(&old_addr),
        "{refused}"
    );

    // The slave elected: it runs with the group's setting from its first moment as master.
    let before = controller_group(&cluster, GROUP).await.unwrap();
    let new_id = if before.master == 1 { "2" } else { "1" };
    cluster
        .cli(&["broker", "elect", GROUP, "--member", new_id])
        .success();
    let (master_now, _) = wait_for_full_in_sync_set(&cluster, GROUP, before.master_epoch).await;
    assert_eq!(master_now, new, "the elected member leads");
    wait_routed_master(&cluster, GROUP, &new_addr).await;
    assert_eq!(runtime_setting(&cluster, &new_addr, KEY), "48");

    // A change on the new master reaches the old one, now its slave; a restart keeps it.
    cluster
        .cli(&["broker", "config", "set", GROUP, KEY, "24"])
        .success();
    wait_runtime_setting(&cluster, &old_addr, KEY, "24").await;
    cluster.kill_broker(&old);
    cluster.restart_broker(&old).await;
    assert_eq!(runtime_setting(&cluster, &old_addr, KEY), "24");
    assert_eq!(runtime_setting(&cluster, &new_addr, KEY), "24");
    let full = cluster
        .cli(&["broker", "config", "get", &old_addr, "--full"])
        .success();
    assert!(full.stdout.contains("retention_hours = 24"), "{full}");
}

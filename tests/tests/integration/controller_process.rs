//! The controller run as its own processes: three `apogee-controller` voters, two
//! NameServers naming them in `[controller] endpoints`, a broker group of two members in
//! controller mode. The brokers beat the NameServers as with an embedded controller; the
//! NameServers pass the beats to the controllers' leader.
//!
//! - The master is SIGKILLed under load: the other member is elected (the next epoch),
//!   takes writes, holds every acknowledged message, and the routes name it.
//! - `apogee controller status` against a NameServer shows the remote leader's state; the
//!   controller leader's process is SIGKILLed: another controller leads, and writes to the
//!   master are still acknowledged after the new leader's election window (a lease and its
//!   margin) has passed, with the master and its epoch unchanged; then `apogee broker elect`
//!   through a NameServer switches the master by the new leader.
//! - With TLS and a cluster secret the controllers and the NameServers take the cluster's
//!   certificates and secret, and a member is elected through them.

use apogee_tests::failover::{
    assert_all_logged, controller_group, member, send_one, settle_group_of_two,
    wait_for_full_in_sync_set, wait_routed_master, Load, OnFailure, StartedGroup,
};
use apogee_tests::{wait_until, Cluster};
use std::time::{Duration, Instant};

const GROUP: &str = "cp";
const TOPIC: &str = "controller-process";
const QUEUES: i32 = 2;

/// The controllers' lease and margin (defaults): a new leader elects no replacement of a
/// master before this long.
const ELECTION_WINDOW: Duration = Duration::from_millis(2_500);

async fn cluster() -> Cluster {
    Cluster::builder()
        .nameservers(2)
        .controller_processes(3)
        .broker(member(GROUP, 1))
        .broker(member(GROUP, 2))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_by_the_remote_controller() {
    let StartedGroup {
        mut cluster,
        master: old,
        slave: new,
        first_epoch,
    } = settle_group_of_two(cluster().await, GROUP, TOPIC, QUEUES).await;
    let (old_addr, new_addr) = (
        cluster.broker(&old).addr.clone(),
        cluster.broker(&new).addr.clone(),
    );

    // Retry: a send refused while a lease renewal is late (a loaded machine) is not what
    // this test is about; only what was acknowledged counts.
    let load = Load::start(&old_addr, TOPIC, QUEUES, 2, "before", OnFailure::Retry);
    load.wait_acked_after(
        Instant::now() - Duration::from_secs(60),
        100,
        Duration::from_secs(30),
        "sends to the first master",
    )
    .await;
    cluster.kill_broker(&old);
    let (mut acked, _) = load.stop().await;

    let first_write = wait_until(
        Duration::from_secs(30),
        "writes on the survivor",
        || async { send_one(&new_addr, TOPIC, 0, "after-0".into()).await },
    )
    .await;
    acked.push(first_write);
    let group = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (format!("{GROUP}-{}", group.master), group.master_epoch),
        (new.clone(), first_epoch + 1),
        "the survivor is master of the next epoch"
    );
    wait_routed_master(&cluster, GROUP, &new_addr).await;
    let new_dir = cluster.broker(&new).data_dir.clone();
    assert_all_logged(&acked, &new_dir, "the new master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_controller_leader_costs_the_group_neither_its_master_nor_its_writes() {
    let mut cluster = cluster().await;
    let (master, _) = wait_for_full_in_sync_set(&cluster, GROUP, 0).await;

    // `apogee controller status` against a NameServer: the remote leader's figures and the
    // state it confirmed.
    let status = wait_until(
        Duration::from_secs(20),
        "the controller status through a NameServer",
        || async {
            let out = cluster.cli(&["-o", "json", "controller", "status"]);
            if out.code != 0 {
                return Err(out.to_string());
            }
            let json = out.json();
            (json["is_leader"] == true && json["stale"] == false)
                .then_some(json.clone())
                .ok_or(out.to_string())
        },
    )
    .await;
    let leader = status["leader_id"].as_u64().expect("a leader id");
    assert!((1..=3).contains(&leader), "{status}");
    assert_eq!(status["node_id"], status["leader_id"], "{status}");
    let groups = status["groups"].as_array().expect("groups");
    let group = groups
        .iter()
        .find(|g| g["broker"] == GROUP)
        .unwrap_or_else(|| panic!("no {GROUP} in {status}"));
    assert_eq!(format!("{GROUP}-{}", group["master"]), master, "{status}");
    let epoch = group["master_epoch"].as_u64().unwrap();
    let table = cluster.cli(&["controller", "status"]).success();
    assert!(table.stdout.contains("role          leader\n"), "{table}");

    cluster.create_topic(TOPIC, QUEUES).await;
    let master_addr = cluster.broker(&master).addr.clone();
    let load = Load::start(&master_addr, TOPIC, QUEUES, 2, "steady", OnFailure::Retry);
    load.wait_acked_after(
        Instant::now(),
        50,
        Duration::from_secs(30),
        "sends before the controller leader is killed",
    )
    .await;

    cluster.kill_controller(leader);
    let new_leader = wait_until(
        Duration::from_secs(20),
        "another controller to lead",
        || async {
            let g = controller_group(&cluster, GROUP).await?;
            let status =
                apogee_tests::failover::controller_status(cluster.ns_addr(), false).await?;
            match status.leader_id {
                Some(id) if id != leader && status.is_leader && !status.stale => Ok((id, g)),
                other => Err(format!("leader {other:?}, stale {}", status.stale)),
            }
        },
    )
    .await;
    let led_by = Instant::now();
    assert_ne!(new_leader.0, leader);

    // Past the new leader's election window the master still takes writes.
    load.wait_acked_after(
        led_by + ELECTION_WINDOW + Duration::from_millis(500),
        50,
        Duration::from_secs(30),
        "sends after the new leader's election window",
    )
    .await;
    let group = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (format!("{GROUP}-{}", group.master), group.master_epoch),
        (master.clone(), epoch),
        "the master and its epoch are unchanged"
    );
    let (acked, _) = load.stop().await;
    let dir = cluster.broker(&master).data_dir.clone();
    assert_all_logged(&acked, &dir, "the master");

    // A planned switch through a NameServer goes to the new remote leader.
    wait_for_full_in_sync_set(&cluster, GROUP, epoch - 1).await;
    let elected = cluster
        .cli(&["-o", "json", "broker", "elect", GROUP])
        .success();
    let answer = elected.json();
    let other = if master == format!("{GROUP}-1") { 2 } else { 1 };
    assert_eq!(
        (answer["master"].as_u64(), answer["master_epoch"].as_u64()),
        (Some(other), Some(epoch + 1)),
        "the other member leads the next epoch: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_processes_take_the_clusters_tls_and_secret() {
    let cluster = Cluster::builder()
        .tls()
        .authentication()
        .controller_processes(3)
        .broker(member(GROUP, 1))
        .start()
        .await;
    let status = wait_until(
        Duration::from_secs(30),
        "member 1 elected over TLS with the cluster proof",
        || async {
            let out = cluster.cli(&["-o", "json", "controller", "status"]);
            if out.code != 0 {
                return Err(out.to_string());
            }
            let json = out.json();
            let master = json["groups"]
                .as_array()
                .and_then(|groups| groups.iter().find(|g| g["broker"] == GROUP))
                .map(|g| g["master"].clone());
            // The leader's own view: under load the controllers may elect again after the
            // first election, and a follower's answer can be fresh too.
            (json["stale"] == false && json["is_leader"] == true && master == Some(1.into()))
                .then_some(json.clone())
                .ok_or(out.to_string())
        },
    )
    .await;
    assert_eq!(status["is_leader"], true, "{status}");
}

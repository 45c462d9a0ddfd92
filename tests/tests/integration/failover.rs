//! Automatic failover (controller mode): a NameServer running the controller, a broker group
//! of two members whose roles it decides. The master is SIGKILLed under load: the other
//! member is elected without its lease being waited out (its process exited, and it
//! acknowledged only what every in-sync member held), takes writes, and holds every
//! acknowledged message; the old master
//! comes back as a slave of the new one, its log cut back to the new master's. And until a
//! new master is elected, the in-sync slave serves consumers from its copy (not sends).

use apogee_tests::commitlog::{assert_log_prefix, logged_ids};
use apogee_tests::failover::{
    assert_all_logged, controller_group, member, member_name, receive_id, send_one,
    settle_group_of_two, start_group_of_two, wait_for_full_in_sync_set, wait_routed_master, Load,
    OnFailure, StartedGroup,
};
use apogee_tests::{rpc, wait_until, Cluster};
use std::time::{Duration, Instant};

const GROUP: &str = "fo";
const TOPIC: &str = "failover";
const QUEUES: i32 = 4;

/// The masters' lease in [`a_killed_master_is_replaced_without_losing_an_acknowledged_message`]:
/// long, so that a replacement waiting it out could not pass for one elected at once.
const LONG_LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_without_losing_an_acknowledged_message() {
    let cluster = Cluster::builder()
        .controller()
        .nameserver_env("CONTROLLER__LEASE_MS", LONG_LEASE.as_millis().to_string())
        .broker(member(GROUP, 1))
        .broker(member(GROUP, 2))
        .start()
        .await;
    let StartedGroup {
        mut cluster,
        master: old,
        slave: new,
        first_epoch,
    } = settle_group_of_two(cluster, GROUP, TOPIC, QUEUES).await;
    let old_addr = cluster.broker(&old).addr.clone();
    let new_addr = cluster.broker(&new).addr.clone();

    // Load on the master until it is killed; every acknowledged id is kept.
    // Retry: a send refused while a lease renewal is late (a loaded machine) is not what
    // this test is about; only what was acknowledged counts.
    let load = Load::start(&old_addr, TOPIC, QUEUES, 4, "before", OnFailure::Retry);
    wait_until(
        Duration::from_secs(60),
        "sends to the first master",
        || async {
            let n = load.acked_count();
            (n >= 300).then_some(()).ok_or(format!("{n} acknowledged"))
        },
    )
    .await;
    cluster.kill_broker(&old);
    let killed_at = Instant::now();
    let (mut acked, _) = load.stop().await;

    // The survivor is elected and takes writes, long before the old master's lease (granted
    // a moment before the kill) would have run out: waiting it out would fail here.
    let first_write = wait_until(
        LONG_LEASE / 2,
        "writes on the survivor before half the dead master's lease went by",
        || async { send_one(&new_addr, TOPIC, 0, "after-0".into()).await },
    )
    .await;
    let resumed = killed_at.elapsed();
    acked.push(first_write);
    let group = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (format!("{GROUP}-{}", group.master), group.master_epoch),
        (new.clone(), first_epoch + 1),
        "the survivor is master of the next epoch"
    );
    wait_routed_master(&cluster, GROUP, &new_addr).await;
    for n in 1..100 {
        let id = send_one(&new_addr, TOPIC, n % QUEUES, format!("after-{n}")).await;
        acked.push(id.expect("a send to the new master"));
    }

    // The old master comes back as a slave and holds the new master's log.
    cluster.restart_broker(&old).await;
    let (master_again, _) = wait_for_full_in_sync_set(&cluster, GROUP, first_epoch).await;
    assert_eq!(master_again, new, "the returning member does not take over");
    let (new_dir, old_dir) = (
        cluster.broker(&new).data_dir.clone(),
        cluster.broker(&old).data_dir.clone(),
    );
    assert_all_logged(&acked, &new_dir, "the new master");
    wait_until(
        Duration::from_secs(30),
        "the old master to catch up",
        || async {
            let (n, o) = (logged_ids(&new_dir), logged_ids(&old_dir));
            (n == o).then_some(()).ok_or(format!(
                "{} ids on the new master, {} on the old",
                n.len(),
                o.len()
            ))
        },
    )
    .await;
    assert_log_prefix(&new_dir, &old_dir);
    eprintln!(
        "failover: {} acknowledged, 0 lost; writes resumed {} ms after the SIGKILL",
        acked.len(),
        resumed.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_sync_slave_serves_consumers_while_no_master_is_elected() {
    let StartedGroup {
        mut cluster,
        master,
        slave,
        first_epoch,
    } = start_group_of_two(GROUP, TOPIC, QUEUES).await;
    let slave_addr = cluster.broker(&slave).addr.clone();
    // Acknowledged only once every member of the in-sync set, the slave too, holds it.
    let stored = send_one(&cluster.broker(&master).addr, TOPIC, 0, "stored".into())
        .await
        .expect("a send to the master");

    // The slave knows it is in the committed in-sync set (ready) before the controller goes.
    let slave_http = cluster.broker_http_addr(&slave).to_string();
    wait_until(Duration::from_secs(30), "the slave to be ready", || async {
        let (code, body) = apogee_tests::http::get(&slave_http, "/readyz").await;
        (code == 200).then_some(()).ok_or(format!("{code}: {body}"))
    })
    .await;
    // The controller (the only NameServer) down first: no election can end the window.
    cluster.kill_nameserver(0);
    cluster.kill_broker(&master);
    // Served from the slave's copy and acknowledged there (the first tries may still be
    // passed to the dead master, until the slave notices its link is gone).
    receive_id(
        &slave_addr,
        "reader",
        TOPIC,
        &stored,
        Duration::from_secs(30),
    )
    .await;
    let refused = send_one(&slave_addr, TOPIC, 0, "refused".into()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.starts_with("HA_NOT_AVAILABLE")),
        "a slave stores no send: {refused:?}"
    );

    // The controller back: the slave is elected and keeps what was acknowledged on it.
    cluster.restart_nameserver(0).await;
    let after = wait_until(
        Duration::from_secs(30),
        "writes on the survivor",
        || async { send_one(&slave_addr, TOPIC, 1, "after".into()).await },
    )
    .await;
    let group = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (member_name(GROUP, group.master), group.master_epoch),
        (slave.clone(), first_epoch + 1),
        "the slave is master of the next epoch"
    );
    let delivered: Vec<String> = rpc::drain(
        &mut rpc::messaging(&slave_addr),
        "reader",
        TOPIC,
        Duration::from_secs(1),
    )
    .await
    .iter()
    .map(rpc::id_of)
    .collect();
    assert!(
        delivered.contains(&after) && !delivered.contains(&stored),
        "the message acknowledged on the slave is not delivered again: {delivered:?}"
    );
}

//! Automatic failover (controller mode): a NameServer running the controller, a broker group
//! of two members whose roles it decides. The master is SIGKILLed under load: the other
//! member is elected, takes writes, and holds every acknowledged message; the old master
//! comes back as a slave of the new one, its log cut back to the new master's.

use apogee_proto::cluster::{
    ControllerGroupStatus, ControllerStatusRequest, GetClusterInfoRequest,
};
use apogee_proto::v2::{self, Code};
use apogee_tests::commitlog::{assert_log_prefix, logged_ids};
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GROUP: &str = "fo";
const TOPIC: &str = "failover";
const QUEUES: i32 = 4;

fn member(id: i64) -> BrokerSpec {
    BrokerSpec::controlled(GROUP, id)
        .env("STORE__SEGMENT_BYTES", "1048576")
        .env("HEARTBEAT_INTERVAL_MS", "500")
        .env("REPLICATION__RECONNECT_MS", "200")
}

/// The group as the controller holds it (asked of the leader's NameServer).
async fn controller_group(cluster: &Cluster) -> Result<ControllerGroupStatus, String> {
    let answer = tokio::time::timeout(
        Duration::from_secs(3),
        rpc::admin(cluster.ns_addr())
            .controller_status(rpc::signed(ControllerStatusRequest { here_only: false })),
    )
    .await
    .map_err(|_| "ControllerStatus timed out".to_string())?
    .map_err(|s| format!("ControllerStatus: {}", s.message()))?
    .into_inner();
    answer
        .groups
        .into_iter()
        .find(|g| g.broker_name == GROUP)
        .ok_or_else(|| "the controller does not know the group yet".to_string())
}

/// Waits until the controller has a master whose in-sync set holds both members; returns
/// (master's process name, the other's).
async fn wait_for_full_in_sync_set(cluster: &Cluster, epoch_above: u64) -> (String, String) {
    let group = wait_until(
        Duration::from_secs(60),
        "a master with both members in sync",
        || async {
            let g = controller_group(cluster).await?;
            (g.master != 0 && g.master_epoch > epoch_above && g.in_sync.len() == 2)
                .then_some(g.clone())
                .ok_or(format!("{g:?}"))
        },
    )
    .await;
    let other = if group.master == 1 { 2 } else { 1 };
    (
        format!("{GROUP}-{}", group.master),
        format!("{GROUP}-{other}"),
    )
}

/// The endpoint the NameServer presents as the group's master (broker id 0).
async fn routed_master(cluster: &Cluster) -> Option<String> {
    let info = rpc::registry(cluster.ns_addr())
        .get_cluster_info(rpc::signed(GetClusterInfoRequest {}))
        .await
        .ok()?
        .into_inner();
    info.groups
        .iter()
        .filter(|g| g.broker_name == GROUP)
        .flat_map(|g| &g.members)
        .find(|m| m.broker_id == 0)
        .map(|m| m.endpoint.clone())
}

/// Sends one message to `addr`; its id when acknowledged.
async fn send_one(addr: &str, n: usize, body: String) -> Result<String, String> {
    let m = rpc::message(TOPIC, (n % QUEUES as usize) as i32, body);
    let id = rpc::id_of(&m);
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        rpc::messaging(addr).send_message(v2::SendMessageRequest { messages: vec![m] }),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|s| s.message().to_string())?;
    let code = rpc::code(answer.get_ref().status.as_ref());
    (code == Code::Ok as i32)
        .then_some(id)
        .ok_or_else(|| rpc::code_name(code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_without_losing_an_acknowledged_message() {
    let mut cluster = Cluster::builder()
        .controller()
        .broker(member(1))
        .broker(member(2))
        .start()
        .await;
    let (old, new) = wait_for_full_in_sync_set(&cluster, 0).await;
    let first_epoch = controller_group(&cluster).await.unwrap().master_epoch;
    cluster.create_topic(TOPIC, QUEUES).await;
    let old_addr = cluster.broker(&old).addr.clone();
    let new_addr = cluster.broker(&new).addr.clone();

    // Load on the master until it is killed; every acknowledged id is kept.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (addr, acked, stop) = (old_addr.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    match send_one(&addr, n, format!("before-{t}-{n}")).await {
                        Ok(id) => acked.lock().unwrap().push(id),
                        Err(_) => return,
                    }
                    n += 1;
                }
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(60),
        "sends to the first master",
        || async {
            let n = acked.lock().unwrap().len();
            (n >= 300).then_some(()).ok_or(format!("{n} acknowledged"))
        },
    )
    .await;
    cluster.kill_broker(&old);
    let killed_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }

    // The survivor is elected and takes writes.
    let first_write = wait_until(
        Duration::from_secs(30),
        "writes on the survivor",
        || async { send_one(&new_addr, 0, "after-0".into()).await },
    )
    .await;
    let resumed = killed_at.elapsed();
    acked.lock().unwrap().push(first_write);
    let group = controller_group(&cluster).await.unwrap();
    assert_eq!(
        (format!("{GROUP}-{}", group.master), group.master_epoch),
        (new.clone(), first_epoch + 1),
        "the survivor is master of the next epoch"
    );
    wait_until(
        Duration::from_secs(10),
        "the route to name the survivor",
        || async {
            let routed = routed_master(&cluster).await;
            (routed.as_deref() == Some(new_addr.as_str()))
                .then_some(())
                .ok_or(format!("routed master {routed:?}"))
        },
    )
    .await;
    for n in 1..100 {
        let id = send_one(&new_addr, n, format!("after-{n}")).await;
        acked
            .lock()
            .unwrap()
            .push(id.expect("a send to the new master"));
    }

    // The old master comes back as a slave and holds the new master's log.
    cluster.restart_broker(&old).await;
    let (master_again, _) = wait_for_full_in_sync_set(&cluster, first_epoch).await;
    assert_eq!(master_again, new, "the returning member does not take over");
    let (new_dir, old_dir) = (
        cluster.broker(&new).data_dir.clone(),
        cluster.broker(&old).data_dir.clone(),
    );
    let on_new_master = logged_ids(&new_dir);
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !on_new_master.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are not on the new master, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
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

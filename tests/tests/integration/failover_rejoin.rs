//! Rejoining after a failover (controller mode): the old master holds records its slave
//! never got (appended while the slave was stopped, never acknowledged), is SIGKILLed, the
//! slave is elected and takes writes, and the old master comes back. It reconciles its log
//! by epoch with the new master's, truncates what the new master never wrote (naming the
//! dropped message ids in a warning), catches up, and ends with the new master's log and
//! epoch history.
//!
//! The sequence is deterministic: with `replication.sync_timeout_ms` long, a stopped slave
//! stays in the measured (and committed) in-sync set, so the sends made while it is stopped
//! wait for it and are acknowledged only if it got them; the slave stays electable when
//! the master dies. The sends' bytes exceed the stream's flow-control windows, so some of
//! them never reach the slave: those, and only those, the returning master drops.

use apogee_tests::commitlog::{assert_log_prefix, logged_ids};
use apogee_tests::failover::{
    assert_all_logged, controller_group, member, send_message, send_one, settle_group_of_two,
    wait_for_full_in_sync_set, wait_routed_master, StartedGroup,
};
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::collections::HashSet;
use std::time::Duration;

const GROUP: &str = "rejoin";
const TOPIC: &str = "rejoin";
const QUEUES: i32 = 2;
/// Sends made while the slave is stopped: together far more than the replication stream's
/// flow-control windows, so the stopped slave cannot have received them all.
const UNACKED_SENDS: usize = 40;
const UNACKED_BODY_BYTES: usize = 64 * 1024;

/// A member whose stopped slave stays in sync for 60 s (no acknowledgement without it).
fn patient_member(id: i64) -> BrokerSpec {
    member(GROUP, id).env("REPLICATION__SYNC_TIMEOUT_MS", "60000")
}

/// The message ids the broker's log names in its truncation warning.
fn dropped_ids(log: &str) -> Vec<String> {
    let line = log
        .lines()
        .find(|l| l.contains("truncating to the common prefix"))
        .unwrap_or_else(|| panic!("no truncation warning in the log:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    let ids = line
        .split("dropped_ids=")
        .nth(1)
        .unwrap_or_else(|| panic!("no dropped ids in {line}"));
    assert!(
        !ids.contains(" more"),
        "fewer than the cap were dropped: {line}"
    );
    ids.split(", ").map(|s| s.trim().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returning_master_truncates_by_epoch_what_was_never_acknowledged() {
    let started = Cluster::builder()
        .controller()
        .broker(patient_member(1))
        .broker(patient_member(2))
        .start()
        .await;
    let StartedGroup {
        mut cluster,
        master: old,
        slave: new,
        first_epoch,
    } = settle_group_of_two(started, GROUP, TOPIC, QUEUES).await;
    let old_addr = cluster.broker(&old).addr.clone();
    let new_addr = cluster.broker(&new).addr.clone();
    let (old_dir, new_dir) = (
        cluster.broker(&old).data_dir.clone(),
        cluster.broker(&new).data_dir.clone(),
    );

    let mut acked = Vec::new();
    for n in 0..30 {
        let id = send_one(&old_addr, TOPIC, n % QUEUES, format!("before-{n}")).await;
        acked.push(id.expect("a send to the first master"));
    }

    // The slave stops; the master appends sends it cannot acknowledge.
    cluster.pause_broker(&new);
    let body = "x".repeat(UNACKED_BODY_BYTES);
    let messages: Vec<_> = (0..UNACKED_SENDS)
        .map(|n| rpc::message(TOPIC, n as i32 % QUEUES, body.clone()))
        .collect();
    let stopped_phase: HashSet<String> = messages.iter().map(rpc::id_of).collect();
    let sends: Vec<_> = messages
        .into_iter()
        .map(|m| {
            let addr = old_addr.clone();
            tokio::spawn(async move { send_message(&addr, m).await })
        })
        .collect();
    wait_until(
        Duration::from_secs(20),
        "the master to append the sends",
        || async {
            let logged = logged_ids(&old_dir);
            let missing = stopped_phase
                .iter()
                .filter(|id| !logged.contains(*id))
                .count();
            (missing == 0)
                .then_some(())
                .ok_or(format!("{missing} not in the master's log"))
        },
    )
    .await;
    cluster.kill_broker(&old);
    cluster.resume_broker(&new);
    // A send the slave still took before it stopped may be acknowledged: it is then on the
    // slave, like every acknowledged one.
    let mut answered_ok = 0;
    for send in sends {
        if let Ok(id) = send.await.expect("a send task") {
            answered_ok += 1;
            acked.push(id);
        }
    }
    assert!(answered_ok < UNACKED_SENDS, "every send was acknowledged");

    // The slave is elected and takes writes.
    acked.push(
        wait_until(
            Duration::from_secs(30),
            "writes on the survivor",
            || async { send_one(&new_addr, TOPIC, 0, "after-0".into()).await },
        )
        .await,
    );
    let group = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (format!("{GROUP}-{}", group.master), group.master_epoch),
        (new.clone(), first_epoch + 1)
    );
    wait_routed_master(&cluster, GROUP, &new_addr).await;
    for n in 1..30 {
        let id = send_one(&new_addr, TOPIC, n % QUEUES, format!("after-{n}")).await;
        acked.push(id.expect("a send to the new master"));
    }
    let on_new = logged_ids(&new_dir);
    assert_all_logged(&acked, &new_dir, "the new master");
    let never_replicated: HashSet<&String> = stopped_phase
        .iter()
        .filter(|id| !on_new.contains(*id))
        .collect();
    assert!(
        !never_replicated.is_empty(),
        "the stopped slave got every unacknowledged send; nothing to truncate"
    );

    // The old master returns as a slave: truncates by epoch, then catches up.
    cluster.restart_broker(&old).await;
    let (master_again, _) = wait_for_full_in_sync_set(&cluster, GROUP, first_epoch).await;
    assert_eq!(master_again, new, "the returning member does not take over");
    wait_until(
        Duration::from_secs(30),
        "the old master to hold the new master's log",
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
    assert_all_logged(&acked, &old_dir, "the returning member");

    let log = cluster.broker_log(&old);
    assert!(
        log.contains("found_by=\"epoch\"") || log.contains("found_by=epoch"),
        "{log}"
    );
    assert!(!log.contains("epoch history disagreed"), "{log}");
    let dropped = dropped_ids(&log);
    let dropped_set: HashSet<&String> = dropped.iter().collect();
    assert_eq!(
        dropped_set, never_replicated,
        "exactly the sends the new master never got were dropped"
    );
    for id in &dropped {
        assert!(
            !acked.contains(id),
            "an acknowledged message was dropped: {id}"
        );
    }
    assert_eq!(
        std::fs::read(old_dir.join("epochs")).unwrap(),
        std::fs::read(new_dir.join("epochs")).unwrap(),
        "the returning member holds the new master's epoch history"
    );

    // Every acknowledged message is served by the new master.
    let mut served = HashSet::new();
    for q in 0..QUEUES {
        for (id, _, _) in rpc::queue_contents(&new_addr, TOPIC, q).await {
            served.insert(id);
        }
    }
    let missing: Vec<_> = acked.iter().filter(|id| !served.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not served: {missing:?}"
    );
    eprintln!(
        "failover_rejoin: {} acknowledged and served; the returning member dropped {} \
         unacknowledged records",
        acked.len(),
        dropped.len()
    );
}

//! Log lines that alarmed without cause, checked in the logs of real processes: a controller
//! restarting on its own data, a broker stopping gracefully, and a NameServer of three lost
//! while the controller it is a voter of runs on (one warning, no Raft errors).

use apogee_tests::failover::{member, wait_for_full_in_sync_set};
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use std::time::Duration;

/// The lines of `log` that contain every one of `words`.
fn lines_with<'a>(log: &'a str, words: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_on_its_data_rejoins_without_an_error() {
    let mut cluster = Cluster::builder().controller().start().await;
    cluster.kill_nameserver(0);
    cluster.restart_nameserver(0).await;
    let log = wait_until(
        Duration::from_secs(30),
        "the restarted controller to rejoin its group",
        || {
            let log = cluster.nameserver_log(0);
            async move {
                log.contains("controller rejoins its group")
                    .then_some(log.clone())
                    .ok_or("not yet".to_string())
            }
        },
    )
    .await;
    assert!(log.contains("controller group formed"), "{log}");
    assert!(
        lines_with(&log, &["Can not initialize"]).is_empty(),
        "{log}"
    );
    assert!(lines_with(&log, &[" ERROR "]).is_empty(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_gracefully_logs_no_failed_session() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("quiet"))
        .start()
        .await;
    let status = cluster.terminate_broker("quiet");
    assert!(status.success(), "{status}");
    let log = cluster.broker_log("quiet");
    assert!(log.contains("broker shutting down"), "{log}");
    // Its unregistering makes the NameServer end its session: no failure to warn about.
    assert!(lines_with(&log, &["session failed"]).is_empty(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_nameserver_is_one_warning_not_raft_errors() {
    const GROUP: &str = "ql";
    let mut cluster = Cluster::builder()
        .nameservers(3)
        .controller()
        .broker(member(GROUP, 1))
        .broker(member(GROUP, 2))
        .start()
        .await;
    // Leases are granted on every beat, each after a leadership check with the voters.
    wait_for_full_in_sync_set(&cluster, GROUP, 0).await;
    cluster.kill_nameserver(2);
    // Voter 3 is NameServer #2: whoever leads now calls it and logs its loss.
    let survivors = || [cluster.nameserver_log(0), cluster.nameserver_log(1)];
    wait_until(
        Duration::from_secs(30),
        "a survivor to log the lost peer",
        || {
            let logs = survivors();
            async move {
                logs.iter()
                    .any(|l| {
                        !lines_with(l, &["controller peer does not answer", "peer=3"]).is_empty()
                    })
                    .then_some(())
                    .ok_or("not yet".to_string())
            }
        },
    )
    .await;
    // Beats go on (every 500 ms or so, each a leadership check that calls the lost voter)
    // while the leader keeps replicating to it: time for the per-call errors there were.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (i, log) in survivors().iter().enumerate() {
        let errors = lines_with(log, &[" ERROR ", "openraft"]);
        assert!(errors.is_empty(), "NameServer #{i}: {errors:#?}");
        let warned = lines_with(log, &["controller peer does not answer", "peer=3"]);
        assert!(warned.len() <= 1, "NameServer #{i}: {warned:#?}");
        let per_attempt = lines_with(log, &["error replication to target="]);
        assert!(per_attempt.is_empty(), "NameServer #{i}: {per_attempt:#?}");
    }
}

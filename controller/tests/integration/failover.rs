//! Failover through a real Raft group (a single voter on a temp dir): beats register members
//! and elect a new group's first master at once; only the master gets a lease; when the
//! master stops beating and its session ends, the other member is elected by the background
//! task once a lease + margin passed since the master's last grant.

use apogee_controller::failover::{MemberBeat, SessionEnd};
use apogee_controller::{CommandResult, Controller, ControllerConfig, PeerTrust};
use apogee_proto::cluster::{Assignment, MemberReport};
use apogee_tests::wait_until;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const GROUP: &str = "broker-a";

fn beat(member: u64, report: MemberReport) -> MemberBeat {
    MemberBeat {
        group: GROUP.into(),
        member,
        address: format!("127.0.0.1:{}", 30_000 + member),
        report,
        via: 1,
    }
}

fn report(master_epoch: u64, is_master: bool) -> MemberReport {
    MemberReport {
        master_epoch,
        last_log_epoch: master_epoch,
        log_end: 100,
        priority: 0,
        is_master,
        in_sync: if is_master { vec![1, 2] } else { vec![] },
        in_sync_epoch: 1,
        stepped_down: false,
        // So its replacement waits out the lease even after its session ended (the
        // failover module's unit tests cover a master acknowledging on every in-sync member).
        acks_need_every_in_sync: false,
    }
}

async fn answer(controller: &Controller, beat: MemberBeat) -> Result<Assignment, String> {
    controller
        .on_beat(beat)
        .await
        .ok_or_else(|| "no assignment (not leading?)".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_master_is_replaced_after_its_lease_and_margin() {
    let dir = TempDir::new().unwrap();
    let config = ControllerConfig {
        lease_ms: 300,
        lease_margin_ms: 100,
        member_timeout_ms: 300,
        ..ControllerConfig::single(1, "127.0.0.1:1", dir.path().join("controller"))
    };
    let controller = Controller::start(config, PeerTrust::plain())
        .await
        .expect("start");
    wait_until(
        Duration::from_secs(20),
        "the single voter to lead",
        || async {
            let metrics = controller.metrics();
            metrics
                .is_leader
                .then_some(())
                .ok_or(format!("{metrics:?}"))
        },
    )
    .await;

    // The first beat of a new group registers its member and elects it at once (by the beat
    // itself or the background task, whichever comes first).
    let first = wait_until(Duration::from_secs(10), "member 1 elected", || async {
        let answer = answer(&controller, beat(1, report(0, false))).await?;
        (answer.master_member == 1 && answer.lease_ms == 300)
            .then_some(answer.clone())
            .ok_or(format!("{answer:?}"))
    })
    .await;
    assert_eq!(first.master_epoch, 1);
    assert_eq!(first.master_endpoint, "127.0.0.1:30001");
    assert_eq!(first.controller_leader, 1);
    let slave = answer(&controller, beat(2, report(1, false)))
        .await
        .unwrap();
    assert_eq!((slave.master_member, slave.lease_ms), (1, 0), "{slave:?}");
    // The master reports member 2 in sync: committed, on the epochs it was based on.
    let before_last_grant = Instant::now();
    let master = answer(&controller, beat(1, report(1, true))).await.unwrap();
    assert_eq!(master.in_sync, vec![1, 2], "{master:?}");
    assert_eq!(master.lease_ms, 300);

    // The master stops beating and its session ends; member 2 beats on until it is
    // elected, which must not come before a lease + margin past the last grant (its report
    // does not say it acknowledges only what every in-sync member holds).
    controller
        .member_gone(GROUP, 1, 1, SessionEnd::ClosedByMember)
        .await;
    let elected = wait_until(
        Duration::from_secs(10),
        "member 2 to be elected",
        || async {
            let answer = answer(&controller, beat(2, report(1, false))).await?;
            (answer.master_member == 2 && answer.lease_ms == 300)
                .then_some(answer.clone())
                .ok_or(format!("{answer:?}"))
        },
    )
    .await;
    // The last grant to member 1 came after `before_last_grant`.
    assert!(before_last_grant.elapsed() >= Duration::from_millis(400));
    assert_eq!(elected.master_epoch, 2);
    assert_eq!(elected.in_sync, vec![2]);
    let status = controller.failover_status();
    let group = &status.groups[0];
    let (_, record) = group
        .last_election
        .clone()
        .expect("the election is recorded");
    assert_eq!(
        (
            record.old_master,
            record.master,
            record.master_epoch,
            record.unclean
        ),
        (Some(1), 2, 2, false)
    );
    assert_eq!(group.alive, [2].into());

    // Member 1 is back as a slave and caught up; an operator switches back to it: the
    // planned election waits out the lease of master 2.
    answer(&controller, beat(1, report(2, false)))
        .await
        .unwrap();
    let master_report = MemberReport {
        in_sync_epoch: elected.in_sync_epoch,
        ..report(2, true)
    };
    let before_last_grant = Instant::now();
    let in_sync = answer(&controller, beat(2, master_report)).await.unwrap();
    assert_eq!((in_sync.in_sync, in_sync.lease_ms), (vec![1, 2], 300));
    let switched = controller.elect_named(GROUP, 1).await;
    assert!(before_last_grant.elapsed() >= Duration::from_millis(400));
    assert!(
        matches!(
            switched,
            Ok(CommandResult::Elected {
                master: 1,
                master_epoch: 3,
                ..
            })
        ),
        "{switched:?}"
    );
    let after = answer(&controller, beat(2, report(2, true))).await.unwrap();
    assert_eq!((after.master_member, after.lease_ms), (1, 0));
    controller.shutdown().await;
}

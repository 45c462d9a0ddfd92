//! Unit tests of the controller operations: the candidate of an unnamed planned election,
//! the answers without a controller, and both RPCs over a real single-voter controller.

use super::*;
use apogee_controller::{Controller, ControllerConfig, PeerTrust};
use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest};
use apogee_tests::wait_until;
use std::sync::Arc;
use tonic::Code;

fn member(id: u64, last_epoch: u64, log_end: u64, priority: u32) -> ControllerMemberStatus {
    ControllerMemberStatus {
        member_id: id,
        address: format!("127.0.0.1:{}", 30_000 + id),
        priority,
        last_epoch,
        log_end,
    }
}

/// broker-a: master 1; 2 and 3 in sync (3 has the longer log, 2 the better priority);
/// 4 not in sync with the longest log of all.
fn group() -> ControllerGroupStatus {
    ControllerGroupStatus {
        broker_name: "broker-a".into(),
        members: vec![
            member(1, 5, 300, 0),
            member(2, 5, 100, 1),
            member(3, 5, 200, 255),
            member(4, 5, 900, 0),
        ],
        master: 1,
        master_epoch: 5,
        in_sync: vec![1, 2, 3],
        in_sync_epoch: 7,
    }
}

#[test]
fn the_unnamed_candidate_follows_the_election_order_among_in_sync_members_heard_from() {
    let all = BTreeSet::from([1, 2, 3, 4]);
    assert_eq!(
        choose_other_than_master(&group(), &all),
        Ok(3),
        "log end first"
    );
    let without_3 = BTreeSet::from([1, 2, 4]);
    assert_eq!(choose_other_than_master(&group(), &without_3), Ok(2));
    let mut same_log = group();
    same_log.members[2].log_end = 100;
    assert_eq!(
        choose_other_than_master(&same_log, &all),
        Ok(2),
        "then priority"
    );
    let err = choose_other_than_master(&group(), &BTreeSet::from([1, 4])).unwrap_err();
    assert!(
        err.contains("no in-sync member other than the master 1"),
        "{err}"
    );
}

#[test]
fn a_named_member_is_checked_by_the_controller_rules_before_any_lease_stops() {
    assert_eq!(check_named(&group(), 3), Ok(()));
    let err = check_named(&group(), 4).unwrap_err();
    assert!(err.contains("not in sync"), "{err}");
    let err = check_named(&group(), 1).unwrap_err();
    assert!(err.contains("master already"), "{err}");
    let err = check_named(&group(), 9).unwrap_err();
    assert!(err.contains("not in the group"), "{err}");
}

#[tokio::test]
async fn without_a_controller_both_calls_are_failed_precondition() {
    let registry = Registry::new(Duration::from_secs(120));
    let channels = BrokerChannels::default();
    let admin = ControllerAdmin {
        controller: None,
        registry: &registry,
        channels: &channels,
    };
    let err = admin.status(Default::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("[controller]"), "{}", err.message());
    let err = admin
        .elect(ElectMasterRequest {
            broker_name: "b".into(),
            member: 2,
            here_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

async fn single_voter(dir: &tempfile::TempDir) -> Controller {
    let config = ControllerConfig::single(1, "127.0.0.1:1", dir.path().join("controller"));
    let controller = Controller::start(config, PeerTrust::plain()).await.unwrap();
    wait_until(Duration::from_secs(20), "the single voter to lead", || {
        let metrics = controller.metrics();
        async move {
            if metrics.is_leader {
                Ok(())
            } else {
                Err(format!("{metrics:?}"))
            }
        }
    })
    .await;
    controller
}

/// Registers controller-mode member `id` of broker-a in the NameServer's table.
fn heard_from(registry: &Registry, id: i64) {
    registry
        .register(&RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "broker-a".into(),
            broker_id: id,
            endpoint: format!("127.0.0.1:{}", 30_000 + id),
            role: BrokerRole::Slave as i32,
            controller_mode: true,
            ..Default::default()
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_planned_elections_over_a_single_voter() {
    let dir = tempfile::TempDir::new().unwrap();
    let controller = single_voter(&dir).await;
    let registry = Arc::new(Registry::new(Duration::from_secs(120)));
    let channels = BrokerChannels::default();
    let admin = ControllerAdmin {
        controller: Some(&controller),
        registry: &registry,
        channels: &channels,
    };
    for id in 1..=3 {
        let register = Command::Register {
            group: "broker-a".into(),
            member: id,
            address: format!("127.0.0.1:{}", 30_000 + id),
            priority: 255,
        };
        controller.write(register).await.unwrap();
    }
    let first = Command::Elect {
        group: "broker-a".into(),
        alive: BTreeSet::from([1, 2, 3]),
        reports: vec![],
        allow_unclean: false,
    };
    assert!(matches!(
        controller.write(first).await,
        Ok(CommandResult::Elected { master: 1, .. })
    ));
    let in_sync = Command::ChangeInSync {
        group: "broker-a".into(),
        master: 1,
        master_epoch: 1,
        in_sync_epoch: 1,
        in_sync: BTreeSet::from([1, 2, 3]),
    };
    controller.write(in_sync).await.unwrap();

    let status = admin.status(Default::default()).await.unwrap();
    assert_eq!((status.node_id, status.leader_id), (1, Some(1)));
    assert!(status.is_leader && !status.stale, "{status:?}");
    assert!(status.term >= 1 && status.last_applied_index.is_some());
    let group = &status.groups[0];
    assert_eq!(
        (group.broker_name.as_str(), group.master, group.master_epoch),
        ("broker-a", 1, 1)
    );
    assert_eq!(group.in_sync, [1, 2, 3]);
    assert_eq!(group.members.len(), 3);

    // Unnamed: only member 3 is heard from besides the master.
    heard_from(&registry, 1);
    heard_from(&registry, 3);
    let elected = admin
        .elect(ElectMasterRequest {
            broker_name: "broker-a".into(),
            member: 0,
            here_only: false,
        })
        .await
        .unwrap();
    assert_eq!((elected.master, elected.master_epoch), (3, 2));

    // Named: member 1 is no longer in sync (the new master's set is itself alone).
    let err = admin
        .elect(ElectMasterRequest {
            broker_name: "broker-a".into(),
            member: 1,
            here_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not in sync"), "{}", err.message());
    // Unnamed, with nobody else in sync.
    let err = admin
        .elect(ElectMasterRequest {
            broker_name: "broker-a".into(),
            member: 0,
            here_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = admin
        .elect(ElectMasterRequest {
            broker_name: "broker-x".into(),
            member: 0,
            here_only: false,
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("no broker group broker-x"),
        "{err:?}"
    );
    assert_eq!(err.code(), Code::FailedPrecondition);
    controller.shutdown().await;
}

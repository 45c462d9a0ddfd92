//! The controller as its own process, from a NameServer's side: three controllers on real
//! sockets serving the Raft and ControllerService calls, with a cluster secret, and
//! `RemoteController` clients. A client that knows only a follower follows the leader it
//! names; the leader answers a beat with the assignment and the master's lease, reports its
//! confirmed state and refuses an election of a group it does not know; a client without
//! the secret gets nothing; a client of no live endpoint says so.

use apogee_controller::failover::MemberBeat;
use apogee_controller::state::Refusal;
use apogee_controller::{
    serve, CommandResult, Controller, ControllerConfig, FailoverAuthority, PeerTrust,
    RemoteController,
};
use apogee_proto::cluster::MemberReport;
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_tests::wait_until;
use std::collections::BTreeMap;
use std::time::Duration;
use tempfile::TempDir;

const SETTLE: Duration = Duration::from_secs(30);

fn trust(secret: &str) -> PeerTrust {
    PeerTrust {
        secret: Some(ClusterSecret::new(secret.as_bytes()).unwrap()),
        tls: None,
    }
}

struct Group {
    controllers: BTreeMap<u64, Controller>,
    addresses: BTreeMap<u64, String>,
    _dirs: Vec<TempDir>,
}

async fn start_three(secret: &str) -> Group {
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.insert(id, listener);
    }
    let addresses: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let (mut controllers, mut dirs) = (BTreeMap::new(), Vec::new());
    for (id, listener) in listeners {
        let dir = TempDir::new().unwrap();
        let config = ControllerConfig {
            node_id: id,
            peers: addresses.clone(),
            data_dir: dir.path().join("controller"),
            ..ControllerConfig::default()
        };
        let controller = Controller::start(config, trust(secret)).await.unwrap();
        tokio::spawn(serve(controller.clone(), listener, std::future::pending()));
        controllers.insert(id, controller);
        dirs.push(dir);
    }
    Group {
        controllers,
        addresses,
        _dirs: dirs,
    }
}

async fn leader(group: &Group) -> u64 {
    wait_until(SETTLE, "a controller to lead", || async {
        group
            .controllers
            .iter()
            .find(|(_, c)| c.metrics().is_leader)
            .map(|(id, _)| *id)
            .ok_or("no leader yet".to_string())
    })
    .await
}

fn beat(member: u64) -> MemberBeat {
    MemberBeat {
        group: "broker-a".into(),
        member,
        address: format!("127.0.0.1:{}", 30_000 + member),
        report: MemberReport {
            log_end: 100,
            ..MemberReport::default()
        },
        via: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_follower_reaches_the_leader_and_a_client_without_the_secret_does_not() {
    let secret = "the controllers' cluster secret";
    let group = start_three(secret).await;
    let leader = leader(&group).await;
    let follower = group.addresses.keys().find(|id| **id != leader).unwrap();
    let client = RemoteController::new(vec![group.addresses[follower].clone()], trust(secret));

    // The first beat of a new group elects its member; the answer carries the lease.
    let assignment = wait_until(SETTLE, "member 1 elected through the leader", || async {
        let answer = client.on_beat(beat(1)).await.ok_or("no assignment")?;
        (answer.master_member == 1 && answer.lease_ms > 0)
            .then_some(answer.clone())
            .ok_or(format!("{answer:?}"))
    })
    .await;
    assert_eq!(assignment.controller_leader, leader);
    assert_eq!(assignment.lease_ms, 2000);

    let report = client.report(Duration::from_secs(3)).await;
    assert_eq!(report.read_error, None, "{report:?}");
    assert!(report.is_leader && report.node_id == leader, "{report:?}");
    let state = report.state.group("broker-a").expect("the group is known");
    assert_eq!(state.master, Some(1));

    let refused = client.elect_named("nowhere", 1).await;
    assert_eq!(
        refused,
        Ok(CommandResult::Refused(Refusal::UnknownGroup(
            "nowhere".into()
        )))
    );

    // Without the secret: no assignment, and the status says why.
    let stranger = RemoteController::new(
        group.addresses.values().cloned().collect(),
        trust("not the controllers' secret"),
    );
    assert_eq!(stranger.on_beat(beat(1)).await, None);
    let report = stranger.report(Duration::from_secs(1)).await;
    let error = report.read_error.expect("refused").to_string();
    assert!(
        error.contains("controller service call refused: a cluster proof made with another secret"),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_of_no_live_controller_says_none_answered() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let client = RemoteController::new(vec![address.clone()], PeerTrust::plain());
    assert_eq!(client.on_beat(beat(1)).await, None);
    let report = client.report(Duration::from_millis(200)).await;
    let error = report.read_error.expect("no controller").to_string();
    assert!(
        error.contains("no controller of") && error.contains(&address),
        "{error}"
    );
    let elect = client
        .elect_named("broker-a", 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(elect.contains("no controller of"), "{elect}");
}

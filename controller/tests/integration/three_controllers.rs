//! Three controllers in one process on real sockets (127.0.0.1, free ports): a leader is
//! elected, commands are applied on all three (written through a follower too), the leader
//! is shut down, a new leader is elected and the state is kept.

use apogee_controller::{
    serve, Command, CommandResult, Controller, ControllerConfig, PeerTrust, WriteError,
};
use apogee_tests::wait_until;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;

const SETTLE: Duration = Duration::from_secs(30);

struct Running {
    controller: Controller,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

async fn start_three() -> BTreeMap<u64, Running> {
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(
            id,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let mut running = BTreeMap::new();
    for (id, listener) in listeners {
        let dir = TempDir::new().unwrap();
        let config = ControllerConfig {
            node_id: id,
            peers: peers.clone(),
            data_dir: dir.path().join("controller"),
            ..ControllerConfig::default()
        };
        let controller = Controller::start(config, PeerTrust::plain())
            .await
            .expect("start a controller");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(controller.clone(), listener, async {
            let _ = stopped.await;
        }));
        let server = tokio::spawn(async move {
            server.await.unwrap().expect("serve");
        });
        running.insert(
            id,
            Running {
                controller,
                stop: Some(stop),
                server,
                _dir: dir,
            },
        );
    }
    running
}

/// Waits until every controller in `running` names the same leader, and returns it.
async fn agreed_leader(running: &BTreeMap<u64, Running>, not: Option<u64>) -> u64 {
    wait_until(SETTLE, "the controllers to agree on a leader", || async {
        let leaders: BTreeSet<Option<u64>> = running
            .values()
            .map(|r| r.controller.metrics().leader)
            .collect();
        match leaders.iter().collect::<Vec<_>>()[..] {
            [Some(leader)]
                if Some(*leader) != not && running[leader].controller.metrics().is_leader =>
            {
                Ok(*leader)
            }
            _ => Err(format!("leaders seen: {leaders:?}")),
        }
    })
    .await
}

fn register(member: u64) -> Command {
    Command::Register {
        group: "broker-a".into(),
        member,
        address: format!("127.0.0.1:{}", 20_000 + member),
        priority: 0,
    }
}

/// Waits until every controller in `running` has applied what the leader reads.
async fn all_applied(running: &BTreeMap<u64, Running>, leader: u64) {
    let expected = running[&leader]
        .controller
        .read_state()
        .await
        .expect("read on the leader");
    wait_until(
        SETTLE,
        "every controller to apply the leader's state",
        || async {
            let behind: Vec<u64> = running
                .iter()
                .filter(|(_, r)| r.controller.local_state() != expected)
                .map(|(id, _)| *id)
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(format!("behind: {behind:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_replicate_and_survive_the_leaders_loss() {
    let mut running = start_three().await;
    let leader = agreed_leader(&running, None).await;
    let follower = *running.keys().find(|id| **id != leader).unwrap();

    // Written on the leader and, passed on, through a follower.
    assert_eq!(
        running[&leader].controller.write(register(1)).await,
        Ok(CommandResult::Registered {
            member: 1,
            added: true
        })
    );
    assert_eq!(
        running[&follower].controller.write(register(2)).await,
        Ok(CommandResult::Registered {
            member: 2,
            added: true
        })
    );
    let elected = running[&follower]
        .controller
        .write(Command::Elect {
            group: "broker-a".into(),
            alive: BTreeSet::from([2]),
            reports: vec![],
            allow_unclean: false,
        })
        .await;
    assert_eq!(
        elected,
        Ok(CommandResult::Elected {
            master: 2,
            master_epoch: 1,
            in_sync_epoch: 1,
            unclean: false
        })
    );
    // A follower does not answer a linearizable read; it names the leader.
    let refused = running[&follower]
        .controller
        .read_state()
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains(&format!("leader is {leader}")),
        "{refused}"
    );
    all_applied(&running, leader).await;
    let metrics = running[&leader].controller.metrics();
    assert!(
        metrics.term >= 1 && metrics.last_applied.is_some(),
        "{metrics:?}"
    );

    // The leader goes away: its Raft and its server stop.
    let mut old = running.remove(&leader).unwrap();
    old.controller.shutdown().await;
    old.stop.take().unwrap().send(()).unwrap();
    old.server.await.unwrap();

    let new_leader = agreed_leader(&running, Some(leader)).await;
    let state = running[&new_leader]
        .controller
        .read_state()
        .await
        .expect("read");
    let group = &state.groups["broker-a"];
    assert_eq!(group.master, Some(2));
    assert_eq!(group.master_epoch, 1);
    assert_eq!(group.members.keys().copied().collect::<Vec<_>>(), [1, 2]);

    // And it keeps taking writes, through the remaining follower too.
    let other = *running.keys().find(|id| **id != new_leader).unwrap();
    let changed = running[&other]
        .controller
        .write(Command::ChangeInSync {
            group: "broker-a".into(),
            master: 2,
            master_epoch: 1,
            in_sync_epoch: 1,
            in_sync: BTreeSet::from([1, 2]),
        })
        .await;
    assert_eq!(
        changed,
        Ok(CommandResult::InSyncChanged { in_sync_epoch: 2 })
    );
    all_applied(&running, new_leader).await;

    for r in running.values_mut() {
        r.controller.shutdown().await;
        r.stop.take().unwrap().send(()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_lone_follower_names_no_reachable_leader() {
    // One of three controllers started alone: it never learns a leader, so a write is
    // refused with "not the leader" and no leader named, instead of hanging.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = TempDir::new().unwrap();
    let config = ControllerConfig {
        node_id: 1,
        peers: BTreeMap::from([
            (1, listener.local_addr().unwrap().to_string()),
            (2, "127.0.0.1:1".to_string()),
            (3, "127.0.0.1:2".to_string()),
        ]),
        data_dir: dir.path().to_path_buf(),
        ..ControllerConfig::default()
    };
    let controller = Controller::start(config, PeerTrust::plain()).await.unwrap();
    let result = controller.write(register(1)).await;
    assert_eq!(
        result,
        Err(WriteError::NotLeader {
            leader: None,
            address: None
        })
    );
    controller.shutdown().await;
}

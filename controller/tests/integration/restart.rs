//! A single-voter controller (the `--standalone` shape) keeps its state across a restart on
//! the same data dir: the log and vote on disk bring back what was committed.

use apogee_controller::{serve, Command, CommandResult, Controller, ControllerConfig, PeerTrust};
use apogee_tests::wait_until;
use std::collections::BTreeSet;
use std::time::Duration;
use tempfile::TempDir;

struct Running {
    controller: Controller,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start_single(dir: &TempDir) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let config = ControllerConfig::single(1, &address, dir.path().join("controller"));
    let controller = Controller::start(config, PeerTrust::plain())
        .await
        .expect("start");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(controller.clone(), listener, async {
        let _ = stopped.await;
    }));
    wait_until(
        Duration::from_secs(20),
        "the single voter to lead",
        || async {
            let metrics = controller.metrics();
            if metrics.is_leader {
                Ok(())
            } else {
                Err(format!("{metrics:?}"))
            }
        },
    )
    .await;
    Running {
        controller,
        stop,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_keeps_its_state_across_a_restart() {
    let dir = TempDir::new().unwrap();
    let Running {
        controller,
        stop,
        server,
    } = start_single(&dir).await;
    for member in [1, 2] {
        let registered = controller
            .write(Command::Register {
                group: "broker-a".into(),
                member,
                address: format!("127.0.0.1:{}", 30_000 + member),
                priority: 0,
            })
            .await;
        assert_eq!(
            registered,
            Ok(CommandResult::Registered {
                member,
                added: true
            })
        );
    }
    let elected = controller
        .write(Command::Elect {
            group: "broker-a".into(),
            alive: BTreeSet::from([1, 2]),
            reports: vec![],
            allow_unclean: false,
        })
        .await;
    assert!(
        matches!(
            elected,
            Ok(CommandResult::Elected {
                master: 1,
                master_epoch: 1,
                ..
            })
        ),
        "{elected:?}"
    );
    let before = controller.read_state().await.unwrap();
    let term_before = controller.metrics().term;
    controller.shutdown().await;
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    drop(controller);

    let Running { controller, .. } = start_single(&dir).await;
    let after = wait_until(
        Duration::from_secs(20),
        "the restarted controller's state",
        || async {
            match controller.read_state().await {
                Ok(state) if state == before => Ok(state),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(after.groups["broker-a"].master, Some(1));
    assert!(
        controller.metrics().term >= term_before,
        "the term never goes back"
    );
    // A second election with the master alive is refused: the state is the old one.
    let again = controller
        .write(Command::Elect {
            group: "broker-a".into(),
            alive: BTreeSet::from([1, 2]),
            reports: vec![],
            allow_unclean: false,
        })
        .await;
    assert_eq!(
        again,
        Ok(CommandResult::Refused(
            apogee_controller::Refusal::MasterStillAlive(1)
        ))
    );
    controller.shutdown().await;
}

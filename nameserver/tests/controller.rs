//! The controller embedded in a NameServer (`controller.enabled`, no peers: a single voter,
//! the `--standalone` shape): served on the NameServer's own gRPC port, it leads, applies a
//! command written to it, and keeps it across a restart of the NameServer on the same data
//! dir.

use apogee_controller::{Command, CommandResult, WriteError};
use apogee_nameserver::{serve, NameServerConfig};
use apogee_proto::controller::raft_client::RaftClient;
use apogee_proto::controller::RaftPayload;
use apogee_tests::wait_until;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn start(data_dir: &Path) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut config = NameServerConfig::default();
    config.controller.enabled = true;
    config.controller.data_dir = data_dir.display().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(config, listener.into(), None, async {
            let _ = stopped.await;
        })
        .await
        .expect("the nameserver runs");
    });
    (address, stop, task)
}

/// Writes `command` through the NameServer's port until the controller leads (a write made
/// before its first election is refused as "not the leader").
async fn write(address: &str, command: &Command) -> CommandResult {
    let json = serde_json::to_vec(command).unwrap();
    wait_until(
        Duration::from_secs(20),
        "the embedded controller to apply a write",
        || {
            let json = json.clone();
            async move {
                let mut client = RaftClient::connect(format!("http://{address}"))
                    .await
                    .map_err(|e| e.to_string())?;
                let answer = client
                    .write(RaftPayload { json })
                    .await
                    .map_err(|s| s.to_string())?;
                let result: Result<CommandResult, WriteError> =
                    serde_json::from_slice(&answer.into_inner().json).map_err(|e| e.to_string())?;
                result.map_err(|e| e.to_string())
            }
        },
    )
    .await
}

fn register(member: u64) -> Command {
    Command::Register {
        group: "broker-a".into(),
        member,
        address: "127.0.0.1:10911".into(),
        priority: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_controller_applies_writes_and_keeps_them_across_a_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let data_dir = dir.path().join("controller");
    let (address, stop, task) = start(&data_dir).await;
    assert_eq!(
        write(&address, &register(1)).await,
        CommandResult::Registered {
            member: 1,
            added: true
        }
    );
    stop.send(()).unwrap();
    task.await.unwrap();

    // Restarted on the same data dir: member 1 is known, so registering it again updates it.
    let (address, stop, task) = start(&data_dir).await;
    assert_eq!(
        write(&address, &register(1)).await,
        CommandResult::Registered {
            member: 1,
            added: false
        }
    );
    stop.send(()).unwrap();
    task.await.unwrap();
}

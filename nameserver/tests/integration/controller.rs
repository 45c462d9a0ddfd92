//! The controller embedded in a NameServer (`controller.enabled`, no peers: a single voter,
//! the `--standalone` shape): served on the NameServer's own gRPC port, it leads, applies a
//! command written to it, and keeps it across a restart of the NameServer on the same data
//! dir. Three NameServers with TLS and a cluster secret form a controller group; a Raft call
//! without the cluster proof is refused as a broker's registration without it is.

use crate::common;
use apogee_controller::{Command, CommandResult, WriteError};

use apogee_nameserver::NameServerConfig;
use apogee_proto::cluster::registry_client::RegistryClient;
use apogee_proto::cluster::RegisterBrokerRequest;
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::controller::raft_client::RaftClient;
use apogee_proto::controller::RaftPayload;
use apogee_tests::certs::TestCerts;
use apogee_tests::wait_until;
use common::{serve_on, Running};
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;

async fn start(data_dir: &Path) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NameServerConfig::default();
    config.controller.enabled = true;
    config.controller.data_dir = data_dir.display().to_string();
    serve_on(listener, config)
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
                    .map_err(|e| format!("{e:?}"))?;
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

/// A channel to a NameServer over TLS trusting the test CA.
fn tls_channel(address: &str, certs: &TestCerts) -> tonic::transport::Channel {
    apogee_proto::tls::endpoint(address, Some(&certs.client_tls()))
        .unwrap()
        .connect_lazy()
}

/// A Raft `Write` of `command` over TLS, with the proof of `secret` if given.
async fn secure_write(
    address: &str,
    certs: &TestCerts,
    secret: Option<&ClusterSecret>,
    command: &Command,
) -> Result<Result<CommandResult, WriteError>, tonic::Status> {
    let mut client = RaftClient::new(tls_channel(address, certs));
    let mut request = tonic::Request::new(RaftPayload {
        json: serde_json::to_vec(command).unwrap(),
    });
    if let Some(secret) = secret {
        secret.sign(&mut request);
    }
    let answer = client.write(request).await?;
    Ok(serde_json::from_slice(&answer.into_inner().json).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_with_tls_and_a_cluster_secret_form_a_group_and_refuse_calls_without_the_proof()
{
    let dir = tempfile::TempDir::new().unwrap();
    let certs = TestCerts::create(&dir.path().join("certs"));
    let secret_file = dir.path().join("cluster-secret");
    std::fs::write(&secret_file, "a-cluster-secret-of-32-bytes-abc").unwrap();
    let secret = ClusterSecret::from_file(&secret_file).unwrap();

    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let peers: Vec<String> = (1..)
        .zip(&addresses)
        .map(|(id, a)| format!("{id}={a}"))
        .collect();
    let mut running = Vec::new();
    for (id, listener) in (1..).zip(listeners) {
        let mut config = NameServerConfig::default();
        config.tls.cert_file = certs.server.cert.display().to_string();
        config.tls.key_file = certs.server.key.display().to_string();
        config.tls.ca_file = certs.ca_file.display().to_string();
        config.security.cluster_secret_file = secret_file.display().to_string();
        config.controller.enabled = true;
        config.controller.node_id = id;
        config.controller.peers = peers.clone();
        config.controller.data_dir = dir.path().join(format!("c{id}")).display().to_string();
        running.push(serve_on(listener, config));
    }

    // The group forms and elects a leader over TLS with proofs: the leader applies a write
    // (a follower's Write call answers "not the leader").
    let command = register(1);
    let result = wait_until(
        Duration::from_secs(30),
        "the secured controller group to apply a write",
        || {
            let (addresses, certs, secret, command) = (&addresses, &certs, &secret, &command);
            async move {
                let mut last = String::new();
                for address in addresses {
                    match secure_write(address, certs, Some(secret), command).await {
                        Ok(Ok(result)) => return Ok(result),
                        Ok(Err(e)) => last = e.to_string(),
                        Err(status) => last = status.to_string(),
                    }
                }
                Err(last)
            }
        },
    )
    .await;
    assert_eq!(
        result,
        CommandResult::Registered {
            member: 1,
            added: true
        }
    );

    // A peer without the secret: its Raft calls are refused, with the status a broker
    // without the proof gets for its registration.
    let without = secure_write(&addresses[0], &certs, None, &register(2))
        .await
        .expect_err("a Raft call without the cluster proof is refused");
    let vote = RaftClient::new(tls_channel(&addresses[1], &certs))
        .vote(RaftPayload {
            json: b"{}".to_vec(),
        })
        .await
        .expect_err("a vote without the cluster proof is refused");
    let other = ClusterSecret::new(b"another-cluster-secret-32-bytes!").unwrap();
    let forged = secure_write(&addresses[0], &certs, Some(&other), &register(2))
        .await
        .expect_err("a Raft call with another secret's proof is refused");
    let broker = RegistryClient::new(tls_channel(&addresses[0], &certs))
        .register_broker(RegisterBrokerRequest {
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            endpoint: "127.0.0.1:10911".into(),
            ..Default::default()
        })
        .await
        .expect_err("a broker registration without the cluster proof is refused");
    assert_eq!(broker.code(), tonic::Code::Unauthenticated, "{broker}");
    for refused in [&without, &vote, &forged] {
        assert_eq!(refused.code(), broker.code(), "{refused}");
        assert!(
            refused.message().contains("controller Raft call refused"),
            "{refused}"
        );
    }

    for (_, stop, task) in running {
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}

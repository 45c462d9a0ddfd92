//! Cluster-internal trust with a shared secret (`security.cluster_secret_file`): brokers
//! with it register and replicate; a broker without it cannot register, a forged
//! registration is refused, and a fake slave cannot open the master's replication stream.

use apogee_proto::cluster::replication_client::ReplicationClient;
use apogee_proto::cluster::{
    slave_message, BrokerRole, GetClusterInfoRequest, RegisterBrokerRequest, SlaveHello,
    SlaveMessage, TopicStatusRequest,
};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_tests::{bins, rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

const SECRET: &str = "a-cluster-secret-for-the-tests";
const KEY: &str = "SECURITY__CLUSTER_SECRET_FILE";

fn register_request(name: &str) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster_name: "DefaultCluster".into(),
        broker_name: name.into(),
        broker_id: 0,
        endpoint: "127.0.0.1:1".into(),
        role: BrokerRole::AsyncMaster as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_brokers_with_the_cluster_secret_register_and_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("cluster.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let path = secret_file.display().to_string();
    let cluster = Cluster::builder()
        .nameserver_env(KEY, &path)
        .broker(BrokerSpec::member("trust", 0).env(KEY, &path))
        .broker(BrokerSpec::member("trust", 1).env(KEY, &path))
        .start()
        .await;
    let ns = cluster.ns_addr().to_string();
    let master = cluster.broker_addr("trust-0").to_string();
    let slave = cluster.broker_addr("trust-1").to_string();

    // The members with the secret registered and replicate.
    cluster.create_topic("trust-t", 1).await;
    rpc::send_numbered(&master, "trust-t", 3).await;
    // The slave's queue (its topic config arrives with the replicated state) reaches 3.
    wait_until(
        Duration::from_secs(30),
        "the slave to hold the messages",
        || {
            let slave = slave.clone();
            async move {
                let status = rpc::admin(&slave)
                    .topic_status(TopicStatusRequest {
                        topic: "trust-t".into(),
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                match status.queues.first().map(|q| q.max_offset) {
                    Some(3) => Ok(()),
                    other => Err(format!("the slave's queue ends at {other:?}")),
                }
            }
        },
    )
    .await;

    // A forged registration: no proof, or a proof made with another secret.
    let mut registry = rpc::registry(&ns);
    let refused = registry
        .register_broker(register_request("forged"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let mut forged = tonic::Request::new(register_request("forged"));
    ClusterSecret::new(b"not-the-cluster-secret")
        .unwrap()
        .sign(&mut forged);
    let refused = registry.register_broker(forged).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("another secret"), "{refused:?}");
    // The real secret works (this is what the brokers send).
    let mut genuine = tonic::Request::new(register_request("genuine"));
    ClusterSecret::new(SECRET.as_bytes())
        .unwrap()
        .sign(&mut genuine);
    registry.register_broker(genuine).await.expect("registered");

    // A broker process without the secret is refused and never appears in the cluster.
    let log_path = dir.path().join("intruder.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut intruder = std::process::Command::new(bins::bin(bins::BROKER))
        .env_remove("RUST_LOG")
        .env("APOGEE_BROKER_HTTP_LISTEN", "127.0.0.1:0")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--nameserver",
            &ns,
            "--broker-name",
            "intruder",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("intruder"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the NameServer to refuse the intruder",
        || {
            let text = cluster.nameserver_log(0);
            async move {
                if text.contains("refused broker registration") {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }
        },
    )
    .await;
    let info = registry
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.groups.iter().all(|g| g.broker_name != "intruder"),
        "{info:?}"
    );
    let _ = intruder.kill();
    let _ = intruder.wait();

    // A fake slave: the master refuses to open the replication stream without the proof.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(SlaveMessage {
        kind: Some(slave_message::Kind::Hello(SlaveHello {
            cluster_name: "DefaultCluster".into(),
            broker_name: "trust".into(),
            broker_id: 7,
            endpoint: "127.0.0.1:2".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let refused = ReplicationClient::new(rpc::channel(&master))
        .replicate(ReceiverStream::new(rx))
        .await
        .expect_err("the stream is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        cluster
            .broker_log("trust-0")
            .contains("refused replication stream"),
        "the master logs the refusal"
    );
    assert!(
        !cluster.nameserver_log(0).contains(SECRET),
        "the secret is never logged"
    );
}

//! TLS on every listener (`[tls]`), with certificates of a test CA made per cluster:
//! apogee-client and RocketMQ's official client send and receive over TLS through a
//! NameServer, a master and a slave that talk TLS among themselves; plain text and TLS do
//! not mix; the CLI lists the cluster with `--tls`; a certificate replaced on disk is served
//! to new connections after SIGHUP (or, with a short interval, by itself) while a bad one is
//! refused and the old kept; with `tls.cluster_mtls` a broker without a client certificate
//! cannot register while clients without one still send.

use crate::official_roundtrip;
use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::cluster::replication_client::ReplicationClient;
use apogee_proto::cluster::GetClusterInfoRequest;
use apogee_proto::v2;
use apogee_tests::certs::{https_get, served_certificate};
use apogee_tests::process::ManagedProcess;
use apogee_tests::{bins, cli, http, rpc, wait_until, BrokerSpec, Cluster};
use std::collections::BTreeSet;
use std::time::Duration;

fn subscribe(topic: &str) -> Vec<(String, FilterExpression)> {
    vec![(topic.to_string(), FilterExpression::default())]
}

/// Receives (and acks) until `count` distinct message ids came, or fails after 60 s.
async fn receive_all(consumer: &SimpleConsumer, topic: &str, count: usize) -> BTreeSet<String> {
    let received = std::cell::RefCell::new(BTreeSet::new());
    wait_until(Duration::from_secs(60), "every message over TLS", || {
        let received = &received;
        async move {
            let batch = consumer
                .receive(topic, 32, Duration::from_secs(30), Duration::from_secs(2))
                .await
                .map_err(|e| format!("receive: {e}"))?;
            for m in batch {
                consumer.ack(&m).await.map_err(|e| format!("ack: {e}"))?;
                received.borrow_mut().insert(m.message_id.clone());
            }
            match received.borrow().len() {
                n if n >= count => Ok(()),
                n => Err(format!("{n} of {count}")),
            }
        }
    })
    .await;
    received.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apogee_client_sends_and_receives_over_tls_and_the_slave_replicates_over_tls() {
    let cluster = Cluster::builder()
        .tls()
        .broker(BrokerSpec::member("tls-g", 0))
        .broker(BrokerSpec::member("tls-g", 1))
        .start()
        .await;
    // The harness reached both brokers over TLS, and both registered over TLS.
    cluster.create_topic("tls-t", 2).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer over TLS");
    let mut sent = BTreeSet::new();
    for i in 0..20 {
        let receipt = producer
            .send(Message::new("tls-t", format!("secret-{i}")))
            .await
            .expect("send over TLS");
        sent.insert(receipt.message_id);
    }
    let consumer =
        SimpleConsumer::connect(cluster.client_config(), "tls-group", subscribe("tls-t"))
            .await
            .expect("consumer over TLS");
    assert_eq!(receive_all(&consumer, "tls-t", sent.len()).await, sent);

    // The slave streamed the master's log over TLS: its queues hold every message.
    let tls = cluster.client_tls().expect("a TLS cluster");
    let slave = cluster.broker_addr("tls-g-1").to_string();
    wait_until(
        Duration::from_secs(30),
        "the slave to hold every message",
        || {
            let (slave, tls, sent) = (slave.clone(), tls.clone(), sent.clone());
            async move {
                let mut client = rpc::messaging_with(&slave, Some(&tls));
                let mut held = BTreeSet::new();
                for queue in 0..2 {
                    for m in rpc::pull_queue(&mut client, "verify-group", "tls-t", queue).await {
                        held.insert(rpc::id_of(&m));
                    }
                }
                if held == sent {
                    Ok(())
                } else {
                    Err(format!("the slave holds {} of {}", held.len(), sent.len()))
                }
            }
        },
    )
    .await;
    assert!(
        !cluster
            .broker_log("tls-g-1")
            .contains("replication from the master stopped"),
        "the slave's replication over TLS never failed:\n{}",
        cluster.broker_log("tls-g-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_rocketmq_client_sends_and_receives_over_tls() {
    use rocketmq::conf::ClientOption;
    let cluster = Cluster::builder()
        .tls()
        .broker(BrokerSpec::new("tls-official"))
        .start()
        .await;
    cluster.create_topic("tls-official-t", 2).await;
    // The official client (rocketmq 5.0.0) has no TLS settings of its own: with TLS on it
    // dials https:// endpoints through tonic 0.9, which trusts the platform's roots as
    // rustls-native-certs finds them, and rustls-native-certs reads SSL_CERT_FILE first.
    // So the test CA is made a "platform root" for this process. Nothing else in the test
    // process reads platform roots (the harness and apogee-client name their CA).
    let ca = cluster.certs().expect("a TLS cluster").ca_file.clone();
    std::env::set_var("SSL_CERT_FILE", &ca);
    let mut option = ClientOption::default();
    option.set_access_url(cluster.ns_addr());
    option.set_enable_tls(true);
    let (sent, received) = official_roundtrip::send_and_receive(
        option,
        "tls-official-t",
        "tls-official-group",
        "tls",
        5,
    )
    .await;
    assert_eq!(received, sent);
}

/// A Heartbeat to `addr`: whether it was answered OK.
async fn heartbeat(
    client: &mut v2::messaging_service_client::MessagingServiceClient<tonic::transport::Channel>,
) -> Result<(), String> {
    let req = v2::HeartbeatRequest {
        group: None,
        client_type: v2::ClientType::Producer as i32,
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), client.heartbeat(req))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    match rpc::code(answer.get_ref().status.as_ref()) {
        c if c == v2::Code::Ok as i32 => Ok(()),
        c => Err(rpc::code_name(c)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_and_tls_do_not_mix_on_grpc_or_http() {
    let secure = Cluster::builder()
        .tls()
        .broker(BrokerSpec::new("tls-mix"))
        .start()
        .await;
    let tls = secure.client_tls().expect("a TLS cluster");
    let ca = &secure.certs().expect("a TLS cluster").ca_file;
    for addr in [secure.ns_addr(), secure.broker_addr("tls-mix")] {
        heartbeat(&mut rpc::messaging_with(addr, Some(&tls)))
            .await
            .unwrap_or_else(|e| panic!("{addr} over TLS: {e}"));
        let refused = heartbeat(&mut rpc::messaging(addr)).await;
        assert!(refused.is_err(), "a plain-text client was served by {addr}");
    }
    // The operations endpoint serves HTTPS only.
    let ops = secure.broker_http_addr("tls-mix").to_string();
    let (status, body) = https_get(&ops, "/healthz", ca)
        .await
        .expect("HTTPS /healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let plain = tokio::spawn(async move { http::get(&ops, "/healthz").await });
    assert!(
        plain.await.is_err(),
        "plain HTTP got an answer from a TLS operations endpoint"
    );

    // And a TLS client gets nowhere with a plain-text server.
    let plain_cluster = Cluster::builder().start().await;
    let mut tls_to_plain = rpc::messaging_with(plain_cluster.ns_addr(), Some(&tls));
    assert!(
        heartbeat(&mut tls_to_plain).await.is_err(),
        "a TLS client was served by a plain-text server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_the_cluster_over_tls() {
    let cluster = Cluster::builder()
        .tls()
        .broker(BrokerSpec::new("tls-cli"))
        .start()
        .await;
    // `cluster.cli` passes --tls --tls-ca-file with the cluster's CA.
    let listed = cluster.cli(&["-o", "json", "cluster", "list"]).success();
    assert!(listed.stdout.contains("tls-cli"), "{listed}");
    // The broker status behind `cluster list` was fetched from the broker over TLS too.
    assert!(!listed.stdout.contains("cannot reach"), "{listed}");
    // Without the flags the CLI speaks plain text, which the NameServer does not serve.
    let plain = cli::run(&["--nameserver", cluster.ns_addr(), "cluster", "list"]);
    assert_ne!(plain.code, 0, "{plain}");
    // The environment variables work like the flags.
    let ca = cluster
        .certs()
        .expect("a TLS cluster")
        .ca_file
        .display()
        .to_string();
    let out = std::process::Command::new(bins::bin(bins::CLI))
        .args(["--nameserver", cluster.ns_addr(), "topic", "list"])
        .env("APOGEE_TLS_CA_FILE", &ca)
        .output()
        .expect("running the CLI");
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_after_sighup_and_a_bad_one_is_refused() {
    // The NameServer reloads only on SIGHUP (an hour between file checks); the broker checks
    // its files every second.
    let mut cluster = Cluster::builder()
        .tls()
        .nameserver_env("TLS__RELOAD_INTERVAL_SECS", "3600")
        .broker(BrokerSpec::new("tls-reload").env("TLS__RELOAD_INTERVAL_SECS", "1"))
        .start()
        .await;
    let certs = cluster.certs().expect("a TLS cluster");
    let ca = certs.ca_file.clone();
    let (cert_file, key_file) = (certs.server.cert.clone(), certs.server.key.clone());
    let original = certs.server.der.clone();
    let renewed = certs.issue_server("renewed");
    let ns = cluster.ns_addr().to_string();
    let broker = cluster.broker_addr("tls-reload").to_string();
    assert_eq!(served_certificate(&ns, &ca).await.unwrap(), original);
    assert_eq!(served_certificate(&broker, &ca).await.unwrap(), original);

    // A broken pair first: a certificate file that holds no certificate.
    std::fs::write(&cert_file, "not a certificate\n").unwrap();
    cluster.hangup_nameserver(0);
    wait_until(
        Duration::from_secs(30),
        "both servers to refuse the bad pair",
        || {
            let (ns_log, broker_log) =
                (cluster.nameserver_log(0), cluster.broker_log("tls-reload"));
            async move {
                match (
                    ns_log.contains("TLS reload (SIGHUP) failed"),
                    broker_log.contains("TLS reload (files changed) failed"),
                ) {
                    (true, true) => Ok(()),
                    seen => Err(format!("(nameserver, broker) logged the failure: {seen:?}")),
                }
            }
        },
    )
    .await;
    assert_eq!(served_certificate(&ns, &ca).await.unwrap(), original);
    assert_eq!(served_certificate(&broker, &ca).await.unwrap(), original);

    // The renewed pair: the broker picks it up by itself, the NameServer on SIGHUP.
    std::fs::copy(&renewed.key, &key_file).unwrap();
    std::fs::copy(&renewed.cert, &cert_file).unwrap();
    wait_until(
        Duration::from_secs(30),
        "the broker to serve the renewed certificate",
        || {
            let (broker, ca) = (broker.clone(), ca.clone());
            let want = renewed.der.clone();
            async move {
                match served_certificate(&broker, &ca).await? == want {
                    true => Ok(()),
                    false => Err("still the original".to_string()),
                }
            }
        },
    )
    .await;
    assert_eq!(
        served_certificate(&ns, &ca).await.unwrap(),
        original,
        "the NameServer reloads on SIGHUP only"
    );
    cluster.hangup_nameserver(0);
    wait_until(
        Duration::from_secs(30),
        "the NameServer to serve the renewed certificate",
        || {
            let (ns, ca) = (ns.clone(), ca.clone());
            let want = renewed.der.clone();
            async move {
                match served_certificate(&ns, &ca).await? == want {
                    true => Ok(()),
                    false => Err("still the original".to_string()),
                }
            }
        },
    )
    .await;
    // The broker, registered over a connection made before, goes on heartbeating; new
    // clients work with the renewed certificate.
    cluster.create_topic("tls-reload-t", 1).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    producer
        .send(Message::new("tls-reload-t", "after the reload"))
        .await
        .expect("a send after the reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cluster_mtls_a_broker_without_a_client_certificate_cannot_register() {
    let cluster = Cluster::builder()
        .cluster_mtls()
        .broker(BrokerSpec::member("mtls-g", 0))
        .broker(BrokerSpec::member("mtls-g", 1))
        .start()
        .await;
    // The members presented their certificates: both registered, and the slave replicates.
    // A client without a certificate still sends (client-facing calls stay open).
    cluster.create_topic("mtls-t", 1).await;
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("a producer without a certificate");
    let sent = producer
        .send(Message::new("mtls-t", "open to clients"))
        .await
        .expect("a send without a client certificate");
    let tls = cluster.client_tls().expect("a TLS cluster");
    let slave = cluster.broker_addr("mtls-g-1").to_string();
    wait_until(
        Duration::from_secs(30),
        "the slave to hold the message",
        || {
            let (slave, tls, id) = (slave.clone(), tls.clone(), sent.message_id.clone());
            async move {
                let mut client = rpc::messaging_with(&slave, Some(&tls));
                let held = rpc::pull_queue(&mut client, "verify-group", "mtls-t", 0).await;
                match held.iter().any(|m| rpc::id_of(m) == id) {
                    true => Ok(()),
                    false => Err(format!("the slave holds {} messages", held.len())),
                }
            }
        },
    )
    .await;

    // A fake slave over TLS without a certificate: the master refuses the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(tx);
    let master = cluster.broker_addr("mtls-g-0").to_string();
    let refused = ReplicationClient::new(rpc::channel_with(&master, Some(&tls)))
        .replicate(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect_err("the stream is refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        cluster.broker_log("mtls-g-0").contains(
            "refused /apogee.cluster.v1.Replication/Replicate: no verified client certificate"
        ),
        "the master logs the refusal"
    );

    // A broker that trusts the CA but presents no certificate is refused (it keeps trying).
    let certs = cluster.certs().expect("a TLS cluster");
    let dir = cluster.dir().join("mtls-intruder");
    std::fs::create_dir_all(&dir).unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let _intruder = ManagedProcess::spawn(
        "broker mtls-intruder",
        bins::bin(bins::BROKER),
        ["--listen", "127.0.0.1:0", "--nameserver", cluster.ns_addr()]
            .into_iter()
            .chain(["--broker-name", "mtls-intruder", "--data-dir"])
            .map(str::to_string)
            .chain([path(&dir.join("data"))])
            .collect(),
        vec![
            ("APOGEE_BROKER_HTTP_LISTEN".into(), String::new()),
            (
                "APOGEE_BROKER_TLS__CERT_FILE".into(),
                path(&certs.server.cert),
            ),
            (
                "APOGEE_BROKER_TLS__KEY_FILE".into(),
                path(&certs.server.key),
            ),
            ("APOGEE_BROKER_TLS__CA_FILE".into(), path(&certs.ca_file)),
        ],
        dir.join("broker.log"),
    );
    wait_until(
        Duration::from_secs(30),
        "the NameServer to refuse the intruder",
        || {
            let text = cluster.nameserver_log(0);
            async move {
                if text.contains(
                    "refused /apogee.cluster.v1.Registry/RegisterBroker: no verified client \
                     certificate",
                ) {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }
        },
    )
    .await;
    let info = rpc::registry_with(cluster.ns_addr(), Some(&tls))
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .expect("cluster info without a certificate")
        .into_inner();
    let names: Vec<&str> = info.groups.iter().map(|g| g.broker_name.as_str()).collect();
    assert_eq!(names, ["mtls-g"], "{info:?}");
}

#[test]
fn check_config_loads_the_tls_files_and_names_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = apogee_tests::certs::TestCerts::create(dir.path());
    let check = |bin: &str, server: &str, cert: &std::path::Path| {
        std::process::Command::new(bins::bin(bin))
            .arg("--check-config")
            .env(format!("APOGEE_{server}_TLS__CERT_FILE"), cert)
            .env(format!("APOGEE_{server}_TLS__KEY_FILE"), &certs.server.key)
            .env(format!("APOGEE_{server}_TLS__CA_FILE"), &certs.ca_file)
            .output()
            .expect("running --check-config")
    };
    for (bin, server) in [(bins::NAMESERVER, "NAMESERVER"), (bins::BROKER, "BROKER")] {
        let good = check(bin, server, &certs.server.cert);
        assert!(good.status.success(), "{bin}: {good:?}");
        assert!(
            String::from_utf8_lossy(&good.stdout).contains("[tls]"),
            "{bin} prints its [tls] section: {good:?}"
        );
        // The key of the server certificate does not belong to the client certificate.
        let bad = check(bin, server, &certs.client.cert);
        assert_eq!(bad.status.code(), Some(2), "{bin}: {bad:?}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains("is not the private key of the certificate in tls.cert_file")
                && stderr.contains("client.pem"),
            "{bin}: {stderr}"
        );
    }
}

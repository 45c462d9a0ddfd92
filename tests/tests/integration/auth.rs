//! Authentication (`security.authentication`): every call carries the `MQv2-HMAC-SHA1`
//! signature the official clients send, or the cluster proof of another server. Correct
//! credentials work from the official client, apogee-client and the CLI, across a NameServer,
//! a master and a slave; a wrong secret, an unknown key, a missing header and a stale time are
//! refused with UNAUTHORIZED and store nothing; streams (Telemetry, receive) and the Admin
//! service are refused the same way; a time written with a zone offset is accepted.

use crate::official_roundtrip;
use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::auth::Credentials;
use apogee_proto::cluster::{GetClusterInfoRequest, TopicStatusRequest};
use apogee_proto::v2;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;

/// `message` as a request with exactly these `authorization` and `x-mq-date-time` headers.
fn with_headers<T>(message: T, authorization: Option<&str>, date_time: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let md = request.metadata_mut();
    md.insert("x-mq-date-time", date_time.parse().unwrap());
    if let Some(a) = authorization {
        md.insert("authorization", a.parse().unwrap());
    }
    request
}

/// Now, as the official Rust client writes it (RFC 3339), shifted by `offset_secs`.
fn date_time(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339()
}

fn send_request(topic: &str, body: &str) -> v2::SendMessageRequest {
    v2::SendMessageRequest {
        messages: vec![rpc::message(topic, 0, body.as_bytes().to_vec())],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_apogee_client_and_cli_with_credentials_work_and_the_slave_replicates() {
    use rocketmq::conf::ClientOption;
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::member("auth-g", 0))
        .broker(BrokerSpec::member("auth-g", 1))
        .start()
        .await;
    // The NameServer fanned CreateTopic out to the master with its cluster proof.
    cluster.create_topic("auth-t", 2).await;

    // The official client, configured with an access key, signs every call.
    let mut option = ClientOption::default();
    option.set_access_url(cluster.ns_addr());
    option.set_access_key(rpc::ADMIN_ACCESS_KEY);
    option.set_secret_key(rpc::ADMIN_SECRET_KEY);
    let (sent, received) =
        official_roundtrip::send_and_receive(option, "auth-t", "auth-official-group", "signed", 4)
            .await;
    assert_eq!(received, sent);

    // apogee-client with the same credentials.
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("apogee producer with credentials");
    producer
        .send(Message::new("auth-t", "from-apogee-client"))
        .await
        .expect("apogee-client signed send");
    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        "auth-apogee-group",
        vec![("auth-t".to_string(), FilterExpression::default())],
    )
    .await
    .expect("apogee consumer with credentials");
    let got = std::cell::RefCell::new(0usize);
    wait_until(
        Duration::from_secs(60),
        "apogee-client to receive all 5",
        || {
            let (consumer, got) = (&consumer, &got);
            async move {
                let batch = consumer
                    .receive(
                        "auth-t",
                        32,
                        Duration::from_secs(30),
                        Duration::from_secs(2),
                    )
                    .await
                    .map_err(|e| format!("receive: {e}"))?;
                *got.borrow_mut() += batch.len();
                for m in batch {
                    consumer.ack(&m).await.map_err(|e| format!("ack: {e}"))?;
                }
                match *got.borrow() {
                    n if n >= 5 => Ok(()),
                    n => Err(format!("{n} of 5")),
                }
            }
        },
    )
    .await;

    // The CLI signs with --access-key/--secret-key (the harness adds them), and without them
    // is refused, naming the reason.
    let out = cluster
        .cli(&["-o", "json", "topic", "status", "auth-t"])
        .success();
    let rows = out.json();
    let rows = rows.as_array().expect("a JSON array of queues");
    assert_eq!(rows.len(), 2, "{out:?}");
    let total: i64 = rows.iter().filter_map(|q| q["max_offset"].as_i64()).sum();
    assert_eq!(total, 5, "{out:?}");
    let refused = apogee_tests::cli::run(&["--nameserver", cluster.ns_addr(), "topic", "list"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.to_lowercase().contains("unauthorized")
            || refused.stderr.to_lowercase().contains("unauthenticated"),
        "{refused:?}"
    );

    // The slave registered and streams the master's log with the cluster proof.
    let slave = cluster.broker_addr("auth-g-1").to_string();
    wait_until(Duration::from_secs(30), "the slave to hold all 5", || {
        let slave = slave.clone();
        async move {
            let status = rpc::admin(&slave)
                .topic_status(rpc::signed(TopicStatusRequest {
                    topic: "auth-t".into(),
                }))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let held: u64 = status.queues.iter().map(|q| q.max_offset).sum();
            if held == 5 {
                Ok(())
            } else {
                Err(format!("the slave holds {held}"))
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_missing_and_stale_credentials_are_unauthorized_and_store_nothing() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new("auth-refuse"))
        .start()
        .await;
    cluster.create_topic("guarded", 1).await;
    let broker = cluster.broker_addr("auth-refuse").to_string();
    let admin = rpc::admin_credentials();
    let wrong_secret = Credentials::new(rpc::ADMIN_ACCESS_KEY, "a-guess").unwrap();
    let unknown_key = Credentials::new("nobody", rpc::ADMIN_SECRET_KEY).unwrap();
    let now = date_time(0);
    let stale = date_time(-3600);
    let cases: [(&str, Option<String>, &str); 5] = [
        (
            "a wrong secret",
            Some(wrong_secret.authorization(&now)),
            &now,
        ),
        (
            "an unknown access key",
            Some(unknown_key.authorization(&now)),
            &now,
        ),
        ("no authorization header", None, &now),
        (
            "a date-time an hour old",
            Some(admin.authorization(&stale)),
            &stale,
        ),
        (
            "a malformed header",
            Some("MQv2-HMAC-SHA1 garbage".into()),
            &now,
        ),
    ];
    let mut client = rpc::messaging(&broker);
    for (what, authorization, at) in &cases {
        let answer = client
            .send_message(with_headers(
                send_request("guarded", what),
                authorization.as_deref(),
                at,
            ))
            .await
            .expect("a refused unary call is answered with a status in its body")
            .into_inner();
        assert_eq!(
            rpc::code(answer.status.as_ref()),
            v2::Code::Unauthorized as i32,
            "{what}: {answer:?}"
        );
        assert!(answer.entries.is_empty(), "{what}: {answer:?}");
    }
    // The same through the NameServer's access point.
    let mut ns = rpc::messaging(cluster.ns_addr());
    let route = ns
        .query_route(with_headers(
            v2::QueryRouteRequest {
                topic: rpc::resource("guarded"),
                ..Default::default()
            },
            Some(&wrong_secret.authorization(&now)),
            &now,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(
        rpc::code(route.status.as_ref()),
        v2::Code::Unauthorized as i32,
        "{route:?}"
    );

    // Streams and the cluster services get the gRPC status UNAUTHENTICATED.
    let receive = client
        .receive_message(with_headers(
            v2::ReceiveMessageRequest {
                group: rpc::resource("g"),
                batch_size: 1,
                ..Default::default()
            },
            None,
            &now,
        ))
        .await;
    assert_eq!(
        receive.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );
    let (_tx, rx) = tokio::sync::mpsc::channel::<v2::TelemetryCommand>(1);
    let telemetry = ns
        .telemetry(with_headers(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            Some(&unknown_key.authorization(&now)),
            &now,
        ))
        .await;
    assert_eq!(
        telemetry.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );
    let info = rpc::registry(cluster.ns_addr())
        .get_cluster_info(GetClusterInfoRequest {})
        .await;
    assert_eq!(
        info.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );

    // Nothing refused was stored: the first accepted message takes offset 0. Its time is
    // written with a zone offset, as clients that format local time do.
    let local = (chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600).unwrap()))
    .to_rfc3339();
    let answer = client
        .send_message(with_headers(
            send_request("guarded", "accepted"),
            Some(&admin.authorization(&local)),
            &local,
        ))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(
        rpc::code(answer.status.as_ref()),
        v2::Code::Ok as i32,
        "{answer:?}"
    );
    assert_eq!(answer.entries.len(), 1);
    assert_eq!(answer.entries[0].offset, 0, "{answer:?}");
    let log = cluster.broker_log("auth-refuse");
    assert!(log.contains("refused"), "refusals are logged:\n{log}");
    assert!(
        !log.contains(rpc::ADMIN_SECRET_KEY) && !log.contains("a-guess"),
        "no secret is ever logged:\n{log}"
    );
}

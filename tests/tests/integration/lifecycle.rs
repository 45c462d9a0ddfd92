//! Graceful shutdown: a broker SIGTERMed while it takes sends finishes what it accepted,
//! loses no acknowledged message, unregisters (it is gone from the routes the moment the
//! process is gone) and exits 0; its gRPC health turns NOT_SERVING before it closes.

use apogee_proto::cluster::GetRouteRequest;
use apogee_proto::v2;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends batches of 4 to `topic` on `addr` until a send fails; records the acknowledged ids.
async fn send_until_refused(addr: String, topic: &'static str, acked: Arc<Mutex<Vec<String>>>) {
    let mut client = rpc::messaging(&addr);
    for round in 0u64.. {
        let messages: Vec<v2::Message> = (0..4)
            .map(|i| rpc::message(topic, (round % 2) as i32, format!("r{round}-{i}")))
            .collect();
        let ids: Vec<String> = messages.iter().map(rpc::id_of).collect();
        let request = v2::SendMessageRequest { messages };
        let answer = tokio::time::timeout(Duration::from_secs(10), client.send_message(request));
        match answer.await {
            Ok(Ok(r)) if rpc::code(r.get_ref().status.as_ref()) == v2::Code::Ok as i32 => {
                acked.lock().unwrap().extend(ids)
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_acknowledged_message_and_leaves_the_routes_at_once() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    cluster.create_topic("term-t", 2).await;
    let addr = cluster.broker_addr("broker-a").to_string();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|_| tokio::spawn(send_until_refused(addr.clone(), "term-t", acked.clone())))
        .collect();
    wait_until(Duration::from_secs(20), "sends to be acknowledged", || {
        let n = acked.lock().unwrap().len();
        async move {
            if n >= 400 {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        }
    })
    .await;

    let status = cluster.terminate_broker("broker-a");
    assert!(status.success(), "exit status {status} after SIGTERM");
    // At once: the NameServer's route no longer has broker-a (it unregistered before exiting).
    let route = rpc::registry(cluster.ns_addr())
        .get_route(GetRouteRequest {
            topic: "term-t".into(),
        })
        .await
        .expect("GetRoute")
        .into_inner();
    let groups: Vec<String> = route
        .placements
        .iter()
        .filter_map(|p| p.group.as_ref().map(|g| g.broker_name.clone()))
        .collect();
    assert_eq!(groups, ["broker-b"], "{route:?}");
    for s in senders {
        tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("the senders stop once the broker is gone")
            .unwrap();
    }
    let log = cluster.broker_log("broker-a");
    assert!(log.contains("broker stopped"), "{log}");
    assert!(!log.contains("unregister failed"), "{log}");

    // Every acknowledged message is there after a restart.
    cluster.restart_broker("broker-a").await;
    let mut stored = HashSet::new();
    for queue in 0..2 {
        stored.extend(
            rpc::queue_contents(&addr, "term-t", queue)
                .await
                .into_iter()
                .map(|(id, _, _)| id),
        );
    }
    let acked = acked.lock().unwrap().clone();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_start_up_facts() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("LOG_FORMAT", "json"))
        .start()
        .await;
    let log = cluster.broker_log("broker-a");
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let started = events
        .iter()
        .find(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening on"))
        })
        .unwrap_or_else(|| panic!("no start-up line in:\n{log}"));
    assert_eq!(started["level"], "INFO", "{started}");
    let message = started["fields"]["message"].as_str().unwrap();
    for fact in [
        "broker-a",
        "gRPC",
        "metrics and health on http://127.0.0.1:",
        "data in",
        "nameservers",
    ] {
        assert!(message.contains(fact), "{fact} missing: {message}");
    }
    assert!(started["timestamp"].is_string(), "{started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reports_not_serving_on_health_before_the_broker_closes() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let mut health = HealthClient::new(rpc::channel(cluster.broker_addr("broker-a")));
    let mut watches = Vec::new();
    for service in ["", "apache.rocketmq.v2.MessagingService"] {
        let mut stream = health
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("Watch")
            .into_inner();
        let first = stream.message().await.unwrap().expect("a first status");
        assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
        // Each watch ends (and so lets the drain finish) once it has seen NOT_SERVING.
        watches.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Some(update)) = stream.message().await {
                seen.push(update.status());
                if update.status() == ServingStatus::NotServing {
                    break;
                }
            }
            (service, seen)
        }));
    }

    let status = cluster.terminate_broker("broker-a");
    assert!(status.success(), "exit status {status} after SIGTERM");
    for watch in watches {
        let (service, seen) = watch.await.unwrap();
        assert_eq!(seen, [ServingStatus::NotServing], "{service:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_with_a_connected_slave_stops_on_sigterm() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::member("lg", 0).role("sync_master"))
        .broker(
            BrokerSpec::member("lg", 1)
                .role("slave")
                .env("REPLICATION__RECONNECT_MS", "200"),
        )
        .start()
        .await;
    let master = cluster.broker("lg-0").addr.clone();
    // The slave's replication stream is open: the master counts it in sync.
    wait_until(Duration::from_secs(60), "the slave in sync", || async {
        let status = rpc::admin(&master)
            .get_broker_status(apogee_proto::cluster::GetBrokerStatusRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .status
            .ok_or("no status")?;
        status
            .slaves
            .iter()
            .any(|s| s.in_sync)
            .then_some(())
            .ok_or(format!("slaves: {:?}", status.slaves))
    })
    .await;

    // The drain ends the slave's stream instead of waiting for the slave to close it.
    let status = cluster.terminate_broker("lg-0");
    assert!(status.success(), "exit status {status} after SIGTERM");
    let log = cluster.broker_log("lg-0");
    assert!(log.contains("broker stopped"), "{log}");
}

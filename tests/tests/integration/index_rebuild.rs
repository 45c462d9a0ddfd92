//! `apogee-broker --rebuild-index` on real processes: `/readyz` says 503 with the rebuild's
//! progress while it runs, a SIGKILL in the middle makes the next start rebuild again, and
//! afterwards every message is served at its queue offset and the group's progress is as it
//! was.

use apogee_proto::{time, v2};
use apogee_tests::{http, rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "rebuilt";
const QUEUES: i32 = 4;
/// Enough that the rebuild takes about a third of a second (0.17 s for 60,000 messages on a
/// 2-core CI machine), several `/readyz` polls long.
const PER_QUEUE: usize = 30_000;
/// Most messages per send (the broker's batch limit is 1024).
const BATCH: usize = 1_000;

async fn fill(addr: &str) {
    let mut client = rpc::messaging(addr);
    for queue in 0..QUEUES {
        let messages: Vec<v2::Message> = (0..PER_QUEUE)
            .map(|i| rpc::message(TOPIC, queue, format!("q{queue}-{i:05}")))
            .collect();
        for chunk in messages.chunks(BATCH) {
            let resp = rpc::send(&mut client, chunk.to_vec()).await;
            assert_eq!(
                rpc::code(resp.status.as_ref()),
                v2::Code::Ok as i32,
                "{resp:?}"
            );
        }
    }
}

/// Receives `count` messages for `group` and acks all but the last `in_flight`.
async fn consume(addr: &str, group: &str, count: usize, in_flight: usize) {
    let got = rpc::receive_exactly(addr, group, TOPIC, count).await;
    let entries: Vec<(String, String)> = got[..count - in_flight]
        .iter()
        .map(|m| (rpc::id_of(m), rpc::handle_of(m)))
        .collect();
    let acked = rpc::ack(&mut rpc::messaging(addr), group, TOPIC, &entries).await;
    assert_eq!(
        rpc::code(acked.status.as_ref()),
        v2::Code::Ok as i32,
        "{acked:?}"
    );
}

/// Every queue's (message id, queue offset, body), in order.
async fn contents(addr: &str) -> Vec<Vec<(String, i64, Vec<u8>)>> {
    let mut all = Vec::new();
    for queue in 0..QUEUES {
        all.push(rpc::queue_contents(addr, TOPIC, queue).await);
    }
    all
}

/// The group's lag and in-flight count (`apogee group describe`).
fn progress(cluster: &Cluster, group: &str) -> (serde_json::Value, serde_json::Value) {
    let d = cluster
        .cli(&["-o", "json", "group", "describe", group])
        .success()
        .json();
    (d["lag"].clone(), d["inflight"].clone())
}

/// `/readyz` of a broker that may not be listening yet: None until it is.
async fn readyz(http_addr: &str) -> Option<(u16, String)> {
    tokio::net::TcpStream::connect(http_addr).await.ok()?;
    Some(http::get(http_addr, "/readyz").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_midway_runs_again_and_loses_nothing() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    let http_addr = cluster.broker_http_addr("broker-a").to_string();
    cluster.create_topic(TOPIC, QUEUES).await;
    fill(&addr).await;
    consume(&addr, "rebuild-g", 40, 8).await;
    let before = contents(&addr).await;
    assert_eq!(
        before.iter().map(Vec::len).sum::<usize>(),
        QUEUES as usize * PER_QUEUE
    );
    let progress_before = progress(&cluster, "rebuild-g");
    cluster.terminate_broker("broker-a");

    // Started with --rebuild-index: not ready, with the progress, while it rebuilds.
    let broker = cluster.broker_mut("broker-a");
    broker.process().args_mut().push("--rebuild-index".into());
    broker.process().start();
    let seen = wait_until(WAIT, "/readyz to report the rebuild", || async {
        match readyz(&http_addr).await {
            Some((503, body)) if body.contains("rebuilding the index") => Ok(body),
            Some((200, body)) => panic!("ready before the rebuild was seen: {body}"),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    cluster.kill_broker("broker-a");
    assert!(seen.contains("requested by --rebuild-index"), "{seen}");
    assert!(seen.contains("bytes of log"), "{seen}");

    // Started plainly: the unfinished rebuild runs again, and completes.
    cluster.broker_mut("broker-a").process().args_mut().pop();
    cluster.restart_broker("broker-a").await;
    let log = cluster.broker_log("broker-a");
    assert!(log.contains("an earlier rebuild did not finish"), "{log}");
    assert!(log.contains("index rebuild complete"), "{log}");
    wait_until(WAIT, "/readyz to say ready", || async {
        match readyz(&http_addr).await {
            Some((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        contents(&addr).await == before,
        "the queues serve what they served"
    );
    assert_eq!(progress(&cluster, "rebuild-g"), progress_before);
    // The group goes on after what it acked and what it holds in flight.
    let (next, _) = rpc::receive(
        &mut rpc::messaging(&addr),
        "rebuild-g",
        TOPIC,
        1,
        Some(time::duration(Duration::from_secs(300))),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(next.len(), 1);
}

//! A broker group restored from its tier onto empty disks (`apogee-broker
//! --restore-from-tier`, against a real S3-compatible server): every tiered message is served
//! at its old queue offset and found by id; topic configs, consumer offsets and groups come
//! back from the newest state snapshot in the bucket; offsets beyond what was restored move
//! back to it; the log says what was lost; new sends continue the queues; and a restore onto
//! a data dir that holds anything is refused, nothing touched.

use apogee_tests::s3_server::S3Server;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;

/// `apogee group describe <group> -o json`'s queues of topic t: queue -> (consumer offset,
/// broker offset).
fn offsets(cluster: &Cluster, group: &str) -> Vec<(u64, u64, u64)> {
    let d = cluster
        .cli(&["-o", "json", "group", "describe", group])
        .success()
        .json();
    let mut rows: Vec<(u64, u64, u64)> = d["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"))
        .iter()
        .filter(|q| q["topic"] == "t")
        .map(|q| {
            (
                q["queue_id"].as_u64().unwrap(),
                q["consumer_offset"].as_u64().unwrap(),
                q["broker_offset"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The newest state snapshot's time (from its name), if there is one.
async fn newest_snapshot_ms(s3: &S3Server) -> Option<i64> {
    s3.list("history", "prod/a/state")
        .await
        .iter()
        .filter_map(|k| k.rsplit('/').next()?.split('-').next()?.parse().ok())
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_is_restored_from_the_tier_onto_empty_disks() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket("history").await;
    let mut spec = BrokerSpec::new("a")
        .env("STORE__SEGMENT_BYTES", "1048576")
        .env("TIER__SCAN_INTERVAL_MS", "200")
        .env("TIER__STATE_SNAPSHOT_INTERVAL_MS", "1000");
    for (k, v) in s3.broker_env("history", "prod") {
        spec = spec.env(&k, v);
    }
    let mut cluster = Cluster::builder().broker(spec).start().await;
    cluster.create_topic("t", 4).await;
    cluster.create_topic("kept", 2).await;
    let addr = cluster.broker("a").addr.clone();

    // 1,000 messages of 4 KiB: four sealed segments of 1 MiB and an open one. Group "mid"
    // is reset to the middle, group "late" to the end.
    let mut sent: [Vec<(String, Vec<u8>)>; 4] = Default::default();
    rpc::send_numbered_spread(&addr, "t", 0, 500, &mut sent).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    rpc::send_numbered_spread(&addr, "t", 500, 1000, &mut sent).await;
    let mid = cluster
        .cli(&[
            "-o",
            "json",
            "group",
            "reset-offset",
            "mid",
            "--topic",
            "t",
            "--to-time",
            &middle,
            "--execute",
        ])
        .success()
        .json();
    cluster
        .cli(&[
            "group",
            "reset-offset",
            "late",
            "--topic",
            "t",
            "--to-latest",
            "--execute",
        ])
        .success();
    let reset_at = chrono::Utc::now().timestamp_millis();
    let mid_offsets: Vec<(u64, u64)> = mid["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("{mid}"))
        .iter()
        .map(|q| {
            (
                q["queue"].as_u64().unwrap(),
                q["new_offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(mid_offsets.iter().all(|(_, o)| *o > 0), "{mid}");

    // Every sealed segment uploaded, and a snapshot taken after the resets.
    let commitlog = cluster.broker("a").data_dir.join("commitlog");
    let sealed = std::fs::read_dir(&commitlog).unwrap().count() - 1;
    assert!(sealed >= 3, "{sealed} sealed segments");
    wait_until(
        Duration::from_secs(60),
        "the sealed segments and a snapshot in the bucket",
        || async {
            let row = cluster
                .cli(&["-o", "json", "tier", "status"])
                .success()
                .json()[0]
                .clone();
            let snapshot = newest_snapshot_ms(&s3).await;
            if row["tiered_segments"] == sealed as u64 && snapshot.is_some_and(|t| t > reset_at) {
                Ok(())
            } else {
                Err(format!("{row}, newest snapshot {snapshot:?}"))
            }
        },
    )
    .await;

    // Every disk lost: the broker starts again on an empty data dir, restoring.
    cluster.kill_broker("a");
    let data_dir = cluster.broker("a").data_dir.clone();
    std::fs::remove_dir_all(&data_dir).unwrap();
    cluster
        .broker_mut("a")
        .process()
        .args_mut()
        .push("--restore-from-tier".into());
    cluster.restart_broker("a").await;
    let log = cluster.broker_log("a");
    assert!(log.contains("restored from"), "{log}");
    assert!(log.contains("lost: every message stored after"), "{log}");
    assert!(log.contains("state restored from"), "{log}");

    // Each queue holds a prefix of what was sent, at the same offsets; the open segment's
    // messages are what was lost.
    let mut restored = [0usize; 4];
    for queue in 0..4 {
        let contents = rpc::queue_contents(&addr, "t", queue).await;
        for (n, (id, offset, body)) in contents.iter().enumerate() {
            assert_eq!(
                *offset, n as i64,
                "queue {queue}: offsets from 0 without a gap"
            );
            assert!(
                (id, body) == (&sent[queue as usize][n].0, &sent[queue as usize][n].1),
                "queue {queue} offset {n} is not the message sent there"
            );
        }
        restored[queue as usize] = contents.len();
    }
    let total: usize = restored.iter().sum();
    assert!((500..1000).contains(&total), "{total} of 1,000 restored");
    let (first_id, first_body) = &sent[0][0];
    let rows = cluster
        .cli(&["message", "get", first_id, "-o", "json"])
        .success()
        .json();
    assert_eq!(
        rows[0]["body"].as_str().unwrap().as_bytes(),
        &first_body[..]
    );

    // The snapshot's state: topic "kept" with its 2 queues, "mid"'s offsets as reset,
    // "late"'s moved back to the restored ends.
    let topics = cluster
        .cli(&["-o", "json", "topic", "list"])
        .success()
        .json();
    let kept = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "kept" || t["name"] == "kept")
        .unwrap_or_else(|| panic!("no topic kept: {topics}"));
    assert!(kept.to_string().contains('2'), "{kept}");
    let mid_now = offsets(&cluster, "mid");
    for (queue, offset) in &mid_offsets {
        let row = mid_now.iter().find(|r| r.0 == *queue).unwrap();
        assert_eq!(row.1, *offset, "group mid, queue {queue}: {mid_now:?}");
    }
    for (queue, consumer, broker) in offsets(&cluster, "late") {
        assert_eq!(consumer, broker, "group late, queue {queue}");
        assert_eq!(broker, restored[queue as usize] as u64, "queue {queue}");
    }
    assert!(log.contains("moved back to what was restored"), "{log}");

    // New sends continue the queues.
    let mut after: [Vec<(String, Vec<u8>)>; 4] = Default::default();
    rpc::send_numbered_spread(&addr, "t", 1000, 1004, &mut after).await;
    let q0 = rpc::queue_contents(&addr, "t", 0).await;
    assert_eq!(
        q0.last().unwrap().1,
        restored[0] as i64,
        "the next offset of queue 0"
    );

    // The flag left on: the next start refuses (its data dir is not empty), nothing touched.
    cluster.kill_broker("a");
    let before = std::fs::read_dir(data_dir.join("commitlog"))
        .unwrap()
        .count();
    cluster.broker_mut("a").process().start();
    let status = cluster
        .broker_mut("a")
        .process()
        .wait_exit(Duration::from_secs(30))
        .expect("a restore onto a used data dir exits");
    assert!(!status.success());
    let log = cluster.broker_log("a");
    assert!(log.contains("is not empty"), "{log}");
    assert_eq!(
        std::fs::read_dir(data_dir.join("commitlog"))
            .unwrap()
            .count(),
        before
    );
    // Without it, the restored broker starts as any other.
    cluster.broker_mut("a").process().args_mut().pop();
    cluster.restart_broker("a").await;
    let q0 = rpc::queue_contents(&addr, "t", 0).await;
    assert_eq!(q0.len(), restored[0] + 1);
}

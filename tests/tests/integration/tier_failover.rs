//! The object-store tier across a failover (controller mode): the master is killed while it
//! uploads; the member elected next goes on uploading from where the replicated manifest
//! ends, under its own epoch, and every sealed segment ends up in the bucket byte for byte
//! as the new master holds it, with no acknowledged message lost.

use apogee_tests::failover::{
    assert_all_logged, member, send_one, settle_group_of_two, wait_routed_master, Load, OnFailure,
    StartedGroup,
};
use apogee_tests::s3_server::S3Server;
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use std::time::Duration;

const GROUP: &str = "fo";
const TOPIC: &str = "failover";
const QUEUES: i32 = 4;

/// A controlled member (1 MiB segments) tiering to `s3` at 1 MiB/s, so an upload takes
/// about a second.
fn tiered_member(s3: &S3Server, id: i64) -> BrokerSpec {
    let mut spec = member(GROUP, id)
        .env("TIER__SCAN_INTERVAL_MS", "200")
        .env("TIER__RETRY_INITIAL_MS", "200")
        .env("TIER__UPLOAD_BYTES_PER_SEC", "1048576");
    for (k, v) in s3.broker_env("history", "prod") {
        spec = spec.env(&k, v);
    }
    spec
}

/// Sends 3,000 messages of 1 KiB through the routes (to the group's master).
fn send_3_mib(cluster: &Cluster) {
    cluster
        .cli(&[
            "bench", "produce", "--topic", TOPIC, "--size", "1024", "--count", "3000",
        ])
        .success();
}

/// `apogee tier status -o json`'s row of the group's master, if one answers as master.
fn master_row(cluster: &Cluster) -> Option<serde_json::Value> {
    let out = cluster.cli(&["-o", "json", "tier", "status"]).success();
    out.json()
        .as_array()?
        .iter()
        .find(|r| r["role"] == "master")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_master_goes_on_uploading_where_the_killed_one_stopped() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket("history").await;
    let cluster = Cluster::builder()
        .controller()
        .broker(tiered_member(&s3, 1))
        .broker(tiered_member(&s3, 2))
        .start()
        .await;
    let StartedGroup {
        mut cluster,
        master: old,
        slave: new,
        first_epoch,
    } = settle_group_of_two(cluster, GROUP, TOPIC, QUEUES).await;
    let (old_addr, new_addr) = (
        cluster.broker(&old).addr.clone(),
        cluster.broker(&new).addr.clone(),
    );
    send_3_mib(&cluster);
    let load = Load::start(&old_addr, TOPIC, QUEUES, 2, "before", OnFailure::Retry);
    // Killed while an upload is under way.
    wait_until(Duration::from_secs(60), "an upload under way", || async {
        let row = master_row(&cluster).ok_or("no master row".to_string())?;
        row["uploading_base"]
            .is_u64()
            .then_some(())
            .ok_or(row.to_string())
    })
    .await;
    cluster.kill_broker(&old);
    let (mut acked, _) = load.stop().await;

    let first = wait_until(
        Duration::from_secs(30),
        "writes on the new master",
        || async { send_one(&new_addr, TOPIC, 0, "after-0".into()).await },
    )
    .await;
    acked.push(first);
    wait_routed_master(&cluster, GROUP, &new_addr).await;
    send_3_mib(&cluster);

    // Every sealed segment of the new master is tiered, its uploads under the new epoch.
    let commitlog = cluster.broker(&new).data_dir.join("commitlog");
    let sealed = || {
        let mut files: Vec<_> = std::fs::read_dir(&commitlog)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.pop();
        files
    };
    let row = wait_until(Duration::from_secs(120), "every segment tiered", || async {
        let row = master_row(&cluster).ok_or("no master row".to_string())?;
        let all = sealed().len() as u64;
        (row["tiered_segments"].as_u64() == Some(all)
            && row["local_segments"] == 0
            && row["last_error"].is_null())
        .then_some(row.clone())
        .ok_or(format!("{all} sealed: {row}"))
    })
    .await;
    assert!(row["tiered_segments"].as_u64().unwrap() >= 5, "{row}");
    let keys = s3.list("history", &format!("prod/{GROUP}/segments")).await;
    let new_epoch = format!("-e{:010}.log", first_epoch + 1);
    assert!(
        keys.iter().any(|k| k.ends_with(&new_epoch)),
        "the new master uploads under its epoch: {keys:?}"
    );
    for path in sealed() {
        let base = path.file_name().unwrap().to_str().unwrap().to_string();
        let objects: Vec<_> = keys
            .iter()
            .filter(|k| k.contains(&format!("/{base}-e")) && k.ends_with(".log"))
            .collect();
        assert!(!objects.is_empty(), "no object of segment {base}: {keys:?}");
        let local = std::fs::read(&path).unwrap();
        for key in objects {
            let held = s3.read("history", key).await.expect("listed");
            assert!(held == local, "{key} differs from the new master's {base}");
        }
    }
    assert_all_logged(&acked, &cluster.broker(&new).data_dir, "the new master");
}

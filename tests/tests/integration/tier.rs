//! The object-store tier against a real S3-compatible server (moto's, its own process):
//! sealed segments uploaded whole (in parts) and recorded, `apogee tier status` and the
//! console's cluster page; an object
//! store down while sends go on (none refused, the uploads catch up when it is back); a
//! broker killed during an upload (the segment uploaded again after the restart); segments
//! whose local copies local retention evicted, read back from the bucket at their offsets
//! (by queue and by id, before and after a kill -9); segments past the tier's retention
//! leaving the queues and the bucket; credentials refused while the broker runs (reported,
//! sends go on, nothing deleted); and
//! `--check-config` naming what is wrong with a bucket (unreachable, refused credentials, no
//! such bucket, a prefix holding what Apogee did not write), never writing to one.

use apogee_tests::console_http::ConsoleClient;
use apogee_tests::s3_server::S3Server;
use apogee_tests::{bins, cli, rpc, wait_until, BrokerSpec, Cluster};
use std::process::Command;
use std::time::Duration;

/// The broker's segments: 6 MiB, so that one is uploaded in two parts of the smallest size
/// S3 takes (5 MiB).
const SEGMENT_BYTES: &str = "6291456";

fn tiered_broker(s3: &S3Server, bucket: &str, prefix: &str) -> BrokerSpec {
    let mut spec = BrokerSpec::new("a")
        .env("STORE__SEGMENT_BYTES", SEGMENT_BYTES)
        .env("TIER__PART_BYTES", "5242880")
        .env("TIER__SCAN_INTERVAL_MS", "200");
    for (k, v) in s3.broker_env(bucket, prefix) {
        spec = spec.env(&k, v);
    }
    spec
}

/// An S3 server with bucket `history`, and a cluster whose broker "a" tiers to it under
/// `prod` (with `extra` settings), topic t created; None where the server cannot be had.
async fn start_tiered(extra: &[(&str, &str)]) -> Option<(S3Server, Cluster, String)> {
    let s3 = S3Server::start()?;
    s3.create_bucket("history").await;
    let mut spec = tiered_broker(&s3, "history", "prod");
    for (k, v) in extra {
        spec = spec.env(k, *v);
    }
    let cluster = Cluster::builder().broker(spec).start().await;
    cluster.create_topic("t", 4).await;
    let ns = cluster.ns_addr().to_string();
    Some((s3, cluster, ns))
}

/// `apogee tier status -o json`'s row for broker "a".
fn tier_row(ns: &str) -> serde_json::Value {
    let out = cli::run(&["--nameserver", ns, "-o", "json", "tier", "status"]).success();
    out.json()[0].clone()
}

/// Sends about 7 MiB (7,000 messages of 1 KiB) to topic t through the CLI's bench; every
/// send must be acknowledged.
fn send_7_mib(ns: &str) {
    cli::run(&[
        "--nameserver",
        ns,
        "bench",
        "produce",
        "--topic",
        "t",
        "--size",
        "1024",
        "--count",
        "7000",
        "--connections",
        "2",
        "--inflight",
        "8",
    ])
    .success();
}

/// The broker's sealed segment files, oldest first.
fn sealed_segments(cluster: &Cluster) -> Vec<std::path::PathBuf> {
    let commitlog = cluster.broker("a").data_dir.join("commitlog");
    let mut segments: Vec<_> = std::fs::read_dir(&commitlog)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    segments.pop();
    segments
}

/// Waits until the status shows every sealed segment tiered and none waiting, with no error.
async fn wait_all_tiered(ns: &str, sealed: usize) -> serde_json::Value {
    wait_until(
        Duration::from_secs(90),
        "every sealed segment tiered",
        || async move {
            let row = tier_row(ns);
            if row["tiered_segments"].as_u64() == Some(sealed as u64)
                && row["local_segments"].as_u64() == Some(0)
                && row["last_error"].is_null()
            {
                Ok(row)
            } else {
                Err(row.to_string())
            }
        },
    )
    .await
}

/// Each sealed segment's object holds its bytes, under the group, base offset and epoch 0.
async fn assert_objects_match(s3: &S3Server, bucket: &str, sealed: &[std::path::PathBuf]) {
    for path in sealed {
        let base = path.file_name().unwrap().to_str().unwrap();
        let key = format!("prod/a/segments/{base}-e0000000000.log");
        let held = s3
            .read(bucket, &key)
            .await
            .unwrap_or_else(|| panic!("no object {key}"));
        assert!(
            held == std::fs::read(path).unwrap(),
            "{key} differs from {}",
            path.display()
        );
        let index = key.replace(".log", ".index");
        let index = s3
            .read(bucket, &index)
            .await
            .unwrap_or_else(|| panic!("no {index}"));
        assert!(
            index.starts_with(b"APGI") && index.len() < held.len() / 4,
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_segments_are_uploaded_whole_and_recorded() {
    let Some((s3, cluster, ns)) = start_tiered(&[]).await else {
        return;
    };
    send_7_mib(&ns);
    let sealed = sealed_segments(&cluster);
    assert!(!sealed.is_empty());

    let row = wait_all_tiered(&ns, sealed.len()).await;
    assert_eq!(row["broker_name"], "a");
    assert_eq!(row["role"], "master");
    assert_eq!(row["lag_bytes"], 0, "{row}");
    assert!(
        row["location"]
            .as_str()
            .unwrap()
            .contains("s3://history/prod"),
        "{row}"
    );
    assert_objects_match(&s3, "history", &sealed).await;
    let claim = s3
        .read("history", "prod/apogee-tier.json")
        .await
        .expect("the claim");
    let claim = String::from_utf8(claim).unwrap();
    assert!(claim.contains("\"cluster\": \"DefaultCluster\""), "{claim}");

    // The broker's metrics count them.
    let (_, metrics) = apogee_tests::http::get(cluster.broker_http_addr("a"), "/metrics").await;
    let uploaded = metrics
        .lines()
        .find(|l| l.starts_with("apogee_tier_uploaded_segments_total"))
        .unwrap_or_else(|| panic!("no tier series in\n{metrics}"));
    assert!(
        uploaded.ends_with(&format!(" {}", sealed.len())),
        "{uploaded}"
    );

    // The console's cluster page shows the member's tier, as `tier status` does.
    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let page = console.get("/console/cluster").await.expect(200);
    let section = page
        .body
        .split("id=\"tier-members\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no tier section: {}", page.body));
    assert!(section.contains("data-broker=\"a/0\""), "{section}");
    assert!(section.contains("s3://history/prod"), "{section}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_go_on_while_the_object_store_is_down_and_uploads_catch_up() {
    let extra = [
        ("TIER__RETRY_INITIAL_MS", "200"),
        ("TIER__RETRY_MAX_MS", "1000"),
    ];
    let Some((mut s3, cluster, ns)) = start_tiered(&extra).await else {
        return;
    };
    s3.stop();
    // Every send is acknowledged with the object store down (send_7_mib checks).
    send_7_mib(&ns);
    let sealed = sealed_segments(&cluster);
    let row = wait_until(
        Duration::from_secs(30),
        "the outage in the status",
        || async {
            let row = tier_row(&ns);
            let unreachable = row["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot be reached"));
            // The sealed segments wait, counted while the store is away.
            if unreachable && row["local_segments"] == sealed.len() {
                Ok(row)
            } else {
                Err(row.to_string())
            }
        },
    )
    .await;
    assert!(row["lag_bytes"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["tiered_segments"], 0, "{row}");
    // Back (moto keeps nothing across a restart: its bucket is made again).
    s3.start_again();
    s3.create_bucket("history").await;
    wait_all_tiered(&ns, sealed.len()).await;
    assert_objects_match(&s3, "history", &sealed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_killed_during_an_upload_uploads_the_segment_again() {
    // At 1 MiB/s a 6 MiB segment takes about 6 s to upload.
    let Some((s3, mut cluster, ns)) =
        start_tiered(&[("TIER__UPLOAD_BYTES_PER_SEC", "1048576")]).await
    else {
        return;
    };
    send_7_mib(&ns);
    let sealed = sealed_segments(&cluster);
    wait_until(Duration::from_secs(30), "an upload under way", || async {
        let row = tier_row(&ns);
        if row["uploading_base"].is_u64() {
            Ok(())
        } else {
            Err(row.to_string())
        }
    })
    .await;
    cluster.kill_broker("a");
    let log = cluster.broker_log("a");
    assert!(!log.contains("segment uploaded to the tier"), "{log}");
    cluster.restart_broker("a").await;
    let row = wait_all_tiered(&ns, sealed.len()).await;
    assert_eq!(row["tiered_segments"], sealed.len(), "{row}");
    assert_objects_match(&s3, "history", &sealed).await;
    // The killed upload was not recorded: the restarted broker uploaded the segment again.
    let log = cluster.broker_log("a");
    let after_restart = log.rsplit("===== start #2").next().unwrap();
    assert!(
        after_restart.contains("segment uploaded to the tier base=0"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_refused_while_running_are_reported_and_sends_go_on() {
    let Some(refusing) = S3Server::start_refusing() else {
        return;
    };
    let spec = tiered_broker(&refusing, "history", "prod")
        .env("TIER__RETRY_INITIAL_MS", "200")
        .env("TIER__RETRY_MAX_MS", "1000");
    let cluster = Cluster::builder().broker(spec).start().await;
    cluster.create_topic("t", 4).await;
    let ns = cluster.ns_addr().to_string();
    // Every send is acknowledged while the object store refuses the broker (send_7_mib checks).
    send_7_mib(&ns);
    let sealed = sealed_segments(&cluster);
    let row = wait_until(
        Duration::from_secs(30),
        "the refusal in the status",
        || async {
            let row = tier_row(&ns);
            let refused = row["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused the credentials"));
            if refused && row["local_segments"] == sealed.len() {
                Ok(row)
            } else {
                Err(row.to_string())
            }
        },
    )
    .await;
    assert_eq!(row["tiered_segments"], 0, "{row}");
    // Nothing was given up: the segments wait on local disk, none deleted.
    assert_eq!(sealed_segments(&cluster), sealed);
    let (_, metrics) = apogee_tests::http::get(cluster.broker_http_addr("a"), "/metrics").await;
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("apogee_tier_upload_failures_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evicted_segments_are_read_back_from_the_bucket_at_their_offsets() {
    let extra = [
        ("TIER__LOCAL_RETENTION_BYTES", "0"),
        ("STORE__RETENTION_CHECK_MS", "200"),
    ];
    let Some((_s3, mut cluster, ns)) = start_tiered(&extra).await else {
        return;
    };
    let addr = cluster.broker("a").addr.clone();
    // 14 MiB of numbered messages over the four queues: two sealed segments and more.
    let mut sent: [Vec<(String, Vec<u8>)>; 4] = Default::default();
    rpc::send_numbered_spread(&addr, "t", 0, 3500, &mut sent).await;
    let sealed = sealed_segments(&cluster);
    assert!(sealed.len() >= 2, "{sealed:?}");
    wait_all_tiered(&ns, sealed.len()).await;
    // Local retention of 0 bytes: every tiered segment loses its local copy.
    wait_until(
        Duration::from_secs(30),
        "the local copies evicted",
        || async {
            let left = sealed_segments(&cluster);
            left.is_empty().then_some(()).ok_or(format!("{left:?}"))
        },
    )
    .await;
    let log = cluster.broker_log("a");
    assert!(log.contains("evicted the local copies"), "{log}");

    // Every message at its queue offset, its body whole, read from the bucket.
    let read_back = |contents: Vec<(String, i64, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        for (n, (_, offset, _)) in contents.iter().enumerate() {
            assert_eq!(*offset, n as i64, "queue offsets from 0 without a gap");
        }
        contents
            .into_iter()
            .map(|(id, _, body)| (id, body))
            .collect()
    };
    for queue in 0..4 {
        let got = read_back(rpc::queue_contents(&addr, "t", queue).await);
        assert!(
            got == sent[queue as usize],
            "queue {queue}: {} read back, {} sent",
            got.len(),
            sent[queue as usize].len()
        );
    }
    // By id: the first message, held only in the bucket.
    let (first_id, first_body) = &sent[0][0];
    let rows = cluster
        .cli(&["message", "get", first_id, "-o", "json"])
        .success()
        .json();
    assert_eq!(rows[0]["message_id"], first_id.as_str(), "{rows}");
    assert_eq!(
        rows[0]["body"].as_str().unwrap().as_bytes(),
        &first_body[..],
        "{rows}"
    );

    // After a kill -9 the read cache starts empty and the reads come from the bucket again.
    cluster.kill_broker("a");
    cluster.restart_broker("a").await;
    let got = read_back(rpc::queue_contents(&addr, "t", 3).await);
    assert!(got == sent[3], "queue 3 after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_past_the_tiers_retention_leave_the_queues_and_the_bucket() {
    let extra = [
        ("TIER__RETENTION_MS", "2000"),
        ("STORE__RETENTION_CHECK_MS", "200"),
    ];
    let Some((s3, cluster, ns)) = start_tiered(&extra).await else {
        return;
    };
    let addr = cluster.broker("a").addr.clone();
    send_7_mib(&ns);
    let sealed = sealed_segments(&cluster);
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let open = cluster.broker("a").data_dir.join("commitlog");
    // Two seconds after its upload the segment ends: its messages leave the queues, its
    // local file goes, and the master deletes its object and its row in the manifest.
    let keys = wait_until(Duration::from_secs(60), "the segment's end", || async {
        let keys = s3.list("history", "prod/a/segments").await;
        let files = std::fs::read_dir(&open).unwrap().count();
        let row = tier_row(&ns);
        let log = cluster.broker_log("a");
        if keys.is_empty()
            && files == 1
            && row["tiered_segments"] == 0
            && log.contains("a tiered segment past the tier's retention was deleted")
        {
            Ok(keys)
        } else {
            Err(format!("objects {keys:?}, {files} local segments, {row}"))
        }
    })
    .await;
    assert!(keys.is_empty());
    // What the open segment holds is still served; what the deleted one held is not.
    let mut served = 0;
    for queue in 0..4 {
        let contents = rpc::queue_contents(&addr, "t", queue).await;
        if let Some((_, first, _)) = contents.first() {
            assert!(*first > 0, "queue {queue} starts after the ended messages");
        }
        served += contents.len();
    }
    assert!(
        served > 0 && served < 7000,
        "{served} of 7,000 still served"
    );
}

/// `apogee-broker --check-config` with `[tier]` from `env`: (exit code, stdout, stderr).
fn check_config(data_dir: &std::path::Path, env: &[(String, String)]) -> (i32, String, String) {
    let mut c = Command::new(bins::bin("apogee-broker"));
    c.arg("--check-config")
        .env("APOGEE_BROKER_DATA_DIR", data_dir)
        .env("APOGEE_BROKER_TIER__RETRY_MAX_MS", "1000");
    for (k, v) in env {
        c.env(format!("APOGEE_BROKER_{k}"), v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reaches_the_bucket_and_names_what_is_wrong() {
    let Some(s3) = S3Server::start() else { return };
    let Some(refusing) = S3Server::start_refusing() else {
        return;
    };
    s3.create_bucket("tier-check").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let set = |server: &S3Server, bucket: &str, prefix: &str| server.broker_env(bucket, prefix);

    // An empty prefix: OK, and nothing is written by the check.
    let (code, stdout, stderr) = check_config(&data, &set(&s3, "tier-check", "prod"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("the prefix is empty"), "{stdout}");
    let claim = s3.read("tier-check", "prod/apogee-tier.json").await;
    assert_eq!(claim, None, "the check claimed nothing");

    // Objects Apogee did not write under the prefix: refused, left as they are.
    s3.write("tier-check", "theirs/report.csv", b"a,b\n").await;
    let (code, _, stderr) = check_config(&data, &set(&s3, "tier-check", "theirs"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("did not write") && stderr.contains("theirs/report.csv"),
        "{stderr}"
    );
    let theirs = s3.read("tier-check", "theirs/report.csv").await;
    assert_eq!(theirs.as_deref(), Some(&b"a,b\n"[..]));
    let claim = s3.read("tier-check", "theirs/apogee-tier.json").await;
    assert_eq!(claim, None, "nothing written beside them");

    // No such bucket.
    let (code, _, stderr) = check_config(&data, &set(&s3, "missing", "prod"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("\"missing\" does not exist"), "{stderr}");

    // Credentials the server does not know.
    let (code, _, stderr) = check_config(&data, &set(&refusing, "tier-check", "prod"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");

    // Nothing listening.
    let mut closed = set(&s3, "tier-check", "prod");
    let port = apogee_tests::process::free_port();
    closed[0].1 = format!("http://127.0.0.1:{port}");
    let (code, _, stderr) = check_config(&data, &closed);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be reached"), "{stderr}");
}

//! The store at its limits, with real broker processes: a commit log on a full file system
//! (a small tmpfs), and an index directory deleted between two runs.

use apogee_client::{ClientError, Message, Producer, SendReceipt};
use apogee_proto::ApogeeError;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// (message id, queue offset, body) of every message each queue serves, queue by queue.
async fn served(addr: &str, topic: &str, queues: i32) -> Vec<Vec<(String, i64, Vec<u8>)>> {
    let mut out = Vec::new();
    for q in 0..queues {
        out.push(rpc::queue_contents(addr, topic, q).await);
    }
    out
}

fn ids(served: &[Vec<(String, i64, Vec<u8>)>]) -> BTreeSet<String> {
    served.iter().flatten().map(|m| m.0.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_index_is_rebuilt_and_serves_the_same_messages_at_the_same_offsets() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("a").env("STORE__SEGMENT_BYTES", "262144"))
        .start()
        .await;
    let (topic, queues) = ("rebuilt", 4);
    cluster.create_topic(topic, queues).await;
    let producer = Producer::connect(cluster.client_config().with_max_attempts(1))
        .await
        .expect("producer");
    for i in 0..600 {
        let body = format!("message {i} ").repeat(1 + i % 50);
        let m = Message::builder(topic, body)
            .tag(format!("t{}", i % 3))
            .build();
        producer.send(m).await.expect("send");
    }
    let addr = cluster.broker_addr("a").to_string();
    let before = served(&addr, topic, queues).await;
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 600);

    cluster.kill_broker("a");
    let index = cluster.broker("a").data_dir.join("index");
    std::fs::remove_dir_all(&index).expect("deleting the index directory");
    cluster.restart_broker("a").await;

    let after = served(&addr, topic, queues).await;
    assert_eq!(after, before, "same messages at the same queue offsets");
    let log = cluster.broker_log("a");
    assert!(
        log.contains("rebuilding the index from the commit log"),
        "{log}"
    );
    assert!(
        log.contains("LOST"),
        "the lost consumer state is reported: {log}"
    );
    // The topic came back from the log, and new sends continue the queues.
    let next = producer
        .send(Message::new(topic, "after the rebuild"))
        .await
        .expect("send after the rebuild");
    let queue_len = before[next.queue_id as usize].len() as i64;
    assert_eq!(next.offset, queue_len);
}

/// A tmpfs mounted for a test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Refused for lack of space: ENOSPC on the write, or the disk seen 100% full (the refuse
/// ratio the harness sets); both name the commit log's directory.
fn is_storage_full(e: &ClientError) -> bool {
    matches!(e, ClientError::Server(ApogeeError::StorageFull(m)) if m.contains("commitlog"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_sends_loses_nothing_acknowledged_and_writes_resume_by_themselves() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data.join("commitlog"), 3 << 20) else {
        // Mounting needs root or CAP_SYS_ADMIN (CI machines have it). Said loudly, not hidden.
        eprintln!(
            "SKIPPED a_full_disk_refuses_sends...: cannot mount a 3 MiB tmpfs for the commit \
             log here (needs root or CAP_SYS_ADMIN)"
        );
        return;
    };
    // Room taken by something else on the same disk, given back later.
    let filler = tmpfs.0.join("filler");
    std::fs::write(&filler, vec![7u8; 1 << 20]).unwrap();

    let mut cluster = Cluster::builder()
        .broker(
            BrokerSpec::new("a")
                .data_dir(&data)
                .env("STORE__SEGMENT_BYTES", "524288"),
        )
        .start()
        .await;
    let (topic, queues) = ("full", 2);
    cluster.create_topic(topic, queues).await;
    let producer = Producer::connect(cluster.client_config().with_max_attempts(1))
        .await
        .expect("producer");
    let body = |i: usize| format!("{i:08}").repeat(12 * 1024); // 96 KiB
    let mut acked: Vec<SendReceipt> = Vec::new();
    let mut refused = None;
    for i in 0..64 {
        match producer.send(Message::new(topic, body(i))).await {
            Ok(r) => acked.push(r),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a 3 MiB file system fills up within 64 sends of 96 KiB");
    assert!(is_storage_full(&refused), "clear status: {refused}");
    assert!(acked.len() >= 10, "only {} sends fit", acked.len());
    // Still full: refused again, cleanly, and the broker keeps serving reads.
    let again = producer.send(Message::new(topic, body(1000))).await;
    assert!(again.as_ref().is_err_and(is_storage_full), "{again:?}");
    let addr = cluster.broker_addr("a").to_string();
    let acked_ids: BTreeSet<String> = acked.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(ids(&served(&addr, topic, queues).await), acked_ids);

    // Space returns: sends are taken again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let resumed = wait_until(
        Duration::from_secs(10),
        "a send after space returned",
        || {
            let producer = producer.clone();
            async move {
                producer
                    .send(Message::new(topic, "space is back"))
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    acked.push(resumed);
    let acked_ids: BTreeSet<String> = acked.iter().map(|r| r.message_id.clone()).collect();
    let before = served(&addr, topic, queues).await;
    assert_eq!(
        ids(&before),
        acked_ids,
        "every acknowledged message, nothing else"
    );
    for r in &acked {
        let queue = &before[r.queue_id as usize];
        assert!(queue.iter().any(|m| m.0 == r.message_id && m.1 == r.offset));
    }

    // Nothing half-written was left behind: a restart recovers the same log.
    cluster.kill_broker("a");
    cluster.restart_broker("a").await;
    assert_eq!(served(&addr, topic, queues).await, before);
    let log = cluster.broker_log("a");
    assert!(!log.contains("torn tail"), "{log}");
    cluster.kill_broker("a");
    drop(tmpfs);
}

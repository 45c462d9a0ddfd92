//! A data dir that is not Apogee's: `apogee-broker --data-dir` pointed at a
//! RocketMQ store (what `apogee config import` gives when storePathRootDir is
//! kept) refuses to start, says it is a RocketMQ store and names the file it
//! read, and leaves every file as it was.

use apogee_tests::rocketmq_store::{snapshot, write_store};
use apogee_tests::{BrokerSpec, Cluster};

#[tokio::test]
async fn a_rocketmq_store_as_data_dir_is_refused_and_left_unchanged() {
    let mut cluster = Cluster::builder().start().await;
    let store = tempfile::tempdir().unwrap();
    let segment = write_store(store.path(), "TopicTest", 8, 256 * 1024);
    let before = snapshot(store.path());

    let (status, log) = cluster
        .broker_start_failure(BrokerSpec::new("on-rocketmq").data_dir(store.path()))
        .await;
    assert_eq!(status.code(), Some(1), "{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    for part in [
        "this is a RocketMQ store; use `apogee config import`",
        segment.display().to_string().as_str(),
        "0xdaa320a7",
        "consumequeue/",
        "checkpoint",
        "abort",
        "nothing was changed",
    ] {
        assert!(error.contains(part), "{part:?} missing: {error}");
    }
    assert!(!log.contains("torn tail"), "{log}");
    assert_eq!(
        snapshot(store.path()),
        before,
        "refusing to start must leave the store as it was (no file changed or created)"
    );
}

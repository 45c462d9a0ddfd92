//! Lite queues in the store (`lite.rs`): counts kept by the writer and recomputed at open,
//! the listing of one parent's lite queues page by page, one queue's info, and a purge.

use apogee_proto::names::lite_queue_topic;

use super::tests::{append_one, config, msg};
use super::*;

fn lite(parent: &str, name: &str, n: usize) -> NewMessage {
    msg(&lite_queue_topic(parent, name), 0, n)
}

fn names_of(infos: &[LiteQueueInfo]) -> Vec<&str> {
    infos.iter().map(|i| i.lite.as_str()).collect()
}

#[tokio::test]
async fn lite_queues_are_counted_listed_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    // Names of several lengths; "ab" twice (one queue, two messages).
    for (i, name) in ["ab", "b", "ab", "zz", "a", "long-name-1"]
        .iter()
        .enumerate()
    {
        append_one(&store, lite("P", name, i)).await;
    }
    append_one(&store, lite("Q", "x", 9)).await;
    // A parent whose name is a prefix of P's, and an ordinary topic: neither counts for P.
    append_one(&store, lite("PP", "ab", 10)).await;
    append_one(&store, msg("P", 0, 11)).await;
    assert_eq!(store.lite_queue_count(), 7);
    assert_eq!(store.lite_queues_created(), 7);
    assert_eq!(
        store.lite_queue_counts(),
        vec![("P".into(), 5), ("PP".into(), 1), ("Q".into(), 1)]
    );
    assert!(store.lite_queue_exists("P", "ab").unwrap());
    assert!(!store.lite_queue_exists("P", "x").unwrap());

    // Shorter names first, then by name; pages resume after the last name.
    let all = store.lite_queues("P", None, 100).unwrap();
    assert_eq!(names_of(&all), vec!["a", "b", "ab", "zz", "long-name-1"]);
    let first = store.lite_queues("P", None, 2).unwrap();
    assert_eq!(names_of(&first), vec!["a", "b"]);
    let second = store.lite_queues("P", Some("b"), 2).unwrap();
    assert_eq!(names_of(&second), vec!["ab", "zz"]);
    let third = store.lite_queues("P", Some("zz"), 2).unwrap();
    assert_eq!(names_of(&third), vec!["long-name-1"]);
    assert!(store
        .lite_queues("P", Some("long-name-1"), 2)
        .unwrap()
        .is_empty());
    assert!(store.lite_queues("none", None, 10).unwrap().is_empty());

    let ab = store.lite_queue_info("P", "ab").unwrap().unwrap();
    assert_eq!((ab.min_offset, ab.next_offset), (0, 2));
    let last = store
        .read_queue(&lite_queue_topic("P", "ab"), 0, 1, 1, usize::MAX)
        .unwrap();
    assert_eq!(ab.last_store_ms, Some(last[0].store_timestamp_ms));
    assert_eq!(store.lite_queue_info("P", "nope").unwrap(), None);

    store.purge_topic(&lite_queue_topic("P", "ab")).unwrap();
    // A second purge of the same queue changes no count.
    store.purge_topic(&lite_queue_topic("P", "ab")).unwrap();
    assert!(!store.lite_queue_exists("P", "ab").unwrap());
    assert_eq!(store.lite_queue_count(), 6);
    assert_eq!(store.lite_queue_counts()[0], ("P".into(), 4));
    assert_eq!(
        names_of(&store.lite_queues("P", None, 100).unwrap()),
        vec!["a", "b", "zz", "long-name-1"]
    );
    // A send after the purge creates it again, from offset 0.
    let r = append_one(&store, lite("P", "ab", 20)).await;
    assert_eq!(r.queue_offset, 0);
    assert_eq!(store.lite_queue_count(), 7);
    store.shutdown();
    drop(store);

    // At open the counts come from the queue heads.
    let store = MessageStore::open(config(dir.path())).unwrap();
    assert_eq!(store.lite_queue_count(), 7);
    assert_eq!(store.lite_queues_created(), 0);
    assert_eq!(
        store.lite_queue_counts(),
        vec![("P".into(), 5), ("PP".into(), 1), ("Q".into(), 1)]
    );
}

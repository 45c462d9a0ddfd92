//! Unit tests of scheduled delivery over a real store (commit log + RocksDB in a temp dir),
//! with a clock the tests move by hand.

use super::*;
use crate::store::StoredMessage;
use apogee_proto::v2::MessageType;

/// The start of the test clock (ms since the epoch).
const T: i64 = 1_800_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MessageStore>,
    now: Arc<AtomicI64>,
    schedule: Arc<Schedule>,
}

fn fixture_in(dir: tempfile::TempDir) -> Fixture {
    let (store, topics) =
        crate::topics::test_store_with_orders(dir.path(), crate::topics::MessageKind::Delay);
    let now = Arc::new(AtomicI64::new(T));
    let clock_now = now.clone();
    let schedule = Schedule::new(
        store.clone(),
        topics,
        ScheduleSection::default(),
        "broker-a".into(),
        Arc::new(move || clock_now.load(Ordering::SeqCst)),
    );
    Fixture {
        _dir: dir,
        store,
        now,
        schedule,
    }
}

fn fixture() -> Fixture {
    fixture_in(tempfile::tempdir().unwrap())
}

fn message(id: &str, due_ms: i64) -> NewMessage {
    NewMessage {
        topic: "orders".into(),
        queue_id: 3,
        message_id: id.into(),
        tag: Some("unpaid".into()),
        keys: vec!["order-1".into()],
        message_group: None,
        message_type: MessageType::Delay as u8,
        born_timestamp_ms: T,
        born_host: "10.0.0.9".into(),
        delivery_timestamp_ms: Some(due_ms),
        reconsume_times: 0,
        properties: vec![("amount".into(), "42".into())],
        // A remoting producer's flag: a fact of the message its publication keeps.
        internal: vec![(internal::FLAG.into(), "7".into())],
        body: b"cancel order 1 if unpaid".to_vec().into(),
    }
}

impl Fixture {
    async fn schedule(&self, id: &str, due_ms: i64) -> String {
        let mut m = message(id, due_ms);
        self.schedule.check_delivery_time(&m).unwrap();
        let handle = self.schedule.to_waiting(&mut m);
        self.store.append(vec![m]).await.unwrap();
        self.schedule.stored([due_ms]);
        handle
    }

    fn set_clock(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    fn published(&self) -> Vec<StoredMessage> {
        self.store
            .read_queue("orders", 3, 0, 100, usize::MAX)
            .unwrap()
    }

    fn published_ids(&self) -> Vec<String> {
        self.published()
            .into_iter()
            .map(|m| m.msg.message_id)
            .collect()
    }
}

#[tokio::test]
async fn the_due_index_is_ordered_by_due_time_and_returns_only_what_is_due() {
    let f = fixture();
    let c = f.schedule("C", T + 3_000).await;
    let a = f.schedule("A", T + 1_000).await;
    let b1 = f.schedule("B1", T + 2_000).await;
    let b2 = f.schedule("B2", T + 2_000).await;
    let kv = f.store.kv();
    assert_eq!(
        schedule_index::next_due(kv.as_ref(), 0).unwrap(),
        Some(T + 1_000)
    );
    let due = |now| -> Vec<String> {
        schedule_index::due(kv.as_ref(), 0, now, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
    assert!(due(T + 999).is_empty());
    assert_eq!(due(T + 1_000), vec![a.clone()]);
    let mut same_time = vec![b1.clone(), b2.clone()];
    same_time.sort();
    let mut expected = vec![a.clone()];
    expected.extend(same_time);
    assert_eq!(due(T + 2_500), expected);
    expected.push(c.clone());
    assert_eq!(due(T + 60_000), expected);
    let listed: Vec<i64> = f
        .schedule
        .list("orders", 0)
        .unwrap()
        .iter()
        .map(|i| i.due_ms)
        .collect();
    assert_eq!(listed, vec![T + 1_000, T + 2_000, T + 2_000, T + 3_000]);
    assert!(f.schedule.list("other", 0).unwrap().is_empty());
}

#[tokio::test]
async fn a_message_is_published_once_at_its_time_as_sent() {
    let f = fixture();
    let handle = f.schedule("MSG-1", T + 5_000).await;
    assert_eq!(f.schedule.deliver_due().await.unwrap(), 0);
    assert!(f.published().is_empty(), "invisible until due");
    f.set_clock(T + 5_000);
    assert_eq!(f.schedule.deliver_due().await.unwrap(), 1);
    let published = f.published();
    assert_eq!(published.len(), 1);
    let (m, sent) = (&published[0].msg, message("MSG-1", T + 5_000));
    assert_eq!(
        (&m.message_id, &m.tag, &m.keys, &m.properties, &m.body),
        (
            &sent.message_id,
            &sent.tag,
            &sent.keys,
            &sent.properties,
            &sent.body
        )
    );
    assert_eq!(m.delivery_timestamp_ms, Some(T + 5_000));
    assert_eq!(m.internal(internal::SCHED_ID), Some(handle.as_str()));
    assert_eq!(m.flag(), 7);
    assert_eq!(f.schedule.deliver_due().await.unwrap(), 0);
    let stats = f.schedule.stats();
    assert_eq!((stats.delivered, stats.waiting), (1, 0));
    assert!(f.schedule.list("", 0).unwrap().is_empty());
}

#[tokio::test]
async fn the_clock_jumping_back_delivers_nothing_twice_and_nothing_early() {
    let f = fixture();
    f.schedule("EARLY", T + 1_000).await;
    f.schedule("LATE", T + 5_000).await;
    f.set_clock(T + 2_000);
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["EARLY"]);
    // Back by 10 s: the delivered one stays delivered, the waiting one waits for its time
    // by the (new) clock.
    f.set_clock(T - 8_000);
    f.schedule.deliver_due().await.unwrap();
    // A message sent now, due before the time the clock showed before the jump, still comes
    // at its time.
    f.schedule("NEW", T - 7_000).await;
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["EARLY"]);
    f.set_clock(T - 7_000);
    f.schedule.deliver_due().await.unwrap();
    f.set_clock(T + 4_999);
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["EARLY", "NEW"]);
    f.set_clock(T + 5_000);
    f.schedule.deliver_due().await.unwrap();
    f.set_clock(T + 2_000);
    f.schedule.deliver_due().await.unwrap();
    f.set_clock(T + 9_000);
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["EARLY", "NEW", "LATE"]);
}

#[tokio::test]
async fn a_recalled_message_is_never_delivered_and_a_delivered_one_cannot_be_recalled() {
    let f = fixture();
    let recalled = f.schedule("RECALLED", T + 1_000).await;
    let delivered = f.schedule("DELIVERED", T + 1_000).await;
    assert_eq!(
        f.schedule.recall("orders", &recalled).await.unwrap(),
        "RECALLED"
    );
    // Again: OK, nothing more.
    f.schedule.recall("", &recalled).await.unwrap();
    f.set_clock(T + 1_000);
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["DELIVERED"]);
    let err = f.schedule.recall("orders", &delivered).await.unwrap_err();
    assert!(matches!(err, ApogeeError::PreconditionFailed(_)), "{err}");
    let wrong_topic = f.schedule("OTHER", T + 9_000).await;
    let err = f
        .schedule
        .recall("payments", &wrong_topic)
        .await
        .unwrap_err();
    assert!(matches!(err, ApogeeError::MessageNotFound(_)), "{err}");
    let unknown = routed_id::new_recall_handle("broker-a");
    let err = f.schedule.recall("orders", &unknown).await.unwrap_err();
    assert!(matches!(err, ApogeeError::MessageNotFound(_)), "{err}");
    let elsewhere = routed_id::new_recall_handle("broker-b");
    let err = f.schedule.recall("orders", &elsewhere).await.unwrap_err();
    assert!(matches!(err, ApogeeError::MessageNotFound(_)), "{err}");
    let err = f.schedule.recall("orders", "garbage").await.unwrap_err();
    assert!(matches!(err, ApogeeError::BadRequest(_)), "{err}");
    let stats = f.schedule.stats();
    assert_eq!((stats.recalled, stats.delivered, stats.waiting), (1, 1, 1));
}

#[tokio::test]
async fn delivery_times_beyond_the_maximum_are_refused() {
    let f = fixture();
    let max = ScheduleSection::default().max_delay_ms as i64;
    f.schedule
        .check_delivery_time(&message("OK", T + max))
        .unwrap();
    let err = f
        .schedule
        .check_delivery_time(&message("TOO-LATE", T + max + 1))
        .unwrap_err();
    assert!(matches!(err, ApogeeError::IllegalDeliveryTime(_)), "{err}");
    // In the past: accepted, due at once.
    f.schedule("PAST", T - 60_000).await;
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["PAST"]);
}

#[tokio::test]
async fn waiting_messages_survive_a_restart_and_are_delivered_once() {
    let f = fixture();
    f.schedule("KEPT", T + 1_000).await;
    let recalled = f.schedule("RECALLED", T + 1_000).await;
    f.schedule.recall("orders", &recalled).await.unwrap();
    let Fixture {
        _dir: dir,
        store,
        schedule,
        ..
    } = f;
    drop(schedule);
    store.shutdown();
    drop(store);
    let f = fixture_in(dir);
    assert_eq!(f.schedule.list("orders", 0).unwrap().len(), 1);
    f.set_clock(T + 1_000);
    f.schedule.deliver_due().await.unwrap();
    f.schedule.deliver_due().await.unwrap();
    assert_eq!(f.published_ids(), vec!["KEPT"]);
}

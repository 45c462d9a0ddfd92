//! Expiry of lite topics (RIP-83): a LITE parent topic whose `lite_expire_after_secs` is
//! above 0 drops each of its lite topics that got no message for that long.
//!
//! One task per broker, run by the master only (a role task of `crate::services`), looks
//! every `lite.expiry_scan_interval_secs` at every LITE topic with an expiry, page by page
//! over its lite queues (`MessageStore::lite_queues`: the index's queue heads, nothing kept
//! in memory per lite topic), and drops each lite queue whose last message is older than the
//! parent's limit:
//! 1. its consume-queue entries, key entries and queue head (`MessageStore::expire_lite_queue`:
//!    decided and done on the store's writer between appends, so a message stored meanwhile
//!    keeps the lite topic alive; a later send creates it anew at offset 0);
//! 2. every group's consumer offset and consume state of it (`ConsumeEngine::forget_topic`);
//! 3. its subscriptions, through the [`LiteExpiryListener`] the lite subscription registry
//!    plugs in ([`LiteExpiry::set_listener`]): it tells the subscribers.
//!
//! Expiry makes a lite topic's messages unreachable at once; their bytes stay in the commit
//! log until their segment ages out under retention like any other record.
//!
//! Only the master expires. The queue heads and entries of a slave's index are derived
//! (never replicated; a topic delete's purge does not reach slaves either), so a slave keeps
//! an expired lite queue's index rows, while the consumer offsets and consume state it holds
//! follow the master's deletes (replicated state). A slave that becomes master expires them
//! in its own first scan: their last store times are as old as on the old master.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use apogee_proto::ApogeeError;
use tokio::sync::watch;

use crate::consume::{ConsumeEngine, ServingGate};
use crate::store::MessageStore;
use crate::topics::TopicTable;

/// Told of every lite topic expiry, after its messages, offsets and consume state are gone
/// (the lite subscription registry: it drops the subscriptions and tells the subscribers).
pub trait LiteExpiryListener: Send + Sync {
    fn lite_expired(&self, parent: &str, lite: &str);
}

/// Lite queues read per page of a scan.
const SCAN_PAGE: usize = 1024;

/// The expiry of lite topics: what it reads and drops.
pub struct LiteExpiry {
    store: Arc<MessageStore>,
    topics: Arc<TopicTable>,
    consume: Arc<ConsumeEngine>,
    listener: OnceLock<Arc<dyn LiteExpiryListener>>,
}

impl LiteExpiry {
    pub fn new(
        store: Arc<MessageStore>,
        topics: Arc<TopicTable>,
        consume: Arc<ConsumeEngine>,
    ) -> Arc<LiteExpiry> {
        Arc::new(LiteExpiry {
            store,
            topics,
            consume,
            listener: OnceLock::new(),
        })
    }

    /// Plugs in who is told of expiries (once, at build; a second call is ignored).
    pub fn set_listener(&self, listener: Arc<dyn LiteExpiryListener>) {
        if self.listener.set(listener).is_err() {
            tracing::warn!("the lite expiry listener was set already; keeping the first");
        }
    }

    /// One pass over every LITE topic with an expiry, at `now_ms`; the lite topics dropped
    /// (parent, lite). Blocking (index reads, the writer's purges).
    pub fn scan_once(&self, now_ms: i64) -> Result<Vec<(String, String)>, ApogeeError> {
        let mut expired = Vec::new();
        for topic in self.topics.list() {
            let Some(expiry) = topic.lite_expiry.filter(|_| topic.is_lite_parent()) else {
                continue;
            };
            let after_ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
            let idle_before = now_ms.saturating_sub(after_ms);
            self.scan_parent(&topic.name, idle_before, &mut expired)?;
        }
        Ok(expired)
    }

    /// Drops `parent`'s lite topics with no message stored at or after `idle_before`.
    fn scan_parent(
        &self,
        parent: &str,
        idle_before: i64,
        expired: &mut Vec<(String, String)>,
    ) -> Result<(), ApogeeError> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .lite_queues(parent, after.as_deref(), SCAN_PAGE)?;
            for q in &page {
                if q.last_store_ms.is_some_and(|t| t >= idle_before) {
                    continue;
                }
                if self.store.expire_lite_queue(parent, &q.lite, idle_before)? {
                    self.forget(parent, &q.lite)?;
                    expired.push((parent.to_string(), q.lite.clone()));
                }
            }
            match page.last() {
                Some(last) if page.len() == SCAN_PAGE => after = Some(last.lite.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// The consume state and subscriptions of an expired lite topic.
    fn forget(&self, parent: &str, lite: &str) -> Result<(), ApogeeError> {
        let queue = apogee_proto::names::lite_queue_topic(parent, lite);
        self.consume.forget_topic(&queue)?;
        if let Some(listener) = self.listener.get() {
            listener.lite_expired(parent, lite);
        }
        Ok(())
    }

    /// The master's expiry task: a scan every `interval` while `gate` allows writes, until
    /// `stop` turns true.
    pub fn spawn(
        self: Arc<Self>,
        interval: Duration,
        gate: ServingGate,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                if let Err(why) = gate() {
                    tracing::debug!("lite topic expiry waits: {why}");
                    continue;
                }
                let this = self.clone();
                let now = apogee_proto::time::now_ms();
                match tokio::task::spawn_blocking(move || this.scan_once(now)).await {
                    Ok(Ok(expired)) if !expired.is_empty() => {
                        tracing::info!(count = expired.len(), "lite topics expired");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("lite topic expiry: {e}"),
                    Err(e) => tracing::error!("lite topic expiry task failed: {e}"),
                }
            }
        })
    }
}

/// The lite subscription registry drops an expired lite topic from every set and tells its
/// subscribers.
impl LiteExpiryListener for crate::consume::lite::LiteRegistry {
    fn lite_expired(&self, parent: &str, lite: &str) {
        self.lite_topic_expired(&apogee_proto::names::lite_queue_topic(parent, lite));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemKv, NewMessage, StoreConfig};
    use crate::topics::{MessageKind, TopicConfig};
    use apogee_proto::names::lite_queue_topic;
    use apogee_proto::v2::MessageType;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Heard(Mutex<Vec<(String, String)>>);

    impl LiteExpiryListener for Heard {
        fn lite_expired(&self, parent: &str, lite: &str) {
            self.0.lock().push((parent.to_string(), lite.to_string()));
        }
    }

    fn topic(name: &str, kind: MessageKind, expire_secs: u64) -> TopicConfig {
        let expiry = (expire_secs > 0).then(|| Duration::from_secs(expire_secs));
        TopicConfig::new(name, 1)
            .with_kinds(&[kind])
            .with_lite_expiry(expiry)
    }

    fn record(topic: &str, id: &str) -> NewMessage {
        NewMessage {
            topic: topic.to_string(),
            queue_id: 0,
            message_id: id.to_string(),
            tag: None,
            keys: vec![format!("key-{id}")],
            message_group: None,
            message_type: MessageType::Lite as u8,
            born_timestamp_ms: 1,
            born_host: "h".into(),
            delivery_timestamp_ms: None,
            reconsume_times: 0,
            properties: vec![],
            internal: vec![],
            body: bytes::Bytes::from_static(b"body"),
        }
    }

    #[tokio::test]
    async fn expiry_drops_stale_lite_topics_and_keeps_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            MessageStore::open_with_kv(StoreConfig::for_tests(dir.path()), Arc::new(MemKv::new()))
                .unwrap();
        let topics = Arc::new(TopicTable::load(store.kv()).unwrap());
        topics
            .create(topic("agents", MessageKind::Lite, 1))
            .unwrap();
        // A LITE parent without expiry, and a NORMAL topic: never looked at.
        topics
            .create(topic("forever", MessageKind::Lite, 0))
            .unwrap();
        topics
            .create(topic("orders", MessageKind::Normal, 0))
            .unwrap();
        let consume = Arc::new(ConsumeEngine::open(store.clone()).unwrap());
        let expiry = LiteExpiry::new(store.clone(), topics.clone(), consume.clone());
        let heard = Arc::new(Heard::default());
        expiry.set_listener(heard.clone());

        let stale = lite_queue_topic("agents", "stale");
        let stored = store.append(vec![record(&stale, "S")]).await.unwrap()[0];
        store
            .append(vec![record(&lite_queue_topic("forever", "old"), "F")])
            .await
            .unwrap();
        // A group consumed the stale one: its position goes with it.
        consume.reset_queue("g", &stale, 0, 1).unwrap();
        assert!(consume.all_progress().iter().any(|(_, p)| p.topic == stale));
        // The fresh one is stored after the stale one's store time (the clock moved on).
        let t = stored.store_timestamp_ms;
        apogee_tests::wait_until(Duration::from_secs(5), "the clock to pass", || async {
            (apogee_proto::time::now_ms() > t)
                .then_some(())
                .ok_or_else(|| "same millisecond".to_string())
        })
        .await;
        store
            .append(vec![record(&lite_queue_topic("agents", "fresh"), "N")])
            .await
            .unwrap();

        // Expire what is older than 1 s at t + 1 s + 1 ms: the stale one only.
        let expired = expiry.scan_once(t + 1001).unwrap();
        assert_eq!(expired, vec![("agents".to_string(), "stale".to_string())]);
        assert_eq!(*heard.0.lock(), expired);
        assert!(!store.lite_queue_exists("agents", "stale").unwrap());
        assert!(store.lite_queue_exists("agents", "fresh").unwrap());
        assert!(store.lite_queue_exists("forever", "old").unwrap());
        assert!(store
            .read_queue(&stale, 0, 0, 10, usize::MAX)
            .unwrap()
            .is_empty());
        assert!(store.lookup_by_key(&stale, "key-S", 10).unwrap().is_empty());
        assert!(consume.all_progress().iter().all(|(_, p)| p.topic != stale));
        assert_eq!(store.lite_queue_count(), 2);
        assert_eq!(store.lite_queues_removed(), 1);
        // Nothing more to drop at the same time; later, the fresh one goes too.
        assert!(expiry.scan_once(t + 1001).unwrap().is_empty());
        let later = apogee_proto::time::now_ms() + 2000;
        assert_eq!(
            expiry.scan_once(later).unwrap(),
            vec![("agents".to_string(), "fresh".to_string())]
        );
        // A send after expiry creates the lite topic anew from offset 0.
        let again = store.append(vec![record(&stale, "S2")]).await.unwrap()[0];
        assert_eq!(again.queue_offset, 0);
    }

    #[test]
    fn lite_queues_are_labelled_by_their_parent() {
        let q = lite_queue_topic("agents", "s-1");
        assert_eq!(crate::metrics::topic_label(&q), "agents");
        assert_eq!(crate::metrics::topic_label("orders"), "orders");
    }
}

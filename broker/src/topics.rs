//! The topics this broker group hosts: their configs ([`TopicConfig`]), persisted in the
//! index database (column family `TopicConfig`, one value per topic, encoded as
//! `crate::topic_config` describes), and the data version the broker reports to the
//! NameServers. Any change wakes the registration task so NameServers learn it at once.

use crate::store::keys::{self, config_key, decode_config_key, MetaKey};
use crate::store::{Cf, KvBatch, KvStore};
pub use crate::topic_config::{MessageKind, MessageKinds, TopicConfig, TopicPermission};
use apogee_proto::{names, ApogeeError};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

const DATA_VERSION_KEY: &[u8] = MetaKey::TopicsDataVersion.key();

pub struct TopicTable {
    kv: Arc<dyn KvStore>,
    /// Shared configs: a send reads its topic's without copying it.
    topics: RwLock<BTreeMap<String, Arc<TopicConfig>>>,
    data_version: AtomicI64,
    changed: Notify,
    /// `auto_create_topics`: a send to an unknown topic creates it (off until set).
    auto_create: AtomicBool,
}

fn decode_config(key: &[u8], value: &[u8]) -> Result<TopicConfig, ApogeeError> {
    let bad = |why: String| {
        ApogeeError::Internal(format!(
            "topic config {}: {why}",
            String::from_utf8_lossy(key)
        ))
    };
    let name = decode_config_key(key).ok_or_else(|| bad("unreadable key".into()))?;
    TopicConfig::decode(&name, value).map_err(bad)
}

/// The kind of a record's message type byte in the log (the wire's `MessageType` number).
fn kind_in_log(message_type: u8) -> Option<MessageKind> {
    apogee_proto::v2::MessageType::try_from(i32::from(message_type))
        .ok()
        .and_then(MessageKind::from_wire)
}

/// A data version's value (topics, groups, access).
pub(crate) fn encode_data_version(version: i64) -> [u8; 9] {
    keys::encode_u64(version.max(0) as u64)
}

/// Reads a data version's value; 0 when there is none.
pub(crate) fn decode_data_version(value: Option<Vec<u8>>) -> Result<i64, ApogeeError> {
    match value {
        None => Ok(0),
        Some(v) => keys::decode_u64(&v)
            .map(|n| n as i64)
            .ok_or_else(|| ApogeeError::Internal(format!("unreadable data version {v:02x?}"))),
    }
}

impl TopicTable {
    /// Loads the persisted topics.
    pub fn load(kv: Arc<dyn KvStore>) -> Result<Self, ApogeeError> {
        let internal = ApogeeError::internal::<crate::store::StoreError>;
        let mut topics = BTreeMap::new();
        for (key, value) in kv
            .scan(Cf::TopicConfig, b"", &[0xff], usize::MAX)
            .map_err(internal)?
        {
            let config = decode_config(&key, &value)?;
            topics.insert(config.name.clone(), Arc::new(config));
        }
        let version = decode_data_version(kv.get(Cf::Meta, DATA_VERSION_KEY).map_err(internal)?)?;
        Ok(TopicTable {
            kv,
            topics: RwLock::new(topics),
            data_version: AtomicI64::new(version),
            changed: Notify::new(),
            auto_create: AtomicBool::new(false),
        })
    }

    /// Whether a send to an unknown topic creates it.
    pub fn auto_creates(&self) -> bool {
        self.auto_create.load(Ordering::Relaxed)
    }

    /// Turns creation on first send on or off (the config, and a runtime setting).
    pub fn set_auto_create(&self, on: bool) {
        self.auto_create.store(on, Ordering::Relaxed);
    }

    /// Re-reads the table from the index (a slave after replicated changes).
    pub fn reload(&self) -> Result<(), ApogeeError> {
        let fresh = Self::load(self.kv.clone())?;
        *self.topics.write() = fresh.topics.into_inner();
        self.data_version
            .store(fresh.data_version.into_inner(), Ordering::SeqCst);
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<TopicConfig> {
        self.get_shared(name).map(Arc::unwrap_or_clone)
    }

    /// The topic's config as the table holds it (no copy).
    pub fn get_shared(&self, name: &str) -> Option<Arc<TopicConfig>> {
        self.topics.read().get(name).cloned()
    }

    pub fn list(&self) -> Vec<TopicConfig> {
        self.topics.read().values().map(|c| (**c).clone()).collect()
    }

    pub fn data_version(&self) -> i64 {
        self.data_version.load(Ordering::SeqCst)
    }

    /// Woken after every change.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    fn persist(&self, name: &str, config: Option<&TopicConfig>) -> Result<(), ApogeeError> {
        let version = self.data_version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut batch = KvBatch::new();
        match config {
            Some(c) => batch.put(Cf::TopicConfig, config_key(name), c.encode()),
            // With the mark that the rest of the deletion is still to do
            // (`crate::actions::topics`): a crash from here on is finished at the next start.
            None => {
                batch.delete(Cf::TopicConfig, config_key(name));
                batch.put(Cf::Meta, keys::topic_deleting_key(name), keys::MARKER);
            }
        }
        batch.put(Cf::Meta, DATA_VERSION_KEY, encode_data_version(version));
        self.kv
            .write(batch)
            .map_err(|e| ApogeeError::internal_in(format!("persisting topic {name}"), e))?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Creates a topic; fails if it exists or its config is not one a topic may have.
    pub fn create(&self, config: TopicConfig) -> Result<TopicConfig, ApogeeError> {
        config.check()?;
        let mut topics = self.topics.write();
        if topics.contains_key(&config.name) {
            return Err(ApogeeError::AlreadyExists(format!("topic {}", config.name)));
        }
        self.persist(&config.name, Some(&config))?;
        topics.insert(config.name.clone(), Arc::new(config.clone()));
        Ok(config)
    }

    /// Replaces an existing topic's config. Queues are never taken away from
    /// a topic that holds messages in them: the queue count may only grow.
    pub fn update(&self, config: TopicConfig) -> Result<TopicConfig, ApogeeError> {
        config.check()?;
        let mut topics = self.topics.write();
        let Some(old) = topics.get(&config.name) else {
            return Err(ApogeeError::TopicNotFound(config.name));
        };
        if config.queues < old.queues {
            return Err(ApogeeError::BadRequest(format!(
                "topic {} has {} queues; shrinking to {} would strand their messages",
                config.name, old.queues, config.queues
            )));
        }
        self.persist(&config.name, Some(&config))?;
        topics.insert(config.name.clone(), Arc::new(config.clone()));
        Ok(config)
    }

    /// Deletes a topic's config, marking the topic as being deleted in the same write
    /// ([`keys::topic_deleting_key`]); the caller purges the rest and then
    /// [`finish_delete`](Self::finish_delete)s.
    pub fn delete(&self, name: &str) -> Result<(), ApogeeError> {
        let mut topics = self.topics.write();
        if !topics.contains_key(name) {
            return Err(ApogeeError::TopicNotFound(name.to_string()));
        }
        self.persist(name, None)?;
        topics.remove(name);
        Ok(())
    }

    /// The topics whose deletion is marked and not finished (a crash came in between).
    pub fn unfinished_deletes(&self) -> Result<Vec<String>, ApogeeError> {
        let (from, to) = MetaKey::TopicDeleting.range();
        let rows = self
            .kv
            .scan(Cf::Meta, &from, &to, usize::MAX)
            .map_err(|e| ApogeeError::internal_in("reading topic deletion marks", e))?;
        Ok(rows
            .iter()
            .filter_map(|(k, _)| keys::decode_topic_deleting_key(k))
            .collect())
    }

    /// Removes the mark of a deletion whose purge is done.
    pub fn finish_delete(&self, name: &str) -> Result<(), ApogeeError> {
        let mut batch = KvBatch::new();
        batch.delete(Cf::Meta, keys::topic_deleting_key(name));
        self.kv
            .write(batch)
            .map_err(|e| ApogeeError::internal_in(format!("finishing the deletion of {name}"), e))
    }

    /// A topic only the broker writes (a group's dead-letter topic), created
    /// with `queues` queues if missing; consumers read it like any topic.
    pub fn ensure_system_topic(&self, name: &str, queues: u32) -> Result<TopicConfig, ApogeeError> {
        if let Some(c) = self.get(name) {
            return Ok(c);
        }
        let config =
            TopicConfig::new(name, queues).with_kinds(&[MessageKind::Normal, MessageKind::Fifo]);
        self.create_or_get(config)
    }

    /// After the index was rebuilt from the commit log (its directory lost), recreates the
    /// topics found in the log that have no config: as many queues as the log shows, the
    /// message types seen, default permission. Dead-letter topics come back as broker-owned;
    /// other internal topics are recreated by their owners. Returns the recreated names.
    pub fn restore_from_log(
        &self,
        found: &crate::store::IndexRebuild,
    ) -> Result<Vec<String>, ApogeeError> {
        let mut restored = Vec::new();
        for (name, (max_qid, types)) in &found.topics {
            if self.get(name).is_some() {
                continue;
            }
            let queues = max_qid.saturating_add(1);
            if name.starts_with(names::DLQ_PREFIX) {
                self.ensure_system_topic(name, queues)?;
            } else if names::is_system_topic(name) {
                continue;
            } else {
                let mut config = TopicConfig::new(name.clone(), queues);
                let kinds: Vec<MessageKind> =
                    types.iter().filter_map(|&t| kind_in_log(t)).collect();
                if !kinds.is_empty() {
                    config = config.with_kinds(&kinds);
                }
                self.create_or_get(config)?;
            }
            restored.push(name.clone());
        }
        if !restored.is_empty() {
            tracing::warn!(
                topics = ?restored,
                "recreated topics from the rebuilt index (queue counts and message types as \
                 found in the log, default permission); check them with `apogee topic list`"
            );
        }
        Ok(restored)
    }

    /// Creates `config`'s topic, or returns the one another caller created in between.
    fn create_or_get(&self, config: TopicConfig) -> Result<TopicConfig, ApogeeError> {
        let name = config.name.clone();
        match self.create(config) {
            Ok(c) => Ok(c),
            Err(_) => self.get(&name).ok_or(ApogeeError::TopicNotFound(name)),
        }
    }

    /// The topic a producer writes to, created on the fly when `auto_create`. The trace
    /// topic, whose records send validation lets through only where message trace is on
    /// (`crate::produce::validate`), is created at its first record whatever `auto_create`.
    pub fn for_send(
        &self,
        name: &str,
        auto_create: bool,
        default_queues: u32,
    ) -> Result<Arc<TopicConfig>, ApogeeError> {
        if let Some(c) = self.get_shared(name) {
            return Ok(c);
        }
        if name == names::TRACE_TOPIC {
            return self
                .ensure_system_topic(name, crate::config::TRACE_TOPIC_QUEUES)
                .map(Arc::new);
        }
        if !auto_create || names::is_system_topic(name) {
            return Err(ApogeeError::TopicNotFound(name.to_string()));
        }
        self.create_or_get(TopicConfig::new(name, default_queues))
            .map(Arc::new)
    }
}

/// For unit tests: a store in `dir` whose topic table holds topic `orders` (4 queues)
/// accepting messages of type `message_type`.
#[cfg(test)]
pub(crate) fn test_store_with_orders(
    dir: &std::path::Path,
    kind: MessageKind,
) -> (Arc<crate::store::MessageStore>, Arc<TopicTable>) {
    let store =
        crate::store::MessageStore::open(crate::store::StoreConfig::for_tests(dir)).expect("store");
    let topics = Arc::new(TopicTable::load(store.kv()).expect("topics"));
    if topics.get("orders").is_none() {
        let orders = TopicConfig::new("orders", 4).with_kinds(&[kind]);
        topics.create(orders).expect("topic created");
    }
    (store, topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemKv;

    fn table() -> (Arc<dyn KvStore>, TopicTable) {
        let kv: Arc<dyn KvStore> = Arc::new(MemKv::default());
        let t = TopicTable::load(kv.clone()).unwrap();
        (kv, t)
    }

    #[test]
    fn topics_survive_reload_and_bump_the_data_version() {
        let (kv, t) = table();
        let c = TopicConfig::new("orders", 8).with_permission(TopicPermission::Read);
        t.create(c.clone()).unwrap();
        assert_eq!(t.data_version(), 1);
        let again = TopicTable::load(kv).unwrap();
        assert_eq!(again.get("orders").unwrap(), c);
        assert_eq!(again.data_version(), 1);
    }

    #[test]
    fn create_twice_fails_and_queues_never_shrink() {
        let (_, t) = table();
        let c = TopicConfig::new("t", 4);
        t.create(c.clone()).unwrap();
        assert!(t.create(c.clone()).is_err());
        let smaller = TopicConfig { queues: 2, ..c };
        assert!(t.update(smaller).is_err());
        assert!(t.create(TopicConfig::new("none", 0)).is_err());
        assert!(t
            .create(TopicConfig::new("none", 1).with_kinds(&[]))
            .is_err());
    }

    #[test]
    fn auto_create_only_when_enabled_and_never_for_system_topics_but_the_trace_topic() {
        let (_, t) = table();
        assert!(matches!(
            t.for_send("x", false, 8),
            Err(ApogeeError::TopicNotFound(_))
        ));
        assert_eq!(t.for_send("x", true, 8).unwrap().queues, 8);
        assert!(t.for_send("%RETRY%g", true, 8).is_err());
        let trace = t.for_send(names::TRACE_TOPIC, false, 8).unwrap();
        assert_eq!(trace.queues, crate::config::TRACE_TOPIC_QUEUES);
        assert!(
            t.get(names::TRACE_TOPIC).is_some(),
            "the trace topic was kept"
        );
    }
}

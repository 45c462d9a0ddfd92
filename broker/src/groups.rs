//! The consumer groups this broker group knows: their configs (delivery
//! attempts, backoff, FIFO) and, for a group created on first use while
//! `consume.auto_create_start = "latest"`, when it was created (it starts
//! reading at the messages stored after that). Persisted in the index database
//! (column family `GroupConfig`, one value per group: a version byte, for
//! version 2 the creation time, then the `cluster.v1.GroupConfig` protobuf),
//! with the data version the broker reports to the NameServers with its
//! registration. Any change wakes the registration task so NameServers learn
//! it at once.
//!
//! A receive calls [`GroupTable::resolve_for_receive`]: an unknown group is
//! created with the defaults when `consume.auto_create_groups` is on (logged,
//! and told to the client), and refused with CONSUMER_GROUP_NOT_FOUND
//! otherwise. Heartbeats and Settings only [`GroupTable::lookup`] it: the
//! group is created where it starts to consume, with the topic and client
//! that did.

use crate::config::AutoCreateStart;
use crate::store::keys::{config_key, MetaKey};
use crate::store::{Cf, KvBatch, KvStore};
use apogee_proto::cluster;
use apogee_proto::group::GroupConfig;
use apogee_proto::ApogeeError;
use parking_lot::RwLock;
use prost::Message as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

const DATA_VERSION_KEY: &[u8] = MetaKey::GroupsDataVersion.key();
/// The first byte of every value: the layout that follows. Version 1: the protobuf.
const VALUE_V1: u8 = 1;
/// Version 2: the creation time (ms since the epoch, big-endian i64), then the protobuf.
const VALUE_V2: u8 = 2;

/// One group as the table holds it.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    config: Arc<GroupConfig>,
    /// Set for a group that starts at the messages stored at or after this time; None:
    /// at the first message still stored.
    start_after_ms: Option<i64>,
}

/// A group a receive consumes as: its config, where it starts in a queue it never
/// consumed from, and whether this receive created it.
#[derive(Clone, Debug)]
pub struct ReceivingGroup {
    pub config: Arc<GroupConfig>,
    /// See [`GroupTable::start_after_ms`].
    pub start_after_ms: Option<i64>,
    /// Where the group starts, when this receive created it.
    pub created: Option<AutoCreateStart>,
}

pub struct GroupTable {
    kv: Arc<dyn KvStore>,
    /// `consume.auto_create_groups`, changeable at runtime.
    auto_create: AtomicBool,
    /// `consume.auto_create_start` is `latest`.
    auto_create_latest: AtomicBool,
    groups: RwLock<BTreeMap<String, Entry>>,
    data_version: AtomicI64,
    changed: Notify,
}

fn encode(e: &Entry) -> Vec<u8> {
    let mut v = match e.start_after_ms {
        None => vec![VALUE_V1],
        Some(ms) => {
            let mut v = vec![VALUE_V2];
            v.extend(ms.to_be_bytes());
            v
        }
    };
    v.extend(cluster::GroupConfig::from(e.config.as_ref()).encode_to_vec());
    v
}

fn decode(key: &[u8], value: &[u8]) -> Result<Entry, ApogeeError> {
    let bad = |why: String| {
        ApogeeError::Internal(format!(
            "group config {}: {why}",
            String::from_utf8_lossy(key)
        ))
    };
    let (start_after_ms, proto) = match value.split_first() {
        Some((&VALUE_V1, rest)) => (None, rest),
        Some((&VALUE_V2, rest)) if rest.len() >= 8 => {
            let (ms, proto) = rest.split_at(8);
            let ms = i64::from_be_bytes(ms.try_into().expect("8 bytes"));
            (Some(ms), proto)
        }
        Some((&VALUE_V2, _)) => return Err(bad("value too short".into())),
        Some((v, _)) => return Err(bad(format!("unknown value version {v}"))),
        None => return Err(bad("empty value".into())),
    };
    let wire = cluster::GroupConfig::decode(proto).map_err(|e| bad(e.to_string()))?;
    let config = GroupConfig::try_from(&wire).map_err(|e| bad(e.to_string()))?;
    Ok(Entry {
        config: Arc::new(config),
        start_after_ms,
    })
}

impl GroupTable {
    /// Loads the persisted groups. `auto_create` is `consume.auto_create_groups`.
    pub fn load(kv: Arc<dyn KvStore>, auto_create: bool) -> Result<Self, ApogeeError> {
        let internal = ApogeeError::internal::<crate::store::StoreError>;
        let mut groups = BTreeMap::new();
        for (key, value) in kv
            .scan(Cf::GroupConfig, b"", &[0xff], usize::MAX)
            .map_err(internal)?
        {
            let entry = decode(&key, &value)?;
            groups.insert(entry.config.name.clone(), entry);
        }
        let version = crate::topics::decode_data_version(
            kv.get(Cf::Meta, DATA_VERSION_KEY).map_err(internal)?,
        )?;
        Ok(GroupTable {
            kv,
            auto_create: AtomicBool::new(auto_create),
            auto_create_latest: AtomicBool::new(false),
            groups: RwLock::new(groups),
            data_version: AtomicI64::new(version),
            changed: Notify::new(),
        })
    }

    /// Re-reads the table from the index (a slave after replicated changes).
    pub fn reload(&self) -> Result<(), ApogeeError> {
        let fresh = Self::load(self.kv.clone(), self.auto_creates())?;
        *self.groups.write() = fresh.groups.into_inner();
        self.data_version
            .store(fresh.data_version.into_inner(), Ordering::SeqCst);
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<GroupConfig>> {
        self.groups.read().get(name).map(|e| e.config.clone())
    }

    pub fn list(&self) -> Vec<Arc<GroupConfig>> {
        self.groups
            .read()
            .values()
            .map(|e| e.config.clone())
            .collect()
    }

    /// Where `name` starts in a queue it never consumed from: at the first message stored
    /// at or after the time returned, or (None) at the first message still stored. A group
    /// this broker does not know starts where a receive would create it: now, when
    /// auto-created groups start at the latest, else at the earliest.
    pub fn start_after_ms(&self, name: &str, now_ms: i64) -> Option<i64> {
        match self.groups.read().get(name) {
            Some(e) => e.start_after_ms,
            None => (self.auto_creates() && self.auto_create_start() == AutoCreateStart::Latest)
                .then_some(now_ms),
        }
    }

    /// Bumped by every change (persisted, so it only grows across restarts).
    pub fn data_version(&self) -> i64 {
        self.data_version.load(Ordering::SeqCst)
    }

    /// Woken after every change.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Whether unknown groups are created on first use.
    pub fn auto_creates(&self) -> bool {
        self.auto_create.load(Ordering::Relaxed)
    }

    /// Turns creation on first use on or off (a runtime setting).
    pub fn set_auto_create(&self, on: bool) {
        self.auto_create.store(on, Ordering::Relaxed);
    }

    /// Where groups created on first use start (`consume.auto_create_start`).
    pub fn auto_create_start(&self) -> AutoCreateStart {
        if self.auto_create_latest.load(Ordering::Relaxed) {
            AutoCreateStart::Latest
        } else {
            AutoCreateStart::Earliest
        }
    }

    /// Sets where groups created from now on start.
    pub fn set_auto_create_start(&self, start: AutoCreateStart) {
        self.auto_create_latest
            .store(start == AutoCreateStart::Latest, Ordering::Relaxed);
    }

    fn not_found(name: &str) -> ApogeeError {
        ApogeeError::ConsumerGroupNotFound(format!(
            "consumer group {name} does not exist and this broker does not create groups on first use"
        ))
    }

    /// The config of a group a heartbeat or Settings names, without creating it: None
    /// for an unknown group a receive would create (its Settings reply carries the
    /// defaults it will get), refused when unknown groups are not created.
    pub fn lookup(&self, name: &str) -> Result<Option<Arc<GroupConfig>>, ApogeeError> {
        match self.get(name) {
            Some(g) => Ok(Some(g)),
            None if self.auto_creates() => {
                apogee_proto::limits::validate_group(name)?;
                Ok(None)
            }
            None => Err(Self::not_found(name)),
        }
    }

    /// The group a receive of `topic` by `client_id` consumes as: created with the
    /// defaults when it is unknown and auto-creation is on (starting as
    /// `consume.auto_create_start` says; logged), refused otherwise.
    pub fn resolve_for_receive(
        &self,
        name: &str,
        topic: &str,
        client_id: &str,
        now_ms: i64,
    ) -> Result<ReceivingGroup, ApogeeError> {
        let known = |e: &Entry| ReceivingGroup {
            config: e.config.clone(),
            start_after_ms: e.start_after_ms,
            created: None,
        };
        if let Some(e) = self.groups.read().get(name) {
            return Ok(known(e));
        }
        if !self.auto_creates() {
            return Err(Self::not_found(name));
        }
        let defaults = GroupConfig::with_defaults(name);
        defaults.validate()?;
        let mut groups = self.groups.write();
        if let Some(e) = groups.get(name) {
            return Ok(known(e));
        }
        let start = self.auto_create_start();
        let entry = Entry {
            config: Arc::new(defaults),
            start_after_ms: (start == AutoCreateStart::Latest).then_some(now_ms),
        };
        tracing::info!(
            group = name,
            topic,
            client = client_id,
            start = start.as_str(),
            "consumer group did not exist: created on first use"
        );
        self.persist(name, Some(&entry))?;
        groups.insert(name.to_string(), entry.clone());
        Ok(ReceivingGroup {
            config: entry.config,
            start_after_ms: entry.start_after_ms,
            created: Some(start),
        })
    }

    fn persist(&self, name: &str, entry: Option<&Entry>) -> Result<(), ApogeeError> {
        let version = self.data_version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut batch = KvBatch::new();
        match entry {
            Some(e) => batch.put(Cf::GroupConfig, config_key(name), encode(e)),
            None => batch.delete(Cf::GroupConfig, config_key(name)),
        }
        batch.put(
            Cf::Meta,
            DATA_VERSION_KEY,
            crate::topics::encode_data_version(version),
        );
        self.kv
            .write(batch)
            .map_err(|e| ApogeeError::internal_in(format!("persisting group {name}"), e))?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Creates a group; fails if it exists.
    pub fn create(&self, config: GroupConfig) -> Result<Arc<GroupConfig>, ApogeeError> {
        config.validate()?;
        let mut groups = self.groups.write();
        if groups.contains_key(&config.name) {
            return Err(ApogeeError::AlreadyExists(format!(
                "consumer group {0} already exists; change it with `apogee group update {0}`",
                config.name
            )));
        }
        let entry = Entry {
            config: Arc::new(config),
            start_after_ms: None,
        };
        self.persist(&entry.config.name, Some(&entry))?;
        groups.insert(entry.config.name.clone(), entry.clone());
        Ok(entry.config)
    }

    /// Replaces a group's config, creating the group when it is missing (so an
    /// operator can bring every broker group to one config). Where the group
    /// starts in queues it never consumed from stays as it was.
    pub fn update(&self, config: GroupConfig) -> Result<Arc<GroupConfig>, ApogeeError> {
        config.validate()?;
        let mut groups = self.groups.write();
        let entry = Entry {
            start_after_ms: groups.get(&config.name).and_then(|e| e.start_after_ms),
            config: Arc::new(config),
        };
        self.persist(&entry.config.name, Some(&entry))?;
        groups.insert(entry.config.name.clone(), entry.clone());
        Ok(entry.config)
    }

    pub fn delete(&self, name: &str) -> Result<(), ApogeeError> {
        let mut groups = self.groups.write();
        if !groups.contains_key(name) {
            return Err(ApogeeError::ConsumerGroupNotFound(name.to_string()));
        }
        self.persist(name, None)?;
        groups.remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemKv;
    use apogee_proto::group::RetryPolicy;

    fn table(auto_create: bool) -> (Arc<dyn KvStore>, GroupTable) {
        let kv: Arc<dyn KvStore> = Arc::new(MemKv::default());
        let t = GroupTable::load(kv.clone(), auto_create).unwrap();
        (kv, t)
    }

    fn fifo_group(name: &str) -> GroupConfig {
        GroupConfig {
            name: name.into(),
            max_delivery_attempts: 3,
            retry: RetryPolicy::Exponential {
                initial_ms: 100,
                max_ms: 5_000,
                multiplier: 2.0,
            },
            fifo: true,
            lite: None,
            priority_off: false,
        }
    }

    fn receive(t: &GroupTable, name: &str, now_ms: i64) -> Result<ReceivingGroup, ApogeeError> {
        t.resolve_for_receive(name, "topic", "client-1", now_ms)
    }

    #[test]
    fn groups_survive_reload_with_a_versioned_value() {
        let (kv, t) = table(true);
        t.create(fifo_group("g1")).unwrap();
        receive(&t, "g2", 1_000).unwrap();
        t.set_auto_create_start(AutoCreateStart::Latest);
        receive(&t, "g3", 2_000).unwrap();
        assert_eq!(t.data_version(), 3);
        let raw = kv.get(Cf::GroupConfig, &config_key("g1")).unwrap().unwrap();
        assert_eq!(raw[0], VALUE_V1);
        let raw = kv.get(Cf::GroupConfig, &config_key("g3")).unwrap().unwrap();
        assert_eq!(raw[0], VALUE_V2);

        let again = GroupTable::load(kv, false).unwrap();
        assert_eq!(*again.get("g1").unwrap(), fifo_group("g1"));
        assert_eq!(*again.get("g2").unwrap(), GroupConfig::with_defaults("g2"));
        assert_eq!(*again.get("g3").unwrap(), GroupConfig::with_defaults("g3"));
        assert_eq!(again.start_after_ms("g2", 9_000), None);
        assert_eq!(again.start_after_ms("g3", 9_000), Some(2_000));
        assert_eq!(again.data_version(), 3);
    }

    #[test]
    fn unknown_groups_are_created_only_by_a_receive_with_auto_create() {
        let (_, on) = table(true);
        assert_eq!(
            on.lookup("new").unwrap(),
            None,
            "a heartbeat creates nothing"
        );
        assert!(on.list().is_empty());
        let created = receive(&on, "new", 1_000).unwrap();
        assert_eq!(*created.config, GroupConfig::with_defaults("new"));
        assert_eq!(created.created, Some(AutoCreateStart::Earliest));
        assert_eq!(created.start_after_ms, None);
        assert_eq!(on.list().len(), 1);
        let again = receive(&on, "new", 2_000).unwrap();
        assert_eq!(again.created, None, "created once");
        assert!(on.lookup("new").unwrap().is_some());
        assert!(receive(&on, "bad name", 1_000).is_err());
        assert!(on.lookup("bad name").is_err());

        let (_, off) = table(false);
        assert!(matches!(
            receive(&off, "new", 1_000),
            Err(ApogeeError::ConsumerGroupNotFound(_))
        ));
        assert!(matches!(
            off.lookup("new"),
            Err(ApogeeError::ConsumerGroupNotFound(_))
        ));
        assert!(off.list().is_empty());
        off.create(fifo_group("new")).unwrap();
        assert!(receive(&off, "new", 1_000).unwrap().config.fifo);
    }

    #[test]
    fn auto_created_groups_start_where_the_setting_says() {
        let (_, t) = table(true);
        assert_eq!(t.auto_create_start(), AutoCreateStart::Earliest);
        assert_eq!(t.start_after_ms("unknown", 5_000), None);
        t.set_auto_create_start(AutoCreateStart::Latest);
        assert_eq!(t.start_after_ms("unknown", 5_000), Some(5_000));
        let g = receive(&t, "late", 7_000).unwrap();
        assert_eq!(
            (g.created, g.start_after_ms),
            (Some(AutoCreateStart::Latest), Some(7_000))
        );
        assert_eq!(t.start_after_ms("late", 9_000), Some(7_000));
        // An update keeps where the group starts; an explicit create starts at the earliest.
        t.update(fifo_group("late")).unwrap();
        assert_eq!(t.start_after_ms("late", 9_000), Some(7_000));
        t.create(fifo_group("made")).unwrap();
        assert_eq!(t.start_after_ms("made", 9_000), None);
        t.set_auto_create(false);
        assert_eq!(t.start_after_ms("unknown", 5_000), None);
    }

    #[test]
    fn create_update_delete() {
        let (kv, t) = table(false);
        t.create(fifo_group("g")).unwrap();
        match t.create(fifo_group("g")) {
            Err(ApogeeError::AlreadyExists(m)) => {
                assert!(m.contains("apogee group update g"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let mut changed = fifo_group("g");
        changed.fifo = false;
        t.update(changed.clone()).unwrap();
        assert_eq!(*t.get("g").unwrap(), changed);
        // Update creates a missing group.
        t.update(fifo_group("other")).unwrap();
        let mut invalid = fifo_group("g");
        invalid.max_delivery_attempts = 0;
        assert!(t.update(invalid).is_err());
        t.delete("g").unwrap();
        assert!(matches!(
            t.delete("g"),
            Err(ApogeeError::ConsumerGroupNotFound(_))
        ));
        let again = GroupTable::load(kv, false).unwrap();
        assert!(again.get("g").is_none());
        assert!(again.get("other").is_some());
    }
}

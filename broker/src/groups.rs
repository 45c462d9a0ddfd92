//! The consumer groups this broker group knows: their configs (delivery
//! attempts, backoff, FIFO), persisted in the index database (column family
//! `GroupConfig`, one value per group: a version byte, then the
//! `cluster.v1.GroupConfig` protobuf), and the data version the broker reports
//! to the NameServers with its registration. Any change wakes the
//! registration task so NameServers learn it at once.
//!
//! [`GroupTable::resolve`] is what consumer-facing RPCs call: an unknown group
//! is created with the defaults when `consume.auto_create_groups` is on, and
//! refused with CONSUMER_GROUP_NOT_FOUND otherwise.

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

const DATA_VERSION_KEY: &[u8] = b"groups/data_version";
/// The first byte of every value: the layout that follows.
const VALUE_V1: u8 = 1;

pub struct GroupTable {
    kv: Arc<dyn KvStore>,
    /// `consume.auto_create_groups`, changeable at runtime.
    auto_create: AtomicBool,
    groups: RwLock<BTreeMap<String, Arc<GroupConfig>>>,
    data_version: AtomicI64,
    changed: Notify,
}

fn encode(g: &GroupConfig) -> Vec<u8> {
    let mut v = vec![VALUE_V1];
    v.extend(cluster::GroupConfig::from(g).encode_to_vec());
    v
}

fn decode(key: &[u8], value: &[u8]) -> Result<GroupConfig, ApogeeError> {
    let bad = |why: String| {
        ApogeeError::Internal(format!(
            "group config {}: {why}",
            String::from_utf8_lossy(key)
        ))
    };
    match value.split_first() {
        Some((&VALUE_V1, rest)) => {
            let wire = cluster::GroupConfig::decode(rest).map_err(|e| bad(e.to_string()))?;
            GroupConfig::try_from(&wire).map_err(|e| bad(e.to_string()))
        }
        Some((v, _)) => Err(bad(format!("unknown value version {v}"))),
        None => Err(bad("empty value".into())),
    }
}

impl GroupTable {
    /// Loads the persisted groups. `auto_create` is `consume.auto_create_groups`.
    pub fn load(kv: Arc<dyn KvStore>, auto_create: bool) -> Result<Self, ApogeeError> {
        let internal = |e: crate::store::StoreError| ApogeeError::Internal(e.to_string());
        let mut groups = BTreeMap::new();
        for (key, value) in kv
            .scan(Cf::GroupConfig, b"", &[0xff], usize::MAX)
            .map_err(internal)?
        {
            let config = decode(&key, &value)?;
            groups.insert(config.name.clone(), Arc::new(config));
        }
        let version = kv
            .get(Cf::Meta, DATA_VERSION_KEY)
            .map_err(internal)?
            .and_then(|v| v.try_into().ok().map(i64::from_be_bytes))
            .unwrap_or(0);
        Ok(GroupTable {
            kv,
            auto_create: AtomicBool::new(auto_create),
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
        self.groups.read().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<GroupConfig>> {
        self.groups.read().values().cloned().collect()
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

    /// The config of a group a consumer uses: created with the defaults when
    /// it is unknown and auto-creation is on, refused otherwise.
    pub fn resolve(&self, name: &str) -> Result<Arc<GroupConfig>, ApogeeError> {
        if let Some(g) = self.get(name) {
            return Ok(g);
        }
        if !self.auto_creates() {
            return Err(ApogeeError::ConsumerGroupNotFound(format!(
                "consumer group {name} does not exist and this broker does not create groups on first use"
            )));
        }
        let defaults = GroupConfig::with_defaults(name);
        defaults.validate()?;
        let mut groups = self.groups.write();
        if let Some(g) = groups.get(name) {
            return Ok(g.clone());
        }
        tracing::info!(group = name, "creating consumer group on first use");
        self.persist(name, Some(&defaults))?;
        let g = Arc::new(defaults);
        groups.insert(name.to_string(), g.clone());
        Ok(g)
    }

    fn persist(&self, name: &str, config: Option<&GroupConfig>) -> Result<(), ApogeeError> {
        let version = self.data_version.fetch_add(1, Ordering::SeqCst) + 1;
        let mut batch = KvBatch::new();
        match config {
            Some(c) => batch.put(Cf::GroupConfig, name.as_bytes(), encode(c)),
            None => batch.delete(Cf::GroupConfig, name.as_bytes()),
        }
        batch.put(Cf::Meta, DATA_VERSION_KEY, version.to_be_bytes());
        self.kv
            .write(batch)
            .map_err(|e| ApogeeError::Internal(format!("persisting group {name}: {e}")))?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Creates a group; fails if it exists.
    pub fn create(&self, config: GroupConfig) -> Result<Arc<GroupConfig>, ApogeeError> {
        config.validate()?;
        let mut groups = self.groups.write();
        if groups.contains_key(&config.name) {
            return Err(ApogeeError::AlreadyExists(format!(
                "consumer group {}",
                config.name
            )));
        }
        self.persist(&config.name, Some(&config))?;
        let g = Arc::new(config);
        groups.insert(g.name.clone(), g.clone());
        Ok(g)
    }

    /// Replaces a group's config, creating the group when it is missing (so an
    /// operator can bring every broker group to one config).
    pub fn update(&self, config: GroupConfig) -> Result<Arc<GroupConfig>, ApogeeError> {
        config.validate()?;
        let mut groups = self.groups.write();
        self.persist(&config.name, Some(&config))?;
        let g = Arc::new(config);
        groups.insert(g.name.clone(), g.clone());
        Ok(g)
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
        }
    }

    #[test]
    fn groups_survive_reload_with_a_versioned_value() {
        let (kv, t) = table(true);
        t.create(fifo_group("g1")).unwrap();
        t.resolve("g2").unwrap();
        assert_eq!(t.data_version(), 2);
        let raw = kv.get(Cf::GroupConfig, b"g1").unwrap().unwrap();
        assert_eq!(raw[0], VALUE_V1);

        let again = GroupTable::load(kv, false).unwrap();
        assert_eq!(*again.get("g1").unwrap(), fifo_group("g1"));
        assert_eq!(*again.get("g2").unwrap(), GroupConfig::with_defaults("g2"));
        assert_eq!(again.data_version(), 2);
    }

    #[test]
    fn unknown_groups_are_created_only_with_auto_create() {
        let (_, on) = table(true);
        assert_eq!(
            *on.resolve("new").unwrap(),
            GroupConfig::with_defaults("new")
        );
        assert_eq!(on.list().len(), 1);
        assert!(on.resolve("bad name").is_err());

        let (_, off) = table(false);
        assert!(matches!(
            off.resolve("new"),
            Err(ApogeeError::ConsumerGroupNotFound(_))
        ));
        assert!(off.list().is_empty());
        off.create(fifo_group("new")).unwrap();
        assert!(off.resolve("new").unwrap().fifo);
    }

    #[test]
    fn create_update_delete() {
        let (kv, t) = table(false);
        t.create(fifo_group("g")).unwrap();
        assert!(matches!(
            t.create(fifo_group("g")),
            Err(ApogeeError::AlreadyExists(_))
        ));
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

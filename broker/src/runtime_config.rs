//! The settings an operator may change while the broker runs
//! (`apogee broker config set`, RocketMQ's `updateBrokerConfig`): a fixed
//! allow-list of typed values, each applied to the part that owns it. Nothing
//! that takes a path, an address or a command is on it, and no key outside it
//! can be set.
//!
//! They are the broker group's, not one member's: they are set on the master
//! (a slave refuses, naming its master), which keeps them in the index (`meta`
//! [`MetaKey::RuntimeConfig`], a version byte then JSON of key -> value), a row
//! that replicates. A slave runs with what its master keeps ([`follow`], after
//! each replicated change and snapshot), so a member elected master already runs
//! with them, and every member applies its copy again at start, over its config
//! file, with a log line naming each; `apogee broker config get` shows which
//! settings are overridden.

use crate::config::BrokerConfig;
use crate::groups::GroupTable;
use crate::store::keys::MetaKey;
use crate::store::{Cf, KvBatch, KvStore, MessageStore, RetentionPolicy};
use crate::topics::TopicTable;
use crate::txn::Transactions;
use apogee_proto::cluster::RuntimeSetting;
use apogee_proto::ApogeeError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const KEY: &[u8] = MetaKey::RuntimeConfig.key();
/// The first byte of the stored value: the layout that follows.
const VALUE_V1: u8 = 1;

/// The owners of the runtime settings, and the config file they override.
pub struct Owners<'a> {
    pub config: &'a BrokerConfig,
    /// Retention; its index keeps the overrides.
    pub store: &'a MessageStore,
    pub topics: &'a TopicTable,
    pub groups: &'a GroupTable,
    pub txns: &'a Transactions,
}

/// [`follow`] as replication calls it after applying replicated state
/// (`replication::state`), owning what it changes; it logs what it cannot do.
pub type Follower = Arc<dyn Fn() + Send + Sync>;

/// Every runtime setting: key and what it does.
pub const SETTINGS: [(&str, &str); 6] = [
    (
        "auto_create_topics",
        "A send to an unknown topic creates it with default_queue_count queues.",
    ),
    (
        "consume.auto_create_groups",
        "A receive by an unknown consumer group creates the group with the defaults.",
    ),
    (
        "store.retention_hours",
        "Sealed commit-log segments last written longer ago than this are deleted (>= 1).",
    ),
    (
        "store.disk_clean_ratio",
        "Above this used fraction of the disk the oldest segments are deleted (0 < r <= 1).",
    ),
    (
        "store.disk_refuse_ratio",
        "At or above this used fraction of the disk sends are refused (0 < r <= 1).",
    ),
    (
        "transaction.max_checks",
        "Check-backs of a transaction before it is parked for an operator (>= 1).",
    ),
];

/// RocketMQ's broker config names for settings above that mean the same and take the same
/// values (RocketMQ's `mqadmin updateBrokerConfig -k autoCreateTopicEnable -v true`).
pub const ROCKETMQ_NAMES: [(&str, &str); 4] = [
    ("autoCreateTopicEnable", "auto_create_topics"),
    ("autoCreateSubscriptionGroup", "consume.auto_create_groups"),
    ("fileReservedTime", "store.retention_hours"),
    ("transactionCheckMax", "transaction.max_checks"),
];

/// The setting `key` names: its own key, or the one a RocketMQ name of [`ROCKETMQ_NAMES`]
/// stands for; any other key as it is (refused where it is looked up).
pub fn setting_key(key: &str) -> &str {
    ROCKETMQ_NAMES
        .iter()
        .find(|(rocketmq, _)| *rocketmq == key)
        .map_or(key, |(_, apogee)| apogee)
}

fn bad(key: &str, value: &str, what: &str) -> ApogeeError {
    ApogeeError::BadRequest(format!("{key} = {value:?}: {what}"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApogeeError> {
    value
        .parse()
        .map_err(|_| bad(key, value, "expected true or false"))
}

fn parse_ratio(key: &str, value: &str) -> Result<f64, ApogeeError> {
    match value.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(bad(key, value, "expected a number in (0, 1]")),
    }
}

fn parse_positive(key: &str, value: &str) -> Result<u64, ApogeeError> {
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad(key, value, "expected a whole number >= 1")),
    }
}

/// The value of `key` in `config`, as the config file writes it.
fn value_in(config: &BrokerConfig, key: &str) -> Result<String, ApogeeError> {
    Ok(match key {
        "auto_create_topics" => config.auto_create_topics.to_string(),
        "consume.auto_create_groups" => config.consume.auto_create_groups.to_string(),
        "store.retention_hours" => config.store.retention_hours.to_string(),
        "store.disk_clean_ratio" => config.store.disk_clean_ratio.to_string(),
        "store.disk_refuse_ratio" => config.store.disk_refuse_ratio.to_string(),
        "transaction.max_checks" => config.transaction.max_checks.to_string(),
        _ => return Err(unknown(key)),
    })
}

/// The current value of `key`, as the config file writes it.
pub fn current(owners: &Owners<'_>, key: &str) -> Result<String, ApogeeError> {
    value_in(&effective(owners), key)
}

fn unknown(key: &str) -> ApogeeError {
    let keys: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
    let rocketmq: Vec<&str> = ROCKETMQ_NAMES.iter().map(|(k, _)| *k).collect();
    ApogeeError::BadRequest(format!(
        "{key:?} cannot be changed at runtime; these can: {} (RocketMQ's names {} are taken \
         for the same settings)",
        keys.join(", "),
        rocketmq.join(", ")
    ))
}

/// Validates `value` for `key` and applies it to its owner (not kept); a retention
/// setting goes into `policy`, which the caller gives the store (the three together, so a
/// pair of ratios is checked as a pair).
fn apply(
    owners: &Owners<'_>,
    policy: &mut RetentionPolicy,
    key: &str,
    value: &str,
) -> Result<(), ApogeeError> {
    match key {
        "auto_create_topics" => owners.topics.set_auto_create(parse_bool(key, value)?),
        "consume.auto_create_groups" => owners.groups.set_auto_create(parse_bool(key, value)?),
        "store.retention_hours" => {
            let hours = parse_positive(key, value)?;
            policy.max_age = Duration::from_secs(hours.saturating_mul(3600));
        }
        "store.disk_clean_ratio" => policy.clean_ratio = parse_ratio(key, value)?,
        "store.disk_refuse_ratio" => policy.refuse_ratio = parse_ratio(key, value)?,
        "transaction.max_checks" => {
            let n = parse_positive(key, value)?;
            let n = u32::try_from(n).map_err(|_| bad(key, value, "too large"))?;
            owners.txns.set_max_checks(n);
        }
        _ => return Err(unknown(key)),
    }
    Ok(())
}

/// Applies every setting of `values` (key -> value), the retention ones as one policy,
/// logging each with `source`; one refused (a setting removed, a value now invalid) is
/// logged and skipped.
fn apply_all(owners: &Owners<'_>, values: &BTreeMap<String, String>, source: &str) {
    let mut policy = owners.store.retention();
    for (key, value) in values {
        match apply(owners, &mut policy, key, value) {
            Ok(()) => tracing::info!("runtime setting {key} = {value} ({source})"),
            Err(e) => tracing::warn!("ignoring the runtime setting {key} ({source}): {e}"),
        }
    }
    if let Err(e) = owners.store.set_retention(policy) {
        tracing::warn!("ignoring the runtime retention settings ({source}): {e}");
    }
}

/// The overrides kept in the index.
fn load(kv: &dyn KvStore) -> Result<BTreeMap<String, String>, ApogeeError> {
    let Some(raw) = kv.get(Cf::Meta, KEY).map_err(ApogeeError::internal)? else {
        return Ok(BTreeMap::new());
    };
    match raw.split_first() {
        Some((&VALUE_V1, json)) => serde_json::from_slice(json)
            .map_err(|e| ApogeeError::internal_in("stored runtime config", e)),
        _ => Err(ApogeeError::Internal(
            "stored runtime config has an unknown version".into(),
        )),
    }
}

fn save(kv: &dyn KvStore, overrides: &BTreeMap<String, String>) -> Result<(), ApogeeError> {
    let mut value = vec![VALUE_V1];
    value.extend(serde_json::to_vec(overrides).expect("a map of strings serializes"));
    let mut batch = KvBatch::new();
    batch.put(Cf::Meta, KEY, value);
    kv.write(batch).map_err(ApogeeError::internal)
}

/// At start: applies the kept overrides over the config file, logging each. One that no
/// longer applies (a setting removed, a value now invalid) is logged and skipped.
pub fn restore(owners: &Owners<'_>) -> Result<(), ApogeeError> {
    apply_all(
        owners,
        &load(owners.store.kv().as_ref())?,
        "changed at runtime",
    );
    Ok(())
}

/// A slave, after replicated state was applied: runs with the group's settings as its
/// master keeps them, whose row it now holds: each override, and the config file's value
/// for a setting the master does not override. Only what differs is applied (and logged).
pub fn follow(owners: &Owners<'_>) -> Result<(), ApogeeError> {
    let overrides = load(owners.store.kv().as_ref())?;
    let running = effective(owners);
    let mut changes = BTreeMap::new();
    for (key, _) in SETTINGS {
        let wanted = match overrides.get(key) {
            Some(value) => value.clone(),
            None => value_in(owners.config, key)?,
        };
        if value_in(&running, key)? != wanted {
            changes.insert(key.to_string(), wanted);
        }
    }
    if !changes.is_empty() {
        apply_all(owners, &changes, "the group's, kept by its master");
    }
    Ok(())
}

/// Changes one setting and keeps it; returns it with its previous value. Only the master
/// changes the group's settings (see the module doc; the caller refuses a slave).
pub fn update(
    owners: &Owners<'_>,
    key: &str,
    value: &str,
) -> Result<(RuntimeSetting, String), ApogeeError> {
    let previous = current(owners, key)?;
    let value = value.trim();
    let mut policy = owners.store.retention();
    apply(owners, &mut policy, key, value)?;
    owners
        .store
        .set_retention(policy)
        .map_err(|e| bad(key, value, &e.to_string()))?;
    let kv = owners.store.kv();
    let mut overrides = load(kv.as_ref())?;
    overrides.insert(key.to_string(), current(owners, key)?);
    save(kv.as_ref(), &overrides)?;
    tracing::info!("runtime setting {key} changed from {previous} to {value}");
    let setting = settings(owners)?
        .into_iter()
        .find(|s| s.key == key)
        .expect("an applied key is listed");
    Ok((setting, previous))
}

/// Every runtime setting with its current value.
pub fn settings(owners: &Owners<'_>) -> Result<Vec<RuntimeSetting>, ApogeeError> {
    let overrides = load(owners.store.kv().as_ref())?;
    SETTINGS
        .iter()
        .map(|(key, description)| {
            Ok(RuntimeSetting {
                key: key.to_string(),
                value: current(owners, key)?,
                description: description.to_string(),
                overridden: overrides.contains_key(*key),
            })
        })
        .collect()
}

/// The configuration in force: the file's, with the runtime settings' current values.
pub fn effective(owners: &Owners<'_>) -> BrokerConfig {
    let mut c = owners.config.clone();
    let retention = owners.store.retention();
    c.auto_create_topics = owners.topics.auto_creates();
    c.consume.auto_create_groups = owners.groups.auto_creates();
    c.store.retention_hours = retention.max_age.as_secs() / 3600;
    c.store.disk_clean_ratio = retention.clean_ratio;
    c.store.disk_refuse_ratio = retention.refuse_ratio;
    c.transaction.max_checks = owners.txns.max_checks();
    c
}

//! The data-format version of the primary state, and the upgrade of directories written
//! before it.
//!
//! Primary state (consumer offsets, consume state, topic and group configs, `meta`: users,
//! ACLs, the receipt secret, data versions, runtime config, this broker's markers) exists
//! nowhere else, so an encoding change cannot drop and rebuild it the way the derived tables
//! are (`super::format`): it is rewritten. [`DATA_FORMAT_VERSION`] names the layouts of
//! `super::keys`'s table; the directory's version is the local `meta` row
//! [`MetaKey::DataFormat`] (v1, u32).
//!
//! The versions:
//!
//! - 0: today's main before this module (unversioned offsets, `/`-separated meta keys,
//!   raw protobuf topic configs);
//! - 1: `super::keys`'s layouts, topic configs as a version byte 1 and the protobuf;
//! - 2: topic configs in their own encoding (`crate::topic_config`), so a wire change is
//!   not a disk change. Nothing else differs from 1.
//!
//! [`run`] runs once per open, right after RocksDB opens and before anything else reads or
//! writes (the index-format check and recovery come after it):
//!
//! - the row says [`DATA_FORMAT_VERSION`]: nothing to do;
//! - the row says more: the open is refused ([`StoreError::DataFormatNewer`], naming both
//!   versions) and nothing is written;
//! - no row and no primary row: a fresh directory, it gets the row;
//! - no row but primary rows: version 0; the row says 1: version 1. Every primary row of
//!   the old version whose layout changed since is rewritten into the current keys and
//!   values (the old key deleted), and the version row put, all in ONE atomic batch: a
//!   crash leaves either the old version untouched (and the next start upgrades again) or
//!   the current one complete. The readers of the old layouts are the [`v0`] and [`v1`]
//!   modules' and nothing else reads them. A `meta` key version 0 did not write is left
//!   where it is.
//!
//! The upgrade runs on the bare RocksDB, before the replication journal wraps it
//! (`MessageStore::open_wrapped`): each member of a broker group upgrades its own copy, and
//! the rewrite is never published to slaves as new state.
//!
//! Rolling upgrade: the replication stream carries raw keys and values and no data-format
//! version, so a master and its slaves must run the same data format; upgrade a broker
//! group as a whole (stop it, upgrade every member, start it; each member migrates its own
//! directory at its first start). A slave still on the old binary under an upgraded master
//! stores rows in the new layout that its old readers cannot parse (they skip unreadable
//! consume-state keys, fail on configs); nothing of the master's is damaged, and starting
//! that slave on the new binary repairs it: its own version-0 rows are migrated, and the
//! master's snapshot at the next session replaces every replicated row. The reverse (a new
//! slave under an old master) stores version-0 rows in a version-1 directory, which the new
//! readers do not take; upgrade the master too.

use super::keys::{
    acl_key, config_key, encode_u64, handback_key, user_key, MetaKey, QueueKey, MARKER, V1,
};
use super::kv::{Cf, KvBatch, KvStore};
use super::values::{encode_offset, encode_secret, Inflight};
use super::StoreError;
use crate::topic_config::TopicConfig;
use apogee_proto::cluster;
use prost::Message as _;

/// The data-format version this binary writes and reads.
pub(crate) const DATA_FORMAT_VERSION: u32 = 2;

/// What [`run`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// The directory was at [`DATA_FORMAT_VERSION`].
    Current,
    /// A fresh directory: the version row was written.
    Fresh,
    /// An older version's rows rewritten: this many.
    From { version: u32, rows: usize },
}

/// The version-row value.
fn encode_version(v: u32) -> [u8; 5] {
    let mut out = [V1; 5];
    out[1..].copy_from_slice(&v.to_be_bytes());
    out
}

fn decode_version(v: &[u8]) -> Result<u32, StoreError> {
    match v.split_first() {
        Some((&V1, n)) if n.len() == 4 => Ok(u32::from_be_bytes(n.try_into().expect("4"))),
        _ => Err(StoreError::Index(format!(
            "unreadable data-format version row {v:02x?}"
        ))),
    }
}

/// The directory's data-format version: None when it has no row.
pub(crate) fn stored_version(kv: &dyn KvStore) -> Result<Option<u32>, StoreError> {
    kv.get(Cf::Meta, MetaKey::DataFormat.key())?
        .map(|v| decode_version(&v))
        .transpose()
}

/// Brings the primary state to [`DATA_FORMAT_VERSION`] (module doc). Call on the bare
/// database, before anything else reads or writes it.
pub(crate) fn run(kv: &dyn KvStore) -> Result<Upgrade, StoreError> {
    match stored_version(kv)? {
        Some(DATA_FORMAT_VERSION) => Ok(Upgrade::Current),
        Some(found) if found > DATA_FORMAT_VERSION => Err(StoreError::DataFormatNewer {
            found,
            supported: DATA_FORMAT_VERSION,
        }),
        Some(found @ 1) => upgrade_from(kv, found),
        Some(found) => Err(StoreError::Index(format!(
            "data format {found} has no upgrade to {DATA_FORMAT_VERSION}"
        ))),
        None => upgrade_from(kv, 0),
    }
}

/// Rewrites every row of `from`'s layouts that changed since (module doc), in one batch
/// with the version row.
fn upgrade_from(kv: &dyn KvStore, from: u32) -> Result<Upgrade, StoreError> {
    let mut batch = KvBatch::new();
    let mut rows = 0;
    for cf in Cf::PRIMARY {
        for (key, value) in kv.scan(cf, b"", b"", usize::MAX)? {
            let rewritten = match from {
                0 => rewrite_v0(cf, &key, &value, &mut batch)?,
                _ => rewrite_v1(cf, &key, &value, &mut batch)?,
            };
            if rewritten {
                rows += 1;
            }
        }
    }
    batch.put(
        Cf::Meta,
        MetaKey::DataFormat.key(),
        encode_version(DATA_FORMAT_VERSION),
    );
    kv.write(batch)?;
    if rows == 0 && from == 0 {
        tracing::info!(
            version = DATA_FORMAT_VERSION,
            "fresh index: data format set"
        );
        return Ok(Upgrade::Fresh);
    }
    tracing::info!(
        rows,
        from,
        to = DATA_FORMAT_VERSION,
        "primary state upgraded to the current data format"
    );
    Ok(Upgrade::From {
        version: from,
        rows,
    })
}

fn malformed(version: u32, cf: Cf, key: &[u8], value: &[u8]) -> StoreError {
    StoreError::Index(format!(
        "version-{version} {} row cannot be read: key {key:02x?}, value of {} bytes",
        cf.name(),
        value.len()
    ))
}

/// A topic config's current value, from its wire form as an older version stored it.
fn topic_config_value(key_name: &str, wire: cluster::TopicConfig) -> Option<Vec<u8>> {
    if wire.name != key_name {
        return None;
    }
    let config = TopicConfig::from_wire(wire, 1).ok()?;
    Some(config.encode().to_vec())
}

/// Adds the rewrite of one version-1 row to `batch`; false for a row whose layout did not
/// change (all but the topic configs).
fn rewrite_v1(cf: Cf, key: &[u8], value: &[u8], batch: &mut KvBatch) -> Result<bool, StoreError> {
    if cf != Cf::TopicConfig {
        return Ok(false);
    }
    let bad = || malformed(1, cf, key, value);
    let name = super::keys::decode_config_key(key).ok_or_else(bad)?;
    let wire = v1::topic_config(value).ok_or_else(bad)?;
    let new_value = topic_config_value(&name, wire).ok_or_else(bad)?;
    batch.put(cf, key, new_value);
    Ok(true)
}

/// Adds the rewrite of one version-0 row to `batch` (the old key's delete, then the new
/// row); false for a row left as it is (a `meta` key version 0 did not write).
fn rewrite_v0(cf: Cf, key: &[u8], value: &[u8], batch: &mut KvBatch) -> Result<bool, StoreError> {
    let bad = || malformed(0, cf, key, value);
    let (new_key, new_value): (Vec<u8>, Vec<u8>) = match cf {
        Cf::ConsumerOffset => {
            let q = v0::offset_key(key).ok_or_else(bad)?;
            let offset = v0::u64_value(value).ok_or_else(bad)?;
            (q.prefix(), encode_offset(offset).to_vec())
        }
        Cf::ConsumeState => match v0::state_key(key).ok_or_else(bad)? {
            (q, None) => {
                let offset = v0::u64_value(value).ok_or_else(bad)?;
                (q.pop_key(), encode_offset(offset).to_vec())
            }
            (q, Some(offset)) => {
                let entry = Inflight::decode(value).ok_or_else(bad)?;
                (q.inflight_key(offset), entry.encode().to_vec())
            }
        },
        Cf::TopicConfig => {
            let name = std::str::from_utf8(key).map_err(|_| bad())?;
            let wire = cluster::TopicConfig::decode(value).map_err(|_| bad())?;
            let new_value = topic_config_value(name, wire).ok_or_else(bad)?;
            (config_key(name), new_value)
        }
        Cf::GroupConfig => {
            // Group values were versioned already.
            let name = std::str::from_utf8(key).map_err(|_| bad())?;
            (config_key(name), value.to_vec())
        }
        Cf::Meta => match v0::meta(key, value) {
            Some(row) => row.ok_or_else(bad)?,
            None => {
                tracing::warn!(key = ?String::from_utf8_lossy(key), "unknown meta key left as it is");
                return Ok(false);
            }
        },
        _ => return Ok(false),
    };
    batch.delete(cf, key);
    batch.put(cf, new_key, new_value);
    Ok(true)
}

/// The version-1 layouts that version 2 changed, frozen: read only here.
pub(crate) mod v1 {
    use super::*;

    /// The version byte of a version-1 topic config, whose protobuf bytes follow.
    pub(crate) const TOPIC_CONFIG: u8 = 1;

    /// A version-1 `topic_config` value's config.
    pub(crate) fn topic_config(value: &[u8]) -> Option<cluster::TopicConfig> {
        match value.split_first() {
            Some((&TOPIC_CONFIG, proto)) => cluster::TopicConfig::decode(proto).ok(),
            _ => None,
        }
    }
}

/// The version-0 layouts (today's main before data format 1), frozen: read only here.
pub(crate) mod v0 {
    use super::*;

    pub(crate) const SECRET_KEY: &[u8] = b"consume/receipt_secret";
    pub(crate) const TOPICS_VERSION_KEY: &[u8] = b"topics/data_version";
    pub(crate) const GROUPS_VERSION_KEY: &[u8] = b"groups/data_version";
    pub(crate) const ACCESS_VERSION_KEY: &[u8] = b"access/data_version";
    pub(crate) const RUNTIME_CONFIG_KEY: &[u8] = b"runtime_config";
    pub(crate) const USER_PREFIX: &[u8] = b"access/user/";
    pub(crate) const ACL_PREFIX: &[u8] = b"access/acl/";
    pub(crate) const HAD_SLAVES_KEY: &[u8] = b"local.had_slaves";
    pub(crate) const HANDBACK_PREFIX: &[u8] = b"local.handback.";

    /// An unversioned big-endian u64 value.
    pub(crate) fn u64_value(v: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(v.try_into().ok()?))
    }

    /// `group 0 topic 0 queue(be32)` and the rest.
    pub(crate) fn queue(bytes: &[u8]) -> Option<(QueueKey, &[u8])> {
        let g = bytes.iter().position(|b| *b == 0)?;
        let rest = &bytes[g + 1..];
        let t = rest.iter().position(|b| *b == 0)?;
        let (qid, rest) = rest.get(t + 1..)?.split_first_chunk::<4>()?;
        let group = std::str::from_utf8(&bytes[..g]).ok()?;
        let topic = std::str::from_utf8(&bytes[g + 1..g + 1 + t]).ok()?;
        Some((QueueKey::new(group, topic, u32::from_be_bytes(*qid)), rest))
    }

    /// A `consumer_offset` key.
    pub(crate) fn offset_key(key: &[u8]) -> Option<QueueKey> {
        queue(key).and_then(|(q, rest)| rest.is_empty().then_some(q))
    }

    /// A `consume_state` key: its queue and, for an in-flight row, its offset.
    pub(crate) fn state_key(key: &[u8]) -> Option<(QueueKey, Option<u64>)> {
        let (&tag, rest) = key.split_first()?;
        let (q, rest) = queue(rest)?;
        match tag {
            b'p' if rest.is_empty() => Some((q, None)),
            b'i' => Some((q, Some(u64::from_be_bytes(rest.try_into().ok()?)))),
            _ => None,
        }
    }

    /// An ACL key's (access key, kind, pattern): `access key 0 kind(decimal) 0 pattern`.
    pub(crate) fn acl(rest: &[u8]) -> Option<(String, i32, String)> {
        let a = rest.iter().position(|b| *b == 0)?;
        let after = &rest[a + 1..];
        let k = after.iter().position(|b| *b == 0)?;
        let access_key = std::str::from_utf8(&rest[..a]).ok()?;
        let kind = std::str::from_utf8(&after[..k]).ok()?.parse().ok()?;
        let pattern = std::str::from_utf8(&after[k + 1..]).ok()?;
        Some((access_key.to_string(), kind, pattern.to_string()))
    }

    /// The current row of a version-0 `meta` row: None for a key version 0 did not write,
    /// Some(None) for one of its keys that cannot be read.
    #[allow(clippy::type_complexity)]
    pub(crate) fn meta(key: &[u8], value: &[u8]) -> Option<Option<(Vec<u8>, Vec<u8>)>> {
        let single = |kind: MetaKey, v: Option<Vec<u8>>| Some(v.map(|v| (kind.key().to_vec(), v)));
        let version = |v: &[u8]| u64_value(v).map(|n| encode_u64(n).to_vec());
        match key {
            SECRET_KEY => single(
                MetaKey::ReceiptSecret,
                <&[u8; 32]>::try_from(value)
                    .ok()
                    .map(|s| encode_secret(s).to_vec()),
            ),
            TOPICS_VERSION_KEY => single(MetaKey::TopicsDataVersion, version(value)),
            GROUPS_VERSION_KEY => single(MetaKey::GroupsDataVersion, version(value)),
            ACCESS_VERSION_KEY => single(MetaKey::AccessDataVersion, version(value)),
            // Versioned already.
            RUNTIME_CONFIG_KEY => single(MetaKey::RuntimeConfig, Some(value.to_vec())),
            HAD_SLAVES_KEY => single(MetaKey::HadSlaves, Some(MARKER.to_vec())),
            _ => {
                if let Some(access_key) = key.strip_prefix(USER_PREFIX) {
                    let access_key = std::str::from_utf8(access_key).ok();
                    Some(access_key.map(|k| (user_key(k), value.to_vec())))
                } else if let Some(rest) = key.strip_prefix(ACL_PREFIX) {
                    let parsed = acl(rest);
                    Some(parsed.map(|(k, kind, p)| (acl_key(&k, kind, &p), value.to_vec())))
                } else if let Some(rest) = key.strip_prefix(HANDBACK_PREFIX) {
                    let q = queue(rest).and_then(|(q, rest)| rest.is_empty().then_some(q));
                    Some(q.map(|q| (handback_key(&q), MARKER.to_vec())))
                } else {
                    None
                }
            }
        }
    }
}

/// For tests: every row of every column family.
#[cfg(test)]
pub(crate) fn all_rows(kv: &dyn KvStore) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for cf in Cf::ALL {
        for (k, v) in kv.scan(cf, b"", b"", usize::MAX).expect("scan") {
            out.push((cf, k, v));
        }
    }
    out
}

#[cfg(test)]
#[path = "tests_upgrade.rs"]
mod tests;

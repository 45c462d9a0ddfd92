//! The registry of `meta` keys (part of [`super`]): every key and key family of the `meta`
//! column family, its layout and whether it replicates to slaves.
//!
//! A `meta` key is one tag byte, then (for a family) the member's fields. Replicated kinds
//! have tags below [`LOCAL_TAGS_FROM`], local ones (this broker's alone) from it on, so the
//! local keys are one range at the end of the table: a slave clears or a snapshot reads the
//! replicated part as the one range `[.., LOCAL_TAGS_FROM)` ([`meta_replicated_range`]). The
//! class is [`MetaKey::class`]; a test checks every registered tag against it, so a new key
//! cannot land on the wrong side. A key with an unregistered tag (written by a newer
//! version) is neither read nor shipped.
//!
//! | kind | tag | class | key after the tag | value |
//! |---|---|---|---|---|
//! | [`MetaKey::ReceiptSecret`] | 0x01 | replicated | – | v1, 32 secret bytes (signs receipt handles) |
//! | [`MetaKey::TopicsDataVersion`] | 0x02 | replicated | – | v1, data version u64 (an i64 ≥ 0) |
//! | [`MetaKey::GroupsDataVersion`] | 0x03 | replicated | – | v1, data version u64 |
//! | [`MetaKey::AccessDataVersion`] | 0x04 | replicated | – | v1, data version u64 |
//! | [`MetaKey::RuntimeConfig`] | 0x05 | replicated | – | v1, JSON object of setting -> value |
//! | [`MetaKey::AccessUser`] | 0x06 | replicated | name access key | v1, `cluster.v1.AccessUser` protobuf (secret sealed) |
//! | [`MetaKey::AccessAcl`] | 0x07 | replicated | name access key, resource kind i32, name pattern | v1, `cluster.v1.AclEntry` protobuf |
//! | [`MetaKey::TopicPurged`] | 0x08 | replicated | name topic | v1, log offset u64: the topic's records below it were deleted with the topic |
//! | [`MetaKey::TierSegment`] | 0x09 | replicated | base log offset u64 | v1, the tiered segment's record (`crate::tier::manifest`) |
//! | [`MetaKey::HadSlaves`] | 0x80 | local | – | v1 (a marker) |
//! | [`MetaKey::Handback`] | 0x81 | local | queue key ([`super::QueueKey`]) | v1 (a marker) |
//! | [`MetaKey::DataFormat`] | 0x82 | local | – | v1, data-format version u32 ([`crate::store::upgrade`]) |
//! | [`MetaKey::TopicDeleting`] | 0x83 | local | name topic | v1 (a marker): the topic's config is deleted, its consume state and index not yet all |

use super::{check_name, put_name, QueueKey};

/// Tags from this one on are local `meta` keys.
pub const LOCAL_TAGS_FROM: u8 = 0x80;

/// Whether a `meta` row travels to slaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaClass {
    /// Shipped on the replication stream; a slave holds its master's.
    Replicated,
    /// This broker's alone.
    Local,
}

/// Every kind of `meta` key (see the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    ReceiptSecret,
    TopicsDataVersion,
    GroupsDataVersion,
    AccessDataVersion,
    RuntimeConfig,
    /// Family: one key per user.
    AccessUser,
    /// Family: one key per ACL entry.
    AccessAcl,
    /// Family: a deleted topic's records below a log offset, which a rebuild of the index
    /// from the log skips (they stay in the log until retention deletes their segments).
    TopicPurged,
    /// Family: the tier's manifest, one row per commit-log segment uploaded to the object
    /// store, by its base log offset.
    TierSegment,
    /// This broker had slaves (a master restarted without one waits for them).
    HadSlaves,
    /// Family: a consume queue a slave changed while its master was away.
    Handback,
    /// The data-format version of the primary state.
    DataFormat,
    /// Family: a topic whose deletion a start must finish (`crate::actions`): written in
    /// one batch with the deletion of its config, removed once its consume state and index
    /// are gone.
    TopicDeleting,
}

impl MetaKey {
    pub const ALL: [MetaKey; 13] = [
        MetaKey::ReceiptSecret,
        MetaKey::TopicsDataVersion,
        MetaKey::GroupsDataVersion,
        MetaKey::AccessDataVersion,
        MetaKey::RuntimeConfig,
        MetaKey::AccessUser,
        MetaKey::AccessAcl,
        MetaKey::TopicPurged,
        MetaKey::TierSegment,
        MetaKey::HadSlaves,
        MetaKey::Handback,
        MetaKey::DataFormat,
        MetaKey::TopicDeleting,
    ];

    /// The key of a single-row kind; the prefix of a family's keys. One byte: the tag.
    pub const fn key(self) -> &'static [u8] {
        match self {
            MetaKey::ReceiptSecret => &[0x01],
            MetaKey::TopicsDataVersion => &[0x02],
            MetaKey::GroupsDataVersion => &[0x03],
            MetaKey::AccessDataVersion => &[0x04],
            MetaKey::RuntimeConfig => &[0x05],
            MetaKey::AccessUser => &[0x06],
            MetaKey::AccessAcl => &[0x07],
            MetaKey::TopicPurged => &[0x08],
            MetaKey::TierSegment => &[0x09],
            MetaKey::HadSlaves => &[0x80],
            MetaKey::Handback => &[0x81],
            MetaKey::DataFormat => &[0x82],
            MetaKey::TopicDeleting => &[0x83],
        }
    }

    pub const fn tag(self) -> u8 {
        self.key()[0]
    }

    /// Whether the kind replicates (the registry's decision; the tag ranges follow it).
    pub const fn class(self) -> MetaClass {
        match self {
            MetaKey::ReceiptSecret
            | MetaKey::TopicsDataVersion
            | MetaKey::GroupsDataVersion
            | MetaKey::AccessDataVersion
            | MetaKey::RuntimeConfig
            | MetaKey::AccessUser
            | MetaKey::AccessAcl
            | MetaKey::TopicPurged
            | MetaKey::TierSegment => MetaClass::Replicated,
            MetaKey::HadSlaves
            | MetaKey::Handback
            | MetaKey::DataFormat
            | MetaKey::TopicDeleting => MetaClass::Local,
        }
    }

    /// Whether the kind has one key per member (the key continues after the tag).
    pub const fn is_family(self) -> bool {
        matches!(
            self,
            MetaKey::AccessUser
                | MetaKey::AccessAcl
                | MetaKey::TopicPurged
                | MetaKey::TierSegment
                | MetaKey::Handback
                | MetaKey::TopicDeleting
        )
    }

    /// The kind of a `meta` key; None for an unregistered tag, or a single-row kind's tag
    /// followed by more bytes.
    pub fn of(key: &[u8]) -> Option<MetaKey> {
        let (&tag, rest) = key.split_first()?;
        let kind = MetaKey::ALL.into_iter().find(|k| k.tag() == tag)?;
        (kind.is_family() || rest.is_empty()).then_some(kind)
    }

    /// Whether a `meta` row at `key` replicates: a registered replicated kind.
    pub fn replicates(key: &[u8]) -> bool {
        MetaKey::of(key).is_some_and(|k| k.class() == MetaClass::Replicated)
    }

    /// The `[from, to)` range of a family's keys (or of a single key).
    pub fn range(self) -> (Vec<u8>, Vec<u8>) {
        (self.key().to_vec(), vec![self.tag() + 1])
    }
}

/// The replicated part of `meta`: `[from, to)`.
pub fn meta_replicated_range() -> (Vec<u8>, Vec<u8>) {
    (Vec::new(), vec![LOCAL_TAGS_FROM])
}

/// The part of `[from, to)` of `meta` (empty `to`: unbounded) outside the local keys, if
/// any.
pub fn meta_replicated_part(from: &[u8], to: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let local = [LOCAL_TAGS_FROM];
    let end: &[u8] = if to.is_empty() || to > &local[..] {
        &local
    } else {
        to
    };
    (from < end).then(|| (from.to_vec(), end.to_vec()))
}

/// Whether `[from, to)` of `meta` reaches into the local keys.
pub fn meta_range_touches_local(to: &[u8]) -> bool {
    to.is_empty() || to > &[LOCAL_TAGS_FROM][..]
}

/// A deleted topic's purge mark's `meta` key.
pub fn topic_purged_key(topic: &str) -> Vec<u8> {
    let mut k = MetaKey::TopicPurged.key().to_vec();
    put_name(&mut k, topic);
    k
}

/// The topic of a purge mark's `meta` key.
pub fn decode_topic_purged_key(k: &[u8]) -> Option<String> {
    let rest = k.strip_prefix(MetaKey::TopicPurged.key())?;
    let (topic, rest) = super::read_name(rest)?;
    rest.is_empty().then(|| topic.to_string())
}

/// A tiered segment's manifest row's `meta` key: its base log offset.
pub fn tier_segment_key(base: u64) -> Vec<u8> {
    let mut k = MetaKey::TierSegment.key().to_vec();
    k.extend_from_slice(&base.to_be_bytes());
    k
}

/// The base log offset of a manifest row's `meta` key.
pub fn decode_tier_segment_key(k: &[u8]) -> Option<u64> {
    let rest = k.strip_prefix(MetaKey::TierSegment.key())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The `meta` key marking `topic` as being deleted.
pub fn topic_deleting_key(topic: &str) -> Vec<u8> {
    let mut k = MetaKey::TopicDeleting.key().to_vec();
    put_name(&mut k, topic);
    k
}

/// The topic of a deletion mark's `meta` key.
pub fn decode_topic_deleting_key(k: &[u8]) -> Option<String> {
    let rest = k.strip_prefix(MetaKey::TopicDeleting.key())?;
    let (topic, rest) = super::read_name(rest)?;
    rest.is_empty().then(|| topic.to_string())
}

/// A user's `meta` key.
pub fn user_key(access_key: &str) -> Vec<u8> {
    let mut k = MetaKey::AccessUser.key().to_vec();
    put_name(&mut k, access_key);
    k
}

/// An ACL entry's `meta` key.
pub fn acl_key(access_key: &str, kind: i32, pattern: &str) -> Vec<u8> {
    let mut k = MetaKey::AccessAcl.key().to_vec();
    put_name(&mut k, access_key);
    k.extend_from_slice(&kind.to_be_bytes());
    put_name(&mut k, pattern);
    k
}

/// The access key, resource kind and pattern of an ACL entry's `meta` key.
pub fn decode_acl_key(k: &[u8]) -> Option<(String, i32, String)> {
    let rest = k.strip_prefix(MetaKey::AccessAcl.key())?;
    let (access_key, rest) = super::read_name(rest)?;
    let (kind, rest) = rest.split_first_chunk::<4>()?;
    let (pattern, rest) = super::read_name(rest)?;
    rest.is_empty().then(|| {
        (
            access_key.to_string(),
            i32::from_be_bytes(*kind),
            pattern.to_string(),
        )
    })
}

/// The access key of a user's `meta` key.
pub fn decode_user_key(k: &[u8]) -> Option<String> {
    let rest = k.strip_prefix(MetaKey::AccessUser.key())?;
    let (access_key, rest) = super::read_name(rest)?;
    rest.is_empty().then(|| access_key.to_string())
}

/// Refuses an access key or ACL pattern that does not fit in a key.
pub fn check_access_names(access_key: &str, pattern: Option<&str>) -> Result<(), String> {
    check_name("an access key", access_key)?;
    pattern.map_or(Ok(()), |p| check_name("an ACL pattern", p))
}

/// The handback marker of a consume queue.
pub fn handback_key(q: &QueueKey) -> Vec<u8> {
    let mut k = MetaKey::Handback.key().to_vec();
    k.extend(q.prefix());
    k
}

/// The queue of a handback marker.
pub fn decode_handback_key(k: &[u8]) -> Option<QueueKey> {
    QueueKey::decode_offset_key(k.strip_prefix(MetaKey::Handback.key())?)
}

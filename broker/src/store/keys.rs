//! Every RocksDB key the broker writes, and the registry of `meta` keys.
//!
//! All key encodings live here, each encoder beside its decoder; the modules that own a
//! column family's rows call these and build no key bytes of their own. Three rules:
//!
//! - **Names** (topics, groups, message ids and keys, transaction and schedule ids, access
//!   keys, ACL patterns) are written as a u16 big-endian length, then their UTF-8 bytes
//!   ([`put_name`]). A length prefix, unlike a separator, keeps a name from being a prefix
//!   of another name's keys (topic `a` never sees the rows of topic `ab`), lets a name hold
//!   any byte, and makes a key decodable from the front without scanning. Names reach here
//!   validated: topics ≤ 127 bytes, groups ≤ 120, record strings ≤ 65,535 by the record
//!   format; [`check_name`] refuses a longer one for callers taking names from elsewhere
//!   (access keys, ACL patterns).
//! - **Integers** are fixed-width big-endian, so keys sort numerically.
//! - **Kinds** sharing a column family start with a one-byte tag.
//!
//! # Keys and values, by column family
//!
//! `name` = u16 BE length + UTF-8 bytes; integers big-endian. Every value starts with a
//! version byte (`v1`, `v2`) naming the layout after it. *Primary* rows are state that
//! exists nowhere else (they replicate, and [`super::upgrade`] migrates them); *derived* rows
//! are rebuilt from the commit log, so their readers take only the current layout (an older
//! layout is dropped and rebuilt, see the index-format version in `super::format`).
//!
//! | column family | class | key | value |
//! |---|---|---|---|
//! | `consume_queue` | derived | name topic, queue u32, queue offset u64 | v1, log offset u64, size u32, tag hash u64, store ts i64 (29 bytes) |
//! | `queue_head` | derived | name topic, queue u32 | v1, next queue offset u64 (a floor, see `super::index`) |
//! | `message_id` | derived | name message id, log offset u64 | v1, size u32 |
//! | `message_key` | derived | name topic, name key, log offset u64 | v1, size u32 |
//! | `checkpoint` | derived | `store.dispatched` | v1, log offset u64 below which the index is complete |
//! | `checkpoint` | derived | `store.flushed` | v1, log offset u64 known durable (may lag) |
//! | `checkpoint` | derived | `store.index_format` | index format u32 of the complete derived tables (no version byte: it is the version) |
//! | `checkpoint` | derived | `store.index_rebuilding` | index format u32 of a rebuild under way (its marker) |
//! | `transaction` | derived | `h`, name txn id | v1, log offset u64, size u32, store ts i64 |
//! | `transaction` | derived | `o`, name txn id | v1, outcome u8 (1 committed, 2 rolled back, 3 parked), at ts i64 |
//! | `transaction` | derived | `n`, name txn id | v1, check count u32, next check due ts i64 |
//! | `transaction` | derived | `d`, due ts u64, name txn id | v1 (the check-back schedule) |
//! | `schedule` | derived | `m`, name id | v1, log offset u64, size u32, due ts i64, store ts i64 |
//! | `schedule` | derived | `o`, name id | v1, outcome u8 (1 delivered, 2 recalled, 3 dropped), at ts i64 |
//! | `schedule` | derived | `d`, due ts u64, name id | v1, real topic (UTF-8) |
//! | `consumer_offset` | primary | name group, name topic, queue u32 ([`QueueKey`]) | v1, committed offset u64 |
//! | `consume_state` | primary | `p`, queue key | v1, next queue offset to scan u64 |
//! | `consume_state` | primary | `i`, queue key, queue offset u64 | v2, visible at ts i64, attempt u32, nonce u64, renew until ts i64, message group hash u64 (37 bytes) |
//! | `topic_config` | primary | name topic | v2, `crate::topic_config` encoding |
//! | `group_config` | primary | name group | v1, `cluster.v1.GroupConfig` protobuf; or v2, created at ts i64, the protobuf |
//! | `meta` | see [`MetaKey`] | tag byte, then per kind | per kind, in [`MetaKey`] |
//!
//! The two index-format rows are `super::format`'s: their u32 is itself the version of the
//! derived layouts above, so they carry no version byte of their own.
//!
//! Values of the current layouts are encoded and decoded by their owners: `super::index`
//! (consume queue, queue head, message id and key, checkpoints), `super::txn_index`,
//! `super::schedule_index`, `super::values` (consumer offsets, consume state, the receipt
//! secret, the topic config's envelope), `crate::groups`, `crate::access`,
//! `crate::runtime_config`, and this module for the shared u64 and marker layouts
//! ([`encode_u64`], [`MARKER`]). The layouts written before data format 1 are read only by
//! [`super::upgrade`].

/// The smallest key greater than every key starting with `prefix` (empty = no such key,
/// i.e. unbounded). Use it as the exclusive end of a prefix scan.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

/// Longest name a key can hold (its length is a u16).
pub const MAX_NAME_LEN: usize = u16::MAX as usize;

/// Version byte of the first layout of a value.
pub const V1: u8 = 1;

/// The value of a marker row (present or not; nothing else to say): just its version.
pub const MARKER: [u8; 1] = [V1];

/// Appends `name` as a u16 big-endian length and its bytes. A name longer than
/// [`MAX_NAME_LEN`] is cut there; callers taking names from outside validate them first
/// ([`check_name`]).
pub fn put_name(k: &mut Vec<u8>, name: &str) {
    let len = name.len().min(MAX_NAME_LEN);
    k.extend_from_slice(&(len as u16).to_be_bytes());
    k.extend_from_slice(&name.as_bytes()[..len]);
}

/// Refuses a `what` name that does not fit in a key.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} is {} bytes; at most {MAX_NAME_LEN} fit in a key",
            name.len()
        ));
    }
    Ok(())
}

/// Reads a name written by [`put_name`] from the front of `k`: the name and the rest.
pub fn read_name(k: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_be_bytes(k.get(..2)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    Some((name, &k[2 + len..]))
}

fn read_u32(k: &[u8]) -> Option<(u32, &[u8])> {
    let (n, rest) = k.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*n), rest))
}

fn read_u64(k: &[u8]) -> Option<(u64, &[u8])> {
    let (n, rest) = k.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*n), rest))
}

/// The big-endian u64 that ends `key` (a queue offset or a log offset).
pub fn trailing_u64(key: &[u8]) -> Option<u64> {
    let (_, tail) = key.split_last_chunk::<8>()?;
    Some(u64::from_be_bytes(*tail))
}

/// A value of one u64 at version 1 (queue heads, checkpoints, consumer and pop offsets,
/// data versions).
pub fn encode_u64(n: u64) -> [u8; 9] {
    let mut v = [V1; 9];
    v[1..].copy_from_slice(&n.to_be_bytes());
    v
}

/// Reads an [`encode_u64`] value.
pub fn decode_u64(v: &[u8]) -> Option<u64> {
    match v.split_first() {
        Some((&V1, n)) => Some(u64::from_be_bytes(n.try_into().ok()?)),
        _ => None,
    }
}

/// The `N` bytes of a value at `at` (for fixed-width fields).
pub fn be_at<const N: usize>(v: &[u8], at: usize) -> Option<[u8; N]> {
    v.get(at..at + N)?.try_into().ok()
}

// ---- consume_queue, queue_head, message_id, message_key --------------------------------

/// Prefix of every key of `topic` in `consume_queue`, `queue_head` and `message_key`.
pub fn topic_prefix(topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len());
    put_name(&mut k, topic);
    k
}

/// Appends a queue's `queue_head` key (the prefix of its `consume_queue` entries).
pub fn write_queue_key(k: &mut Vec<u8>, topic: &str, queue_id: u32) {
    put_name(k, topic);
    k.extend_from_slice(&queue_id.to_be_bytes());
}

/// A queue's `queue_head` key, and the prefix of its `consume_queue` entries.
pub fn queue_key(topic: &str, queue_id: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len() + 12);
    write_queue_key(&mut k, topic, queue_id);
    k
}

/// The (topic, queue id) of a `queue_head` key.
pub fn decode_queue_key(key: &[u8]) -> Option<(String, u32)> {
    let (topic, rest) = read_name(key)?;
    let (queue_id, rest) = read_u32(rest)?;
    rest.is_empty().then(|| (topic.to_string(), queue_id))
}

/// Appends the key of one `consume_queue` entry.
pub fn write_cq_key(k: &mut Vec<u8>, topic: &str, queue_id: u32, queue_offset: u64) {
    write_queue_key(k, topic, queue_id);
    k.extend_from_slice(&queue_offset.to_be_bytes());
}

/// The key of one `consume_queue` entry.
pub fn cq_key(topic: &str, queue_id: u32, queue_offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + topic.len() + 12);
    write_cq_key(&mut k, topic, queue_id, queue_offset);
    k
}

/// The (topic, queue id, queue offset) of a `consume_queue` key.
pub fn decode_cq_key(key: &[u8]) -> Option<(String, u32, u64)> {
    let (topic, rest) = read_name(key)?;
    let (queue_id, rest) = read_u32(rest)?;
    let (offset, rest) = read_u64(rest)?;
    rest.is_empty()
        .then(|| (topic.to_string(), queue_id, offset))
}

/// The `queue_head` rows of the lite queues of one parent whose lite names are `lite_len`
/// bytes long: every lite queue name `prefix<lite>` of that length shares the length and
/// the prefix (`apogee_proto::names::lite_queue_prefix`). Names are length-prefixed, so the
/// lite queues of a parent sort by lite name length first, then by name: one range per
/// length. `[from, to)`.
pub fn lite_heads_of_len(lite_prefix: &str, lite_len: usize) -> (Vec<u8>, Vec<u8>) {
    let total = (lite_prefix.len() + lite_len).min(MAX_NAME_LEN);
    let mut from = Vec::with_capacity(2 + lite_prefix.len());
    from.extend_from_slice(&(total as u16).to_be_bytes());
    from.extend_from_slice(lite_prefix.as_bytes());
    let to = prefix_end(&from);
    (from, to)
}

/// Prefix of a message id's entries in `message_id`.
pub fn id_prefix(message_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + message_id.len() + 8);
    put_name(&mut k, message_id);
    k
}

/// Appends the `message_id` key of a record.
pub fn write_id_key(k: &mut Vec<u8>, message_id: &str, log_offset: u64) {
    put_name(k, message_id);
    k.extend_from_slice(&log_offset.to_be_bytes());
}

/// The (message id, log offset) of a `message_id` key.
pub fn decode_id_key(key: &[u8]) -> Option<(String, u64)> {
    let (id, rest) = read_name(key)?;
    let (offset, rest) = read_u64(rest)?;
    rest.is_empty().then(|| (id.to_string(), offset))
}

fn write_msg_key_prefix(k: &mut Vec<u8>, topic: &str, key: &str) {
    put_name(k, topic);
    put_name(k, key);
}

/// Prefix of a (topic, key)'s entries in `message_key`.
pub fn key_prefix(topic: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + topic.len() + key.len() + 8);
    write_msg_key_prefix(&mut k, topic, key);
    k
}

/// Appends the `message_key` key of a record carrying `key`.
pub fn write_msg_key(k: &mut Vec<u8>, topic: &str, key: &str, log_offset: u64) {
    write_msg_key_prefix(k, topic, key);
    k.extend_from_slice(&log_offset.to_be_bytes());
}

/// The (topic, key, log offset) of a `message_key` key.
pub fn decode_msg_key(k: &[u8]) -> Option<(String, String, u64)> {
    let (topic, rest) = read_name(k)?;
    let (key, rest) = read_name(rest)?;
    let (offset, rest) = read_u64(rest)?;
    rest.is_empty()
        .then(|| (topic.to_string(), key.to_string(), offset))
}

// ---- checkpoint -------------------------------------------------------------------------

/// `checkpoint` key: the index holds every record below this log offset.
pub const CK_DISPATCHED: &[u8] = b"store.dispatched";
/// `checkpoint` key: the log was fdatasync'ed at least up to this offset (recorded lazily).
pub const CK_FLUSHED: &[u8] = b"store.flushed";
/// `checkpoint` key: the index format of the complete derived tables, u32 (`super::format`).
pub const CK_INDEX_FORMAT: &[u8] = b"store.index_format";
/// `checkpoint` key: a rebuild into this index format (u32) began and has not finished.
pub const CK_INDEX_REBUILDING: &[u8] = b"store.index_rebuilding";
/// `checkpoint` key: the derived tables were emptied and rebuilt from the local log only;
/// the records a cold store holds below it are not indexed yet (`cold.rs`).
pub const CK_COLD_UNINDEXED: &[u8] = b"store.cold_unindexed";

// ---- transaction, schedule --------------------------------------------------------------

/// Tags of the `transaction` and `schedule` rows (see the module table).
pub mod tag {
    /// `transaction`: a half message.
    pub const HALF: u8 = b'h';
    /// `schedule`: a waiting message.
    pub const WAITING: u8 = b'm';
    /// Both: how it ended.
    pub const OUTCOME: u8 = b'o';
    /// `transaction`: check-backs so far.
    pub const CHECKS: u8 = b'n';
    /// Both: the due index.
    pub const DUE: u8 = b'd';
    /// `consume_state`: a queue's pop offset.
    pub const POP: u8 = b'p';
    /// `consume_state`: an in-flight or waiting entry.
    pub const INFLIGHT: u8 = b'i';
}

/// A `transaction` or `schedule` row of kind `tag` for `id`.
pub fn id_row(tag: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + id.len());
    k.push(tag);
    put_name(&mut k, id);
    k
}

/// The (tag, id) of an [`id_row`] key.
pub fn decode_id_row(k: &[u8]) -> Option<(u8, String)> {
    let (&tag, rest) = k.split_first()?;
    let (id, rest) = read_name(rest)?;
    rest.is_empty().then(|| (tag, id.to_string()))
}

/// The first key of the due index at `due_ms` (a negative time counts as 0).
pub fn due_from(due_ms: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(11);
    k.push(tag::DUE);
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k
}

/// A due-index key: `id` due at `due_ms`.
pub fn due_key(due_ms: i64, id: &str) -> Vec<u8> {
    let mut k = due_from(due_ms);
    put_name(&mut k, id);
    k
}

/// The (due ts, id) of a [`due_key`].
pub fn decode_due_key(k: &[u8]) -> Option<(i64, String)> {
    let rest = k.strip_prefix(&[tag::DUE])?;
    let (due, rest) = read_u64(rest)?;
    let (id, rest) = read_name(rest)?;
    rest.is_empty().then(|| (due as i64, id.to_string()))
}

/// The due index's whole range: `[from, to)`.
pub fn due_range() -> (Vec<u8>, Vec<u8>) {
    (vec![tag::DUE], prefix_end(&[tag::DUE]))
}

// ---- consumer_offset, consume_state -----------------------------------------------------

/// One (consumer group, topic, queue): the `consumer_offset` key, and after a tag the
/// prefix of the queue's `consume_state` rows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub group: String,
    pub topic: String,
    pub queue_id: u32,
}

/// A `consume_state` row's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeRow {
    /// The queue's pop offset.
    Pop,
    /// An in-flight or waiting entry at this queue offset.
    Inflight(u64),
}

impl QueueKey {
    pub fn new(group: &str, topic: &str, queue_id: u32) -> QueueKey {
        QueueKey {
            group: group.to_string(),
            topic: topic.to_string(),
            queue_id,
        }
    }

    fn write(&self, k: &mut Vec<u8>) {
        put_name(k, &self.group);
        put_name(k, &self.topic);
        k.extend_from_slice(&self.queue_id.to_be_bytes());
    }

    /// The encoded queue: also its `consumer_offset` key.
    pub fn prefix(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.group.len() + self.topic.len() + 8);
        self.write(&mut k);
        k
    }

    fn tagged(&self, tag: u8, extra: usize) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.group.len() + self.topic.len() + 9 + extra);
        k.push(tag);
        self.write(&mut k);
        k
    }

    /// The `consume_state` key of the queue's pop offset.
    pub fn pop_key(&self) -> Vec<u8> {
        self.tagged(tag::POP, 0)
    }

    /// The prefix of the queue's in-flight entries in `consume_state`.
    pub fn inflight_prefix(&self) -> Vec<u8> {
        self.tagged(tag::INFLIGHT, 8)
    }

    /// The `consume_state` key of the queue's entry at `offset`.
    pub fn inflight_key(&self, offset: u64) -> Vec<u8> {
        let mut k = self.tagged(tag::INFLIGHT, 8);
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }

    /// Reads an encoded queue from the front of `bytes`: the queue and the rest.
    pub fn parse(bytes: &[u8]) -> Option<(QueueKey, &[u8])> {
        let (group, rest) = read_name(bytes)?;
        let (topic, rest) = read_name(rest)?;
        let (queue_id, rest) = read_u32(rest)?;
        Some((QueueKey::new(group, topic, queue_id), rest))
    }

    /// The queue of a `consumer_offset` key.
    pub fn decode_offset_key(key: &[u8]) -> Option<QueueKey> {
        QueueKey::parse(key).and_then(|(q, rest)| rest.is_empty().then_some(q))
    }

    /// The queue and kind of a `consume_state` key.
    pub fn decode_state_key(key: &[u8]) -> Option<(QueueKey, ConsumeRow)> {
        let (&tag, rest) = key.split_first()?;
        let (q, rest) = QueueKey::parse(rest)?;
        let row = match tag {
            tag::POP if rest.is_empty() => ConsumeRow::Pop,
            tag::INFLIGHT => {
                let (offset, rest) = read_u64(rest)?;
                if !rest.is_empty() {
                    return None;
                }
                ConsumeRow::Inflight(offset)
            }
            _ => return None,
        };
        Some((q, row))
    }

    /// The queue whose `consume_state` (when `state`) or `consumer_offset` row `key` is.
    pub fn of_row(state: bool, key: &[u8]) -> Option<QueueKey> {
        if state {
            QueueKey::decode_state_key(key).map(|(q, _)| q)
        } else {
            QueueKey::decode_offset_key(key)
        }
    }

    /// The key range `[from, to)` of every `consume_state` row of this queue with `tag`.
    pub fn tagged_range(&self, tag: u8) -> (Vec<u8>, Vec<u8>) {
        let from = self.tagged(tag, 0);
        let to = prefix_end(&from);
        (from, to)
    }
}

/// Key of a consumer offset in `consumer_offset`.
pub fn consumer_offset_key(group: &str, topic: &str, queue_id: u32) -> Vec<u8> {
    QueueKey::new(group, topic, queue_id).prefix()
}

/// The key range `[from, to)` of every consumer offset of `group` in `consumer_offset`.
pub fn group_offsets_range(group: &str) -> (Vec<u8>, Vec<u8>) {
    let mut from = Vec::with_capacity(2 + group.len());
    put_name(&mut from, group);
    let to = prefix_end(&from);
    (from, to)
}

// ---- topic_config, group_config ----------------------------------------------------------

/// The `topic_config` or `group_config` key of a topic or group.
pub fn config_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len());
    put_name(&mut k, name);
    k
}

/// The name of a `topic_config` or `group_config` key.
pub fn decode_config_key(key: &[u8]) -> Option<String> {
    let (name, rest) = read_name(key)?;
    rest.is_empty().then(|| name.to_string())
}

#[path = "keys_meta.rs"]
mod meta;
pub use meta::*;

#[cfg(test)]
#[path = "tests_keys.rs"]
mod tests;

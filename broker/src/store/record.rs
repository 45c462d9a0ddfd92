//! The on-disk record: one per message in the commit log.
//!
//! A record is self-describing and self-checking. All integers are big-endian.
//!
//! ```text
//! offset  size  field
//!      0     4  total_len           u32, length of the whole record including this field
//!      4     4  magic               u32, "APG2" (0x4150_4732); "APG1" records are still read
//!                                   (the format version lives here)
//!      8     4  crc32               u32, CRC-32 (IEEE, crc32fast) of bytes [12, total_len)
//!     12     4  queue_id            u32
//!     16     8  queue_offset        u64, assigned by the store
//!     24     8  born_timestamp_ms   i64
//!     32     8  store_timestamp_ms  i64, assigned by the store
//!     40     8  delivery_ts_ms      i64, 0 unless flag DELIVERY_TS
//!     48     4  reconsume_times     u32
//!     52     4  body_crc32          u32, CRC-32 of the body alone
//!     56     1  message_type        u8, apache.rocketmq.v2.MessageType value as sent
//!     57     1  flags               u8, bit 0 TAG, bit 1 DELIVERY_TS, bit 2 GROUP (other bits 0)
//!     58        topic               u16 len + UTF-8
//!               message_id          u16 len + UTF-8
//!               tag                 u16 len + UTF-8 (len 0 when absent; flag TAG tells)
//!               keys                u16 count, then per key: u16 len + UTF-8
//!               message_group       u16 len + UTF-8 (len 0 when absent; flag GROUP tells)
//!               born_host           u16 len + UTF-8
//!               properties          u16 count, then per pair: u16 len + key, u32 len + value
//!               internal properties u16 count, pairs as above (version 2 only; see below)
//!               body                u32 len + bytes
//! ```
//!
//! Version 2 ("APG2") added the internal properties: broker-owned facts about a record that
//! clients never see, e.g. the real topic of a half message or the transaction a commit ends
//! (keys in [`internal`]). A version 1 record reads as one with none. Writers write version 2.
//!
//! Some internal properties are facts of the message itself rather than markers of a broker
//! index ([`internal::CARRIED`]: the body's encoding, a remoting producer's `flag`): every
//! copy of a message keeps them (its half, waiting, published, retry and dead-letter
//! records). A fact added this way needs no new format version: a record without it reads
//! as the message without it (a `flag` of 0).
//!
//! The fields must consume exactly `total_len` bytes. A record never spans two segments.
//! The smallest possible record is [`MIN_RECORD_LEN`] bytes.

use super::StoreError;
use bytes::Bytes;

/// Magic number of format version 1 ("APG1"): no internal properties.
pub const MAGIC_V1: u32 = 0x4150_4731;
/// Magic number of format version 2 ("APG2"), the one written.
pub const MAGIC: u32 = 0x4150_4732;

/// Keys of the internal properties the broker writes (see the module doc).
pub mod internal {
    /// Transaction id: on a half message, on the commit that publishes it, on its op records.
    pub const TXN_ID: &str = "txn.id";
    /// A half message's real topic and queue.
    pub const REAL_TOPIC: &str = "txn.real_topic";
    pub const REAL_QUEUE: &str = "txn.real_queue";
    /// Client id of the producer that sent the half message.
    pub const PRODUCER: &str = "txn.producer";
    /// When the next check-back is due (ms since the epoch).
    pub const CHECK_AT: &str = "txn.check_at";
    /// Check-backs made so far (on a check op record).
    pub const CHECKS: &str = "txn.checks";
    /// On a transaction op record: `rollback`, `check` or `park`.
    pub const TXN_OP: &str = "txn.op";
    /// Who ended a transaction: `producer`, `check` or `operator`.
    pub const TXN_BY: &str = "txn.by";
    /// Scheduled delivery (the recall handle): on a waiting message, on the message it
    /// publishes, on its op records.
    pub const SCHED_ID: &str = "sched.id";
    /// A waiting message's real topic and queue.
    pub const SCHED_TOPIC: &str = "sched.real_topic";
    pub const SCHED_QUEUE: &str = "sched.real_queue";
    /// When it is due (ms since the epoch); also on what ends its wait.
    pub const SCHED_DUE: &str = "sched.due";
    /// On a schedule op record: `recall` or `drop`.
    pub const SCHED_OP: &str = "sched.op";
    /// A dead letter's origin: the consumer group, its topic, queue and queue offset,
    /// and the delivery attempts it had.
    pub const DLQ_GROUP: &str = "dlq.group";
    pub const DLQ_TOPIC: &str = "dlq.topic";
    pub const DLQ_QUEUE: &str = "dlq.queue";
    pub const DLQ_OFFSET: &str = "dlq.offset";
    pub const DLQ_ATTEMPTS: &str = "dlq.attempts";
    /// When a dead letter was resent to its topic (ms since the epoch), on the resent copy.
    pub const DLQ_RESENT_AT: &str = "dlq.resent_at";
    /// The body's encoding as the producer declared it (`gzip`); absent means identity.
    pub const BODY_ENCODING: &str = "body.encoding";
    /// A PRIORITY message's priority (`crate::produce::priority`).
    pub const PRIORITY: &str = "priority";
    /// The `flag` a remoting producer set (RocketMQ's `Message.flag`, an i32 opaque to the
    /// broker), in decimal; absent when 0 (a gRPC producer's message has none).
    pub const FLAG: &str = "msg.flag";
    /// The producer's trace context (a 5.x client's `system_properties.trace_context`, a
    /// remoting producer's `TRACE_CONTEXT` property), handed to every consumer of every copy.
    pub const TRACE_CONTEXT: &str = "trace.context";

    /// The keys that are facts of the message, kept by every copy of it (see the module doc):
    /// retries, dead letters, a transaction's commit, a schedule's delivery.
    pub const CARRIED: [&str; 3] = [BODY_ENCODING, FLAG, TRACE_CONTEXT];

    /// Whether the internal property `pair` is one of [`CARRIED`].
    pub fn is_carried(pair: &(String, String)) -> bool {
        CARRIED.contains(&pair.0.as_str())
    }

    /// The internal property of a remoting producer's `flag`; none for 0.
    pub fn flag_property(flag: i32) -> Option<(String, String)> {
        (flag != 0).then(|| (FLAG.to_string(), flag.to_string()))
    }
}
/// Length, magic and CRC: what must be read to know a record's size.
pub const HEADER_LEN: usize = 12;
/// Header plus the fixed-width fields.
const FIXED_LEN: usize = 58;
/// A version 1 record with every string empty and no keys, properties or body.
pub const MIN_RECORD_LEN: usize = FIXED_LEN + 2 * 5 + 2 + 2 + 4;

const FLAG_TAG: u8 = 1;
const FLAG_DELIVERY_TS: u8 = 2;
const FLAG_GROUP: u8 = 4;

/// A message to append. queue offset and store time are assigned by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub topic: String,
    pub queue_id: u32,
    pub message_id: String,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub message_group: Option<String>,
    /// apache.rocketmq.v2.MessageType value, stored as-is.
    pub message_type: u8,
    pub born_timestamp_ms: i64,
    pub born_host: String,
    pub delivery_timestamp_ms: Option<i64>,
    /// How many times it was delivered before (retries), 0 normally.
    pub reconsume_times: u32,
    /// User properties, order kept.
    pub properties: Vec<(String, String)>,
    /// Broker-internal properties (keys in [`internal`]); never shown to clients.
    pub internal: Vec<(String, String)>,
    /// Shared, not copied: from the decoded request to the log write, and from a log read
    /// out to the consumer.
    pub body: Bytes,
}

impl NewMessage {
    /// A broker-internal record of a system topic (queue 0): no body, only internal
    /// properties (e.g. a transaction or schedule op).
    pub fn op_record(topic: &str, internal: Vec<(String, String)>) -> NewMessage {
        NewMessage {
            topic: topic.to_string(),
            queue_id: 0,
            message_id: String::new(),
            tag: None,
            keys: Vec::new(),
            message_group: None,
            message_type: 0,
            born_timestamp_ms: apogee_proto::time::now_ms(),
            born_host: String::new(),
            delivery_timestamp_ms: None,
            reconsume_times: 0,
            properties: Vec::new(),
            internal,
            body: Bytes::new(),
        }
    }

    /// The value of internal property `key`.
    pub fn internal(&self, key: &str) -> Option<&str> {
        self.internal
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The internal properties every copy of this message keeps ([`internal::CARRIED`]).
    pub fn carried_internal(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.internal
            .iter()
            .filter(|pair| internal::is_carried(pair))
            .cloned()
    }

    /// The `flag` a remoting producer set ([`internal::FLAG`]); 0 when it set none.
    pub fn flag(&self) -> i32 {
        self.internal(internal::FLAG)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0)
    }

    /// The priority a PRIORITY message was stored with ([`internal::PRIORITY`]).
    pub fn priority(&self) -> Option<i32> {
        self.internal(internal::PRIORITY)
            .and_then(|p| p.parse().ok())
    }
}

/// A message read back: everything in [`NewMessage`] plus what the store assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub msg: NewMessage,
    pub queue_offset: u64,
    pub log_offset: u64,
    pub record_size: u32,
    pub store_timestamp_ms: i64,
    pub body_crc32: u32,
}

fn invalid(what: &str, len: usize, max: usize) -> StoreError {
    StoreError::InvalidMessage(format!(
        "{what} is {len} bytes/items, the record format allows {max}"
    ))
}

fn str16_len(what: &str, s: &str) -> Result<usize, StoreError> {
    if s.len() > u16::MAX as usize {
        return Err(invalid(what, s.len(), u16::MAX as usize));
    }
    Ok(2 + s.len())
}

/// Exact encoded size of `msg`, or an error when a field does not fit the format.
pub fn encoded_len(msg: &NewMessage) -> Result<usize, StoreError> {
    let mut n = FIXED_LEN;
    n += str16_len("topic", &msg.topic)?;
    n += str16_len("message id", &msg.message_id)?;
    n += str16_len("tag", msg.tag.as_deref().unwrap_or(""))?;
    if msg.keys.len() > u16::MAX as usize {
        return Err(invalid("key count", msg.keys.len(), u16::MAX as usize));
    }
    n += 2;
    for k in &msg.keys {
        n += str16_len("key", k)?;
    }
    n += str16_len("message group", msg.message_group.as_deref().unwrap_or(""))?;
    n += str16_len("born host", &msg.born_host)?;
    n += pairs_len(&msg.properties, "property count", "property name")?;
    n += pairs_len(
        &msg.internal,
        "internal property count",
        "internal property name",
    )?;
    n += 4 + msg.body.len();
    Ok(n)
}

fn pairs_len(
    pairs: &[(String, String)],
    what_count: &str,
    what_name: &str,
) -> Result<usize, StoreError> {
    if pairs.len() > u16::MAX as usize {
        return Err(invalid(what_count, pairs.len(), u16::MAX as usize));
    }
    let mut n = 2;
    for (k, v) in pairs {
        n += str16_len(what_name, k)?;
        n += 4 + v.len();
    }
    Ok(n)
}

fn put_pairs(buf: &mut Vec<u8>, pairs: &[(String, String)]) {
    buf.extend_from_slice(&(pairs.len() as u16).to_be_bytes());
    for (k, v) in pairs {
        put_str16(buf, k);
        buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
}

fn put_str16(buf: &mut Vec<u8>, s: &str) {
    // Lengths were checked by `encoded_len`.
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends the record for `msg` to `buf`; returns its size.
///
/// Fails with [`StoreError::MessageTooLarge`] above `max_record_size` and with
/// [`StoreError::InvalidMessage`] when a field does not fit the format; `buf` is then unchanged.
pub fn encode_into(
    buf: &mut Vec<u8>,
    msg: &NewMessage,
    queue_offset: u64,
    store_timestamp_ms: i64,
    max_record_size: usize,
) -> Result<u32, StoreError> {
    let len = encoded_len(msg)?;
    if len > max_record_size || len > u32::MAX as usize {
        return Err(StoreError::MessageTooLarge {
            size: len,
            max: max_record_size.min(u32::MAX as usize),
        });
    }
    let start = buf.len();
    buf.reserve(len);
    let mut flags = 0u8;
    if msg.tag.is_some() {
        flags |= FLAG_TAG;
    }
    if msg.delivery_timestamp_ms.is_some() {
        flags |= FLAG_DELIVERY_TS;
    }
    if msg.message_group.is_some() {
        flags |= FLAG_GROUP;
    }
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    buf.extend_from_slice(&MAGIC.to_be_bytes());
    buf.extend_from_slice(&[0u8; 4]); // CRC, filled in below
    buf.extend_from_slice(&msg.queue_id.to_be_bytes());
    buf.extend_from_slice(&queue_offset.to_be_bytes());
    buf.extend_from_slice(&msg.born_timestamp_ms.to_be_bytes());
    buf.extend_from_slice(&store_timestamp_ms.to_be_bytes());
    buf.extend_from_slice(&msg.delivery_timestamp_ms.unwrap_or(0).to_be_bytes());
    buf.extend_from_slice(&msg.reconsume_times.to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(&msg.body).to_be_bytes());
    buf.push(msg.message_type);
    buf.push(flags);
    put_str16(buf, &msg.topic);
    put_str16(buf, &msg.message_id);
    put_str16(buf, msg.tag.as_deref().unwrap_or(""));
    buf.extend_from_slice(&(msg.keys.len() as u16).to_be_bytes());
    for k in &msg.keys {
        put_str16(buf, k);
    }
    put_str16(buf, msg.message_group.as_deref().unwrap_or(""));
    put_str16(buf, &msg.born_host);
    put_pairs(buf, &msg.properties);
    put_pairs(buf, &msg.internal);
    buf.extend_from_slice(&(msg.body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&msg.body);
    debug_assert_eq!(buf.len() - start, len);
    let crc = crc32fast::hash(&buf[start + HEADER_LEN..]);
    buf[start + 8..start + 12].copy_from_slice(&crc.to_be_bytes());
    Ok(len as u32)
}

/// Checks a record header; returns the record's total length.
/// `room` is how many bytes the log holds from the record's start; the length must fit in it.
pub fn check_header(header: &[u8], room: u64) -> Result<u32, String> {
    if header.len() < HEADER_LEN {
        return Err(format!(
            "only {} bytes left, a record header needs {HEADER_LEN}",
            header.len()
        ));
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let magic = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if magic != MAGIC && magic != MAGIC_V1 {
        return Err(format!("bad magic {magic:#010x}"));
    }
    if (len as usize) < MIN_RECORD_LEN {
        return Err(format!(
            "record length {len} is below the minimum {MIN_RECORD_LEN}"
        ));
    }
    if u64::from(len) > room {
        return Err(format!(
            "record length {len} runs past the end of the segment ({room} bytes left)"
        ));
    }
    Ok(len)
}

/// Checks length, magic and CRC of a complete record (`bytes` is exactly one record).
pub fn verify(bytes: &[u8]) -> Result<(), String> {
    let len = check_header(bytes, bytes.len() as u64)?;
    if len as usize != bytes.len() {
        return Err(format!(
            "record length {len} but {} bytes given",
            bytes.len()
        ));
    }
    let stored = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let actual = crc32fast::hash(&bytes[HEADER_LEN..]);
    if stored != actual {
        return Err(format!(
            "CRC mismatch (stored {stored:#010x}, computed {actual:#010x})"
        ));
    }
    Ok(())
}

/// The store timestamp of a record that passed [`verify`] (a fixed field, read without
/// decoding the rest).
pub fn store_timestamp(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[32..40]);
    i64::from_be_bytes(b)
}

/// The bytes of a record's start that hold its store timestamp (the fixed fields up to it).
pub const STORE_TIMESTAMP_END: usize = 40;

/// The store timestamp of the record whose first [`STORE_TIMESTAMP_END`] bytes (or more)
/// are `head`: its length and magic checked, not its CRC (the rest is not read).
pub fn store_timestamp_of_head(head: &[u8]) -> Result<i64, String> {
    if head.len() < STORE_TIMESTAMP_END {
        return Err(format!(
            "only {} bytes of the record, its store timestamp ends at byte {STORE_TIMESTAMP_END}",
            head.len()
        ));
    }
    check_header(head, u64::MAX)?;
    Ok(store_timestamp(head))
}

/// A bounds-checked reader over one record's bytes.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end =
            end.ok_or_else(|| format!("field of {n} bytes at {} overruns the record", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.arr()?))
    }
    fn string(&mut self, len: usize) -> Result<String, String> {
        let b = self.take(len)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("invalid UTF-8 in a string at {}", self.pos - len))
    }
    fn str16(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        self.string(n)
    }
    fn pairs(&mut self) -> Result<Vec<(String, String)>, String> {
        let count = self.u16()?;
        let mut pairs = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let k = self.str16()?;
            let vlen = self.u32()? as usize;
            pairs.push((k, self.string(vlen)?));
        }
        Ok(pairs)
    }
}

/// Decodes and validates one complete record read from `log_offset` (the body is copied out
/// of `bytes`; [`decode_shared`] avoids that).
pub fn decode(bytes: &[u8], log_offset: u64) -> Result<StoredMessage, StoreError> {
    decode_inner(bytes, log_offset, |r| Bytes::copy_from_slice(&bytes[r])).map_err(|reason| {
        StoreError::Corrupt {
            offset: log_offset,
            reason,
        }
    })
}

/// Like [`decode`], with the body a slice of `bytes` (no copy).
pub fn decode_shared(bytes: Bytes, log_offset: u64) -> Result<StoredMessage, StoreError> {
    decode_inner(&bytes, log_offset, |r| bytes.slice(r)).map_err(|reason| StoreError::Corrupt {
        offset: log_offset,
        reason,
    })
}

fn decode_inner(
    bytes: &[u8],
    log_offset: u64,
    body_of: impl FnOnce(std::ops::Range<usize>) -> Bytes,
) -> Result<StoredMessage, String> {
    verify(bytes)?;
    let version2 = bytes[4..8] == MAGIC.to_be_bytes();
    let mut c = Cursor {
        b: bytes,
        pos: HEADER_LEN,
    };
    let queue_id = c.u32()?;
    let queue_offset = c.u64()?;
    let born_timestamp_ms = c.i64()?;
    let store_timestamp_ms = c.i64()?;
    let delivery_ts = c.i64()?;
    let reconsume_times = c.u32()?;
    let body_crc32 = c.u32()?;
    let message_type = c.u8()?;
    let flags = c.u8()?;
    if flags & !(FLAG_TAG | FLAG_DELIVERY_TS | FLAG_GROUP) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let topic = c.str16()?;
    let message_id = c.str16()?;
    let tag = c.str16()?;
    let key_count = c.u16()?;
    let mut keys = Vec::with_capacity(key_count as usize);
    for _ in 0..key_count {
        keys.push(c.str16()?);
    }
    let group = c.str16()?;
    let born_host = c.str16()?;
    let properties = c.pairs()?;
    let internal = if version2 { c.pairs()? } else { Vec::new() };
    let body_len = c.u32()? as usize;
    let body_start = c.pos;
    let body_crc = crc32fast::hash(c.take(body_len)?);
    if c.pos != bytes.len() {
        return Err(format!(
            "{} unused bytes at the end of the record",
            bytes.len() - c.pos
        ));
    }
    if body_crc != body_crc32 {
        return Err("body CRC mismatch".to_string());
    }
    let body = body_of(body_start..body_start + body_len);
    Ok(StoredMessage {
        msg: NewMessage {
            topic,
            queue_id,
            message_id,
            tag: (flags & FLAG_TAG != 0).then_some(tag),
            keys,
            message_group: (flags & FLAG_GROUP != 0).then_some(group),
            message_type,
            born_timestamp_ms,
            born_host,
            delivery_timestamp_ms: (flags & FLAG_DELIVERY_TS != 0).then_some(delivery_ts),
            reconsume_times,
            properties,
            internal,
            body,
        },
        queue_offset,
        log_offset,
        record_size: bytes.len() as u32,
        store_timestamp_ms,
        body_crc32,
    })
}

//! RocketMQ's message encodings: what a remoting producer sends and a remoting consumer reads.
//!
//! - [`property`]: the names of the properties RocketMQ clients and brokers exchange.
//! - [`sys_flag`]: the bits of a message's system flag (compression, transaction state, IPv6
//!   hosts).
//! - [`properties_to_string`] / [`properties_from_str`]: the properties string (`name` U+0001
//!   `value` U+0002 ...), the form a send request's `properties` field and a stored message
//!   carry.
//! - [`MessageExt`]: one message in the stored-message layout (the body of a pull, a query and
//!   a check-back): [`MessageExt::encode`] and [`MessageExt::decode_all`].
//! - [`decode_batch`]: the body of SEND_BATCH_MESSAGE, the batch's messages in the producer's
//!   shorter layout.
//! - [`offset_message_id`] / [`parse_offset_message_id`]: the "offset message id" (the store
//!   host and the commit-log offset in hexadecimal).
//! - [`inflate`] / [`deflate`]: the zlib body of a message whose sys flag says compressed;
//!   [`gunzip`]: a gzip body (gRPC's encoding) for a remoting consumer.
//!
//! All integers are big-endian. The layout of a stored message:
//!
//! | field | size |
//! |---|---|
//! | total size (this record, itself included) | i32 |
//! | magic code ([`MAGIC_CODE_V1`]; [`MAGIC_CODE_V2`] when the topic's length is an i16) | i32 |
//! | body CRC ([`body_crc`]) | i32 |
//! | queue id | i32 |
//! | flag | i32 |
//! | queue offset | i64 |
//! | commit-log offset | i64 |
//! | sys flag | i32 |
//! | born timestamp (ms) | i64 |
//! | born host: 4 (16 with [`sys_flag::BORN_HOST_V6`]) address bytes, port as i32 | 8 or 20 |
//! | store timestamp (ms) | i64 |
//! | store host (as born host, with [`sys_flag::STORE_HOST_V6`]) | 8 or 20 |
//! | reconsume times | i32 |
//! | prepared transaction offset | i64 |
//! | body length, body | i32 + n |
//! | topic length (u8 in V1, i16 in V2), topic | 1 or 2 + n |
//! | properties length, properties string | i16 + n |

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic code of a stored message whose topic length is one byte.
pub const MAGIC_CODE_V1: i32 = -626_843_481;
/// The magic code of a stored message whose topic length is an i16 (topics over 127 bytes).
pub const MAGIC_CODE_V2: i32 = -626_843_477;
/// The longest topic a V1 record carries (Java reads the length as a signed byte).
pub const V1_MAX_TOPIC_BYTES: usize = 127;
/// The longest properties string a record carries (its length is an i16).
pub const MAX_PROPERTIES_BYTES: usize = i16::MAX as usize;
/// The body size above which RocketMQ's Java producer compresses (its default
/// `compressMsgBodyOverHowmuch`).
pub const PRODUCER_COMPRESS_OVER_BYTES: usize = 4 * 1024;

/// Separates a property's name from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property.
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// The names of message properties (RocketMQ's `MessageConst`).
pub mod property {
    /// The message's tag.
    pub const TAGS: &str = "TAGS";
    /// The message's keys, separated by [`KEY_SEPARATOR`].
    pub const KEYS: &str = "KEYS";
    /// The separator of the keys in [`KEYS`].
    pub const KEY_SEPARATOR: &str = " ";
    /// The message id the client set (the id clients show and query by).
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// A delay level (1..=18 of RocketMQ's levels).
    pub const DELAY: &str = "DELAY";
    /// "true" on a transaction's half message.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// The producer group of a transaction message (who is asked in a check-back).
    pub const PGROUP: &str = "PGROUP";
    /// The topic a retried message was first sent to.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// The id of the message a retry copies.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// How many times the message was consumed again.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// The group's limit of reconsumptions, as the consumer sent it back.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// The topic a scheduled or half message is bound for.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// The queue a scheduled or half message is bound for.
    pub const REAL_QID: &str = "REAL_QID";
    /// The queue's smallest offset, set on pulled messages.
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    /// The queue's next offset, set on pulled messages.
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    /// A delivery time in ms since the epoch (the 4.x timer-message property).
    pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
    /// A delivery time in ms since the epoch (5.x timer).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// A delay in seconds (5.x timer).
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// A delay in milliseconds (5.x timer).
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// Seconds before a transaction's first check-back.
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// The transaction id a client keeps for its half message.
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// The broker's region (answered to a send).
    pub const MSG_REGION: &str = "MSG_REGION";
    /// Whether the message is traced (answered to a send).
    pub const TRACE_ON: &str = "TRACE_ON";
    /// "false" when the producer does not wait for the store.
    pub const WAIT: &str = "WAIT";
    /// The message's sharding key (a FIFO message's group in 5.x).
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    /// When the consumer started consuming the message.
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    /// The client's extension of the unique id.
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    /// The offset of a half message in its queue (set on a check-back).
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    /// The cluster a message was sent in.
    pub const CLUSTER: &str = "CLUSTER";
    /// The producer's trace context (W3C `traceparent`), which RocketMQ's proxy keeps for a
    /// 5.x client's `system_properties.trace_context`.
    pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";

    /// Properties the broker or the client set and the sender does not own: they are not kept
    /// as user properties. [`PGROUP`] and [`SHARDING_KEY`] are not among them: a message keeps
    /// them (the producer group is who a transaction's check-back asks).
    pub const SYSTEM: &[&str] = &[
        TAGS,
        KEYS,
        UNIQ_KEY,
        DELAY,
        TRAN_MSG,
        RETRY_TOPIC,
        ORIGIN_MESSAGE_ID,
        RECONSUME_TIME,
        MAX_RECONSUME_TIMES,
        REAL_TOPIC,
        REAL_QID,
        MIN_OFFSET,
        MAX_OFFSET,
        START_DELIVER_TIME,
        TIMER_DELIVER_MS,
        TIMER_DELAY_SEC,
        TIMER_DELAY_MS,
        CHECK_IMMUNITY_TIME_IN_SECONDS,
        TRANSACTION_ID,
        MSG_REGION,
        TRACE_ON,
        WAIT,
        CONSUME_START_TIME,
        TRAN_PREPARED_QUEUE_OFFSET,
        CLUSTER,
        TRACE_CONTEXT,
        "TIMER_OUT_MS",
        "TIMER_ENQUEUE_MS",
        "TIMER_DEQUEUE_MS",
        "TIMER_ROLL_TIMES",
        "TIMER_DEL_UNIQKEY",
        "INNER_NUM",
        "INNER_BASE",
        "1ST_POP_TIME",
        "POP_CK",
        "POP_CK_OFFSET",
        "DUP_INFO",
        "TRANSFER_FLAG",
        "CORRECTION_FLAG",
        "MQ2_FLAG",
    ];

    /// Whether `name` is one of [`SYSTEM`].
    pub fn is_system(name: &str) -> bool {
        SYSTEM.contains(&name)
    }
}

/// The bits of a message's system flag (RocketMQ's `MessageSysFlag`).
pub mod sys_flag {
    /// The body is compressed (zlib unless [`COMPRESSION_TYPE_MASK`] says otherwise).
    pub const COMPRESSED: i32 = 0x1;
    /// The tags are many (never set by Apogee).
    pub const MULTI_TAGS: i32 = 0x1 << 1;
    /// The transaction state's two bits.
    pub const TRANSACTION_MASK: i32 = 0x3 << 2;
    /// Not a transaction message.
    pub const TRANSACTION_NOT_TYPE: i32 = 0;
    /// A transaction's half message.
    pub const TRANSACTION_PREPARED: i32 = 0x1 << 2;
    /// A committed transaction message.
    pub const TRANSACTION_COMMIT: i32 = 0x2 << 2;
    /// A rolled-back transaction message.
    pub const TRANSACTION_ROLLBACK: i32 = 0x3 << 2;
    /// The born host is IPv6.
    pub const BORN_HOST_V6: i32 = 0x1 << 4;
    /// The store host is IPv6.
    pub const STORE_HOST_V6: i32 = 0x1 << 5;
    /// The compression type's bits (5.x producers: 1 LZ4, 2 ZSTD, 3 ZLIB; 0 is zlib).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;
    /// The compression type ZLIB in [`COMPRESSION_TYPE_MASK`].
    pub const COMPRESSION_ZLIB: i32 = 0x3 << 8;

    /// The transaction state bits of `flag`.
    pub fn transaction_type(flag: i32) -> i32 {
        flag & TRANSACTION_MASK
    }
}

/// Why bytes are not a message (or a message is not encodable).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageCodecError {
    #[error("the message is truncated: {0}")]
    Truncated(&'static str),
    #[error("the message's total size {size} does not fit the {available} bytes left")]
    BadSize { size: i32, available: usize },
    #[error("unknown message magic code {0}")]
    BadMagic(i32),
    #[error("the {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("the topic of {0} bytes is longer than a record carries")]
    TopicTooLong(usize),
    #[error("the properties string of {0} bytes is longer than {MAX_PROPERTIES_BYTES}")]
    PropertiesTooLong(usize),
    #[error("the message id {0:?} is not an offset message id")]
    BadMessageId(String),
    #[error("the compressed body does not inflate: {0}")]
    BadCompression(String),
    #[error("the compressed body inflates beyond {0} bytes")]
    InflatedTooLarge(usize),
    #[error("the body is compressed with type {0}, which Apogee does not read (only zlib)")]
    UnsupportedCompression(i32),
}

/// A message's properties, by name.
pub type Properties = BTreeMap<String, String>;

/// The properties string of `properties`: `name` U+0001 `value` U+0002 for each.
pub fn properties_to_string(properties: &Properties) -> String {
    let mut out = String::new();
    for (name, value) in properties {
        out.push_str(name);
        out.push(NAME_VALUE_SEPARATOR);
        out.push_str(value);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// The properties of a properties string (entries without a name or a separator are
/// skipped, as RocketMQ does).
pub fn properties_from_str(text: &str) -> Properties {
    text.split(PROPERTY_SEPARATOR)
        .filter_map(|entry| {
            let (name, value) = entry.split_once(NAME_VALUE_SEPARATOR)?;
            (!name.is_empty()).then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// The body CRC RocketMQ stores (`UtilAll.crc32`: the CRC-32 with its top bit cleared).
pub fn body_crc(body: &[u8]) -> i32 {
    if body.is_empty() {
        return 0;
    }
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// One message as RocketMQ's stored-message layout carries it (the module doc's table).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageExt {
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    /// [`sys_flag`] bits; the host bits are set by [`MessageExt::encode`] from the hosts.
    pub sys_flag: i32,
    /// The producer's flag (opaque to the broker).
    pub flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    /// The record's size as encoded (set by [`MessageExt::decode_all`]; ignored by encode).
    pub store_size: i32,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub properties: Properties,
}

impl Default for MessageExt {
    fn default() -> Self {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        MessageExt {
            topic: String::new(),
            queue_id: 0,
            queue_offset: 0,
            commit_log_offset: 0,
            sys_flag: 0,
            flag: 0,
            born_timestamp: 0,
            born_host: unspecified,
            store_timestamp: 0,
            store_host: unspecified,
            store_size: 0,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::new(),
            properties: Properties::new(),
        }
    }
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 4 + 4,
        SocketAddr::V6(_) => 16 + 4,
    }
}

fn put_host(out: &mut BytesMut, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.put_slice(&ip.octets()),
        IpAddr::V6(ip) => out.put_slice(&ip.octets()),
    }
    out.put_i32(i32::from(addr.port()));
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), MessageCodecError> {
        if self.buf.remaining() < n {
            Err(MessageCodecError::Truncated(what))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, MessageCodecError> {
        self.need(2, what)?;
        Ok(self.buf.get_i16())
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, MessageCodecError> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, MessageCodecError> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, MessageCodecError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }
    fn sized_i32(&mut self, what: &'static str) -> Result<Bytes, MessageCodecError> {
        let n = self.i32(what)?;
        let n = usize::try_from(n).map_err(|_| MessageCodecError::Truncated(what))?;
        self.take(n, what)
    }
    fn string(&mut self, n: usize, what: &'static str) -> Result<String, MessageCodecError> {
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| MessageCodecError::NotUtf8(what))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr, MessageCodecError> {
        let ip = if v6 {
            let b = self.take(16, "host")?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b);
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            let b = self.take(4, "host")?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        let port = self.i32("host port")?;
        Ok(SocketAddr::new(ip, port as u16))
    }
    /// The next record's bytes (its total size read first and kept in the record).
    fn record(&mut self) -> Result<Reader, MessageCodecError> {
        self.need(4, "total size")?;
        let size = i32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
        let available = self.buf.remaining();
        if size < 4 || size as usize > available {
            return Err(MessageCodecError::BadSize { size, available });
        }
        Ok(Reader {
            buf: self.buf.split_to(size as usize),
        })
    }
}

impl MessageExt {
    /// The encoded size of this message (its total size field).
    pub fn encoded_len(&self) -> usize {
        let properties = properties_to_string(&self.properties);
        self.encoded_len_with(properties.len())
    }

    fn encoded_len_with(&self, properties_len: usize) -> usize {
        let topic_len_field = if self.topic.len() > V1_MAX_TOPIC_BYTES {
            2
        } else {
            1
        };
        4 + 4
            + 4
            + 4
            + 4
            + 8
            + 8
            + 4
            + 8
            + host_len(&self.born_host)
            + 8
            + host_len(&self.store_host)
            + 4
            + 8
            + 4
            + self.body.len()
            + topic_len_field
            + self.topic.len()
            + 2
            + properties_len
    }

    /// The sys flag as encoded: this message's, with the host bits of its hosts.
    pub fn encoded_sys_flag(&self) -> i32 {
        let mut flag = self.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
        if self.born_host.is_ipv6() {
            flag |= sys_flag::BORN_HOST_V6;
        }
        if self.store_host.is_ipv6() {
            flag |= sys_flag::STORE_HOST_V6;
        }
        flag
    }

    /// Appends this message in the stored-message layout to `out` (V2 magic for a topic over
    /// [`V1_MAX_TOPIC_BYTES`]).
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), MessageCodecError> {
        let properties = properties_to_string(&self.properties);
        if properties.len() > MAX_PROPERTIES_BYTES {
            return Err(MessageCodecError::PropertiesTooLong(properties.len()));
        }
        if self.topic.len() > i16::MAX as usize {
            return Err(MessageCodecError::TopicTooLong(self.topic.len()));
        }
        let v2 = self.topic.len() > V1_MAX_TOPIC_BYTES;
        let size = self.encoded_len_with(properties.len());
        out.reserve(size);
        out.put_i32(size as i32);
        out.put_i32(if v2 { MAGIC_CODE_V2 } else { MAGIC_CODE_V1 });
        out.put_i32(body_crc(&self.body));
        out.put_i32(self.queue_id);
        out.put_i32(self.flag);
        out.put_i64(self.queue_offset);
        out.put_i64(self.commit_log_offset);
        out.put_i32(self.encoded_sys_flag());
        out.put_i64(self.born_timestamp);
        put_host(out, &self.born_host);
        out.put_i64(self.store_timestamp);
        put_host(out, &self.store_host);
        out.put_i32(self.reconsume_times);
        out.put_i64(self.prepared_transaction_offset);
        out.put_i32(self.body.len() as i32);
        out.put_slice(&self.body);
        if v2 {
            out.put_i16(self.topic.len() as i16);
        } else {
            out.put_u8(self.topic.len() as u8);
        }
        out.put_slice(self.topic.as_bytes());
        out.put_i16(properties.len() as i16);
        out.put_slice(properties.as_bytes());
        Ok(())
    }

    /// Every message of `buf`, a sequence of stored-message records (a pull's body).
    pub fn decode_all(buf: Bytes) -> Result<Vec<MessageExt>, MessageCodecError> {
        let mut all = Reader { buf };
        let mut messages = Vec::new();
        while all.buf.has_remaining() {
            messages.push(Self::decode_record(all.record()?)?);
        }
        Ok(messages)
    }

    fn decode_record(mut r: Reader) -> Result<MessageExt, MessageCodecError> {
        let store_size = r.i32("total size")?;
        let magic = r.i32("magic code")?;
        if magic != MAGIC_CODE_V1 && magic != MAGIC_CODE_V2 {
            return Err(MessageCodecError::BadMagic(magic));
        }
        let _crc = r.i32("body crc")?;
        let queue_id = r.i32("queue id")?;
        let flag = r.i32("flag")?;
        let queue_offset = r.i64("queue offset")?;
        let commit_log_offset = r.i64("commit-log offset")?;
        let sys_flag = r.i32("sys flag")?;
        let born_timestamp = r.i64("born timestamp")?;
        let born_host = r.host(sys_flag & sys_flag::BORN_HOST_V6 != 0)?;
        let store_timestamp = r.i64("store timestamp")?;
        let store_host = r.host(sys_flag & sys_flag::STORE_HOST_V6 != 0)?;
        let reconsume_times = r.i32("reconsume times")?;
        let prepared_transaction_offset = r.i64("prepared transaction offset")?;
        let body = r.sized_i32("body")?;
        let topic_len = if magic == MAGIC_CODE_V2 {
            usize::try_from(r.i16("topic length")?)
                .map_err(|_| MessageCodecError::Truncated("topic"))?
        } else {
            r.take(1, "topic length")?[0] as usize
        };
        let topic = r.string(topic_len, "topic")?;
        let properties_len = usize::try_from(r.i16("properties length")?)
            .map_err(|_| MessageCodecError::Truncated("properties"))?;
        let properties = properties_from_str(&r.string(properties_len, "properties")?);
        Ok(MessageExt {
            topic,
            queue_id,
            queue_offset,
            commit_log_offset,
            sys_flag,
            flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            store_size,
            reconsume_times,
            prepared_transaction_offset,
            body,
            properties,
        })
    }

    /// This message's offset message id (its store host and commit-log offset).
    pub fn offset_message_id(&self) -> String {
        offset_message_id(self.store_host, self.commit_log_offset)
    }
}

/// One message of a SEND_BATCH_MESSAGE body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    pub properties: Properties,
}

/// The messages of a SEND_BATCH_MESSAGE body: each is total size (i32), magic code (i32),
/// body CRC (i32), flag (i32), body length (i32) and body, properties length (i16) and
/// properties string. The producer writes 0 as magic code and CRC; neither is checked.
pub fn decode_batch(buf: Bytes) -> Result<Vec<BatchEntry>, MessageCodecError> {
    let mut all = Reader { buf };
    let mut entries = Vec::new();
    while all.buf.has_remaining() {
        let mut r = all.record()?;
        let _size = r.i32("total size")?;
        let _magic = r.i32("magic code")?;
        let _crc = r.i32("body crc")?;
        let flag = r.i32("flag")?;
        let body = r.sized_i32("body")?;
        let properties_len = usize::try_from(r.i16("properties length")?)
            .map_err(|_| MessageCodecError::Truncated("properties"))?;
        let properties = properties_from_str(&r.string(properties_len, "properties")?);
        entries.push(BatchEntry {
            flag,
            body,
            properties,
        });
    }
    Ok(entries)
}

/// Appends `entry` to a SEND_BATCH_MESSAGE body (the layout [`decode_batch`] reads).
pub fn encode_batch_entry(entry: &BatchEntry, out: &mut BytesMut) -> Result<(), MessageCodecError> {
    let properties = properties_to_string(&entry.properties);
    if properties.len() > MAX_PROPERTIES_BYTES {
        return Err(MessageCodecError::PropertiesTooLong(properties.len()));
    }
    let size = 4 + 4 + 4 + 4 + 4 + entry.body.len() + 2 + properties.len();
    out.put_i32(size as i32);
    out.put_i32(0);
    out.put_i32(0);
    out.put_i32(entry.flag);
    out.put_i32(entry.body.len() as i32);
    out.put_slice(&entry.body);
    out.put_i16(properties.len() as i16);
    out.put_slice(properties.as_bytes());
    Ok(())
}

/// The offset message id of a message stored at `commit_log_offset` by `store_host`: the
/// host's address bytes, its port as i32 and the offset as i64, in upper-case hexadecimal
/// (32 characters for IPv4, 56 for IPv6).
pub fn offset_message_id(store_host: SocketAddr, commit_log_offset: i64) -> String {
    let mut id = String::with_capacity(56);
    push_offset_message_id(&mut id, store_host, commit_log_offset);
    id
}

/// Appends the offset message id of `store_host` and `commit_log_offset` to `out` (a batch's
/// send answer lists its messages' ids comma separated in one string).
pub fn push_offset_message_id(out: &mut String, store_host: SocketAddr, commit_log_offset: i64) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut push = |bytes: &[u8]| {
        for b in bytes {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xF)]));
        }
    };
    match store_host.ip() {
        IpAddr::V4(ip) => push(&ip.octets()),
        IpAddr::V6(ip) => push(&ip.octets()),
    }
    push(&i32::from(store_host.port()).to_be_bytes());
    push(&commit_log_offset.to_be_bytes());
}

/// The store host and commit-log offset of an offset message id.
pub fn parse_offset_message_id(id: &str) -> Result<(SocketAddr, i64), MessageCodecError> {
    let bad = || MessageCodecError::BadMessageId(id.to_string());
    let bytes = hex::decode(id).map_err(|_| bad())?;
    let v6 = match bytes.len() {
        16 => false,
        28 => true,
        _ => return Err(bad()),
    };
    let mut r = Reader {
        buf: Bytes::from(bytes),
    };
    let host = r.host(v6).map_err(|_| bad())?;
    let offset = r.i64("offset").map_err(|_| bad())?;
    Ok((host, offset))
}

/// The body of a message whose sys flag has [`sys_flag::COMPRESSED`], inflated (zlib), at
/// most `limit` bytes.
pub fn inflate(
    body: &[u8],
    message_sys_flag: i32,
    limit: usize,
) -> Result<Vec<u8>, MessageCodecError> {
    let kind = (message_sys_flag & sys_flag::COMPRESSION_TYPE_MASK) >> 8;
    if kind != 0 && kind != sys_flag::COMPRESSION_ZLIB >> 8 {
        return Err(MessageCodecError::UnsupportedCompression(kind));
    }
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| MessageCodecError::BadCompression(e.to_string()))?;
    if out.len() > limit {
        return Err(MessageCodecError::InflatedTooLarge(limit));
    }
    Ok(out)
}

/// A gzip body (a gRPC producer's `Encoding::GZIP`) inflated, at most `limit` bytes: what a
/// remoting consumer, which knows only zlib, is given.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, MessageCodecError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| MessageCodecError::BadCompression(e.to_string()))?;
    if out.len() > limit {
        return Err(MessageCodecError::InflatedTooLarge(limit));
    }
    Ok(out)
}

/// `body` compressed with zlib (as a Java producer compresses a body over
/// [`PRODUCER_COMPRESS_OVER_BYTES`]).
pub fn deflate(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;

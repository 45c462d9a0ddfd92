//! A topic's config as the broker holds it: a Rust type with enums for what the wire
//! (`cluster.v1.TopicConfig`) carries as integers, its checks, its conversions to and from
//! the wire, and its on-disk encoding.
//!
//! The protobuf stays at the edges: admin requests, the NameServer registration and the
//! remoting answers convert with [`TopicConfig::from_wire`] and [`TopicConfig::to_wire`].
//! Inside the broker a topic's queue count is a `u32`, its permission a [`TopicPermission`]
//! and the message types it accepts a [`MessageKinds`] set.
//!
//! On disk (`topic_config` column family, keyed by name) a config is [`TopicConfig::encode`]:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | value version, [`VALUE_V2`] |
//! | 1..5 | queue count, u32 big-endian |
//! | 5 | permission ([`TopicPermission`]'s code: 1 none, 2 read, 3 write, 4 read-write) |
//! | 6 | message kinds, one bit each ([`MessageKind`]'s bit: normal 0 .. priority 5) |
//! | 7..15 | lite expiry in seconds, u64 big-endian, 0 = never |
//!
//! The codes are this format's own, not the protobuf's numbers, so a wire change is not a
//! disk change. Version 1 (a version byte, then the protobuf) is read only by the store's
//! upgrade (`crate::store::upgrade`), which rewrites it into this one.

use apogee_proto::limits::{normalize_topic, validate_topic, MAX_QUEUES_PER_TOPIC};
use apogee_proto::{cluster, v2, ApogeeError};
use std::fmt;
use std::time::Duration;

/// The version byte of the current encoding.
pub const VALUE_V2: u8 = 2;
const VALUE_LEN: usize = 15;

/// Who may use a topic's queues on this broker group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TopicPermission {
    /// Neither sent to nor read (a topic being drained elsewhere, say).
    None,
    /// Read only: consumers drain it, producers are refused.
    Read,
    /// Write only: producers send, every read path refuses.
    Write,
    #[default]
    ReadWrite,
}

impl TopicPermission {
    pub fn readable(self) -> bool {
        matches!(self, TopicPermission::Read | TopicPermission::ReadWrite)
    }

    pub fn writable(self) -> bool {
        matches!(self, TopicPermission::Write | TopicPermission::ReadWrite)
    }

    /// The name errors and logs give it.
    pub fn name(self) -> &'static str {
        match self {
            TopicPermission::None => "none",
            TopicPermission::Read => "read",
            TopicPermission::Write => "write",
            TopicPermission::ReadWrite => "read-write",
        }
    }

    pub fn to_wire(self) -> v2::Permission {
        match self {
            TopicPermission::None => v2::Permission::None,
            TopicPermission::Read => v2::Permission::Read,
            TopicPermission::Write => v2::Permission::Write,
            TopicPermission::ReadWrite => v2::Permission::ReadWrite,
        }
    }

    /// The wire's permission; unspecified means read-write.
    pub fn from_wire(p: v2::Permission) -> TopicPermission {
        match p {
            v2::Permission::None => TopicPermission::None,
            v2::Permission::Read => TopicPermission::Read,
            v2::Permission::Write => TopicPermission::Write,
            v2::Permission::ReadWrite | v2::Permission::Unspecified => TopicPermission::ReadWrite,
        }
    }

    fn code(self) -> u8 {
        match self {
            TopicPermission::None => 1,
            TopicPermission::Read => 2,
            TopicPermission::Write => 3,
            TopicPermission::ReadWrite => 4,
        }
    }

    fn from_code(code: u8) -> Option<TopicPermission> {
        Some(match code {
            1 => TopicPermission::None,
            2 => TopicPermission::Read,
            3 => TopicPermission::Write,
            4 => TopicPermission::ReadWrite,
            _ => return None,
        })
    }
}

/// A kind of message a topic accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Normal,
    /// Ordered within a message group.
    Fifo,
    /// Delivered at a time the producer sets.
    Delay,
    /// Half messages, committed or rolled back later.
    Transaction,
    /// The parent of lite topics (RIP-83).
    Lite,
    /// A message's priority picks its queue.
    Priority,
}

impl MessageKind {
    pub const ALL: [MessageKind; 6] = [
        MessageKind::Normal,
        MessageKind::Fifo,
        MessageKind::Delay,
        MessageKind::Transaction,
        MessageKind::Lite,
        MessageKind::Priority,
    ];

    fn bit(self) -> u8 {
        1 << match self {
            MessageKind::Normal => 0,
            MessageKind::Fifo => 1,
            MessageKind::Delay => 2,
            MessageKind::Transaction => 3,
            MessageKind::Lite => 4,
            MessageKind::Priority => 5,
        }
    }

    pub fn to_wire(self) -> v2::MessageType {
        match self {
            MessageKind::Normal => v2::MessageType::Normal,
            MessageKind::Fifo => v2::MessageType::Fifo,
            MessageKind::Delay => v2::MessageType::Delay,
            MessageKind::Transaction => v2::MessageType::Transaction,
            MessageKind::Lite => v2::MessageType::Lite,
            MessageKind::Priority => v2::MessageType::Priority,
        }
    }

    /// The wire's message type; None for unspecified.
    pub fn from_wire(t: v2::MessageType) -> Option<MessageKind> {
        Some(match t {
            v2::MessageType::Unspecified => return None,
            v2::MessageType::Normal => MessageKind::Normal,
            v2::MessageType::Fifo => MessageKind::Fifo,
            v2::MessageType::Delay => MessageKind::Delay,
            v2::MessageType::Transaction => MessageKind::Transaction,
            v2::MessageType::Lite => MessageKind::Lite,
            v2::MessageType::Priority => MessageKind::Priority,
        })
    }
}

/// A set of [`MessageKind`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MessageKinds(u8);

impl MessageKinds {
    const KNOWN: u8 = 0b11_1111;

    pub fn of(kinds: &[MessageKind]) -> MessageKinds {
        MessageKinds(kinds.iter().fold(0, |bits, k| bits | k.bit()))
    }

    pub fn contains(self, kind: MessageKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`MessageKind::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = MessageKind> {
        MessageKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }

    fn from_bits(bits: u8) -> Option<MessageKinds> {
        (bits != 0 && bits & !Self::KNOWN == 0).then_some(MessageKinds(bits))
    }
}

impl fmt::Debug for MessageKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// One topic on this broker group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: String,
    /// Queues on this broker group (read = write), 1..=[`MAX_QUEUES_PER_TOPIC`].
    pub queues: u32,
    pub permission: TopicPermission,
    /// Message kinds producers may send; never empty.
    pub kinds: MessageKinds,
    /// LITE parents: a lite topic without a new message for this long expires. None: never.
    pub lite_expiry: Option<Duration>,
}

impl TopicConfig {
    /// A read-write topic of `queues` queues taking NORMAL messages (checked when stored:
    /// [`check`](Self::check)).
    pub fn new(name: impl Into<String>, queues: u32) -> TopicConfig {
        TopicConfig {
            name: name.into(),
            queues,
            permission: TopicPermission::ReadWrite,
            kinds: MessageKinds::of(&[MessageKind::Normal]),
            lite_expiry: None,
        }
    }

    pub fn with_kinds(mut self, kinds: &[MessageKind]) -> TopicConfig {
        self.kinds = MessageKinds::of(kinds);
        self
    }

    pub fn with_permission(mut self, permission: TopicPermission) -> TopicConfig {
        self.permission = permission;
        self
    }

    /// LITE parents: lite topics idle this long expire (None: never).
    pub fn with_lite_expiry(mut self, expiry: Option<Duration>) -> TopicConfig {
        self.lite_expiry = expiry;
        self
    }

    /// Refuses a config no topic may have: a bad name, a queue count outside
    /// 1..=[`MAX_QUEUES_PER_TOPIC`], no message kind.
    pub fn check(&self) -> Result<(), ApogeeError> {
        validate_topic(&self.name)?;
        if !(1..=MAX_QUEUES_PER_TOPIC.unsigned_abs()).contains(&self.queues) {
            return Err(ApogeeError::BadRequest(format!(
                "queue count {} is outside 1..={MAX_QUEUES_PER_TOPIC}",
                self.queues
            )));
        }
        if self.kinds.is_empty() {
            return Err(ApogeeError::BadRequest(format!(
                "topic {} accepts no message type",
                self.name
            )));
        }
        Ok(())
    }

    pub fn accepts(&self, kind: MessageKind) -> bool {
        self.kinds.contains(kind)
    }

    /// A LITE topic: the parent of lite topics.
    pub fn is_lite_parent(&self) -> bool {
        self.accepts(MessageKind::Lite)
    }

    /// `queue_id` as one of this topic's queues; None when it is not one.
    pub fn queue(&self, queue_id: i64) -> Option<u32> {
        u32::try_from(queue_id).ok().filter(|q| *q < self.queues)
    }

    /// The queue ids, 0 up.
    pub fn queue_ids(&self) -> std::ops::Range<u32> {
        0..self.queues
    }

    /// A wire config: its defaults filled in (queue count `default_queues` when 0,
    /// read-write, NORMAL) and every value checked; a bad one is a BadRequest.
    pub fn from_wire(
        wire: cluster::TopicConfig,
        default_queues: u32,
    ) -> Result<TopicConfig, ApogeeError> {
        let default_queues = i32::try_from(default_queues).unwrap_or(i32::MAX);
        let t = normalize_topic(wire, default_queues)?;
        let kinds: Vec<MessageKind> = t
            .message_types()
            .filter_map(MessageKind::from_wire)
            .collect();
        // `normalize_topic` checked the name, the queue count and every type already.
        Ok(TopicConfig {
            queues: u32::try_from(t.queue_count).unwrap_or(0),
            permission: TopicPermission::from_wire(t.permission()),
            kinds: MessageKinds::of(&kinds),
            lite_expiry: (t.lite_expire_after_secs > 0)
                .then(|| Duration::from_secs(t.lite_expire_after_secs)),
            name: t.name,
        })
    }

    pub fn to_wire(&self) -> cluster::TopicConfig {
        cluster::TopicConfig {
            name: self.name.clone(),
            queue_count: i32::try_from(self.queues).unwrap_or(i32::MAX),
            permission: self.permission.to_wire() as i32,
            message_types: self.kinds.iter().map(|k| k.to_wire() as i32).collect(),
            lite_expire_after_secs: self.lite_expiry.map_or(0, |d| d.as_secs()),
        }
    }

    /// The on-disk value (module doc).
    pub fn encode(&self) -> [u8; VALUE_LEN] {
        let mut v = [0u8; VALUE_LEN];
        v[0] = VALUE_V2;
        v[1..5].copy_from_slice(&self.queues.to_be_bytes());
        v[5] = self.permission.code();
        v[6] = self.kinds.0;
        let expiry = self.lite_expiry.map_or(0, |d| d.as_secs());
        v[7..15].copy_from_slice(&expiry.to_be_bytes());
        v
    }

    /// Reads an [`encode`](Self::encode)d value of the topic `name`; the error says what
    /// is wrong with it.
    pub fn decode(name: &str, value: &[u8]) -> Result<TopicConfig, String> {
        let v: &[u8; VALUE_LEN] = match value.first() {
            Some(&VALUE_V2) => value
                .try_into()
                .map_err(|_| format!("{} bytes, version 2 has {VALUE_LEN}", value.len()))?,
            Some(other) => return Err(format!("unknown value version {other}")),
            None => return Err("empty value".into()),
        };
        let queues = u32::from_be_bytes(v[1..5].try_into().expect("4 bytes"));
        let permission =
            TopicPermission::from_code(v[5]).ok_or(format!("unknown permission code {}", v[5]))?;
        let kinds =
            MessageKinds::from_bits(v[6]).ok_or(format!("invalid message kinds {:#04x}", v[6]))?;
        let expiry = u64::from_be_bytes(v[7..15].try_into().expect("8 bytes"));
        let config = TopicConfig {
            name: name.to_string(),
            queues,
            permission,
            kinds,
            lite_expiry: (expiry > 0).then(|| Duration::from_secs(expiry)),
        };
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(
        name: &str,
        queues: i32,
        permission: v2::Permission,
        types: &[i32],
    ) -> cluster::TopicConfig {
        cluster::TopicConfig {
            name: name.into(),
            queue_count: queues,
            permission: permission as i32,
            message_types: types.to_vec(),
            lite_expire_after_secs: 0,
        }
    }

    #[test]
    fn a_wire_config_gets_its_defaults_and_round_trips() {
        let t = TopicConfig::from_wire(wire("t", 0, v2::Permission::Unspecified, &[]), 8).unwrap();
        assert_eq!(t, TopicConfig::new("t", 8));
        let mut full = wire("lite", 3, v2::Permission::Write, &[5, 1, 5]);
        full.lite_expire_after_secs = 90;
        let t = TopicConfig::from_wire(full, 8).unwrap();
        assert_eq!(t.queues, 3);
        assert_eq!(t.permission, TopicPermission::Write);
        assert!(t.is_lite_parent() && t.accepts(MessageKind::Normal));
        assert!(!t.accepts(MessageKind::Fifo));
        assert_eq!(t.lite_expiry, Some(Duration::from_secs(90)));
        let back = t.to_wire();
        assert_eq!(back.message_types, vec![1, 5]);
        assert_eq!(TopicConfig::from_wire(back, 8).unwrap(), t);
    }

    #[test]
    fn bad_wire_configs_are_bad_requests() {
        let code = |w| TopicConfig::from_wire(w, 8).unwrap_err().code() as i32;
        assert_eq!(code(wire("t", 1025, v2::Permission::ReadWrite, &[])), 40000);
        assert_eq!(code(wire("t", -1, v2::Permission::ReadWrite, &[])), 40000);
        assert_eq!(code(wire("t", 1, v2::Permission::ReadWrite, &[0])), 40000);
        assert_eq!(code(wire("t", 1, v2::Permission::ReadWrite, &[99])), 40000);
        let mut bad_permission = wire("t", 1, v2::Permission::ReadWrite, &[]);
        bad_permission.permission = 77;
        assert_eq!(code(bad_permission), 40000);
        assert_eq!(code(wire("a b", 1, v2::Permission::ReadWrite, &[])), 40002);
    }

    #[test]
    fn the_encoding_round_trips_every_field() {
        for (i, permission) in [
            TopicPermission::None,
            TopicPermission::Read,
            TopicPermission::Write,
            TopicPermission::ReadWrite,
        ]
        .into_iter()
        .enumerate()
        {
            let t = TopicConfig::new("orders", 1024)
                .with_permission(permission)
                .with_kinds(&MessageKind::ALL[i..])
                .with_lite_expiry(Some(Duration::from_secs(3600)));
            let v = t.encode();
            assert_eq!(v[0], VALUE_V2);
            assert_eq!(TopicConfig::decode("orders", &v).unwrap(), t);
        }
    }

    #[test]
    fn a_damaged_value_is_refused_with_what_is_wrong() {
        let good = TopicConfig::new("t", 4).encode();
        let damaged = |at: usize, byte: u8| {
            let mut v = good;
            v[at] = byte;
            TopicConfig::decode("t", &v).unwrap_err()
        };
        assert!(damaged(0, 1).contains("version 1"), "{}", damaged(0, 1));
        assert!(damaged(5, 9).contains("permission"));
        assert!(damaged(6, 0).contains("kinds"));
        assert!(damaged(6, 0x40).contains("kinds"));
        assert!(damaged(4, 0).contains("queue count"));
        assert!(TopicConfig::decode("t", &good[..14])
            .unwrap_err()
            .contains("14 bytes"));
        assert!(TopicConfig::decode("t", &[]).is_err());
    }

    #[test]
    fn queues_are_checked_against_the_count() {
        let t = TopicConfig::new("t", 4);
        assert_eq!(t.queue(3), Some(3));
        assert_eq!(t.queue(4), None);
        assert_eq!(t.queue(-1), None);
        assert_eq!(t.queue_ids().count(), 4);
    }
}

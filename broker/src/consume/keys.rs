//! The persisted forms of consume state, in the index database:
//!
//! - `ConsumeState`: `p` group 0 topic 0 queue(be32) -> next queue offset to
//!   scan (be64);
//! - `ConsumeState`: `i` group 0 topic 0 queue(be32) offset(be64) -> one
//!   [`Inflight`] entry: a delivery in flight, or (FIFO groups) a message
//!   waiting for its message group's turn;
//! - `ConsumerOffset`: group 0 topic 0 queue(be32) -> the committed offset
//!   (everything below it is acknowledged), which offset queries and lag read.

/// One (consumer group, topic, queue).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub group: String,
    pub topic: String,
    pub queue_id: u32,
}

impl QueueKey {
    pub fn new(group: &str, topic: &str, queue_id: u32) -> QueueKey {
        QueueKey {
            group: group.to_string(),
            topic: topic.to_string(),
            queue_id,
        }
    }

    /// `group 0 topic 0 queue(be32)`: also the consumer-offset key.
    pub fn prefix(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.group.len() + self.topic.len() + 6);
        k.extend_from_slice(self.group.as_bytes());
        k.push(0);
        k.extend_from_slice(self.topic.as_bytes());
        k.push(0);
        k.extend_from_slice(&self.queue_id.to_be_bytes());
        k
    }

    pub fn pop_key(&self) -> Vec<u8> {
        let mut k = vec![b'p'];
        k.extend(self.prefix());
        k
    }

    pub fn inflight_key(&self, offset: u64) -> Vec<u8> {
        let mut k = vec![b'i'];
        k.extend(self.prefix());
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }

    /// Parses `group 0 topic 0 queue(be32)` and returns the rest.
    pub fn parse(bytes: &[u8]) -> Option<(QueueKey, &[u8])> {
        let g = bytes.iter().position(|b| *b == 0)?;
        let rest = &bytes[g + 1..];
        let t = rest.iter().position(|b| *b == 0)?;
        let q = rest.get(t + 1..t + 5)?;
        Some((
            QueueKey {
                group: String::from_utf8(bytes[..g].to_vec()).ok()?,
                topic: String::from_utf8(rest[..t].to_vec()).ok()?,
                queue_id: u32::from_be_bytes(q.try_into().ok()?),
            },
            &rest[t + 5..],
        ))
    }
}

/// Key of a consumer offset in `Cf::ConsumerOffset` (shared with the
/// offset RPCs so both read and write the same entries).
pub fn consumer_offset_key(group: &str, topic: &str, queue_id: u32) -> Vec<u8> {
    QueueKey::new(group, topic, queue_id).prefix()
}

/// Version byte of the current [`Inflight`] encoding.
const INFLIGHT_V2: u8 = 2;
/// Length of the first encoding (no version byte): visible-at, attempt, nonce.
const INFLIGHT_V1_LEN: usize = 20;
const INFLIGHT_V2_LEN: usize = 1 + 8 + 4 + 8 + 8 + 8;

/// One message of a queue that a group has not acknowledged yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight {
    /// When it may be handed out again (the invisible time plus the group's
    /// backoff for this attempt).
    pub visible_at_ms: i64,
    /// Deliveries so far; 0 = a FIFO message waiting for its message group.
    pub attempt: u32,
    /// Names the current delivery; a receipt handle with another is stale.
    pub nonce: u64,
    /// Auto-renew deliveries (push consumers): the broker keeps renewing the
    /// invisible time until this moment; 0 = not renewed.
    pub renew_until_ms: i64,
    /// Hash of the message group (FIFO ordering); 0 = none.
    pub message_group: u64,
}

impl Inflight {
    /// A message that has not been handed out yet (a FIFO message waiting
    /// for its message group's turn, or one about to be handed out).
    pub fn not_handed_out(message_group: u64) -> Inflight {
        Inflight {
            visible_at_ms: 0,
            attempt: 0,
            nonce: 0,
            renew_until_ms: 0,
            message_group,
        }
    }

    pub fn is_waiting(&self) -> bool {
        self.attempt == 0
    }

    pub fn encode(&self) -> [u8; INFLIGHT_V2_LEN] {
        let mut v = [0u8; INFLIGHT_V2_LEN];
        v[0] = INFLIGHT_V2;
        v[1..9].copy_from_slice(&self.visible_at_ms.to_be_bytes());
        v[9..13].copy_from_slice(&self.attempt.to_be_bytes());
        v[13..21].copy_from_slice(&self.nonce.to_be_bytes());
        v[21..29].copy_from_slice(&self.renew_until_ms.to_be_bytes());
        v[29..37].copy_from_slice(&self.message_group.to_be_bytes());
        v
    }

    /// Reads the current encoding and the first one (20 bytes, no version).
    pub fn decode(v: &[u8]) -> Option<Inflight> {
        let be64 = |b: &[u8]| -> Option<[u8; 8]> { b.try_into().ok() };
        match (v.len(), v.first()) {
            (INFLIGHT_V1_LEN, _) => Some(Inflight {
                visible_at_ms: i64::from_be_bytes(be64(&v[..8])?),
                attempt: u32::from_be_bytes(v[8..12].try_into().ok()?),
                nonce: u64::from_be_bytes(be64(&v[12..20])?),
                renew_until_ms: 0,
                message_group: 0,
            }),
            (INFLIGHT_V2_LEN, Some(&INFLIGHT_V2)) => Some(Inflight {
                visible_at_ms: i64::from_be_bytes(be64(&v[1..9])?),
                attempt: u32::from_be_bytes(v[9..13].try_into().ok()?),
                nonce: u64::from_be_bytes(be64(&v[13..21])?),
                renew_until_ms: i64::from_be_bytes(be64(&v[21..29])?),
                message_group: u64::from_be_bytes(be64(&v[29..37])?),
            }),
            _ => None,
        }
    }
}

/// Hash naming a message group in [`Inflight::message_group`] (never 0).
pub fn message_group_hash(group: &str) -> u64 {
    // FNV-1a: stable across processes and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_round_trips_and_reads_the_first_encoding() {
        let f = Inflight {
            visible_at_ms: 1_700_000_000_123,
            attempt: 3,
            nonce: 42,
            renew_until_ms: 9,
            message_group: message_group_hash("order-7"),
        };
        assert_eq!(Inflight::decode(&f.encode()), Some(f));
        let mut old = Vec::new();
        old.extend_from_slice(&5i64.to_be_bytes());
        old.extend_from_slice(&2u32.to_be_bytes());
        old.extend_from_slice(&7u64.to_be_bytes());
        let o = Inflight::decode(&old).unwrap();
        assert_eq!((o.visible_at_ms, o.attempt, o.nonce), (5, 2, 7));
        assert_eq!((o.renew_until_ms, o.message_group), (0, 0));
        let mut bad = f.encode();
        bad[0] = 9;
        assert_eq!(Inflight::decode(&bad), None);
    }

    #[test]
    fn queue_keys_parse_back() {
        let k = QueueKey::new("g", "t", 7);
        let mut key = k.prefix();
        key.extend_from_slice(&5u64.to_be_bytes());
        let (parsed, rest) = QueueKey::parse(&key).unwrap();
        assert_eq!(parsed, k);
        assert_eq!(rest, 5u64.to_be_bytes());
    }
}

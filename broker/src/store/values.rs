//! The value encodings of the primary state that the store's upgrade (`super::upgrade`)
//! rewrites, so they sit in the store's layer with their keys (`super::keys`, whose module
//! doc has every layout). The consume engine (`crate::consume`) and the topic table
//! (`crate::topics`) read and write them through this module:
//!
//! - `ConsumeState` `p` rows: the next queue offset to scan ([`encode_offset`]);
//! - `ConsumeState` `i` rows: one [`Inflight`] entry: a delivery in flight, or (FIFO groups)
//!   a message waiting for its message group's turn;
//! - `ConsumerOffset`: the committed offset (everything below it is acknowledged), which
//!   offset queries and lag read ([`encode_offset`]);
//! - `meta` [`MetaKey::ReceiptSecret`](super::keys::MetaKey): the receipt-signing secret
//!   ([`encode_secret`]).
//!
//! A `TopicConfig` value is the domain type's own encoding, `crate::topic_config`.

use super::keys::{self, V1};

/// A pop or committed offset's value.
pub fn encode_offset(offset: u64) -> [u8; 9] {
    keys::encode_u64(offset)
}

/// Reads an [`encode_offset`] value.
pub fn decode_offset(v: &[u8]) -> Option<u64> {
    keys::decode_u64(v)
}

/// The receipt secret's value: v1, then its 32 bytes.
pub fn encode_secret(secret: &[u8; 32]) -> [u8; 33] {
    let mut v = [V1; 33];
    v[1..].copy_from_slice(secret);
    v
}

/// Reads an [`encode_secret`] value.
pub fn decode_secret(v: &[u8]) -> Option<[u8; 32]> {
    match v.split_first() {
        Some((&V1, s)) => s.try_into().ok(),
        _ => None,
    }
}

/// Version byte of the current [`Inflight`] encoding.
const INFLIGHT_V2: u8 = 2;
/// Length of the first encoding (no version byte): visible-at, attempt, nonce.
const INFLIGHT_V1_LEN: usize = 20;
const INFLIGHT_V2_LEN: usize = 1 + 8 + 4 + 8 + 8 + 8;

/// [`Inflight::renew_until_ms`] of a suspended delivery (see [`Inflight::is_suspended`]).
pub const SUSPENDED: i64 = -1;

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

    /// Whether the consumer suspended this delivery (ChangeInvisibleDuration with
    /// `suspend`): its next hand-out does not count an attempt. Kept in `renew_until_ms`
    /// as [`SUSPENDED`] (a suspended delivery is never renewed), so the encoding is unchanged.
    pub fn is_suspended(&self) -> bool {
        self.renew_until_ms == SUSPENDED
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
    fn offsets_and_secrets_round_trip_with_their_version() {
        let v = encode_offset(u64::MAX - 3);
        assert_eq!(v[0], V1);
        assert_eq!(decode_offset(&v), Some(u64::MAX - 3));
        // The unversioned 8-byte form is the upgrade's to read, not this.
        assert_eq!(decode_offset(&7u64.to_be_bytes()), None);
        let secret = [9u8; 32];
        let v = encode_secret(&secret);
        assert_eq!(decode_secret(&v), Some(secret));
        assert_eq!(decode_secret(&secret), None);
    }
}

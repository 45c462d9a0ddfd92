//! Receipt handles: what a consumer gets with each delivered message and
//! presents to ack it or change its invisible duration.
//!
//! A handle names the delivery (topic, queue, queue offset, consumer group
//! and a per-delivery nonce) and is signed with HMAC-SHA256 under a secret
//! kept in the broker's index database, so it survives restarts but cannot
//! be forged or moved to another group. Whether the delivery it names is
//! still the current one is decided by the consume state, not here.
//!
//! Text form: `<hex payload>.<hex of the first 16 bytes of the MAC>`.

use apogee_proto::ApogeeError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// Longest handle text accepted before any decoding.
pub const MAX_HANDLE_LEN: usize = 1024;

/// The delivery a receipt handle names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub topic: String,
    pub group: String,
    pub queue_id: u32,
    pub queue_offset: u64,
    /// Unique per delivery: a redelivery or an invisible-duration change
    /// issues a new nonce and makes older handles stale.
    pub nonce: u64,
}

/// Signs and checks handles with the broker's secret.
pub struct ReceiptSigner {
    secret: [u8; 32],
}

fn invalid(why: &str) -> ApogeeError {
    ApogeeError::InvalidReceiptHandle(why.to_string())
}

impl ReceiptSigner {
    pub fn new(secret: [u8; 32]) -> Self {
        ReceiptSigner { secret }
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("any key length");
        m.update(payload);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    pub fn encode(&self, r: &Receipt) -> String {
        let mut p = Vec::with_capacity(32 + r.topic.len() + r.group.len());
        p.push(VERSION);
        p.extend_from_slice(&r.queue_id.to_be_bytes());
        p.extend_from_slice(&r.queue_offset.to_be_bytes());
        p.extend_from_slice(&r.nonce.to_be_bytes());
        for s in [&r.topic, &r.group] {
            p.extend_from_slice(&(s.len() as u16).to_be_bytes());
            p.extend_from_slice(s.as_bytes());
        }
        format!("{}.{}", hex::encode(&p), hex::encode(self.mac(&p)))
    }

    /// Decodes a handle and checks its signature and that it was issued to
    /// `group`.
    pub fn decode(&self, text: &str, group: &str) -> Result<Receipt, ApogeeError> {
        if text.is_empty() {
            return Err(invalid("receipt handle is empty"));
        }
        if text.len() > MAX_HANDLE_LEN {
            return Err(invalid("receipt handle is too long"));
        }
        let (payload_hex, mac_hex) = text
            .split_once('.')
            .ok_or_else(|| invalid("malformed receipt handle"))?;
        let payload = hex::decode(payload_hex).map_err(|_| invalid("malformed receipt handle"))?;
        let mac = hex::decode(mac_hex).map_err(|_| invalid("malformed receipt handle"))?;
        if mac.len() != MAC_LEN || !constant_time_eq(&mac, &self.mac(&payload)) {
            return Err(invalid("receipt handle was not issued by this broker"));
        }
        let r = parse_payload(&payload).ok_or_else(|| invalid("malformed receipt handle"))?;
        if r.group != group {
            return Err(invalid(&format!(
                "receipt handle belongs to consumer group {:?}, not {group:?}",
                r.group
            )));
        }
        Ok(r)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_payload(p: &[u8]) -> Option<Receipt> {
    let (&version, rest) = p.split_first()?;
    if version != VERSION || rest.len() < 20 {
        return None;
    }
    let queue_id = u32::from_be_bytes(rest[0..4].try_into().ok()?);
    let queue_offset = u64::from_be_bytes(rest[4..12].try_into().ok()?);
    let nonce = u64::from_be_bytes(rest[12..20].try_into().ok()?);
    let mut rest = &rest[20..];
    let mut strings = Vec::with_capacity(2);
    for _ in 0..2 {
        if rest.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let s = rest.get(2..2 + len)?;
        strings.push(String::from_utf8(s.to_vec()).ok()?);
        rest = &rest[2 + len..];
    }
    if !rest.is_empty() {
        return None;
    }
    let group = strings.pop()?;
    let topic = strings.pop()?;
    Some(Receipt {
        topic,
        group,
        queue_id,
        queue_offset,
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Receipt {
        Receipt {
            topic: "orders".into(),
            group: "g1".into(),
            queue_id: 3,
            queue_offset: 42,
            nonce: 7,
        }
    }

    #[test]
    fn handle_round_trips_for_its_group() {
        let s = ReceiptSigner::new([9; 32]);
        let text = s.encode(&sample());
        assert_eq!(s.decode(&text, "g1").unwrap(), sample());
    }

    #[test]
    fn handle_of_another_group_is_refused() {
        let s = ReceiptSigner::new([9; 32]);
        let e = s.decode(&s.encode(&sample()), "g2").unwrap_err();
        assert!(matches!(e, ApogeeError::InvalidReceiptHandle(_)));
    }

    #[test]
    fn forged_or_garbled_handles_are_refused() {
        let s = ReceiptSigner::new([9; 32]);
        let other = ReceiptSigner::new([8; 32]);
        assert!(s.decode(&other.encode(&sample()), "g1").is_err());
        let text = s.encode(&sample());
        // Flip one payload nibble: the signature no longer matches.
        let mut bytes = text.into_bytes();
        bytes[3] = if bytes[3] == b'0' { b'1' } else { b'0' };
        assert!(s
            .decode(std::str::from_utf8(&bytes).unwrap(), "g1")
            .is_err());
        for junk in ["", "abc", "zz.zz", ".", &"a".repeat(2000)] {
            assert!(s.decode(junk, "g1").is_err(), "{junk}");
        }
    }
}

//! The tier's manifest: one row per uploaded segment in `meta` ([`MetaKey::TierSegment`]),
//! replicated primary state. A row is written only after its object was uploaded and
//! verified, so the manifest never names an object that is not whole; a slave holds its
//! master's manifest and, promoted, goes on from it.

use std::sync::Arc;

use crate::store::keys::{decode_tier_segment_key, tier_segment_key, MetaKey, V1};
use crate::store::{Cf, KvBatch, KvStore, StoreError};

/// One uploaded segment, as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TieredSegment {
    /// The segment's base log offset (its first byte).
    pub base: u64,
    /// The log offset after its last byte.
    pub end: u64,
    /// The master epoch of the master that uploaded it (part of its object's name).
    pub epoch: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// Unix ms when its upload was verified.
    pub uploaded_at_ms: i64,
    /// Its object's name in the bucket.
    pub object: String,
}

/// Bytes before the object's name in a row's value.
const FIXED: usize = 1 + 8 + 8 + 32 + 8;

impl TieredSegment {
    pub fn len(&self) -> u64 {
        self.end - self.base
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.base
    }

    /// The row's value: v1, end u64, epoch u64, SHA-256, uploaded at i64, the object's name.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FIXED + self.object.len());
        v.push(V1);
        v.extend_from_slice(&self.end.to_be_bytes());
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.sha256);
        v.extend_from_slice(&self.uploaded_at_ms.to_be_bytes());
        v.extend_from_slice(self.object.as_bytes());
        v
    }

    /// A row read back (None: another layout, or damage).
    pub fn decode(key: &[u8], v: &[u8]) -> Option<TieredSegment> {
        let base = decode_tier_segment_key(key)?;
        if v.len() < FIXED || v[0] != V1 {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(v[at..at + 8].try_into().unwrap());
        Some(TieredSegment {
            base,
            end: u64_at(1),
            epoch: u64_at(9),
            sha256: v[17..49].try_into().ok()?,
            uploaded_at_ms: u64_at(49) as i64,
            object: String::from_utf8(v[FIXED..].to_vec()).ok()?,
        })
    }
}

/// The manifest over the broker's index database (through the replication journal).
#[derive(Clone)]
pub struct Manifest {
    kv: Arc<dyn KvStore>,
}

impl Manifest {
    pub fn new(kv: Arc<dyn KvStore>) -> Manifest {
        Manifest { kv }
    }

    /// Records an uploaded, verified segment (with RocksDB's WAL: primary state).
    pub fn record(&self, s: &TieredSegment) -> Result<(), StoreError> {
        let mut batch = KvBatch::new();
        batch.put(Cf::Meta, tier_segment_key(s.base), s.encode());
        self.kv.write(batch)
    }

    /// Every recorded segment, by base offset. A row of an unknown layout is skipped (a newer
    /// version wrote it) and logged.
    /// Removes the row of the segment at `base` (its object was deleted).
    pub fn forget(&self, base: u64) -> Result<(), StoreError> {
        let mut batch = KvBatch::new();
        batch.delete(Cf::Meta, tier_segment_key(base));
        self.kv.write(batch)
    }

    pub fn segments(&self) -> Result<Vec<TieredSegment>, StoreError> {
        let (mut from, to) = MetaKey::TierSegment.range();
        let mut out = Vec::new();
        loop {
            let page = self.kv.scan(Cf::Meta, &from, &to, 1024)?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            from = last.0.clone();
            from.push(0);
            let full = page.len() == 1024;
            for (k, v) in page {
                match TieredSegment::decode(&k, &v) {
                    Some(s) => out.push(s),
                    None => {
                        tracing::warn!(key = ?k, "tier manifest row of an unknown layout skipped")
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base: u64) -> TieredSegment {
        TieredSegment {
            base,
            end: base + 100,
            epoch: 3,
            sha256: [7; 32],
            uploaded_at_ms: 1_700_000_000_000,
            object: format!("p/g/segments/{base:020}-e0000000003.log"),
        }
    }

    #[test]
    fn rows_read_back_as_written_and_in_offset_order() {
        let m = Manifest::new(Arc::new(crate::store::MemKv::new()));
        for base in [300, 0, 100] {
            m.record(&segment(base)).unwrap();
        }
        let got = m.segments().unwrap();
        assert_eq!(got, vec![segment(0), segment(100), segment(300)]);
        assert_eq!(got[0].len(), 100);
    }

    #[test]
    fn a_row_of_another_layout_is_not_read() {
        let s = segment(5);
        let key = tier_segment_key(5);
        let mut v = s.encode();
        assert_eq!(TieredSegment::decode(&key, &v), Some(s));
        v[0] = 2;
        assert_eq!(TieredSegment::decode(&key, &v), None);
        assert_eq!(TieredSegment::decode(&key, &[V1, 0, 0]), None);
    }

    #[test]
    fn the_manifest_replicates_and_its_keys_sort_by_offset() {
        assert!(MetaKey::replicates(&tier_segment_key(0)));
        assert_eq!(
            MetaKey::of(&tier_segment_key(7)),
            Some(MetaKey::TierSegment)
        );
        assert_eq!(
            decode_tier_segment_key(&tier_segment_key(1 << 40)),
            Some(1 << 40)
        );
        assert!(tier_segment_key(255) < tier_segment_key(256));
        assert_eq!(decode_tier_segment_key(&[0x09, 1, 2]), None);
    }
}

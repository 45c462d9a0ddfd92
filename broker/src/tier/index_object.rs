//! A tiered segment's index object: what the index needs of each of its records, without the
//! bodies, so that an index rebuilt from the local log gets the tiered records back without
//! downloading the segments (`MessageStore::dispatch_cold`).
//!
//! `<prefix>/<group>/segments/<base>-e<epoch>.index`, uploaded after the segment's object and
//! before the manifest records it. Layout, big-endian:
//!
//! ```text
//! "APGI" | version u8 (1) | segment base u64 | segment end u64 | records u32
//! then per record: log offset u64 | record size in the log u32 | length u32 |
//!                  the record re-encoded with an empty body (the log's own record format,
//!                  its CRC over what it holds)
//! ```
//!
//! The records keep the log's format (`store::record`), so they decode and dispatch as the
//! log's do; the layout around them has its own version. An object of another version, or
//! one that does not decode, is not guessed at: the rebuild reads the segment itself.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};

use crate::store::commitlog::Segment;
use crate::store::record::{self, StoredMessage, HEADER_LEN};
use crate::store::StoreError;

const MAGIC: &[u8; 4] = b"APGI";
const VERSION: u8 = 1;

/// Reads the records of a segment from `read` (`read(pos, buf)` fills `buf` from position
/// `pos` of the segment, `len` bytes long) in order.
pub fn scan_records(
    base: u64,
    len: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), StoreError>,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut header = [0u8; HEADER_LEN];
    let mut rec = Vec::new();
    while pos < len {
        let at = base + pos;
        let room = len - pos;
        if room < HEADER_LEN as u64 {
            return Err(corrupt(
                at,
                format!("a partial record header of {room} bytes"),
            ));
        }
        read(pos, &mut header)?;
        let size = record::check_header(&header, room).map_err(|r| corrupt(at, r))?;
        rec.clear();
        rec.resize(size as usize, 0);
        read(pos, &mut rec)?;
        out.push(record::decode(&rec, at)?);
        pos += u64::from(size);
    }
    Ok(out)
}

fn corrupt(offset: u64, reason: String) -> StoreError {
    StoreError::Corrupt { offset, reason }
}

/// The index object of a local segment (read on the calling thread).
pub fn of_segment(segment: &Arc<Segment>) -> Result<Bytes, StoreError> {
    let records = scan_records(segment.base(), segment.len(), |pos, buf| {
        Ok(segment.read_exact_at(buf, pos)?)
    })?;
    encode(segment.base(), segment.end(), &records)
}

/// Encodes the records' index object.
pub fn encode(base: u64, end: u64, records: &[StoredMessage]) -> Result<Bytes, StoreError> {
    let mut out = Vec::with_capacity(25 + records.len() * 128);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u64(base);
    out.put_u64(end);
    out.put_u32(records.len() as u32);
    let mut stripped = Vec::new();
    for m in records {
        let mut msg = m.msg.clone();
        msg.body = Bytes::new();
        stripped.clear();
        record::encode_into(
            &mut stripped,
            &msg,
            m.queue_offset,
            m.store_timestamp_ms,
            u32::MAX as usize,
        )?;
        out.put_u64(m.log_offset);
        out.put_u32(m.record_size);
        out.put_u32(stripped.len() as u32);
        out.put_slice(&stripped);
    }
    Ok(out.into())
}

/// The records of an index object for the segment `[base, end)`: bodies empty, each with its
/// log offset and its size in the log. An error when the object is not one (another version,
/// another segment, damage).
pub fn decode(bytes: &[u8], base: u64, end: u64) -> Result<Vec<StoredMessage>, String> {
    let mut b = bytes;
    if b.len() < 25 || &b[..4] != MAGIC {
        return Err("not an Apogee index object".into());
    }
    b.advance(4);
    let version = b.get_u8();
    if version != VERSION {
        return Err(format!(
            "index object version {version}, this binary reads {VERSION}"
        ));
    }
    let (got_base, got_end, count) = (b.get_u64(), b.get_u64(), b.get_u32());
    if (got_base, got_end) != (base, end) {
        return Err(format!(
            "the index object of segment [{got_base}, {got_end}), not [{base}, {end})"
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if b.len() < 16 {
            return Err("the index object ends early".into());
        }
        let (log_offset, size, len) = (b.get_u64(), b.get_u32(), b.get_u32() as usize);
        if b.len() < len || log_offset < base || log_offset + u64::from(size) > end {
            return Err(format!("a bad entry at log offset {log_offset}"));
        }
        let mut m = record::decode(&b[..len], log_offset).map_err(|e| e.to_string())?;
        m.record_size = size;
        out.push(m);
        b.advance(len);
    }
    if !b.is_empty() {
        return Err(format!("{} bytes after the last entry", b.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;

    fn stored(n: u64, log_offset: u64) -> StoredMessage {
        StoredMessage {
            msg: NewMessage {
                keys: vec![format!("k{n}")],
                tag: Some("tag".into()),
                queue_id: 1,
                ..crate::tier::tests::message(n as usize)
            },
            queue_offset: n,
            log_offset,
            record_size: 600,
            store_timestamp_ms: 1_700_000_000_000 + n as i64,
            body_crc32: 0,
        }
    }

    #[test]
    fn records_come_back_without_their_bodies_at_their_offsets_and_sizes() {
        let records = vec![stored(0, 1000), stored(1, 1600)];
        let bytes = encode(1000, 2200, &records).unwrap();
        let back = decode(&bytes, 1000, 2200).unwrap();
        assert_eq!(back.len(), 2);
        for (b, r) in back.iter().zip(&records) {
            assert_eq!((b.log_offset, b.record_size), (r.log_offset, r.record_size));
            assert_eq!(b.queue_offset, r.queue_offset);
            assert_eq!(b.store_timestamp_ms, r.store_timestamp_ms);
            assert_eq!(
                (&b.msg.message_id, &b.msg.keys, &b.msg.tag),
                (&r.msg.message_id, &r.msg.keys, &r.msg.tag)
            );
            assert!(b.msg.body.is_empty());
        }
    }

    #[test]
    fn another_segment_version_or_damage_is_refused() {
        let bytes = encode(1000, 2200, &[stored(0, 1000)]).unwrap();
        assert!(decode(&bytes, 0, 2200)
            .unwrap_err()
            .contains("not [0, 2200)"));
        let mut v2 = bytes.to_vec();
        v2[4] = 2;
        assert!(decode(&v2, 1000, 2200).unwrap_err().contains("version 2"));
        let mut flipped = bytes.to_vec();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        assert!(decode(&flipped, 1000, 2200).is_err());
        assert!(decode(&bytes[..bytes.len() - 1], 1000, 2200).is_err());
    }
}

//! A small, independent reader of the commit log's framing (see
//! `broker/src/store/record.rs`): big-endian `total_len` (u32, whole record),
//! magic "APG2" (the version written; "APG1" before internal properties), CRC-32 of bytes 12.., queue id (u32 at 12), queue offset
//! (u64 at 16), then at 58 the topic and message id as u16-length strings.
//! Segments are files named by their 20-digit base offset under
//! `<data dir>/commitlog/`; records never span segments. The last segment's
//! file may go on in zeros after its last record (preallocation); a sealed
//! segment ends with its last record.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const MAGIC: u32 = 0x4150_4732;

/// One record of a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    /// Byte position of the record in its segment file.
    pub pos: u64,
    pub len: u64,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub topic: String,
    pub message_id: String,
}

impl RecordInfo {
    /// Position just past the record.
    pub fn end(&self) -> u64 {
        self.pos + self.len
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Bytes of a segment file up to the end of its records: without the zeros
/// that may follow them in the last segment.
pub fn records_len(bytes: &[u8]) -> usize {
    parse_segment(bytes).last().map_or(0, |r| r.end() as usize)
}

/// Parses every record of a whole (untruncated) segment, up to a tail of
/// zeros; panics on anything else that is not a complete, CRC-valid record.
pub fn parse_segment(bytes: &[u8]) -> Vec<RecordInfo> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        if bytes[pos..].iter().all(|&b| b == 0) {
            break;
        }
        assert!(bytes.len() - pos >= 12, "truncated header at {pos}");
        let len = be_u32(bytes, pos) as usize;
        assert_eq!(be_u32(bytes, pos + 4), MAGIC, "bad magic at {pos}");
        assert!(
            len >= 58 && pos + len <= bytes.len(),
            "bad record length {len} at {pos}"
        );
        let rec = &bytes[pos..pos + len];
        assert_eq!(crc32(&rec[12..]), be_u32(rec, 8), "CRC mismatch at {pos}");
        let topic_len = be_u16(rec, 58) as usize;
        let topic = String::from_utf8(rec[60..60 + topic_len].to_vec()).expect("topic is UTF-8");
        let id_at = 60 + topic_len;
        let id_len = be_u16(rec, id_at) as usize;
        let message_id =
            String::from_utf8(rec[id_at + 2..id_at + 2 + id_len].to_vec()).expect("id is UTF-8");
        out.push(RecordInfo {
            pos: pos as u64,
            len: len as u64,
            queue_id: be_u32(rec, 12),
            queue_offset: be_u64(rec, 16),
            topic,
            message_id,
        });
        pos += len;
    }
    out
}

/// CRC-32 (IEEE), bitwise: slow but dependency-free, and only used on small logs.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The segment files of a broker data dir, by base offset.
pub fn segments(data_dir: &Path) -> Vec<(u64, PathBuf)> {
    let dir = data_dir.join("commitlog");
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (name.parse().unwrap(), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Every segment of the slave equals the master's segment of the same name (the last one
/// may be a prefix), so the slave's log is a byte-identical prefix of the master's.
pub fn assert_log_prefix(master_dir: &Path, slave_dir: &Path) {
    let master = segments(master_dir);
    let slave = segments(slave_dir);
    assert!(!slave.is_empty(), "the slave has no segment");
    for (i, (base, path)) in slave.iter().enumerate() {
        let (mbase, mpath) = master
            .get(i)
            .unwrap_or_else(|| panic!("the master has no segment #{i} (slave's base {base})"));
        assert_eq!(base, mbase, "segment #{i} starts elsewhere on the slave");
        let (s, m) = (std::fs::read(path).unwrap(), std::fs::read(mpath).unwrap());
        let last = i + 1 == slave.len();
        if last {
            // Records only: zeros may follow them in either file (preallocation).
            let (s, m) = (&s[..records_len(&s)], &m[..records_len(&m)]);
            assert!(
                s.len() <= m.len() && s[..] == m[..s.len()],
                "the slave's last segment {base} is not a prefix of the master's"
            );
        } else {
            assert!(s == m, "segment {base} differs between master and slave");
        }
    }
}

/// Message ids in a broker's commit log.
pub fn logged_ids(data_dir: &Path) -> HashSet<String> {
    segments(data_dir)
        .into_iter()
        .flat_map(|(_, path)| parse_segment(&std::fs::read(path).unwrap()))
        .map(|r| r.message_id)
        .collect()
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    for entry in
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
    {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
    }
}

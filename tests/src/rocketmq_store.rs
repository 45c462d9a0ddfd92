//! A small RocketMQ store, laid out the way a RocketMQ broker lays out its
//! `storePathRootDir`, for the tests that check Apogee refuses to open one:
//! `commitlog/00000000000000000000` holding messages in RocketMQ's commit-log
//! format (big-endian; total size, then the message magic at byte 4, ...; see
//! RocketMQ's `MessageDecoder`) followed by zeros, `consumequeue/<topic>/0/`
//! with one 20-byte entry a message, a `checkpoint` file and an `abort`
//! marker. Plus [`snapshot`], every file and directory under a root with its
//! bytes, to show that nothing was changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// RocketMQ's message magic (`MessageDecoder.MESSAGE_MAGIC_CODE`, Java's
/// `0xAABBCCDD ^ 1880681586 + 8` with `+` before `^`).
pub const MESSAGE_MAGIC: u32 = 0xdaa3_20a7;

/// One message in RocketMQ's commit-log format (version 1: a 1-byte topic
/// length), IPv4 hosts, no properties.
pub fn message(
    topic: &str,
    queue_id: u32,
    queue_offset: u64,
    physical_offset: u64,
    body: &[u8],
) -> Vec<u8> {
    let host = [127u8, 0, 0, 1, 0, 0, 0x27, 0x1f]; // 127.0.0.1:10015
    let mut m = Vec::new();
    m.extend_from_slice(&0u32.to_be_bytes()); // total size, set below
    m.extend_from_slice(&MESSAGE_MAGIC.to_be_bytes());
    m.extend_from_slice(&(crate::commitlog::crc32(body) & 0x7fff_ffff).to_be_bytes());
    m.extend_from_slice(&queue_id.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes()); // flag
    m.extend_from_slice(&queue_offset.to_be_bytes());
    m.extend_from_slice(&physical_offset.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes()); // sys flag
    m.extend_from_slice(&1_700_000_000_000u64.to_be_bytes()); // born timestamp
    m.extend_from_slice(&host);
    m.extend_from_slice(&1_700_000_000_001u64.to_be_bytes()); // store timestamp
    m.extend_from_slice(&host);
    m.extend_from_slice(&0u32.to_be_bytes()); // reconsume times
    m.extend_from_slice(&0u64.to_be_bytes()); // prepared transaction offset
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    m.push(topic.len() as u8);
    m.extend_from_slice(topic.as_bytes());
    m.extend_from_slice(&0u16.to_be_bytes()); // properties length
    let size = m.len() as u32;
    m[..4].copy_from_slice(&size.to_be_bytes());
    m
}

/// Writes a RocketMQ store of `messages` messages of topic `topic` under
/// `root`, its commit-log file `file_size` bytes long (the messages, then
/// zeros, as RocketMQ's preallocated files are). Returns the commit-log
/// file's path.
pub fn write_store(root: &Path, topic: &str, messages: u64, file_size: usize) -> PathBuf {
    let mut log = Vec::new();
    let mut queue = Vec::new();
    for i in 0..messages {
        let at = log.len() as u64;
        let m = message(topic, 0, i, at, format!("rocketmq message {i}").as_bytes());
        queue.extend_from_slice(&at.to_be_bytes());
        queue.extend_from_slice(&(m.len() as u32).to_be_bytes());
        queue.extend_from_slice(&0u64.to_be_bytes()); // tag hash
        log.extend_from_slice(&m);
    }
    assert!(
        log.len() <= file_size,
        "the messages do not fit in {file_size} bytes"
    );
    log.resize(file_size, 0);
    let commitlog = root.join("commitlog");
    let queue_dir = root.join("consumequeue").join(topic).join("0");
    for dir in [&commitlog, &queue_dir] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }
    let file = commitlog.join("00000000000000000000");
    let mut checkpoint = vec![0u8; 4096];
    checkpoint[..8].copy_from_slice(&1_700_000_000_001u64.to_be_bytes());
    checkpoint[8..16].copy_from_slice(&1_700_000_000_001u64.to_be_bytes());
    for (path, bytes) in [
        (file.clone(), log),
        (queue_dir.join("00000000000000000000"), queue),
        (root.join("checkpoint"), checkpoint),
        (root.join("abort"), Vec::new()),
    ] {
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    file
}

/// Every file and directory under `root` (relative paths), files with their
/// bytes and directories with none.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                out.insert(rel, Some(bytes));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

//! Refusing what Apogee did not write, before anything on disk is created or changed.
//!
//! A data dir holds only what the store writes there: `commitlog/` (segment files named by
//! their 20-digit base offset; other files there are ignored with a warning and never
//! changed) and `index/` (RocksDB), the epoch file (`epochs`, and `epochs.tmp` while it is
//! replaced), the tier's read cache (`tier-cache/`, `cold.rs`), plus `lost+found` when the
//! directory is a file system's root. Anything else means the directory belongs to something else,
//! most often a RocketMQ store: `apogee config import` maps RocketMQ's `storePathRootDir`
//! to `data_dir`, and RocketMQ keeps its commit log in a `commitlog/` directory with the
//! same file names as Apogee's. Opening such a directory would create RocksDB's files in
//! RocketMQ's `index/` and take the first RocketMQ record for a torn Apogee record, so the
//! store refuses to open it instead, naming what it found.
//!
//! A segment is foreign when its first 8 bytes are not all zeros and bytes 4..8 (where
//! every Apogee record has its magic) are not an Apogee magic: Apogee starts every segment
//! with a record, and a record's length is never 0, so a torn or lost first write leaves the
//! header whole or zeros (a newly rolled segment that is still all preallocated zeros is
//! Apogee's). A RocketMQ store is recognised by its entries (`consumequeue/`, `checkpoint`,
//! `abort`) and by RocketMQ's message magic numbers, which RocketMQ also keeps at byte 4 of
//! a message, after its 4-byte total size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{MAGIC, MAGIC_V1};
use super::StoreError;

/// RocketMQ's message magic (its `MessageDecoder.MESSAGE_MAGIC_CODE`, `0xAABBCCDD ^
/// (1880681586 + 8)`).
pub const ROCKETMQ_MAGIC_V1: u32 = 0xdaa3_20a7;
/// RocketMQ's message magic for topics longer than 127 bytes (`MESSAGE_MAGIC_CODE_V2`,
/// `0xAABBCCDD ^ (1880681586 + 4)`).
pub const ROCKETMQ_MAGIC_V2: u32 = 0xdaa3_20ab;
/// The magic of the blank entry that fills the end of a RocketMQ commit-log file
/// (`BLANK_MAGIC_CODE`, `0xBBCCDDEE ^ (1880681586 + 8)`).
pub const ROCKETMQ_BLANK_MAGIC: u32 = 0xcbd4_3194;

/// Entries of a RocketMQ store root that Apogee never writes.
const ROCKETMQ_ENTRIES: [&str; 3] = ["consumequeue", "checkpoint", "abort"];
/// What the store writes in a data dir: its commit log's directory and its index's.
pub const COMMITLOG_DIR: &str = "commitlog";
const INDEX_DIR: &str = "index";
/// A file system's root has one, and a data dir may be a mount point.
const LOST_FOUND: &str = "lost+found";

/// Whether `magic` is one of RocketMQ's message magic numbers.
pub fn is_rocketmq_magic(magic: u32) -> bool {
    [ROCKETMQ_MAGIC_V1, ROCKETMQ_MAGIC_V2, ROCKETMQ_BLANK_MAGIC].contains(&magic)
}

/// The magic a segment file starts with when it cannot be Apogee's (module doc): its first 8
/// bytes are there, are not all zeros, and bytes 4..8 are not an Apogee magic.
pub(crate) fn foreign_magic(file: &File) -> std::io::Result<Option<u32>> {
    let mut head = [0u8; 8];
    if file.metadata()?.len() < head.len() as u64 {
        return Ok(None);
    }
    file.read_exact_at(&mut head, 0)?;
    let magic = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let foreign = head != [0u8; 8] && magic != MAGIC && magic != MAGIC_V1;
    Ok(foreign.then_some(magic))
}

/// What a foreign segment's magic is, for the error.
fn describe_magic(magic: u32) -> String {
    let whose = match magic {
        ROCKETMQ_MAGIC_V1 => " (RocketMQ's message magic)",
        ROCKETMQ_MAGIC_V2 => " (RocketMQ's message magic, version 2)",
        ROCKETMQ_BLANK_MAGIC => " (RocketMQ's blank magic)",
        _ => "",
    };
    format!("{magic:#010x}{whose}")
}

/// A segment whose first record is not Apogee's.
struct ForeignSegment {
    path: PathBuf,
    magic: u32,
}

impl ForeignSegment {
    fn describe(&self) -> String {
        format!(
            "{} starts with magic {} (an Apogee segment starts with zeros or with a record of \
             magic {MAGIC:#010x} \"APG2\" or {MAGIC_V1:#010x} \"APG1\")",
            self.path.display(),
            describe_magic(self.magic)
        )
    }
}

/// An error reading `path` while checking, naming it.
fn unreadable(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::DataDir {
        dir: path.to_path_buf(),
        reason: format!("cannot be read to check what it holds: {e}"),
    }
}

/// The names of the entries of `dir`, sorted, each with whether it is a directory.
fn entry_names(dir: &Path) -> Result<Vec<(String, bool)>, StoreError> {
    let list = || -> std::io::Result<Vec<(String, bool)>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let is_dir = entry.file_type()?.is_dir();
            names.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
        }
        Ok(names)
    };
    let mut names = list().map_err(|e| unreadable(dir, e))?;
    names.sort();
    Ok(names)
}

fn shown(name: &str, is_dir: bool) -> String {
    if is_dir {
        format!("{name}/")
    } else {
        name.to_string()
    }
}

/// The first segment file (by name) in the commit-log directory `dir` whose first record is
/// not Apogee's. Entries that are not segment files are not read here: the commit log
/// ignores them, with a warning, and never changes them.
fn foreign_segment(dir: &Path) -> Result<Option<ForeignSegment>, StoreError> {
    for (name, is_dir) in entry_names(dir)? {
        if is_dir || super::segment_name::parse_segment_name(&name).is_none() {
            continue;
        }
        let path = dir.join(&name);
        let magic = File::open(&path).and_then(|f| foreign_magic(&f));
        if let Some(magic) = magic.map_err(|e| unreadable(&path, e))? {
            return Ok(Some(ForeignSegment { path, magic }));
        }
    }
    Ok(None)
}

/// Checks the commit-log directory `dir` (when it exists) before it is opened: no segment
/// may start with another format's record. Reads only.
pub(crate) fn check_commitlog_dir(dir: &Path) -> Result<(), StoreError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let Some(seg) = foreign_segment(dir)? else {
        return Ok(());
    };
    let rocketmq = if is_rocketmq_magic(seg.magic) {
        "; this is a RocketMQ commit log"
    } else {
        ""
    };
    Err(StoreError::DataDir {
        dir: dir.to_path_buf(),
        reason: format!(
            "not an Apogee commit log: {}{rocketmq}. Refusing to start; nothing was changed",
            seg.describe()
        ),
    })
}

/// Whether `name` is a file RocksDB writes in its directory.
fn rocksdb_file(name: &str) -> bool {
    ["CURRENT", "IDENTITY", "LOCK", "LOG"].contains(&name)
        || ["LOG.old.", "MANIFEST-", "OPTIONS-"]
            .iter()
            .any(|p| name.starts_with(p))
        || [".sst", ".log", ".blob", ".dbtmp", ".tmp"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Checks the data dir before the store opens it (before RocksDB creates anything in
/// `index/`): it may hold only what Apogee writes there (module doc), and its commit log
/// must be Apogee's. A RocketMQ store is named as one. Reads only; a missing directory is
/// fine (it is created).
pub(crate) fn check_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    if !data_dir.is_dir() {
        return Ok(());
    }
    let refuse = |reason: String| StoreError::DataDir {
        dir: data_dir.to_path_buf(),
        reason,
    };
    let mut unknown = Vec::new();
    let mut rocketmq_entries = Vec::new();
    let mut foreign = None;
    for (name, is_dir) in entry_names(data_dir)? {
        match name.as_str() {
            COMMITLOG_DIR if is_dir => {
                foreign = foreign_segment(&data_dir.join(COMMITLOG_DIR))?;
            }
            INDEX_DIR if is_dir => {
                let files = entry_names(&data_dir.join(INDEX_DIR))?;
                if !files.is_empty() && !files.iter().any(|(n, _)| rocksdb_file(n)) {
                    unknown.push(format!(
                        "index/ (holds {}, not RocksDB's files)",
                        shown(&files[0].0, files[0].1)
                    ));
                }
            }
            LOST_FOUND if is_dir => {}
            super::cold::COLD_CACHE_DIR if is_dir => {}
            super::epochs::EPOCH_FILE | super::epochs::EPOCH_FILE_TMP if !is_dir => {}
            other => {
                if ROCKETMQ_ENTRIES.contains(&other) {
                    rocketmq_entries.push(shown(other, is_dir));
                }
                unknown.push(shown(other, is_dir));
            }
        }
    }
    let rocketmq_segment = foreign
        .as_ref()
        .is_some_and(|s: &ForeignSegment| is_rocketmq_magic(s.magic));
    if !rocketmq_entries.is_empty() || rocketmq_segment {
        let mut evidence = Vec::new();
        if !rocketmq_entries.is_empty() {
            evidence.push(format!("it holds {}", rocketmq_entries.join(", ")));
        }
        if let Some(seg) = &foreign {
            evidence.push(seg.describe());
        }
        return Err(refuse(format!(
            "this is a RocketMQ store; use `apogee config import` for the RocketMQ broker's \
             settings and give Apogee a data_dir of its own, a new or empty directory (the \
             import maps storePathRootDir to data_dir; Apogee does not read RocketMQ's files). \
             Found: {}. Refusing to start; nothing was changed",
            evidence.join("; ")
        )));
    }
    if let Some(seg) = &foreign {
        return Err(refuse(format!(
            "not an Apogee commit log: {}. Refusing to start; nothing was changed",
            seg.describe()
        )));
    }
    if !unknown.is_empty() {
        return Err(refuse(format!(
            "holds entries Apogee did not write: {} (Apogee writes only commitlog/ and index/ \
             here). Refusing to start so that nothing of them is changed: give Apogee a \
             data_dir of its own, or move them out",
            unknown.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rocketmq_magics_are_its_formulas() {
        // Java evaluates `+` before `^`.
        assert_eq!(ROCKETMQ_MAGIC_V1, 0xAABB_CCDD ^ (1_880_681_586 + 8));
        assert_eq!(ROCKETMQ_MAGIC_V2, 0xAABB_CCDD ^ (1_880_681_586 + 4));
        assert_eq!(ROCKETMQ_BLANK_MAGIC, 0xBBCC_DDEE ^ (1_880_681_586 + 8));
        // As RocketMQ's Java ints.
        assert_eq!(ROCKETMQ_MAGIC_V1 as i32, -626_843_481);
        assert_eq!(ROCKETMQ_MAGIC_V2 as i32, -626_843_477);
        assert_eq!(ROCKETMQ_BLANK_MAGIC as i32, -875_286_124);
    }

    #[test]
    fn rocksdb_files_are_told_from_others() {
        for name in [
            "CURRENT",
            "LOCK",
            "MANIFEST-000005",
            "000012.sst",
            "000004.log",
        ] {
            assert!(rocksdb_file(name), "{name}");
        }
        for name in ["20240101120000000", "config", "abort"] {
            assert!(!rocksdb_file(name), "{name}");
        }
    }
}

//! The tier's read cache: pieces of tiered segments on local disk, at most `tier.cache_bytes`.
//!
//! A piece is `READ_CHUNK_BYTES` of one segment's object (its last piece shorter), fetched by
//! one ranged GET and kept as a file `<base:020>-<index:06>.piece` in `<data_dir>/tier-cache/`.
//! The cache is derived data: a start removes the pieces it finds (files of that name, and
//! `.tmp` files a crash left half-written; anything else there is left alone with a warning),
//! and a piece is written to a `.tmp` name and renamed whole. Past `cache_bytes` the least
//! recently read pieces go; a reader holding one keeps reading it (an open file outlives its
//! name). Records carry their CRC, checked when decoded, so a damaged piece is found.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// The directory under the data dir.
pub use crate::store::COLD_CACHE_DIR as CACHE_DIR;

/// One piece: the segment's base offset and the piece's index within it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct PieceKey {
    pub base: u64,
    pub index: u64,
}

struct Piece {
    file: Arc<File>,
    len: u64,
    last_read: u64,
}

#[derive(Default)]
struct Pieces {
    by_key: HashMap<PieceKey, Piece>,
    bytes: u64,
    clock: u64,
}

/// Pieces of tiered segments on local disk.
pub struct ReadCache {
    dir: PathBuf,
    max_bytes: u64,
    pieces: Mutex<Pieces>,
}

fn piece_name(key: PieceKey) -> String {
    format!("{:020}-{:06}.piece", key.base, key.index)
}

/// Whether `name` is a file this cache writes.
fn is_ours(name: &str) -> bool {
    let stem = name
        .strip_suffix(".piece")
        .or_else(|| name.strip_suffix(".piece.tmp"));
    stem.and_then(|s| s.split_once('-'))
        .is_some_and(|(base, index)| {
            base.len() == 20
                && index.len() == 6
                && base
                    .bytes()
                    .chain(index.bytes())
                    .all(|b| b.is_ascii_digit())
        })
}

impl ReadCache {
    /// The cache in `dir` (created if missing), emptied of the pieces a run before left.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<ReadCache> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            match name.to_str() {
                Some(n) if is_ours(n) => std::fs::remove_file(entry.path())?,
                _ => tracing::warn!(file = ?entry.path(),
                    "the tier's read cache leaves alone a file it did not write"),
            }
        }
        Ok(ReadCache {
            dir: dir.to_path_buf(),
            max_bytes,
            pieces: Mutex::new(Pieces::default()),
        })
    }

    /// The piece, if cached (it counts as read now).
    pub fn get(&self, key: PieceKey) -> Option<Arc<File>> {
        let mut pieces = self.pieces.lock();
        pieces.clock += 1;
        let now = pieces.clock;
        let piece = pieces.by_key.get_mut(&key)?;
        piece.last_read = now;
        Some(piece.file.clone())
    }

    /// Whether the piece is cached (without counting as a read).
    pub fn contains(&self, key: PieceKey) -> bool {
        self.pieces.lock().by_key.contains_key(&key)
    }

    /// Stores `bytes` as the piece and drops the least recently read others past the limit.
    pub fn put(&self, key: PieceKey, bytes: &[u8]) -> std::io::Result<Arc<File>> {
        let path = self.dir.join(piece_name(key));
        let tmp = self.dir.join(format!("{}.tmp", piece_name(key)));
        let mut out = File::create(&tmp)?;
        out.write_all(bytes)?;
        drop(out);
        std::fs::rename(&tmp, &path)?;
        let file = Arc::new(File::open(&path)?);
        let mut pieces = self.pieces.lock();
        pieces.clock += 1;
        let piece = Piece {
            file: file.clone(),
            len: bytes.len() as u64,
            last_read: pieces.clock,
        };
        if let Some(old) = pieces.by_key.insert(key, piece) {
            pieces.bytes -= old.len;
        }
        pieces.bytes += bytes.len() as u64;
        while pieces.bytes > self.max_bytes {
            let Some(oldest) = pieces
                .by_key
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, p)| p.last_read)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(gone) = pieces.by_key.remove(&oldest) {
                pieces.bytes -= gone.len;
                if let Err(e) = std::fs::remove_file(self.dir.join(piece_name(oldest))) {
                    tracing::warn!(error = %e, "could not remove a piece of the tier's read cache");
                }
            }
        }
        Ok(file)
    }

    /// Bytes cached now.
    pub fn bytes(&self) -> u64 {
        self.pieces.lock().bytes
    }
}

/// Fills `buf` from `file` at `pos`.
pub fn read_piece(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
    file.read_exact_at(buf, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(base: u64, index: u64) -> PieceKey {
        PieceKey { base, index }
    }

    #[test]
    fn the_least_recently_read_piece_goes_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReadCache::open(dir.path(), 300).unwrap();
        cache.put(key(0, 0), &[1; 100]).unwrap();
        cache.put(key(0, 1), &[2; 100]).unwrap();
        cache.put(key(0, 2), &[3; 100]).unwrap();
        assert!(cache.get(key(0, 0)).is_some());
        cache.put(key(100, 0), &[4; 100]).unwrap();
        assert!(!cache.contains(key(0, 1)), "the least recently read went");
        assert!(cache.contains(key(0, 0)) && cache.contains(key(0, 2)));
        assert_eq!(cache.bytes(), 300);
        let mut buf = [0u8; 10];
        read_piece(&cache.get(key(100, 0)).unwrap(), &mut buf, 50).unwrap();
        assert_eq!(buf, [4; 10]);
        assert!(!dir.path().join(piece_name(key(0, 1))).exists());
    }

    #[test]
    fn a_start_removes_its_own_pieces_and_leaves_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(piece_name(key(7, 0))), b"old").unwrap();
        std::fs::write(
            dir.path().join(format!("{}.tmp", piece_name(key(7, 1)))),
            b"x",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let cache = ReadCache::open(dir.path(), 1 << 20).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt"]);
        assert_eq!(cache.bytes(), 0);
    }
}

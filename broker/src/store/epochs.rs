//! The epoch file (`<data_dir>/epochs`): for every master epoch this member was the master
//! of, the log offset its records start at (automatic failover, docs/REPLICATION.md).
//!
//! A member promoted to master of epoch E appends ⟨E, its log end⟩ before it takes its first
//! write of E, so the file says which epoch wrote which range of the log: the epoch's records
//! lie from its start offset up to the next epoch's start (or the log end). Its last epoch is
//! what the member reports to the controller as `last_log_epoch`.
//!
//! Layout (integers big-endian): `u8 version (1) | u32 count | count x (u64 epoch, u64 start
//! offset) | u32 CRC-32 of everything before it`. Epochs strictly increase and start offsets
//! never decrease. The file is replaced whole: written to `epochs.tmp`, fdatasync'ed, renamed
//! over `epochs`, then the directory fsync'ed, so a crash leaves the old file or the new one,
//! never a mix; a leftover `epochs.tmp` is removed at open. A file of a newer version is
//! refused, naming both versions, and nothing is written.
//!
//! A slave in controller mode keeps the file too: it holds its master's entries that its log
//! reaches ([`EpochFile::follow`]), so a slave promoted later has the true history of what it
//! holds. A cut of the log drops the entries that start beyond the cut
//! ([`EpochFile::drop_after`]). [`divergence_point`] is where a rejoining member's log stops
//! agreeing with its master's, from the two histories alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::StoreError;

/// The file's name in the data dir.
pub const EPOCH_FILE: &str = "epochs";
/// The name it is written under before the rename.
pub const EPOCH_FILE_TMP: &str = "epochs.tmp";
/// The layout this binary writes and reads.
pub const EPOCH_FILE_VERSION: u8 = 1;
/// Most epochs kept: the oldest are dropped past it (the log they started has long been
/// deleted by retention by then).
pub const MAX_EPOCHS: usize = 4096;

/// Where one master epoch's records start in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: u64,
    pub start_offset: u64,
}

/// The epoch file of one data dir, with its entries in memory.
pub struct EpochFile {
    dir: PathBuf,
    entries: Mutex<Vec<EpochStart>>,
}

fn bad(dir: &Path, reason: String) -> StoreError {
    StoreError::DataDir {
        dir: dir.to_path_buf(),
        reason: format!("{EPOCH_FILE}: {reason}"),
    }
}

/// The file's bytes for `entries`.
pub fn encode(entries: &[EpochStart]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + entries.len() * 16);
    out.push(EPOCH_FILE_VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.start_offset.to_be_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The entries in a file's bytes, or why they cannot be read.
pub fn decode(bytes: &[u8]) -> Result<Vec<EpochStart>, String> {
    let Some(&version) = bytes.first() else {
        return Err("empty".into());
    };
    if version != EPOCH_FILE_VERSION {
        return Err(format!(
            "version {version}, and this binary reads version {EPOCH_FILE_VERSION} (a newer \
             Apogee wrote it; run that version on this data directory); nothing was changed"
        ));
    }
    if bytes.len() < 9 {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err("its checksum does not match its contents".into());
    }
    let count = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
    let rows = &body[5..];
    if rows.len() != count * 16 {
        return Err(format!(
            "{count} epochs announced but {} bytes of them",
            rows.len()
        ));
    }
    let entries: Vec<EpochStart> = rows
        .chunks_exact(16)
        .map(|r| EpochStart {
            epoch: u64::from_be_bytes(r[..8].try_into().expect("8 bytes")),
            start_offset: u64::from_be_bytes(r[8..].try_into().expect("8 bytes")),
        })
        .collect();
    if !ordered(&entries) {
        return Err("its epochs do not increase".into());
    }
    Ok(entries)
}

/// Epochs strictly increase and start offsets never decrease.
fn ordered(entries: &[EpochStart]) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset)
}

/// Where a member's log (`member`, `member_end`) stops agreeing with its master's (`master`,
/// `master_end`), by their epoch histories: the end of the last epoch both hold, i.e. where
/// the next epoch of either starts (or the master's log end for its own current epoch),
/// capped at the member's log end. The member truncates its log to this point.
///
/// None when the histories cannot tell: the member has records but no epochs (a data dir
/// older than the file), the master has none, they share no epoch, or they disagree on
/// where a shared epoch starts. The member then finds the common prefix by probing records.
pub fn divergence_point(
    master: &[EpochStart],
    master_end: u64,
    member: &[EpochStart],
    member_end: u64,
) -> Option<u64> {
    if member_end == 0 {
        return Some(0);
    }
    let (mi, si) = member.iter().enumerate().rev().find_map(|(si, e)| {
        master
            .iter()
            .position(|m| m.epoch == e.epoch)
            .map(|mi| (mi, si))
    })?;
    if master[mi].start_offset != member[si].start_offset {
        return None;
    }
    let master_next = master.get(mi + 1).map_or(master_end, |e| e.start_offset);
    let member_next = member.get(si + 1).map_or(member_end, |e| e.start_offset);
    Some(master_next.min(member_next).min(member_end))
}

impl EpochFile {
    /// Reads `<dir>/epochs` (none: no epoch yet) and removes a leftover `epochs.tmp`.
    pub fn open(dir: &Path) -> Result<EpochFile, StoreError> {
        let tmp = dir.join(EPOCH_FILE_TMP);
        match std::fs::remove_file(&tmp) {
            Ok(()) => tracing::info!("removed {} left by an interrupted write", tmp.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(dir, format!("cannot remove {EPOCH_FILE_TMP}: {e}"))),
        }
        let entries = match std::fs::read(dir.join(EPOCH_FILE)) {
            Ok(bytes) => decode(&bytes).map_err(|r| bad(dir, r))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(bad(dir, format!("cannot be read: {e}"))),
        };
        Ok(EpochFile {
            dir: dir.to_path_buf(),
            entries: Mutex::new(entries),
        })
    }

    /// Every epoch with its start offset, oldest first.
    pub fn entries(&self) -> Vec<EpochStart> {
        self.entries.lock().clone()
    }

    /// The newest epoch (None: this member was never a master).
    pub fn last(&self) -> Option<EpochStart> {
        self.entries.lock().last().copied()
    }

    /// The newest epoch, 0 when none.
    pub fn last_epoch(&self) -> u64 {
        self.last().map_or(0, |e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, durably (module doc). The epoch must be
    /// newer than the last one; the same last epoch again is a no-op (a master restarted
    /// within its epoch keeps its start). Returns whether it wrote.
    pub fn append(&self, epoch: u64, start_offset: u64) -> Result<bool, StoreError> {
        let mut entries = self.entries.lock();
        if let Some(last) = entries.last() {
            if last.epoch == epoch {
                return Ok(false);
            }
            if last.epoch > epoch || last.start_offset > start_offset {
                return Err(StoreError::Replica(format!(
                    "epoch {epoch} from log offset {start_offset} cannot follow epoch {} \
                     from {} in {EPOCH_FILE}",
                    last.epoch, last.start_offset
                )));
            }
        }
        let mut next = entries.clone();
        next.push(EpochStart {
            epoch,
            start_offset,
        });
        if next.len() > MAX_EPOCHS {
            next.drain(..next.len() - MAX_EPOCHS);
        }
        self.write(&encode(&next))
            .map_err(|e| bad(&self.dir, format!("cannot be written: {e}")))?;
        *entries = next;
        Ok(true)
    }

    /// Slave in controller mode: makes the file its master's entries that start at or below
    /// `log_end` (the history of what this log holds). Returns whether it wrote.
    pub fn follow(&self, master: &[EpochStart], log_end: u64) -> Result<bool, StoreError> {
        let next: Vec<EpochStart> = master
            .iter()
            .copied()
            .filter(|e| e.start_offset <= log_end)
            .collect();
        self.replace(next)
    }

    /// After the log was cut back to `log_end`: drops the entries of epochs that start
    /// beyond it (none of their records remain). Returns the entries dropped.
    pub fn drop_after(&self, log_end: u64) -> Result<Vec<EpochStart>, StoreError> {
        let current = self.entries();
        let (keep, dropped): (Vec<_>, Vec<_>) =
            current.into_iter().partition(|e| e.start_offset <= log_end);
        if !dropped.is_empty() {
            self.replace(keep)?;
        }
        Ok(dropped)
    }

    /// Replaces every entry with `next` (checked for order; at most [`MAX_EPOCHS`], the
    /// newest kept), durably. Returns whether anything changed.
    fn replace(&self, mut next: Vec<EpochStart>) -> Result<bool, StoreError> {
        if !ordered(&next) {
            return Err(StoreError::Replica(format!(
                "the epochs {next:?} do not increase; {EPOCH_FILE} is left as it is"
            )));
        }
        if next.len() > MAX_EPOCHS {
            next.drain(..next.len() - MAX_EPOCHS);
        }
        let mut entries = self.entries.lock();
        if *entries == next {
            return Ok(false);
        }
        self.write(&encode(&next))
            .map_err(|e| bad(&self.dir, format!("cannot be written: {e}")))?;
        *entries = next;
        Ok(true)
    }

    /// Replaces the file with `bytes`: temp file, fdatasync, rename, directory fsync.
    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(EPOCH_FILE_TMP);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, self.dir.join(EPOCH_FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(epoch: u64, start_offset: u64) -> EpochStart {
        EpochStart {
            epoch,
            start_offset,
        }
    }

    #[test]
    fn appended_epochs_are_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = EpochFile::open(dir.path()).unwrap();
        assert_eq!((file.last(), file.last_epoch()), (None, 0));
        assert!(file.append(1, 0).unwrap());
        assert!(file.append(3, 4096).unwrap());
        assert!(
            !file.append(3, 8192).unwrap(),
            "the same epoch keeps its start"
        );
        let again = EpochFile::open(dir.path()).unwrap();
        assert_eq!(again.entries(), vec![start(1, 0), start(3, 4096)]);
        assert_eq!(again.last_epoch(), 3);
        assert!(!dir.path().join(EPOCH_FILE_TMP).exists());
    }

    #[test]
    fn an_older_epoch_or_an_earlier_start_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = EpochFile::open(dir.path()).unwrap();
        file.append(5, 100).unwrap();
        assert!(file.append(4, 200).is_err());
        assert!(file.append(6, 99).is_err());
        let again = EpochFile::open(dir.path()).unwrap();
        assert_eq!(again.entries(), vec![start(5, 100)]);
    }

    #[test]
    fn a_damaged_or_newer_file_is_refused_naming_why() {
        let good = encode(&[start(1, 0), start(2, 10)]);
        assert_eq!(decode(&good).unwrap(), vec![start(1, 0), start(2, 10)]);
        let mut flipped = good.clone();
        flipped[7] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        let mut newer = good.clone();
        newer[0] = EPOCH_FILE_VERSION + 1;
        assert!(decode(&newer).unwrap_err().contains("version 2"));
        assert!(decode(&good[..6]).is_err());
        assert!(decode(&encode(&[start(2, 0), start(1, 10)]))
            .unwrap_err()
            .contains("increase"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EPOCH_FILE), &newer).unwrap();
        let err = EpochFile::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("newer Apogee"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(EPOCH_FILE)).unwrap(), newer);
    }

    #[test]
    fn the_divergence_point_is_the_end_of_the_last_shared_epoch() {
        let master = [start(1, 0), start(2, 100), start(4, 150)];
        // Shared prefix: the member followed epoch 4 and holds part of it.
        assert_eq!(divergence_point(&master, 400, &master, 300), Some(300));
        // ... or all of it, as far as the master has written.
        assert_eq!(divergence_point(&master, 400, &master, 400), Some(400));
        // Diverged at the last shared epoch: the member (master of 2) wrote on after 150,
        // where the master of 4 took over.
        let old_master = [start(1, 0), start(2, 100)];
        assert_eq!(divergence_point(&master, 400, &old_master, 260), Some(150));
        // The member is ahead in an epoch the master never had (3 from 200).
        let ahead = [start(1, 0), start(2, 100), start(3, 200)];
        assert_eq!(divergence_point(&master, 400, &ahead, 300), Some(150));
        let master_without_4 = [start(1, 0), start(2, 100)];
        assert_eq!(
            divergence_point(&master_without_4, 180, &ahead, 300),
            Some(180),
            "the master's log end ends its own epoch 2"
        );
        assert_eq!(
            divergence_point(&master_without_4, 500, &ahead, 300),
            Some(200),
            "the member's epoch 3 starts where its epoch 2 ends"
        );
        // The member's log is shorter than the shared epoch on the master.
        assert_eq!(divergence_point(&master, 400, &old_master, 120), Some(120));
    }

    #[test]
    fn without_a_shared_history_the_point_is_unknown_and_empty_logs_agree() {
        let master = [start(1, 0), start(2, 100)];
        // A member with records but no epoch file (a data dir older than it): probe.
        assert_eq!(divergence_point(&master, 200, &[], 50), None);
        // A master without epochs, or no epoch in common.
        assert_eq!(divergence_point(&[], 200, &master, 50), None);
        assert_eq!(divergence_point(&master, 200, &[start(3, 0)], 50), None);
        // The same epoch started at different offsets: the histories disagree.
        assert_eq!(divergence_point(&master, 200, &[start(2, 90)], 150), None);
        // Empty logs.
        assert_eq!(divergence_point(&master, 200, &[], 0), Some(0));
        assert_eq!(divergence_point(&[], 0, &[], 0), Some(0));
        assert_eq!(
            divergence_point(&[start(1, 0)], 0, &[start(1, 0)], 0),
            Some(0)
        );
    }

    #[test]
    fn a_slave_follows_its_masters_entries_its_log_reaches_and_a_cut_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = EpochFile::open(dir.path()).unwrap();
        file.append(3, 500).unwrap();
        let master = [start(1, 0), start(2, 100), start(4, 700)];
        assert!(file.follow(&master, 600).unwrap());
        assert_eq!(file.entries(), vec![start(1, 0), start(2, 100)]);
        assert!(!file.follow(&master, 650).unwrap(), "nothing new reached");
        assert!(file.follow(&master, 700).unwrap());
        assert_eq!(
            EpochFile::open(dir.path()).unwrap().entries(),
            master.to_vec()
        );
        assert_eq!(file.drop_after(650).unwrap(), vec![start(4, 700)]);
        assert_eq!(file.drop_after(650).unwrap(), vec![]);
        assert_eq!(
            EpochFile::open(dir.path()).unwrap().entries(),
            vec![start(1, 0), start(2, 100)]
        );
        assert!(file.follow(&[start(2, 0), start(1, 10)], 100).is_err());
        assert_eq!(file.entries(), vec![start(1, 0), start(2, 100)]);
    }

    #[test]
    fn a_leftover_temp_file_is_removed_and_the_last_whole_file_read() {
        let dir = tempfile::tempdir().unwrap();
        EpochFile::open(dir.path()).unwrap().append(7, 70).unwrap();
        std::fs::write(dir.path().join(EPOCH_FILE_TMP), b"half").unwrap();
        let file = EpochFile::open(dir.path()).unwrap();
        assert_eq!(file.entries(), vec![start(7, 70)]);
        assert!(!dir.path().join(EPOCH_FILE_TMP).exists());
    }
}

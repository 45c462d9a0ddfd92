//! The commit log's page-cache trimming (`commitlog.rs`, page cache), checked with `mincore`
//! on the segment files: what a sync leaves cached and what it drops.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::tests::msg;
use super::*;

const MIB: u64 = 1 << 20;

/// Which pages of the file's first `len` bytes are in the page cache.
fn resident(path: &Path, len: u64) -> Vec<bool> {
    let len = len as usize;
    if len == 0 {
        return Vec::new();
    }
    let file = File::open(path).unwrap();
    // SAFETY: a read-only shared mapping of an open file, only passed to mincore and unmapped
    // before return; mapping does not fault pages in, so it does not change what it measures.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap {}", path.display());
        let mut vec = vec![0u8; len.div_ceil(page)];
        let rc = libc::mincore(p, len, vec.as_mut_ptr());
        libc::munmap(p, len);
        assert_eq!(rc, 0, "mincore {}", path.display());
        vec.into_iter().map(|b| b & 1 == 1).collect()
    }
}

/// Whether the file system under `dir` keeps file pages only in memory (tmpfs), where
/// dropping them from the page cache is not possible.
fn memory_backed(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statfs fills the zeroed struct we own from a NUL-terminated path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
    }
}

/// Writes about 12 MiB of 64 KiB messages over 4 MiB segments with SYNC flush (every append
/// is flushed) and returns, per log MiB, the share of its pages still cached.
async fn cached_share_per_mib(cached_tail: u64) -> Option<Vec<f64>> {
    let dir = tempfile::tempdir().unwrap();
    if memory_backed(dir.path()) {
        eprintln!("skipped: the temporary directory is on tmpfs");
        return None;
    }
    let store = MessageStore::open(StoreConfig {
        segment_size: 4 * MIB,
        max_record_size: 128 << 10,
        cached_tail_bytes: cached_tail,
        flush_mode: FlushMode::Sync,
        ..StoreConfig::for_tests(dir.path())
    })
    .unwrap();
    for n in 0..192 {
        let m = NewMessage {
            body: vec![n as u8; 64 << 10].into(),
            ..msg("T", 0, n)
        };
        store.append(vec![m]).await.unwrap();
    }
    let end = store.log_end_offset();
    // (cached, all) pages per MiB of log offsets; a page belongs to the MiB it starts in.
    let mut per_mib = vec![(0u32, 0u32); end.div_ceil(MIB) as usize];
    for seg in store.shared.log.segments() {
        for (i, cached) in resident(seg.path(), seg.len()).into_iter().enumerate() {
            let counts = &mut per_mib[((seg.base() + 4096 * i as u64) / MIB) as usize];
            counts.0 += u32::from(cached);
            counts.1 += 1;
        }
    }
    store.shutdown();
    Some(
        per_mib
            .into_iter()
            .map(|(cached, all)| f64::from(cached) / f64::from(all))
            .collect(),
    )
}

#[tokio::test]
async fn only_the_newest_flushed_bytes_stay_in_the_page_cache() {
    let Some(share) = cached_share_per_mib(MIB).await else {
        return;
    };
    assert_eq!(share.len(), 13, "{share:?}");
    // Trimmed: all but the newest 1 MiB, one trimming step (128 KiB) and the overlap kept for
    // pages covered in part (2 MiB): the first 9 MiB, two sealed segments and part of the
    // last, are out of the page cache, and the newest MiB is in it.
    assert_eq!(commitlog::DROP_OVERLAP, 2 * MIB);
    assert!(
        share[..9].iter().all(|&s| s == 0.0),
        "old MiBs cached: {share:?}"
    );
    assert!(share[12] > 0.9, "newest MiB not cached: {share:?}");
}

#[tokio::test]
async fn a_zero_cached_tail_leaves_the_page_cache_to_the_kernel() {
    let Some(share) = cached_share_per_mib(0).await else {
        return;
    };
    assert!(share.iter().all(|&s| s > 0.9), "pages dropped: {share:?}");
}

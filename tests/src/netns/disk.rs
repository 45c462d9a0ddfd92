//! A small disk for one member: a tmpfs of a fixed size mounted in the root namespace
//! before the member starts (a process run with `ip netns exec` sees the mounts that
//! existed when it started), filled up and freed again on demand, unmounted on drop.
//!
//! Layout: `<mount>/data` is the member's data dir; `<mount>/filler` is the file that
//! takes the rest of the space while the disk is full.

use super::network::run;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A mounted tmpfs.
pub struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` at `mount` (created if missing).
    pub fn mount(mount: &Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(mount).expect("creating the mount point");
        let size = format!("size={bytes}");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &size,
                "tmpfs",
                &mount.display().to_string(),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let disk = SmallDisk {
            mount: mount.to_path_buf(),
        };
        std::fs::create_dir_all(disk.data_dir()).expect("creating the data dir on the small disk");
        disk
    }

    /// The data dir on the disk.
    pub fn data_dir(&self) -> PathBuf {
        self.mount.join("data")
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    /// Fills the disk: writes the filler file until the disk has no space left. Returns
    /// the bytes written.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("creating the filler file");
        let block = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", self.mount.display()),
            }
        }
        // The last partial block, byte by byte, so not even a small record fits.
        while let Ok(1) = file.write(&block[..1]) {
            written += 1;
        }
        written
    }

    /// Frees what [`SmallDisk::fill`] took.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("removing the filler file");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file there does not keep the mount.
        if let Err(e) = run("umount", &["-l", &self.mount.display().to_string()]) {
            eprintln!("small disk: {e}");
        }
    }
}

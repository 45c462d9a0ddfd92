//! Locating the binaries under test.
//!
//! A test executable lives in `target/<profile>/deps/`; `cargo test --workspace`
//! builds the binaries (the executables' packages, broker/cmd, nameserver/cmd and
//! tools/cmd, have integration tests of their own) into `target/<profile>/`, its
//! grandparent. The `APOGEE_BIN_DIR` environment variable overrides the directory.

use std::path::PathBuf;

pub const NAMESERVER: &str = "apogee-nameserver";
pub const BROKER: &str = "apogee-broker";
pub const CLI: &str = "apogee";

/// The directory holding the binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("APOGEE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("the test executable has no grandparent directory")
}

/// Path of one binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} not found: run the tests with `cargo test --workspace`, which builds every binary (or set APOGEE_BIN_DIR)",
        path.display()
    );
    path
}

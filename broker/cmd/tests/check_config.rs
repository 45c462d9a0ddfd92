//! `apogee-broker --check-config` run as a process: the shipped default
//! config passes, unknown keys (in the file or the environment) are refused
//! with exit status 2 and the key's name, and environment overrides apply.
//!
//! Living in the executable's package also makes `cargo test --workspace` build the
//! `apogee-broker` binary that the integration tests in `tests/` start.

use std::process::Command;

fn broker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apogee-broker"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("APOGEE_BROKER_") {
            c.env_remove(k);
        }
    }
    c
}

fn deploy_config() -> String {
    format!("{}/../../deploy/broker.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_config_passes_check_config() {
    let out = broker()
        .args(["--config", &deploy_config(), "--check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config OK"), "{stdout}");
    assert!(stdout.contains("flush = \"async\""), "{stdout}");
}

#[test]
fn unknown_key_in_file_fails_check_config_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, "broker_name = \"b\"\nbrokr_id = 3\n").unwrap();
    let out = broker()
        .args(["--config", path.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("brokr_id"), "{stderr}");
}

#[test]
fn environment_overrides_nested_keys_and_rejects_unknown_ones() {
    let out = broker()
        .env("APOGEE_BROKER_STORE__FLUSH", "sync")
        .arg("--check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("flush = \"sync\""), "{stdout}");

    let out = broker()
        .env("APOGEE_BROKER_NO_SUCH_KEY", "1")
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APOGEE_BROKER_NO_SUCH_KEY"));
}

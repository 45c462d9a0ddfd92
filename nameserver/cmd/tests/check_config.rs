//! `apogee-nameserver` and `apogee-controller` run as processes with `--check-config`: the
//! shipped config passes and is printed, `--listen` replaces the file's address, and a bad
//! `--listen` is refused with exit status 2 naming the setting.
//!
//! Living in the executables' package also makes `cargo test --workspace` build the
//! binaries that the integration tests in `tests/` start.

use std::process::{Command, Output};

/// The two servers: their binary and the shipped config (deploy/).
const SERVERS: [(&str, &str, &str); 2] = [
    (
        env!("CARGO_BIN_EXE_apogee-nameserver"),
        "nameserver.toml",
        "APOGEE_NAMESERVER_",
    ),
    (
        env!("CARGO_BIN_EXE_apogee-controller"),
        "controller.toml",
        "APOGEE_CONTROLLER_",
    ),
];

/// `<binary> --config deploy/<file> --check-config <extra>`, free of environment overrides.
fn check_config(binary: &str, file: &str, env_prefix: &str, extra: &[&str]) -> Output {
    let mut command = Command::new(binary);
    command.env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with(env_prefix) {
            command.env_remove(key);
        }
    }
    let config = format!("{}/../../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    command
        .args(["--config", &config, "--check-config"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn shipped_config_passes_and_listen_replaces_its_address() {
    for (binary, file, env_prefix) in SERVERS {
        let shipped = check_config(binary, file, env_prefix, &[]);
        let stdout = String::from_utf8_lossy(&shipped.stdout);
        assert!(
            shipped.status.success(),
            "{binary}: {stdout}{}",
            String::from_utf8_lossy(&shipped.stderr)
        );
        assert!(stdout.starts_with("config OK"), "{binary}: {stdout}");
        assert!(!stdout.contains("127.0.0.1:4321"), "{binary}: {stdout}");

        let moved = check_config(binary, file, env_prefix, &["--listen", "127.0.0.1:4321"]);
        let stdout = String::from_utf8_lossy(&moved.stdout);
        assert!(moved.status.success(), "{binary}: {stdout}");
        assert!(
            stdout.contains("listen = \"127.0.0.1:4321\""),
            "{binary}: {stdout}"
        );
    }
}

#[test]
fn bad_listen_is_a_config_error_naming_it() {
    for (binary, file, env_prefix) in SERVERS {
        let out = check_config(binary, file, env_prefix, &["--listen", "no-port"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{binary}: {stderr}");
        assert!(stderr.contains("listen"), "{binary}: {stderr}");
        assert!(out.stdout.is_empty(), "{binary}");
    }
}

//! The `apogee` binary's exit codes, run as a process: usage errors exit 2,
//! an unreachable NameServer exits 1 with `error:` on stderr, help exits 0.
//!
//! Living in the executable's package also makes `cargo test --workspace` build the
//! `apogee` binary that the integration tests in `tests/` run.

use std::process::Command;

fn apogee() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apogee"));
    c.env_remove("APOGEE_NAMESERVER");
    c
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = apogee().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_commands_help_exits_0_with_its_usage() {
    for (asked, usage) in [
        (&["topic", "--help"][..], "Usage: apogee topic <COMMAND>"),
        (&["topic", "create", "-h"], "Usage: apogee topic create"),
        (&["help", "broker", "status"], "Usage: apogee broker status"),
        (
            &["-o", "json", "group", "list", "--help"],
            "Usage: apogee group list",
        ),
    ] {
        let out = apogee().args(asked).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{asked:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(usage),
            "{asked:?} lacks {usage:?}: {stdout}"
        );
    }
    // A command without its subcommand: the help on stderr, a usage error.
    let out = apogee().arg("topic").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: apogee topic <COMMAND>"));
}

#[test]
fn unreachable_nameserver_exits_1_with_an_error_line() {
    // Port 1 on loopback: nothing listens there.
    let out = apogee()
        .args([
            "--nameserver",
            "127.0.0.1:1",
            "--timeout",
            "2",
            "topic",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
}

#[test]
fn send_and_consume_name_the_nameserver_they_cannot_reach() {
    for args in [
        &["send", "--topic", "t", "--body", "x"][..],
        &["consume", "--topic", "t", "--group", "g", "--wait", "1"][..],
    ] {
        let out = apogee()
            .args(["--nameserver", "127.0.0.1:1", "--timeout", "2"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach nameserver 127.0.0.1:1"),
            "{args:?}: {stderr}"
        );
    }
}

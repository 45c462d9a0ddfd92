//! Running the `apogee` CLI as a process and capturing what it printed.

use crate::bins;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one CLI invocation may take before it is killed.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What one CLI run produced.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub args: Vec<String>,
    /// Exit code; -1 when killed by a signal or the timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with everything printed unless the exit code is 0.
    pub fn success(self) -> CliOutput {
        assert_eq!(
            self.code,
            0,
            "`apogee {}` failed:\n{self}",
            self.args.join(" ")
        );
        self
    }

    /// Parses stdout as JSON, panicking with the output when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`apogee {}` did not print JSON ({e}):\n{self}",
                self.args.join(" ")
            )
        })
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `apogee <args>`, with output captured through temporary files (no
/// pipe can fill up) and a timeout.
pub fn run(args: &[&str]) -> CliOutput {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let err = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = Command::new(bins::bin(bins::CLI))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"))
        .env("NO_COLOR", "1")
        .spawn()
        .expect("starting the apogee CLI");
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the CLI") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |f: &tempfile::NamedTempFile| {
        String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()).into_owned()
    };
    CliOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: read(&out),
        stderr: read(&err),
    }
}

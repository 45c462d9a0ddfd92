//! Running the `apogee` CLI as a process and capturing what it printed.

use crate::bins;
use std::process::{Child, Command, Stdio};
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
pub fn run<S: AsRef<str>>(args: &[S]) -> CliOutput {
    spawn(args).wait(CLI_TIMEOUT)
}

/// An `apogee` process left running (`consume --wait 1h`, `bench consume`), its output going
/// to temporary files that can be read while it runs; killed on drop.
pub struct CliProcess {
    args: Vec<String>,
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

/// Starts `apogee <args>` without waiting for it.
pub fn spawn<S: AsRef<str>>(args: &[S]) -> CliProcess {
    let args: Vec<String> = args.iter().map(|s| s.as_ref().to_string()).collect();
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let err = tempfile::NamedTempFile::new().expect("temp file");
    let child = Command::new(bins::bin(bins::CLI))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"))
        .env("NO_COLOR", "1")
        .spawn()
        .expect("starting the apogee CLI");
    CliProcess {
        args,
        child,
        out,
        err,
    }
}

impl CliProcess {
    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.out)
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting for the CLI")
            .is_some()
    }

    /// Waits until it exits, killing it after `limit` (exit code -1 then).
    pub fn wait(mut self, limit: Duration) -> CliOutput {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the CLI") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        CliOutput {
            args: std::mem::take(&mut self.args),
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: read_lossy(&self.out),
            stderr: read_lossy(&self.err),
        }
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_lossy(f: &tempfile::NamedTempFile) -> String {
    String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()).into_owned()
}

//! One server process under test.
//!
//! stdout and stderr go to one log file (appended to across restarts, with a
//! marker line per start). It can be paused (SIGSTOP) and resumed (SIGCONT).
//! The child is killed with SIGKILL when the handle is dropped, and on Linux
//! also when the test process dies (PR_SET_PDEATHSIG), so no server outlives
//! its test. When the handle is dropped while the test
//! is panicking, the log is printed to stderr.
//!
//! A group of processes is torn down by freezing every one of them first
//! ([`ManagedProcess::freeze_for_teardown`], which marks the log), then killing
//! them: killed one after another, a survivor would log how it saw the others
//! die (a slave "replication from the master stopped ... error reading a body
//! from connection" moments after its last reconnect), and a failed test's
//! printed logs would end with that teardown noise instead of the failure.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Largest tail of a log printed on failure.
const MAX_PRINTED_LOG: usize = 64 * 1024;

/// The line [`ManagedProcess::freeze_for_teardown`] ends a log with.
pub const TEARDOWN_MARKER: &str =
    "===== frozen by the test harness for the teardown (SIGSTOP); nothing below is the process's";

/// A spawned server with its command line kept for restarts.
pub struct ManagedProcess {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ManagedProcess {
    /// Starts `program` with `args` and extra environment, logging to `log`.
    pub fn spawn(
        label: impl Into<String>,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> ManagedProcess {
        let mut p = ManagedProcess {
            label: label.into(),
            program,
            args,
            env,
            log,
            child: None,
            starts: 0,
        };
        p.start();
        p
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The command line's arguments, for the next [`start`](ManagedProcess::start).
    pub fn args_mut(&mut self) -> &mut Vec<String> {
        &mut self.args
    }

    /// Starts the process again with the same command line (after [`kill`]).
    ///
    /// [`kill`]: ManagedProcess::kill
    pub fn start(&mut self) {
        // One that exited by itself (a broker whose store failed) may start again.
        if let Some(c) = self.child.as_mut() {
            if matches!(c.try_wait(), Ok(Some(_))) {
                self.child = None;
            }
        }
        assert!(self.child.is_none(), "{} is already running", self.label);
        self.starts += 1;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", self.log.display()));
        let _ = writeln!(
            file,
            "===== start #{} of {}: {} {}",
            self.starts,
            self.label,
            self.program.display(),
            self.args.join(" ")
        );
        let err: File = file.try_clone().expect("cloning the log file handle");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        // Plain logs in the files (tracing-subscriber honours NO_COLOR).
        cmd.env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            // Only async-signal-safe work here: one prctl.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({}): {e}",
                self.label,
                self.program.display()
            )
        });
        self.child = Some(child);
    }

    /// SIGKILLs the process (on unix `Child::kill` is SIGKILL, which also ends a
    /// stopped process) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The operating-system id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOPs the process: it keeps its sockets and files but runs no
    /// code (connections to it hang) until [`resume`].
    ///
    /// [`resume`]: ManagedProcess::resume
    #[cfg(unix)]
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP, "SIGSTOP");
    }

    /// SIGSTOPs a running process for the teardown and marks its log: nothing after
    /// the marker line comes from the process. A process already stopped or gone is
    /// only marked (when running).
    #[cfg(unix)]
    pub fn freeze_for_teardown(&mut self) {
        if !self.is_running() {
            return;
        }
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid this handle spawned and has not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        }
        if let Ok(mut file) = OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(file, "{TEARDOWN_MARKER}");
        }
    }

    /// SIGTERMs the process (a graceful shutdown); see [`wait_exit`] for its end.
    ///
    /// [`wait_exit`]: ManagedProcess::wait_exit
    #[cfg(unix)]
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM, "SIGTERM");
    }

    /// SIGHUPs the process (a server with TLS reloads its certificate).
    #[cfg(unix)]
    pub fn hangup(&mut self) {
        self.signal(libc::SIGHUP, "SIGHUP");
    }

    /// SIGCONTs a process stopped by [`pause`].
    ///
    /// [`pause`]: ManagedProcess::pause
    #[cfg(unix)]
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT, "SIGCONT");
    }

    #[cfg(unix)]
    fn signal(&mut self, signal: libc::c_int, name: &str) {
        self.assert_running();
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running: cannot send {name}", self.label));
        // SAFETY: kill(2) with a pid this handle spawned and has not reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "sending {name} to {} (pid {pid}): {}",
            self.label,
            std::io::Error::last_os_error()
        );
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "{} exited unexpectedly ({status}); its log:\n{}",
                    self.label,
                    self.log_tail()
                );
            }
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it
    /// is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `addr` accepts TCP connections, failing early if the
    /// process exits.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not accept connections on {addr} within {timeout:?}; its log:\n{}",
                self.label,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The end of the log, bounded in size.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        if text.len() <= MAX_PRINTED_LOG {
            return text;
        }
        let mut cut = text.len() - MAX_PRINTED_LOG;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        format!("[... {} bytes omitted ...]\n{}", cut, &text[cut..])
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "\n----- log of {} ({}) -----\n{}\n----- end of log of {} -----",
                self.label,
                self.log.display(),
                self.log_tail(),
                self.label
            );
        }
    }
}

/// Where the ports [`free_port`] hands out come from: below Linux's ephemeral range
/// (32768 and up by default, `/proc/sys/net/ipv4/ip_local_port_range`), so neither a
/// port 0 bind nor an outgoing connection of any process can take one between the
/// moment it is handed out and the moment its server binds it. `deploy_kit` draws its
/// blocks from 20000..30000, above this range.
pub const TEST_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// The standalone's fixed ports (NameServer, broker and their HTTP endpoints), which the
/// README tour's test binds: never handed out, so no other test's server can take them.
pub const STANDALONE_PORTS: [u16; 4] = [9876, 10911, 5556, 5557];

/// The next port [`free_port`] tries, as an offset into [`TEST_PORTS`].
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Claims `port` for this process among every test process of the machine: an exclusive
/// `flock` on a file named after the port in a shared directory, held until the process
/// exits (the kernel drops the lock then, so a crashed run leaves no claim behind). Two
/// test binaries run at once can thus never both hand out one port, even when their
/// servers bind it only later.
#[cfg(unix)]
fn claim_across_processes(port: u16) -> bool {
    use std::os::fd::AsRawFd;
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("apogee-test-ports");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("creating the port claim directory {}: {e}", dir.display());
    }
    let path = dir.join(port.to_string());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening the port claim {}: {e}", path.display()));
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if locked {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    }
    locked
}

#[cfg(not(unix))]
fn claim_across_processes(_port: u16) -> bool {
    true
}

/// A loopback port for a server under test: free now (a bind to it succeeded), never
/// handed out before by this process, and claimed against every other test process
/// ([`claim_across_processes`]), so no two servers of concurrent test runs get the same
/// port. Ports come from [`TEST_PORTS`], in turn from a start that depends on the process
/// id, so two test binaries run at once most likely try different ports first.
pub fn free_port() -> u16 {
    use std::sync::atomic::Ordering;
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT_PORT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + offset as u16;
        if STANDALONE_PORTS.contains(&port) || !claim_across_processes(port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The scheduler state letter of a process (`T` when stopped).
    fn state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
        // "pid (comm) S ...": the state follows the last ')'.
        let rest = &stat[stat.rfind(')').expect("comm") + 1..];
        rest.trim_start().chars().next().expect("state")
    }

    /// Waits until the process is stopped (`true`) or not (signals land asynchronously).
    async fn wait_stopped(pid: u32, stopped: bool) {
        crate::wait_until(Duration::from_secs(10), "the process state", || async {
            let s = state(pid);
            if (s == 'T') == stopped {
                Ok(())
            } else {
                Err(format!("state {s}"))
            }
        })
        .await;
    }

    #[test]
    fn free_ports_are_bindable_distinct_and_outside_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("reading the ephemeral port range");
        let first_ephemeral: u16 = range
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the range's first port");
        // Each port is bound as soon as it is handed out and held, as a server would.
        // Other test binaries running at the same time draw from the same range: the
        // claim across processes is what keeps their servers off these ports.
        let mut held = Vec::new();
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = free_port();
            assert!(distinct.insert(p), "{p} was handed out twice");
            assert!(p < first_ephemeral, "{p} is in the ephemeral range");
            assert!(!STANDALONE_PORTS.contains(&p), "{p} is a standalone port");
            assert!(TEST_PORTS.contains(&p));
            held.push(
                std::net::TcpListener::bind(("127.0.0.1", p)).expect("binding a handed-out port"),
            );
        }
    }

    #[test]
    fn a_handed_out_port_stays_claimed_against_other_processes() {
        let port = free_port();
        // flock locks belong to an open file description: a second open stands for another
        // process's claim, and must be refused while this process holds the port.
        assert!(
            !claim_across_processes(port),
            "{port} was claimed a second time"
        );
    }

    #[tokio::test]
    async fn pause_stops_resume_continues_and_kill_ends_a_stopped_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = ManagedProcess::spawn(
            "sleeper",
            PathBuf::from("sleep"),
            vec!["600".into()],
            vec![],
            dir.path().join("sleep.log"),
        );
        let pid = p.pid().unwrap();
        p.pause();
        wait_stopped(pid, true).await;
        p.resume();
        wait_stopped(pid, false).await;
        p.pause();
        wait_stopped(pid, true).await;
        p.kill();
        assert!(!p.is_running());
        assert_eq!(p.pid(), None);
        assert!(p.log_text().contains("start #1 of sleeper"));
    }
}

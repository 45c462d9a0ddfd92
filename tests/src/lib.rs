//! apogee-tests: the harness the integration tests under `tests/` use to run
//! real Apogee processes.
//!
//! - [`browser`]: a headless Chromium driven through WebDriver, for the web console's
//!   browser tests (skipped without it, except under CI).
//! - [`bins`]: finds the `apogee-nameserver`, `apogee-broker` and `apogee`
//!   binaries next to the test executable (or in `APOGEE_BIN_DIR`).
//! - [`process`]: one child process with its output captured to a log file,
//!   paused and resumed by signal, killed on drop and its log printed when the
//!   test is failing.
//! - [`cluster`]: NameServers plus broker groups (masters and slaves) on free
//!   loopback ports with temporary data dirs; SIGKILL and restart brokers and
//!   NameServers, SIGSTOP/SIGCONT brokers; create topics.
//! - [`rpc`]: raw gRPC clients and small helpers (send, pull, receive, ack)
//!   for tests that must talk to a server directly.
//! - [`http`]: a plain HTTP GET for the metrics and health endpoints; [`console_http`]: a
//!   browser-like client (cookie, Origin, CSRF token) for the web console's HTTP tests.
//! - [`cli`]: runs the `apogee` CLI and captures its output and exit code.
//! - [`access`]: raw messaging calls and the CLI signed as a user other than the admin.
//! - [`certs`]: a test CA with server and client certificates, for TLS clusters.
//! - [`telemetry`]: a raw producer session that answers transaction check-backs.
//! - [`wait`]: `wait_until`, the one polling helper.
//! - [`netns`]: the fault harness: servers in Linux network namespaces on a virtual
//!   network, with faults (SIGKILL, SIGSTOP, links down, partial cuts, NameServers
//!   restarted, a full disk).
//! - [`workload`]: producers and consumers of apogee-client and the official crate
//!   recording every send and receipt into a [`checker::Checker`].
//! - [`checker`]: judges a run with faults: lost, unexpected and duplicated messages, FIFO
//!   order, and the time from each fault to the first write and read after it.
//! - [`failover`]: automatic failover: controlled members, the controller's view of a group
//!   and of each NameServer's node, the routed master, a sender keeping what was acknowledged.
//! - [`commitlog`]: an independent reader of the commit-log record framing,
//!   to compute which records survive a cut.
//! - [`s3_server`]: a real S3-compatible server (moto's) for the object-store tier's tests.
//! - [`rocketmq_store`]: a small store in RocketMQ's layout and format, for
//!   the tests that check Apogee refuses to open one.

pub mod access;
pub mod bins;
pub mod browser;
pub mod certs;
pub mod checker;
pub mod cli;
pub mod cluster;
pub mod commitlog;
pub mod console_http;
pub mod failover;
pub mod http;
pub mod member_status;
pub mod netns;
pub mod prerequisite;
pub mod process;
pub mod restart_requests;
pub mod rocketmq_store;
pub mod rpc;
pub mod s3_server;
pub mod telemetry;
pub mod wait;
pub mod workload;

pub use cli::CliOutput;
pub use cluster::{Broker, BrokerSpec, Cluster, ClusterBuilder};
pub use wait::wait_until;

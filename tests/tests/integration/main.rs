//! Integration tests: real `apogee-nameserver` and `apogee-broker` processes
//! (and the `apogee` CLI) on loopback, driven through the Rust client, raw
//! gRPC and RocketMQ's official Rust client. Build the binaries first:
//! `cargo build --bins`.
//!
//! - [`delivery`]: every message reaches every group exactly once; groups
//!   share work; unacked messages come back after their invisible duration.
//! - [`durability`]: SIGKILL with sync flush loses nothing acknowledged; a
//!   torn commit-log tail is cut back to the last whole record; damage before
//!   the flushed end stops the broker with a clear error.
//! - [`bad_input`]: invalid requests get their specific status codes.
//! - [`official_client`]: the `rocketmq` crate works through the NameServer.
//! - [`cli`]: the admin CLI's tables, JSON and exit codes.
//! - [`schedule`]: delayed messages delivered once on time (also across
//!   SIGKILL), limits, recall, the official client's delay send.
//! - [`transactions`]: half messages, commit/rollback, check-backs, parking,
//!   forwarding through the NameServer, crash safety.

mod bad_input;
mod cli;
mod delivery;
mod durability;
mod official_client;
mod schedule;
mod transactions;

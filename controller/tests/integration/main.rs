//! The controller's integration tests, one test binary (each binary links the whole
//! dependency tree, so one per package keeps `cargo test --workspace` short):
//! - [`failover`]: elections through a real single-voter Raft group;
//! - [`remote`]: three controllers as a NameServer's `RemoteController` sees them;
//! - [`restart`]: a single voter keeps its state across a restart on the same data dir;
//! - [`three_controllers`]: three controllers in one process, the leader shut down.

mod failover;
mod remote;
mod restart;
mod three_controllers;

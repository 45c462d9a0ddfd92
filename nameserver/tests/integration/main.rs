//! The NameServer's integration tests, one test binary (each binary links the whole
//! dependency tree, so one per package keeps `cargo test --workspace` short):
//! - [`serve`]: `apogee_nameserver::serve` in-process: registration, routes, Telemetry
//!   settings, topic administration fanned out to brokers, shutdown with streams open;
//! - [`controller`]: the controller inside the NameServer (a Raft group on real sockets);
//! - [`controller_sessions`]: members' sessions with the controller (beats, assignments).

mod common;
mod controller;
mod controller_sessions;
mod serve;

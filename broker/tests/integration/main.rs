//! The broker package's integration tests, one test binary (each binary links the whole
//! dependency tree, so one per package keeps `cargo test --workspace` short):
//! - [`accept`]: socket options on the connections a running broker accepted;
//! - [`check_config`]: `apogee-broker --check-config` run as a process.
//!
//! Living in the broker package also makes `cargo test --workspace` build the
//! `apogee-broker` binary that the integration tests in `tests/` start.

mod accept;
mod check_config;

//! The broker library's integration tests, one test binary (each binary links the whole
//! dependency tree, so one per package keeps `cargo test --workspace` short):
//! - [`accept`]: socket options on the connections a running broker accepted.
//!
//! The `apogee-broker` executable's own tests live in its package (broker/cmd/tests).

mod accept;

//! apogee-controller: the controller of automatic failover (issue 35, item 1), a Raft group
//! built on openraft that replicates, per broker group, its members, master, master epoch and
//! in-sync replica set.

pub mod config;
pub mod controller;
pub mod network;
pub mod service;
pub mod state;
pub mod store;
pub mod types;

pub use config::ControllerConfig;
pub use controller::{serve, Controller, ControllerMetrics, ReadError, StartError, WriteError};
pub use state::{Command, CommandResult, ControllerState, MemberId, Refusal};

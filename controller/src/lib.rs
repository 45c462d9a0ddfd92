//! apogee-controller: the controller of automatic failover (issue 35, item 1). A Raft group
//! (openraft 0.9) whose replicated state says, per broker group, who its members are, which
//! one is the master, and which ones hold everything the master acknowledged.
//!
//! # What is replicated
//!
//! [`state::ControllerState`]: per broker group (keyed by its name), the members (a stable
//! member id for life, address, election priority, and the highest epoch and log end each
//! last reported), the master (a member id, or none), the master epoch, the in-sync set and
//! its epoch. It changes only by [`state::Command`]s committed to the Raft log: register a
//! member, the master's report of a new in-sync set, elect a master, a planned election of a
//! named member, remove a member. Applying one is pure and deterministic, so every controller
//! holds the same state after the same log; each returns a typed [`state::CommandResult`]
//! (the new epochs, the chosen master, or a refusal with its reason). The log, the vote and
//! snapshots of the state are stored in RocksDB with synced writes ([`store`]).
//!
//! # What is not
//!
//! Liveness: which members the leader hears from is the leader's own knowledge (heartbeats,
//! a later step). It enters the log only inside an `Elect` command (the members found alive
//! and their fresh log reports), so a decision is replicated with the facts it was made on
//! and replaying the log decides alike. Nothing of the brokers' data, routes or topics is
//! here: the NameServers keep those as before.
//!
//! # The election rule
//!
//! No election while the master is alive. Candidates are the alive members of the in-sync
//! set, ordered by the highest epoch in their log, then log end, then priority (lower value
//! first, as RocketMQ's `brokerElectPriority`), then member id (lower first), so ties break
//! the same way everywhere. An alive member outside the in-sync set is chosen only when the
//! command allows unclean election (`controller.unclean_election`, off by default) and no
//! in-sync member is alive; the result says `unclean`. A group that never had a master has
//! acknowledged nothing, so its first election is among every alive member and is clean. A
//! planned election names a member, which must be in sync.
//!
//! # What an epoch fences
//!
//! The master epoch rises by one with every new master; the new master's in-sync set is
//! itself alone (the others rejoin it as they catch up) and the in-sync epoch rises by one
//! with every change of the set. A report of a new in-sync set is applied only if it comes
//! from the current master, carries the current master epoch and is based on the current
//! in-sync epoch: an old master that was replaced, or a report built on a set that has
//! changed since, is refused, so the set can never be widened by someone who no longer
//! leads. Members (later steps) refuse anything carrying an older master epoch, and record
//! each epoch's start offset in their log to reconcile by epoch when they rejoin.
//!
//! # Modules
//!
//! - [`state`]: the state machine and its rules.
//! - [`store`]: RocksDB storage of the Raft log, vote and snapshots.
//! - [`network`] and [`service`]: the Raft messages over gRPC (`apogee.controller.v1.Raft`).
//! - [`controller`]: the [`Controller`] handle (start, write, linearizable read, metrics)
//!   and [`serve`] for a controller on a listener of its own.
//! - [`config`]: its settings; [`types`]: the openraft type configuration.

pub mod config;
pub mod controller;
pub mod network;
pub mod service;
pub mod state;
pub mod store;
pub mod types;

pub use config::ControllerConfig;
pub use controller::{serve, Controller, ControllerMetrics, ReadError, StartError, WriteError};
pub use network::PeerTrust;
pub use state::{Command, CommandResult, ControllerState, MemberId, Refusal};

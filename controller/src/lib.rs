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
//! Liveness: which members the leader hears from is the leader's own knowledge (the beats of
//! the brokers' sessions with its NameServer, see "Failover"). It enters the log only inside
//! an `Elect` command (the members found alive and their fresh log reports), so a decision
//! is replicated with the facts it was made on and replaying the log decides alike. Nothing
//! of the brokers' data, routes or topics is here: the NameServers keep those as before.
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
//! # Failover
//!
//! [`failover`], leader-local. A broker in controller mode beats on its session with every
//! NameServer, each beat carrying its member report; the NameServer passes it to its
//! controller ([`Controller::on_beat`]), and only the leader acts and answers with the
//! group's assignment (master, epochs, committed in-sync set). Liveness: a member is alive
//! while it beat within `member_timeout_ms` and its session is open. A beat registers a
//! member the state does not know (or knows at another address or priority), and the
//! master's measured in-sync set, when it differs and is based on the current epochs, is
//! committed with `ChangeInSync`.
//!
//! Leases: the member that is the master in the state gets `lease_ms` in its answer, and
//! holds it until the instant it sent the answered beat + `lease_ms`. The leader grants it
//! only after confirming with a quorum that it still leads, after the beat arrived
//! (`ensure_linearizable`), and only when no election of the group started meanwhile.
//!
//! The election timing rule: a master that is not alive is replaced (an `Elect` with the
//! alive members and their reports, by a background task every 200 ms) only once
//! `lease_ms + lease_margin_ms` passed since the leader's last grant to it AND since the
//! leader became leader. Why it is safe: a lease counts from the beat's sending, which comes
//! before the grant; the grant follows a quorum's confirmation, so no other leader existed
//! then; a new leader, which does not know its predecessor's grants, waits a full lease +
//! margin. So when a replacement is elected every lease of the old master has run out, and
//! two masters never hold a lease at once. A group without a master has no lease
//! outstanding: its first election comes at once. An election refused for want of an
//! in-sync candidate leaves the group without a serving master (logged at WARN once per
//! epoch) until an in-sync member is back, or unclean election is on. A planned switch
//! ([`Controller::elect_named`], on the leader) stops the master's leases at once and is
//! written only once the last one has run out.
//!
//! # Modules
//!
//! - [`state`]: the state machine and its rules.
//! - [`failover`]: the leader's liveness table, leases and elections.
//! - [`store`]: RocksDB storage of the Raft log, vote and snapshots.
//! - [`network`] and [`service`]: the Raft messages over gRPC (`apogee.controller.v1.Raft`).
//! - [`controller`]: the [`Controller`] handle (start, write, linearizable read, metrics,
//!   the members' beats and the election task) and [`serve`] for a controller on a
//!   listener of its own.
//! - [`authority`]: [`FailoverAuthority`], what a NameServer asks of the controller,
//!   embedded (the [`Controller`] handle) or run as its own process ([`remote`]: the gRPC
//!   client finding the leader; [`control_service`]: the service it calls).
//! - [`config`]: its settings; [`types`]: the openraft type configuration.

pub mod authority;
pub mod config;
pub mod control_service;
pub mod controller;
pub mod failover;
pub mod liveness;
pub mod network;
pub mod remote;
pub mod service;
pub mod state;
pub mod store;
pub mod types;

pub use authority::{ControllerReport, FailoverAuthority, SharedAuthority};
pub use config::ControllerConfig;
pub use controller::{serve, Controller, ControllerMetrics, ReadError, StartError, WriteError};
pub use network::PeerTrust;
pub use remote::RemoteController;
pub use state::{Command, CommandResult, ControllerState, MemberId, Refusal};

//! apogee-controller: the controller of automatic failover (issue 35, item 1), a Raft group
//! built on openraft that replicates, per broker group, its members, master, master epoch and
//! in-sync replica set.

pub mod state;
pub mod store;
pub mod types;

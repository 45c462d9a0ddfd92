//! The controller's openraft type configuration: log entries carry [`Command`]s, applying one
//! returns a [`CommandResult`], nodes are numbered and named by their gRPC address.

use crate::state::{Command, CommandResult};

/// A controller's id in the Raft group (`controller.node_id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The controller's Raft types: snapshots are the serialized state in memory.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// The controller's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;

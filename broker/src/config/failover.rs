//! `[failover]`: controller mode, the election priority, the in-sync minimum, the
//! acknowledgement mode and the planned handover's timeout and drain (validated with the rest of the config in `BrokerConfig::validate`).

use serde::{Deserialize, Serialize};

/// Automatic failover: the broker group's roles decided by the NameServers' controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverSection {
    /// Controller mode (RocketMQ's `enableControllerMode`): `broker_id` is this member's id
    /// for life (>= 1), `role` is not read, and the role and master epoch come from the
    /// controller embedded in the NameServers (`[controller] enabled` there). The broker
    /// starts fenced: it takes no write and hands out nothing until the controller names
    /// the group's master.
    pub controller_mode: bool,
    /// Election priority among in-sync members with the same epoch and log end: lower is
    /// preferred (RocketMQ's `brokerElectPriority`).
    pub election_priority: u32,
    /// Sends are refused before they are appended while the controller's in-sync set has
    /// fewer members than this, the master included (RocketMQ's `minInSyncReplicas`). With
    /// `ack = "min_in_sync"` it is also how many members must have a send to acknowledge it.
    pub min_in_sync_replicas: u32,
    /// Which members must have a send before it is acknowledged (controller mode).
    pub ack: AckMode,
    /// A planned handover (SIGTERM of a master, `apogee broker elect`): the longest sends
    /// are held back while the in-sync members catch up and the controller elects the
    /// successor, before the handover gives up (ms).
    pub handover_timeout_ms: u64,
    /// At SIGTERM, how long a member (a master once it handed its role over, or a slave)
    /// keeps answering at its address after leaving the routes (as a slave, passing sends
    /// and consume calls to the master) before it exits: longer than the clients' route refresh (30 s for the official ones), so a
    /// client that ignores the protocol's reconnect command moves before a call fails (ms;
    /// 0: exit at once).
    pub drain_ms: u64,
}

/// The longest `failover.handover_timeout_ms` and `failover.drain_ms` (10 minutes).
pub const MAX_HANDOVER_OR_DRAIN_MS: u64 = 600_000;

/// When a master in controller mode acknowledges a send (`failover.ack`; RocketMQ's
/// `allAckInSyncStateSet` true or false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// Every member of the controller's committed in-sync set has it: an elected member
    /// (always one of that set) holds every acknowledged send.
    #[default]
    AllInSync,
    /// At least `min_in_sync_replicas` members of the committed in-sync set, the master
    /// included, have it. A stalled member does not hold acks back until the set shrinks,
    /// but an acknowledged send is lost when the members that have it die with the master
    /// and an in-sync member without it is elected.
    MinInSync,
}

/// Most members a broker group may have (`failover.min_in_sync_replicas` cannot exceed it).
pub const MAX_GROUP_MEMBERS: u32 = 16;

impl Default for FailoverSection {
    fn default() -> Self {
        FailoverSection {
            controller_mode: false,
            election_priority: 255,
            min_in_sync_replicas: 1,
            ack: AckMode::AllInSync,
            handover_timeout_ms: 5_000,
            drain_ms: 35_000,
        }
    }
}

//! This broker's status now (`Admin.GetBrokerStatus`): when it started, where its commit log
//! starts, ends and is flushed to, how many topics and groups it holds, its role at this
//! moment (it changes at runtime in controller mode), and its replication state: a master's
//! table of slaves, or a slave's link to its master (both kept by `crate::replication`).

use crate::config::Role;
use crate::services::Broker;
use apogee_proto::cluster::SlaveStatus;

/// The commit log's offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOffsets {
    pub start: u64,
    pub end: u64,
    pub flushed: u64,
}

/// A slave's link to its master (the fields of `crate::replication::MasterLink` an operator
/// sees).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkView {
    /// The master's endpoint ("" while not known).
    pub endpoint: String,
    pub connected: bool,
    /// The master's log end as last heard.
    pub master_end_offset: u64,
    /// Unix ms of the last message from the master (0: never).
    pub last_contact_ms: i64,
}

/// What the broker's status is made of, read at one moment.
#[derive(Clone, Debug)]
pub struct StatusSnapshot {
    /// Unix ms when this broker started.
    pub started_at_ms: i64,
    pub log: LogOffsets,
    pub topic_count: usize,
    pub group_count: usize,
    /// The role now.
    pub role: Role,
    /// Unix ms since when this broker is the master (0 when it is not).
    pub master_since_ms: i64,
    /// A master's slaves (as replication reports them).
    pub slaves: Vec<SlaveStatus>,
    /// A slave's link to its master.
    pub link: Option<LinkView>,
    /// The object-store tier's uploads and where they go, when there is a tier.
    pub tier: Option<(crate::tier::TierStatus, String)>,
}

impl Broker {
    /// This broker's status now.
    pub fn broker_status(&self) -> StatusSnapshot {
        let store = self.store();
        let log = LogOffsets {
            start: store.log_start_offset(),
            end: store.log_end_offset(),
            flushed: store.flushed_offset(),
        };
        let replication = self.replication();
        StatusSnapshot {
            started_at_ms: self.started_at_ms(),
            log,
            topic_count: self.topics().list().len(),
            group_count: self.groups().list().len(),
            role: self.membership().role(),
            master_since_ms: self.membership().master_since_ms().unwrap_or(0),
            slaves: replication.slaves(),
            link: replication.master_link().map(|l| LinkView {
                endpoint: l.endpoint,
                connected: l.connected,
                master_end_offset: l.master_end_offset,
                last_contact_ms: l.last_contact_ms,
            }),
            tier: self.tier().map(|t| (t.status(), t.bucket().location())),
        }
    }
}

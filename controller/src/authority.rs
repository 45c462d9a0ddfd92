//! [`FailoverAuthority`]: the calls a NameServer makes on the controller of automatic
//! failover, whether the controller is embedded in it (the [`Controller`] handle) or runs
//! as its own process (`apogee-controller`, reached over gRPC by
//! [`crate::remote::RemoteController`]).
//!
//! The NameServer passes each member's beat and session end on, asks for the controller's
//! status and for planned elections; nothing else. Either way only the Raft leader acts,
//! and the leader grants a lease only after confirming with a quorum that it still leads,
//! after the beat arrived (see [`crate::failover`]).

use crate::controller::{Controller, ReadError, WriteError};
use crate::failover::{MemberBeat, NameServerId, SessionEnd};
use crate::state::{CommandResult, ControllerState, MemberId};
use crate::types::NodeId;
use apogee_proto::cluster::Assignment;
use std::time::Duration;

/// The controller's Raft figures and state, as one controller (the leader when it could be
/// reached) reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerReport {
    /// The controller that answered.
    pub node_id: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_applied_index: Option<u64>,
    pub last_applied_term: u64,
    pub is_leader: bool,
    /// The state: confirmed by the leader (a linearizable read) when `read_error` is none,
    /// else as applied on the controller that answered (maybe behind).
    pub state: ControllerState,
    /// Why the state could not be confirmed.
    pub read_error: Option<ReadError>,
}

/// A NameServer's controller, shared by its services.
pub type SharedAuthority = std::sync::Arc<dyn FailoverAuthority>;

/// What a NameServer asks of the controller, embedded or remote.
#[tonic::async_trait]
pub trait FailoverAuthority: Send + Sync {
    /// A member's beat: the group's assignment when the leader answers (with a lease to the
    /// master), none otherwise.
    async fn on_beat(&self, beat: MemberBeat) -> Option<Assignment>;

    /// The member's session with the NameServer `via` (this one) ended, as `end` says.
    async fn member_gone(&self, group: &str, member: MemberId, via: NameServerId, end: SessionEnd);

    /// The Raft figures and the state; the leader is given `read_timeout` to confirm it.
    async fn report(&self, read_timeout: Duration) -> ControllerReport;

    /// A planned election of `member` as `group`'s master (see
    /// [`Controller::elect_named`]).
    async fn elect_named(&self, group: &str, member: MemberId)
        -> Result<CommandResult, WriteError>;

    /// The embedded controller's handle; none for a remote one.
    fn embedded(&self) -> Option<&Controller> {
        None
    }
}

#[tonic::async_trait]
impl FailoverAuthority for Controller {
    async fn on_beat(&self, beat: MemberBeat) -> Option<Assignment> {
        Controller::on_beat(self, beat).await
    }

    async fn member_gone(&self, group: &str, member: MemberId, via: NameServerId, end: SessionEnd) {
        Controller::member_gone(self, group, member, via, end).await
    }

    async fn report(&self, read_timeout: Duration) -> ControllerReport {
        let metrics = self.metrics();
        let read = tokio::time::timeout(read_timeout, self.read_state()).await;
        let (state, read_error) = match read {
            Ok(Ok(state)) => (state, None),
            Ok(Err(e)) => (self.local_state(), Some(e)),
            Err(_) => (self.local_state(), Some(ReadError::Timeout(read_timeout))),
        };
        ControllerReport {
            node_id: metrics.node_id,
            leader: metrics.leader,
            term: metrics.term,
            last_applied_index: metrics.last_applied.map(|l| l.index),
            last_applied_term: metrics.last_applied.map_or(0, |l| l.leader_id.term),
            is_leader: metrics.is_leader,
            state,
            read_error,
        }
    }

    async fn elect_named(
        &self,
        group: &str,
        member: MemberId,
    ) -> Result<CommandResult, WriteError> {
        Controller::elect_named(self, group, member).await
    }

    fn embedded(&self) -> Option<&Controller> {
        Some(self)
    }
}

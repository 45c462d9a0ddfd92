//! The controller operations of the NameServer's Admin service, answered by the controller
//! of automatic failover, embedded in it (`[controller] enabled`) or run as its own process
//! (`[controller] endpoints`), through [`FailoverAuthority`] (FAILED_PRECONDITION when there
//! is none):
//!
//! - ControllerStatus: the Raft figures of the controller that answered (this node's when
//!   embedded, the remote leader's otherwise), and every broker group's state as the leader
//!   confirms it (a linearizable read). An embedded follower asks the leader's NameServer
//!   (its Raft address is its gRPC listener) once, with `here_only` (a remote controller's
//!   client finds the leader itself); when the leader cannot be asked, the answer is the
//!   applied state of the controller that answered, marked `stale` with the reason.
//! - ElectMaster: a planned switch through `Controller::elect_named` on the leader (it stops
//!   the master's leases and waits them out before it writes `ElectNamed`); an embedded
//!   follower passes the call to the leader's NameServer once. Without a member named, the candidate is the
//!   best in-sync member other than the current master that this NameServer hears from,
//!   chosen by the controller's own election order: the group's confirmed state is run
//!   through `Command::Elect` on a copy, with those members as the alive ones (nothing of the
//!   order is repeated here). A named member is checked the same way (`ElectNamed` on a
//!   copy) before any lease is stopped, so a refused switch costs the master nothing. A
//!   refusal by the rules is FAILED_PRECONDITION with its reason.

use super::brokers::BrokerChannels;
use crate::registry::Registry;
use apogee_controller::state::{GroupState, Member};
use apogee_controller::{
    Command, CommandResult, ControllerState, FailoverAuthority, ReadError, WriteError,
};
use apogee_proto::cluster::{
    ControllerGroupStatus, ControllerMemberStatus, ControllerStatusRequest,
    ControllerStatusResponse, ElectMasterRequest, ElectMasterResponse,
};
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::Status;

/// The longest a linearizable read of the controller's state may take (a leader that lost
/// its quorum cannot confirm it leads); past it the answer is this node's state, stale.
pub const STATE_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// What the controller operations need of the NameServer.
pub struct ControllerAdmin<'a> {
    pub controller: Option<&'a dyn FailoverAuthority>,
    pub registry: &'a Registry,
    /// Signed channels, to ask the leader's NameServer.
    pub channels: &'a BrokerChannels,
}

fn controller_off() -> Status {
    Status::failed_precondition(
        "the controller of automatic failover is off on this NameServer ([controller] enabled \
         = false and no endpoints)",
    )
}

impl ControllerAdmin<'_> {
    fn controller(&self) -> Result<&dyn FailoverAuthority, Status> {
        self.controller.ok_or_else(controller_off)
    }

    /// ControllerStatus.
    pub async fn status(
        &self,
        req: ControllerStatusRequest,
    ) -> Result<ControllerStatusResponse, Status> {
        let controller = self.controller()?;
        let report = controller.report(STATE_READ_TIMEOUT).await;
        let mut out = ControllerStatusResponse {
            node_id: report.node_id,
            leader_id: report.leader,
            term: report.term,
            last_applied_index: report.last_applied_index,
            last_applied_term: report.last_applied_term,
            is_leader: report.is_leader,
            ..Default::default()
        };
        let failure = match report.read_error {
            None => {
                out.groups = groups_of(&report.state);
                return Ok(out);
            }
            Some(ReadError::NotLeader {
                leader: Some(leader),
                address: Some(address),
            }) if !req.here_only && controller.embedded().is_some() && leader != report.node_id => {
                match self.ask_leader(&address).await {
                    Ok(answer) => {
                        out.groups = answer.groups;
                        out.stale = answer.stale;
                        out.stale_reason = answer.stale_reason;
                        return Ok(out);
                    }
                    Err(e) => format!(
                        "the leader {leader} at {address} could not be asked: {}",
                        e.message()
                    ),
                }
            }
            Some(e) => e.to_string(),
        };
        out.groups = groups_of(&report.state);
        out.stale = true;
        out.stale_reason = failure;
        Ok(out)
    }

    /// The leader's NameServer's ControllerStatus, from its own controller only.
    async fn ask_leader(&self, address: &str) -> Result<ControllerStatusResponse, Status> {
        let mut client = self.channels.admin(address)?;
        let call = client.controller_status(ControllerStatusRequest { here_only: true });
        let answer = self.channels.bounded(address, call).await?;
        Ok(answer.into_inner())
    }

    /// ElectMaster.
    pub async fn elect(&self, req: ElectMasterRequest) -> Result<ElectMasterResponse, Status> {
        let controller = self.controller()?;
        if req.broker_name.is_empty() {
            return Err(Status::invalid_argument("broker_name is required"));
        }
        let group = self.confirmed_group(&req.broker_name).await?;
        let member = match req.member {
            0 => choose_other_than_master(&group, &self.live_members(&req.broker_name))
                .map_err(Status::failed_precondition)?,
            named => {
                check_named(&group, named).map_err(Status::failed_precondition)?;
                named
            }
        };
        tracing::info!(broker = %req.broker_name, member, named = req.member != 0,
            "planned election asked by an operator");
        let refused = |why: String| {
            Status::failed_precondition(format!(
                "election of member {member} of {} refused: {why}",
                req.broker_name
            ))
        };
        match controller.elect_named(&req.broker_name, member).await {
            Ok(CommandResult::Elected {
                master,
                master_epoch,
                in_sync_epoch,
                ..
            }) => Ok(ElectMasterResponse {
                master,
                master_epoch,
                in_sync_epoch,
            }),
            Ok(CommandResult::Refused(refusal)) => Err(refused(refusal.to_string())),
            Ok(other) => Err(Status::internal(format!(
                "the controller answered an election with {other:?}"
            ))),
            Err(WriteError::NotLeader {
                leader: Some(leader),
                address: Some(address),
            }) if !req.here_only
                && controller
                    .embedded()
                    .is_some_and(|embedded| leader != embedded.metrics().node_id) =>
            {
                let forwarded = ElectMasterRequest {
                    broker_name: req.broker_name.clone(),
                    member,
                    here_only: true,
                };
                let mut client = self.channels.admin(&address)?;
                let call = client.elect_master(forwarded);
                let answer = self.channels.bounded(&address, call).await?;
                Ok(answer.into_inner())
            }
            Err(e @ WriteError::ElectionInFlight(_)) => Err(refused(e.to_string())),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    /// `broker_name`'s state as the leader confirms it.
    async fn confirmed_group(&self, broker_name: &str) -> Result<ControllerGroupStatus, Status> {
        let status = self.status(ControllerStatusRequest::default()).await?;
        if status.stale {
            return Err(Status::unavailable(format!(
                "the controller's state could not be confirmed: {}",
                status.stale_reason
            )));
        }
        status
            .groups
            .into_iter()
            .find(|g| g.broker_name == broker_name)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "the controller knows no broker group {broker_name}"
                ))
            })
    }

    /// The member ids of `broker_name`'s controller-mode members this NameServer hears from.
    fn live_members(&self, broker_name: &str) -> BTreeSet<u64> {
        self.registry
            .cluster_info()
            .iter()
            .filter(|g| g.broker_name == broker_name)
            .flat_map(|g| g.members.iter())
            .filter_map(|m| u64::try_from(m.member_id).ok().filter(|id| *id >= 1))
            .collect()
    }
}

/// The best in-sync member of `group` other than its master among `heard`, by the
/// controller's election order (applied to a copy of the group's state).
pub(crate) fn choose_other_than_master(
    group: &ControllerGroupStatus,
    heard: &BTreeSet<u64>,
) -> Result<u64, String> {
    let state = group_state(group);
    let candidates: BTreeSet<u64> = state
        .in_sync
        .iter()
        .copied()
        .filter(|m| state.master != Some(*m) && heard.contains(m))
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "{} has no in-sync member other than the master {} that this NameServer hears \
             from (in sync: {:?}, heard from: {:?})",
            group.broker_name,
            state.master.map_or("(none)".to_string(), |m| m.to_string()),
            state.in_sync,
            heard
        ));
    }
    let mut copy = ControllerState::default();
    copy.groups.insert(group.broker_name.clone(), state);
    let trial = Command::Elect {
        group: group.broker_name.clone(),
        alive: candidates,
        reports: Vec::new(),
        allow_unclean: false,
    };
    match copy.apply(&trial) {
        CommandResult::Elected { master, .. } => Ok(master),
        CommandResult::Refused(refusal) => Err(refusal.to_string()),
        other => Err(format!("unexpected election result {other:?}")),
    }
}

/// Checks a planned election of `member` against `group`'s state by the controller's own
/// rules (`ElectNamed` applied to a copy), before any lease is stopped for it.
pub(crate) fn check_named(group: &ControllerGroupStatus, member: u64) -> Result<(), String> {
    let mut copy = ControllerState::default();
    copy.groups
        .insert(group.broker_name.clone(), group_state(group));
    let trial = Command::ElectNamed {
        group: group.broker_name.clone(),
        member,
    };
    match copy.apply(&trial) {
        CommandResult::Refused(refusal) => Err(refusal.to_string()),
        _ => Ok(()),
    }
}

/// Every group of `state`, as the protocol carries it.
pub(crate) fn groups_of(state: &ControllerState) -> Vec<ControllerGroupStatus> {
    state
        .groups
        .iter()
        .map(|(name, g)| ControllerGroupStatus {
            broker_name: name.clone(),
            members: g
                .members
                .values()
                .map(|m| ControllerMemberStatus {
                    member_id: m.id,
                    address: m.address.clone(),
                    priority: m.priority,
                    last_epoch: m.last_epoch,
                    log_end: m.log_end,
                })
                .collect(),
            master: g.master.unwrap_or(0),
            master_epoch: g.master_epoch,
            in_sync: g.in_sync.iter().copied().collect(),
            in_sync_epoch: g.in_sync_epoch,
        })
        .collect()
}

/// A group's state back from the protocol (the inverse of [`groups_of`]).
fn group_state(g: &ControllerGroupStatus) -> GroupState {
    GroupState {
        members: g
            .members
            .iter()
            .map(|m| {
                let member = Member {
                    id: m.member_id,
                    address: m.address.clone(),
                    priority: m.priority,
                    last_epoch: m.last_epoch,
                    log_end: m.log_end,
                };
                (m.member_id, member)
            })
            .collect(),
        master: (g.master != 0).then_some(g.master),
        master_epoch: g.master_epoch,
        in_sync: g.in_sync.iter().copied().collect(),
        in_sync_epoch: g.in_sync_epoch,
    }
}

#[cfg(test)]
#[path = "admin_controller_tests.rs"]
mod tests;

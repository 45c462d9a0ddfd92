//! `apogee cluster rolling-restart`: the plan. Every member of the chosen broker groups
//! (controller mode) is restarted one at a time by an operator's command, group after group:
//! a group's slaves first (by member id), its master last, after a planned switch of the
//! master to an in-sync member (what `apogee broker elect <group>` does). A group is refused
//! when restarting one of its members could stop its writes or take down its last in-sync
//! copy: no master, a single member, or an in-sync set without every member.
//!
//! This module decides, from the controller's confirmed state
//! ([`crate::controller::ControllerStatusView`]), which groups and in what order; it runs
//! nothing. [`crate::rolling_restart_run`] carries the plan out.

use crate::controller::{ControllerGroupView, ControllerStatusView};
use crate::output::TableRow;
use serde::Serialize;
use std::time::Duration;

/// What `rolling-restart` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollingRestart {
    /// Run with `sh -c` once per member, with `APOGEE_GROUP`, `APOGEE_MEMBER` (the member
    /// id) and `APOGEE_ENDPOINT` (its `host:port`) set; it restarts that member's process.
    pub restart_command: String,
    /// The broker groups to restart (empty: every group the controller holds).
    pub groups: Vec<String>,
    /// The longest one member's turn may take: the switch (a master), the restart command
    /// and its return to the group's in-sync set.
    pub timeout_per_member: Duration,
}

/// What is done to one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A slave: restarted, then awaited back in the in-sync set.
    Restart,
    /// The master: the group's master is switched to an in-sync member first (and awaited
    /// as the routed master), then the old master is restarted like a slave.
    SwitchThenRestart,
}

impl Action {
    /// The action in words (the plan's ACTION column, the progress lines).
    pub fn describe(self) -> &'static str {
        match self {
            Action::Restart => "restart, wait until back in the in-sync set",
            Action::SwitchThenRestart => {
                "switch the master to an in-sync member, restart, wait until back in the \
                 in-sync set"
            }
        }
    }

    /// The role of the member it is done to, at the start of its turn.
    pub fn role(self) -> &'static str {
        match self {
            Action::Restart => "slave",
            Action::SwitchThenRestart => "master",
        }
    }
}

/// One member's turn in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedStep {
    /// Its place in the whole run, from 1.
    pub order: usize,
    pub group: String,
    pub member: u64,
    pub address: String,
    /// `master` or `slave`, at planning time.
    pub role: &'static str,
    pub action: Action,
}

impl TableRow for PlannedStep {
    fn headers() -> Vec<&'static str> {
        vec!["ORDER", "BROKER", "MEMBER", "ADDRESS", "ROLE", "ACTION"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.order.to_string(),
            self.group.clone(),
            self.member.to_string(),
            self.address.clone(),
            self.role.to_string(),
            self.action.describe().to_string(),
        ]
    }
}

/// Why a group cannot be restarted member by member now; `None` when it can: it has a
/// master, more than one member, and every member in its in-sync set.
pub fn refusal(group: &ControllerGroupView) -> Option<String> {
    let name = &group.broker;
    if group.master.is_none() {
        return Some(format!(
            "broker group {name} has no master: restarting its members now could lose what \
             they hold; wait until the controller elects one (`apogee controller status`)"
        ));
    }
    if group.members.len() < 2 {
        return Some(format!(
            "broker group {name} has a single member: restarting it stops the group's writes \
             (no in-sync member to switch to); restart it on its own"
        ));
    }
    let missing: Vec<String> = group
        .members
        .iter()
        .filter(|m| !group.in_sync.contains(&m.member_id))
        .map(|m| m.member_id.to_string())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "broker group {name}'s in-sync set is not full (member(s) {} not in sync): \
             restarting a member now could take down the last in-sync copy; wait until \
             `apogee controller status` shows every member in sync",
            missing.join(",")
        )
    })
}

/// The member whose turn is next in `group`, given the members already restarted: the
/// slave with the lowest member id not restarted yet, else the master when it was not;
/// `None` when every member had its turn.
pub fn next_member(group: &ControllerGroupView, restarted: &[u64]) -> Option<(u64, Action)> {
    let mut slaves: Vec<u64> = group
        .members
        .iter()
        .map(|m| m.member_id)
        .filter(|id| Some(*id) != group.master && !restarted.contains(id))
        .collect();
    slaves.sort_unstable();
    if let Some(slave) = slaves.first() {
        return Some((*slave, Action::Restart));
    }
    group
        .master
        .filter(|m| !restarted.contains(m))
        .map(|m| (m, Action::SwitchThenRestart))
}

/// The groups of `status` to restart, in order: those named in `wanted` (in that order,
/// repeats once), or every group by name. An error names an unknown group, a state the
/// controller's leader did not confirm, or the first group [`refusal`] refuses.
pub fn chosen_groups<'a>(
    status: &'a ControllerStatusView,
    wanted: &[String],
) -> Result<Vec<&'a ControllerGroupView>, String> {
    if status.stale {
        return Err(format!(
            "the controller's state is not confirmed by its leader ({}): a rolling restart \
             needs the committed in-sync sets",
            status
                .stale_reason
                .as_deref()
                .unwrap_or("no leader answered")
        ));
    }
    if status.groups.is_empty() {
        return Err(
            "no broker group in controller mode: nothing to restart (`apogee controller \
                    status` lists the groups the controller holds)"
                .into(),
        );
    }
    let mut groups: Vec<&ControllerGroupView> = if wanted.is_empty() {
        let mut all: Vec<&ControllerGroupView> = status.groups.iter().collect();
        all.sort_by(|a, b| a.broker.cmp(&b.broker));
        all
    } else {
        let mut named = Vec::new();
        for name in wanted {
            let group = status
                .groups
                .iter()
                .find(|g| &g.broker == name)
                .ok_or_else(|| unknown_group(status, name))?;
            named.push(group);
        }
        named
    };
    let mut seen = std::collections::HashSet::new();
    groups.retain(|g| seen.insert(g.broker.clone()));
    match groups.iter().find_map(|g| refusal(g)) {
        Some(why) => Err(why),
        None => Ok(groups),
    }
}

fn unknown_group(status: &ControllerStatusView, name: &str) -> String {
    let mut known: Vec<&str> = status.groups.iter().map(|g| g.broker.as_str()).collect();
    known.sort_unstable();
    format!(
        "the controller holds no broker group {name} (it holds: {})",
        known.join(", ")
    )
}

/// The whole run as planned from `status`: per chosen group ([`chosen_groups`]) its members
/// in turn ([`next_member`]), numbered from 1.
pub fn plan(status: &ControllerStatusView, wanted: &[String]) -> Result<Vec<PlannedStep>, String> {
    let mut steps = Vec::new();
    for group in chosen_groups(status, wanted)? {
        let mut restarted = Vec::new();
        while let Some((member, action)) = next_member(group, &restarted) {
            restarted.push(member);
            steps.push(PlannedStep {
                order: steps.len() + 1,
                group: group.broker.clone(),
                member,
                address: address_of(group, member),
                role: action.role(),
                action,
            });
        }
    }
    Ok(steps)
}

/// The address the controller holds for `member` of `group` ("" when it holds none).
pub fn address_of(group: &ControllerGroupView, member: u64) -> String {
    group
        .members
        .iter()
        .find(|m| m.member_id == member)
        .map_or_else(String::new, |m| m.address.clone())
}

#[cfg(test)]
#[path = "rolling_restart_tests.rs"]
mod tests;

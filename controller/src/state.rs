//! The replicated state machine: per broker group, its members, master, master epoch and
//! in-sync replica set, changed only by [`Command`]s (the Raft log's entries).
//!
//! Pure and deterministic: [`ControllerState::apply`] reads nothing but the state and the
//! command (no clock, no randomness, ordered maps only), so every controller that applies the
//! same log holds the same state. A command the rules refuse changes nothing and returns
//! [`CommandResult::Refused`] with the reason; a command that is applied returns what it
//! changed (the new epochs, the chosen master).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A member's id, stable for its life: the role and the epoch come from the controller, not
/// from the id.
pub type MemberId = u64;

/// The most members one broker group may have.
pub const MAX_MEMBERS_PER_GROUP: usize = 16;
/// The most broker groups the controller holds.
pub const MAX_GROUPS: usize = 4096;
/// The longest group name, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 127;
/// The longest member address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 255;
/// The election priority members get unless they ask otherwise (lower is preferred, like
/// RocketMQ's `brokerElectPriority`).
pub const DEFAULT_PRIORITY: u32 = 255;

/// One member of a broker group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    /// Where it serves (host:port).
    pub address: String,
    /// Election priority: lower is preferred, after epoch and log end.
    pub priority: u32,
    /// The highest master epoch its log holds records of, as last reported.
    pub last_epoch: u64,
    /// Its log end offset, as last reported.
    pub log_end: u64,
}

/// One broker group's replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub members: BTreeMap<MemberId, Member>,
    /// The member taking writes, if any.
    pub master: Option<MemberId>,
    /// Raised by one with every change of master; 0 until the first master.
    pub master_epoch: u64,
    /// The members holding everything the master acknowledged (the master among them).
    pub in_sync: BTreeSet<MemberId>,
    /// Raised by one with every change of `in_sync`.
    pub in_sync_epoch: u64,
}

/// What one member reports of its log when an election is asked for: the newest
/// information the controller leader has (from heartbeats), written into the log with the
/// election so every controller decides alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReport {
    pub member: MemberId,
    pub last_epoch: u64,
    pub log_end: u64,
}

/// A change to the controller's state: one Raft log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a member to a group (creating the group), or updates a known member's address and
    /// priority (its log reports are kept).
    Register {
        group: String,
        member: MemberId,
        address: String,
        priority: u32,
    },
    /// The master reports a new in-sync set. Refused unless it comes from the current master
    /// with the current master epoch and is based on the current in-sync epoch.
    ChangeInSync {
        group: String,
        master: MemberId,
        master_epoch: u64,
        in_sync_epoch: u64,
        in_sync: BTreeSet<MemberId>,
    },
    /// Elects a master among the `alive` members (see [`ControllerState::apply`] for the rule).
    Elect {
        group: String,
        /// The members the controller leader hears from; the only candidates.
        alive: BTreeSet<MemberId>,
        /// Fresh log reports, recorded before choosing.
        reports: Vec<MemberReport>,
        /// `controller.unclean_election`: a member outside the in-sync set may be chosen
        /// when no in-sync member is alive (acknowledged messages may be lost).
        allow_unclean: bool,
    },
    /// A planned switch to a named member, which must be in sync.
    ElectNamed { group: String, member: MemberId },
    /// Removes a member that is not the master.
    Remove { group: String, member: MemberId },
}

impl Command {
    /// The group the command is about.
    pub fn group(&self) -> &str {
        match self {
            Command::Register { group, .. }
            | Command::ChangeInSync { group, .. }
            | Command::Elect { group, .. }
            | Command::ElectNamed { group, .. }
            | Command::Remove { group, .. } => group,
        }
    }
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The member is registered (`added`: it was new).
    Registered { member: MemberId, added: bool },
    /// The in-sync set changed; its new epoch.
    InSyncChanged { in_sync_epoch: u64 },
    /// A new master, its epoch, and the new in-sync set's epoch (the set is the master alone
    /// until the others report having caught up). `unclean`: it was not in sync.
    Elected {
        master: MemberId,
        master_epoch: u64,
        in_sync_epoch: u64,
        unclean: bool,
    },
    /// The member is gone; the in-sync epoch after its removal.
    Removed { in_sync_epoch: u64 },
    /// A Raft entry of openraft's own (blank or membership): no command, nothing changed.
    RaftEntry,
    /// Nothing changed, because of this.
    Refused(Refusal),
}

/// Why a command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("invalid group name: {0}")]
    InvalidGroup(String),
    #[error("invalid address for member {member}: {reason}")]
    InvalidAddress { member: MemberId, reason: String },
    #[error("unknown broker group {0}")]
    UnknownGroup(String),
    #[error("member {0} is not in the group")]
    UnknownMember(MemberId),
    #[error("the group has {MAX_MEMBERS_PER_GROUP} members already (the limit)")]
    TooManyMembers,
    #[error("the controller holds {MAX_GROUPS} groups already (the limit)")]
    TooManyGroups,
    #[error("master epoch {sent} is not the current {current}")]
    StaleMasterEpoch { sent: u64, current: u64 },
    #[error("in-sync epoch {sent} is not the current {current}")]
    StaleInSyncEpoch { sent: u64, current: u64 },
    #[error("member {sent} is not the master ({current:?} is)")]
    NotMaster {
        sent: MemberId,
        current: Option<MemberId>,
    },
    #[error("an in-sync set must hold the master {0}")]
    InSyncWithoutMaster(MemberId),
    #[error("the master {0} is alive: no election")]
    MasterStillAlive(MemberId),
    #[error("no alive member is in sync (in sync: {in_sync:?}) and unclean election is off")]
    NoInSyncCandidate { in_sync: BTreeSet<MemberId> },
    #[error("no alive member to elect")]
    NoAliveMember,
    #[error("member {0} is not in sync")]
    NotInSync(MemberId),
    #[error("member {0} is the master already")]
    AlreadyMaster(MemberId),
    #[error("member {0} is the master: elect another first")]
    MemberIsMaster(MemberId),
}

/// Every broker group's state: what the controllers replicate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    pub groups: BTreeMap<String, GroupState>,
}

impl ControllerState {
    /// Applies `command`: the state changes as the result says, or not at all when refused.
    ///
    /// The election rule (`Elect`): no election while the master is alive. Candidates are
    /// the alive members of the in-sync set, ordered by the highest epoch in their log, then
    /// log end, then priority (lower first), then member id (lower first): the first wins.
    /// With no alive in-sync member, an alive member outside the set is chosen by the same
    /// order only with `allow_unclean` (and the result says `unclean`). A group that never had
    /// a master (epoch 0) acknowledged nothing yet, so its first election chooses among every
    /// alive member and is clean. A new master raises the master epoch by one; its in-sync set
    /// becomes the master alone, with the in-sync epoch raised by one.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        match self.try_apply(command) {
            Ok(result) => result,
            Err(refusal) => CommandResult::Refused(refusal),
        }
    }

    /// One group's state.
    pub fn group(&self, name: &str) -> Option<&GroupState> {
        self.groups.get(name)
    }

    fn try_apply(&mut self, command: &Command) -> Result<CommandResult, Refusal> {
        match command {
            Command::Register {
                group,
                member,
                address,
                priority,
            } => self.register(group, *member, address, *priority),
            Command::ChangeInSync {
                group,
                master,
                master_epoch,
                in_sync_epoch,
                in_sync,
            } => self.group_mut(group)?.change_in_sync(
                *master,
                *master_epoch,
                *in_sync_epoch,
                in_sync,
            ),
            Command::Elect {
                group,
                alive,
                reports,
                allow_unclean,
            } => self.group_mut(group)?.elect(alive, reports, *allow_unclean),
            Command::ElectNamed { group, member } => self.group_mut(group)?.elect_named(*member),
            Command::Remove { group, member } => self.group_mut(group)?.remove(*member),
        }
    }

    fn group_mut(&mut self, name: &str) -> Result<&mut GroupState, Refusal> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| Refusal::UnknownGroup(name.to_string()))
    }

    fn register(
        &mut self,
        group: &str,
        member: MemberId,
        address: &str,
        priority: u32,
    ) -> Result<CommandResult, Refusal> {
        validate_group_name(group)?;
        validate_address(address).map_err(|reason| Refusal::InvalidAddress { member, reason })?;
        if !self.groups.contains_key(group) && self.groups.len() >= MAX_GROUPS {
            return Err(Refusal::TooManyGroups);
        }
        let state = self.groups.entry(group.to_string()).or_default();
        if let Some(known) = state.members.get_mut(&member) {
            known.address = address.to_string();
            known.priority = priority;
            return Ok(CommandResult::Registered {
                member,
                added: false,
            });
        }
        if state.members.len() >= MAX_MEMBERS_PER_GROUP {
            // A group made by this very command has no members, so it is never left empty.
            return Err(Refusal::TooManyMembers);
        }
        state.members.insert(
            member,
            Member {
                id: member,
                address: address.to_string(),
                priority,
                last_epoch: 0,
                log_end: 0,
            },
        );
        Ok(CommandResult::Registered {
            member,
            added: true,
        })
    }
}

impl GroupState {
    fn change_in_sync(
        &mut self,
        master: MemberId,
        master_epoch: u64,
        in_sync_epoch: u64,
        in_sync: &BTreeSet<MemberId>,
    ) -> Result<CommandResult, Refusal> {
        if master_epoch != self.master_epoch {
            return Err(Refusal::StaleMasterEpoch {
                sent: master_epoch,
                current: self.master_epoch,
            });
        }
        if self.master != Some(master) {
            return Err(Refusal::NotMaster {
                sent: master,
                current: self.master,
            });
        }
        if in_sync_epoch != self.in_sync_epoch {
            return Err(Refusal::StaleInSyncEpoch {
                sent: in_sync_epoch,
                current: self.in_sync_epoch,
            });
        }
        if !in_sync.contains(&master) {
            return Err(Refusal::InSyncWithoutMaster(master));
        }
        if let Some(unknown) = in_sync.iter().find(|m| !self.members.contains_key(m)) {
            return Err(Refusal::UnknownMember(*unknown));
        }
        self.in_sync = in_sync.clone();
        self.in_sync_epoch += 1;
        Ok(CommandResult::InSyncChanged {
            in_sync_epoch: self.in_sync_epoch,
        })
    }

    fn elect(
        &mut self,
        alive: &BTreeSet<MemberId>,
        reports: &[MemberReport],
        allow_unclean: bool,
    ) -> Result<CommandResult, Refusal> {
        if let Some(master) = self.master.filter(|m| alive.contains(m)) {
            return Err(Refusal::MasterStillAlive(master));
        }
        if let Some(unknown) = reports
            .iter()
            .find(|r| !self.members.contains_key(&r.member))
        {
            return Err(Refusal::UnknownMember(unknown.member));
        }
        for report in reports {
            if let Some(member) = self.members.get_mut(&report.member) {
                member.last_epoch = report.last_epoch;
                member.log_end = report.log_end;
            }
        }
        let alive_members = || self.members.values().filter(|m| alive.contains(&m.id));
        let never_had_master = self.master_epoch == 0;
        let clean = best_candidate(
            alive_members().filter(|m| never_had_master || self.in_sync.contains(&m.id)),
        );
        let (chosen, unclean) = match clean {
            Some(id) => (id, false),
            None if allow_unclean => match best_candidate(alive_members()) {
                Some(id) => (id, true),
                None => return Err(Refusal::NoAliveMember),
            },
            None if alive_members().next().is_none() => return Err(Refusal::NoAliveMember),
            None => {
                return Err(Refusal::NoInSyncCandidate {
                    in_sync: self.in_sync.clone(),
                })
            }
        };
        Ok(self.install_master(chosen, unclean))
    }

    fn elect_named(&mut self, member: MemberId) -> Result<CommandResult, Refusal> {
        if !self.members.contains_key(&member) {
            return Err(Refusal::UnknownMember(member));
        }
        if self.master == Some(member) {
            return Err(Refusal::AlreadyMaster(member));
        }
        if !self.in_sync.contains(&member) {
            return Err(Refusal::NotInSync(member));
        }
        Ok(self.install_master(member, false))
    }

    fn install_master(&mut self, master: MemberId, unclean: bool) -> CommandResult {
        self.master = Some(master);
        self.master_epoch += 1;
        self.in_sync = BTreeSet::from([master]);
        self.in_sync_epoch += 1;
        CommandResult::Elected {
            master,
            master_epoch: self.master_epoch,
            in_sync_epoch: self.in_sync_epoch,
            unclean,
        }
    }

    fn remove(&mut self, member: MemberId) -> Result<CommandResult, Refusal> {
        if !self.members.contains_key(&member) {
            return Err(Refusal::UnknownMember(member));
        }
        if self.master == Some(member) {
            return Err(Refusal::MemberIsMaster(member));
        }
        self.members.remove(&member);
        if self.in_sync.remove(&member) {
            self.in_sync_epoch += 1;
        }
        Ok(CommandResult::Removed {
            in_sync_epoch: self.in_sync_epoch,
        })
    }
}

/// The first of `candidates` in election order: highest epoch, then highest log end, then
/// lowest priority value, then lowest member id.
fn best_candidate<'a>(candidates: impl Iterator<Item = &'a Member>) -> Option<MemberId> {
    candidates
        .min_by(|a, b| {
            b.last_epoch
                .cmp(&a.last_epoch)
                .then(b.log_end.cmp(&a.log_end))
                .then(a.priority.cmp(&b.priority))
                .then(a.id.cmp(&b.id))
        })
        .map(|m| m.id)
}

fn validate_group_name(name: &str) -> Result<(), Refusal> {
    let bad = |why: &str| Err(Refusal::InvalidGroup(format!("{name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_GROUP_NAME_BYTES {
        return bad(&format!("longer than {MAX_GROUP_NAME_BYTES} bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return bad("whitespace, control characters and '/' are not allowed");
    }
    Ok(())
}

fn validate_address(address: &str) -> Result<(), String> {
    if address.len() > MAX_ADDRESS_BYTES {
        return Err(format!("longer than {MAX_ADDRESS_BYTES} bytes"));
    }
    apogee_proto::names::parse_host_port(address).map(|_| ())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

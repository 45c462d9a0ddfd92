//! The controller leader's side of failover: who it hears from, the leases it grants, and
//! when it elects a new master. Leader-local (nothing here is replicated; the decisions
//! enter the Raft log as the [`Command`]s this module returns) and pure: time is passed in,
//! so every rule is tested without a clock.
//!
//! - Liveness ([`crate::liveness`]): per broker group and member, its last [`MemberReport`]
//!   and, per NameServer it beats through, the instant of its last beat there and how that
//!   session ended ([`Failover::member_gone`]). A member is alive while one of its sessions
//!   that beat within `member_timeout` is open.
//! - Beats ([`Failover::on_beat`]): a member unknown to the state, or whose address or
//!   priority changed, is registered; the master's report of a differing in-sync set, made
//!   on the current master epoch and in-sync epoch, is proposed as a `ChangeInSync`.
//! - Answers ([`Failover::assignment`]): the group's committed assignment, with a lease to
//!   the member that is the master in the state, recorded as a grant. A lease is granted
//!   only on a [`GrantTicket`] taken before the state was read linearizably and still valid
//!   at the grant: no election of the group was started, pending or of unknown outcome in
//!   between, and the leader's term did not change. So a master is never granted a lease on
//!   a state an election is about to replace.
//! - Elections ([`Failover::elections`]): a group whose master is not alive gets an `Elect`
//!   with the alive members and their last reports, but only once `lease + lease_margin`
//!   passed since the last grant to that master AND since this node became leader (a new
//!   leader does not know its predecessor's grants, so it waits out a full lease). A group
//!   without a master has no lease outstanding: its first election comes at once. A master
//!   whose process was seen to exit is replaced at once too (see "A master that exited"). One
//!   election per group is in flight at a time; one refused is not asked again while the
//!   facts it was refused on (epochs, alive set) are unchanged.
//! - Handovers: a master that reports it stepped down from its epoch (a planned handover:
//!   SIGTERM, or an operator's switch) holds no lease and takes none of that epoch again, so
//!   it is replaced at once, by another alive member: no lease is waited out. An operator's
//!   switch ([`Failover::begin_planned_election`]) asks the master, in the answers to its
//!   beats, to hand over to the member named, and is written as soon as it stepped down.
//!
//! - Beat cadence: the answers ask the master and every member of the committed in-sync set
//!   to beat [`BEATS_PER_LEASE`] times per lease: the master so that one late answer leaves its
//!   lease running, the in-sync members so that the one elected hears of it within one beat.
//!
//! Why the timing is safe: the broker counts its lease from the instant it SENT the beat
//! the lease answers, which precedes the grant recorded here; the grant follows a quorum's
//! confirmation that this node still leads, so no other leader existed when it was made;
//! and an election waits `lease + lease_margin` past the last grant (the margin covers
//! clock-rate differences and the delay between the confirmation and the grant). When the
//! replacement is elected, every lease the old master held has run out.
//!
//! A master that exited: when every session the master beat through within `member_timeout`
//! was closed from the master's side (its stream ended or its connection broke, which is
//! what the kernel does to the sockets of a process that exits or is killed), and its last
//! report says it acknowledges a send only once every member of the committed in-sync set
//! holds it (`acks_need_every_in_sync`), the election comes at once, among the alive
//! members of that set. No lease is waited out because none is needed for what was
//! acknowledged: an in-sync member holds every send the old master acknowledged, and were the
//! old master still running (a connection reset by the network, not an exit), it could
//! acknowledge nothing the elected member does not hold: that member stops taking its records
//! when it hears of the election, and a smaller in-sync set needs a `ChangeInSync` on the old
//! epoch, which the state refuses. A session that went silent, or a NameServer that stopped,
//! proves nothing: those wait out the lease, as does a master acknowledging on fewer members
//! (`min_in_sync`), which could acknowledge sends the elected member lacks.

use crate::liveness::Liveness;
pub use crate::liveness::{NameServerId, SessionEnd, MAX_SESSIONS_PER_MEMBER};
use crate::state::{
    Command, CommandResult, ControllerState, GroupState, MemberId, Refusal, MAX_GROUPS,
    MAX_MEMBERS_PER_GROUP,
};
use crate::types::NodeId;
use apogee_proto::cluster::{Assignment, MemberReport};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The failover timings (from `ControllerConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverTimings {
    /// The lease granted to a master.
    pub lease: Duration,
    /// Waited past a lease before a replacement is elected.
    pub lease_margin: Duration,
    /// A member that has not beat for this long is not alive.
    pub member_timeout: Duration,
}

impl FailoverTimings {
    /// How long after a grant (or becoming leader) an election may replace a master.
    pub fn election_wait(&self) -> Duration {
        self.lease + self.lease_margin
    }
}

/// Beats per lease the controller asks a master, and the in-sync members that may succeed
/// it, for (the answers' `beat_ms`): one late or lost answer then still leaves the master's
/// lease running until the next, a change of controller leader (which the controller's
/// settings keep within three quarters of the lease) is bridged by the first beat the new
/// leader answers, and an elected member hears of it within an eighth of a lease.
pub const BEATS_PER_LEASE: u32 = 8;

/// One beat of a member, as the NameServer passes it on.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberBeat {
    /// The broker group (its broker name).
    pub group: String,
    /// The member's id (>= 1).
    pub member: MemberId,
    /// Where it serves (host:port).
    pub address: String,
    pub report: MemberReport,
    /// The NameServer it came through.
    pub via: NameServerId,
}

/// What lets [`Failover::assignment`] grant a lease: taken before the state is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTicket {
    term: Option<u64>,
    generation: u64,
    blocked: bool,
}

/// The last election a group had while this node led.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionRecord {
    pub at: Instant,
    pub old_master: Option<MemberId>,
    pub master: MemberId,
    pub master_epoch: u64,
    pub unclean: bool,
    pub alive: BTreeSet<MemberId>,
}

/// One group as [`Failover::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFailoverStatus {
    pub group: String,
    /// The master in the state (none: no master yet).
    pub master: Option<MemberId>,
    pub master_epoch: u64,
    pub in_sync: BTreeSet<MemberId>,
    pub in_sync_epoch: u64,
    /// The members this node hears from (beat within the timeout, session open).
    pub alive: BTreeSet<MemberId>,
    /// The last election this node made for the group while leading, and how long ago.
    pub last_election: Option<(Duration, ElectionRecord)>,
    /// How long ago the current master was last granted a lease by this node.
    pub last_grant_age: Option<Duration>,
}

/// What the failover logic knows, per group of the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverStatus {
    /// Whether this node leads (only a leader grants leases and elects).
    pub leading: bool,
    /// How long ago it became leader.
    pub leading_for: Option<Duration>,
    pub groups: Vec<GroupFailoverStatus>,
}

/// The facts an election was decided on: one refused is not asked again on the same facts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ElectionFacts {
    master_epoch: u64,
    in_sync_epoch: u64,
    alive: BTreeSet<MemberId>,
    allow_unclean: bool,
}

#[derive(Clone, Debug)]
struct PendingElection {
    facts: ElectionFacts,
    old_master: Option<MemberId>,
}

#[derive(Clone, Debug, Default)]
struct GroupTable {
    members: BTreeMap<MemberId, Liveness>,
    /// The last lease grant to each member (while it was the master).
    grants: BTreeMap<MemberId, Instant>,
    /// Raised by every election started: a ticket of an older generation grants nothing.
    generation: u64,
    pending: Option<PendingElection>,
    /// The member a planned election under way switches to: the master is asked to hand
    /// its role over to it.
    hand_over_to: Option<MemberId>,
    /// An election whose outcome is unknown (the write failed) may still commit: no lease
    /// is granted until then.
    no_grant_until: Option<Instant>,
    refused: Option<ElectionFacts>,
    /// The master epoch whose NoInSyncCandidate refusal was logged at WARN.
    warned_epoch: Option<u64>,
    last_election: Option<ElectionRecord>,
}

#[derive(Clone, Copy, Debug)]
struct Leadership {
    term: u64,
    since: Instant,
}

/// The leader-local failover table.
#[derive(Debug)]
pub struct Failover {
    timings: FailoverTimings,
    groups: BTreeMap<String, GroupTable>,
    leader: Option<Leadership>,
}

impl Failover {
    pub fn new(timings: FailoverTimings) -> Self {
        Failover {
            timings,
            groups: BTreeMap::new(),
            leader: None,
        }
    }

    pub fn timings(&self) -> FailoverTimings {
        self.timings
    }

    /// Tells the table whether this node leads (`Some(term)`) or not. A new term starts a
    /// new leadership: its instant is `now` and no grant of before counts; losing
    /// leadership forgets the grants.
    pub fn observe_leadership(&mut self, leading_term: Option<u64>, now: Instant) {
        match (leading_term, self.leader) {
            (Some(term), Some(current)) if current.term == term => {}
            (Some(term), _) => {
                self.leader = Some(Leadership { term, since: now });
                self.clear_grants();
            }
            (None, Some(_)) => {
                self.leader = None;
                self.clear_grants();
            }
            (None, None) => {}
        }
    }

    fn clear_grants(&mut self) {
        for table in self.groups.values_mut() {
            table.grants.clear();
        }
    }

    /// Whether this node leads, as last observed.
    pub fn leading(&self) -> bool {
        self.leader.is_some()
    }

    /// Records a member's beat; returns the commands to write before answering it:
    /// `Register` when the state does not know the member or knows another address or
    /// priority, `ChangeInSync` when the state's master reports, on the state's master
    /// epoch and in-sync epoch, an in-sync set (of members of the group, itself among them)
    /// other than the committed one. A beat beyond the table's limits (groups, members per
    /// group) is not recorded.
    pub fn on_beat(
        &mut self,
        state: &ControllerState,
        beat: &MemberBeat,
        now: Instant,
    ) -> Vec<Command> {
        if !self.groups.contains_key(&beat.group) && self.groups.len() >= MAX_GROUPS {
            return Vec::new();
        }
        let group_state = state.group(&beat.group);
        let table = self.groups.entry(beat.group.clone()).or_default();
        if !table.members.contains_key(&beat.member) && table.members.len() >= MAX_MEMBERS_PER_GROUP
        {
            // Room is made by forgetting members the state does not hold that are not alive.
            let timeout = self.timings.member_timeout;
            table.members.retain(|id, l| {
                group_state.is_some_and(|g| g.members.contains_key(id)) || l.alive(now, timeout)
            });
            if table.members.len() >= MAX_MEMBERS_PER_GROUP {
                return Vec::new();
            }
        }
        let timeout = self.timings.member_timeout;
        let liveness = table
            .members
            .entry(beat.member)
            .or_insert_with(|| Liveness::new(beat.report.clone()));
        liveness.report = beat.report.clone();
        liveness.beat_through(beat.via, now, timeout);
        let mut commands = Vec::new();
        let known = group_state.and_then(|g| g.members.get(&beat.member));
        if known.is_none_or(|m| m.address != beat.address || m.priority != beat.report.priority) {
            commands.push(Command::Register {
                group: beat.group.clone(),
                member: beat.member,
                address: beat.address.clone(),
                priority: beat.report.priority,
            });
        }
        if let Some(change) = group_state.and_then(|g| in_sync_change(&beat.group, g, beat)) {
            commands.push(change);
        }
        commands
    }

    /// The member's session with the NameServer `via` ended, as `end` says: that session
    /// keeps it alive no more (a beat through it opens it again).
    pub fn member_gone(
        &mut self,
        group: &str,
        member: MemberId,
        via: NameServerId,
        end: SessionEnd,
    ) {
        if let Some(liveness) = self
            .groups
            .get_mut(group)
            .and_then(|t| t.members.get_mut(&member))
        {
            liveness.session_ended(via, end);
        }
    }

    /// Taken before the state an answer is built from is read linearizably; see
    /// [`Failover::assignment`].
    pub fn grant_ticket(&self, group: &str, now: Instant) -> GrantTicket {
        let table = self.groups.get(group);
        GrantTicket {
            term: self.leader.map(|l| l.term),
            generation: table.map_or(0, |t| t.generation),
            blocked: table.is_some_and(|t| {
                t.pending.is_some() || t.no_grant_until.is_some_and(|until| now < until)
            }),
        }
    }

    /// The assignment answering `member`'s beat, from `state` (read linearizably after
    /// `ticket` was taken): the group's master and its address, the epochs and the
    /// committed in-sync set, and the leader's id. The member that is the master gets a
    /// lease, recorded as a grant at `now`, when this node leads in the ticket's term and no
    /// election of the group started since the ticket (or was pending or unresolved then).
    pub fn assignment(
        &mut self,
        state: &ControllerState,
        group: &str,
        member: MemberId,
        ticket: GrantTicket,
        leader: NodeId,
        now: Instant,
    ) -> Assignment {
        let Some(group_state) = state.group(group) else {
            return Assignment {
                controller_leader: leader,
                ..Assignment::default()
            };
        };
        let master = group_state.master;
        let beats = master == Some(member) || group_state.in_sync.contains(&member);
        let mut assignment = Assignment {
            master_member: master.unwrap_or(0),
            master_endpoint: master
                .and_then(|m| group_state.members.get(&m))
                .map(|m| m.address.clone())
                .unwrap_or_default(),
            master_epoch: group_state.master_epoch,
            in_sync: group_state.in_sync.iter().copied().collect(),
            in_sync_epoch: group_state.in_sync_epoch,
            lease_ms: 0,
            controller_leader: leader,
            hand_over_to: 0,
            beat_ms: if beats {
                (self.timings.lease / BEATS_PER_LEASE).as_millis() as u64
            } else {
                0
            },
        };
        if master == Some(member) {
            assignment.hand_over_to = self
                .groups
                .get(group)
                .and_then(|t| t.hand_over_to)
                .unwrap_or(0);
        }
        if master == Some(member) && self.grant_allowed(group, ticket) {
            if let Some(table) = self.groups.get_mut(group) {
                table.grants.insert(member, now);
                assignment.lease_ms = self.timings.lease.as_millis() as u64;
            }
        }
        assignment
    }

    fn grant_allowed(&self, group: &str, ticket: GrantTicket) -> bool {
        let Some(leader) = self.leader else {
            return false;
        };
        let generation = self.groups.get(group).map_or(0, |t| t.generation);
        ticket.term == Some(leader.term) && !ticket.blocked && ticket.generation == generation
    }

    /// The elections to write now, one per group that needs one (see the module doc): only
    /// while leading.
    pub fn elections(
        &mut self,
        state: &ControllerState,
        now: Instant,
        allow_unclean: bool,
    ) -> Vec<Command> {
        let names: Vec<&String> = state
            .groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(name, _)| name)
            .collect();
        names
            .into_iter()
            .filter_map(|name| self.election_for(state, name, now, allow_unclean))
            .collect()
    }

    /// The election of one group, if it needs one now; marked in flight until
    /// [`Failover::election_written`] reports its outcome.
    pub fn election_for(
        &mut self,
        state: &ControllerState,
        group: &str,
        now: Instant,
        allow_unclean: bool,
    ) -> Option<Command> {
        let leader = self.leader?;
        let group_state = state.group(group)?;
        let timings = self.timings;
        let table = self.groups.get_mut(group)?;
        if table.pending.is_some() {
            return None;
        }
        let mut alive = table.alive(group_state, now, timings.member_timeout);
        let stepped_down = group_state
            .master
            .filter(|m| table.stepped_down(*m, group_state));
        if let Some(master) = stepped_down {
            // It holds no lease: replaced at once, by another member.
            alive.remove(&master);
        } else if let Some(master) = group_state.master {
            if alive.contains(&master) {
                return None;
            }
            let exited = table.exited_acknowledging_on_every_in_sync(
                master,
                group_state,
                now,
                timings.member_timeout,
            );
            let successor = alive.iter().any(|m| group_state.in_sync.contains(m));
            if exited && successor {
                // It exited, and what it acknowledged is on every in-sync member: no lease
                // is waited out (see the module doc).
                tracing::info!(
                    group,
                    master,
                    "the master's process exited: electing at once"
                );
            } else {
                let wait = timings.election_wait();
                if now < leader.since + wait {
                    return None;
                }
                if table.grants.get(&master).is_some_and(|g| now < *g + wait) {
                    return None;
                }
            }
        }
        if alive.is_empty() {
            return None;
        }
        let facts = ElectionFacts {
            master_epoch: group_state.master_epoch,
            in_sync_epoch: group_state.in_sync_epoch,
            alive: alive.clone(),
            allow_unclean,
        };
        if table.refused.as_ref() == Some(&facts) {
            return None;
        }
        let reports = alive
            .iter()
            .map(|id| {
                let report = &table.members[id].report;
                crate::state::MemberReport {
                    member: *id,
                    last_epoch: report.last_log_epoch,
                    log_end: report.log_end,
                }
            })
            .collect();
        table.generation += 1;
        table.pending = Some(PendingElection {
            facts,
            old_master: group_state.master,
        });
        Some(Command::Elect {
            group: group.to_string(),
            alive,
            reports,
            allow_unclean,
        })
    }

    /// Starts a planned election of `group` (an operator's switch to a named member): from
    /// now no lease is granted in the group until its outcome is reported with
    /// [`Failover::election_written`]. `None` when this node does not lead or an election
    /// of the group is in flight.
    pub fn begin_planned_election(
        &mut self,
        state: &ControllerState,
        group: &str,
        target: MemberId,
    ) -> Option<()> {
        self.leader?;
        let group_state = state.group(group)?;
        let table = self.groups.entry(group.to_string()).or_default();
        if table.pending.is_some() {
            return None;
        }
        table.generation += 1;
        table.hand_over_to = Some(target);
        table.pending = Some(PendingElection {
            facts: ElectionFacts {
                master_epoch: group_state.master_epoch,
                in_sync_epoch: group_state.in_sync_epoch,
                alive: BTreeSet::new(),
                allow_unclean: false,
            },
            old_master: group_state.master,
        });
        Some(())
    }

    /// When a planned election of `group` may be written: at once when its master (in
    /// `state`) stepped down, else once every lease it may hold has run out, a lease +
    /// margin after the last grant to it and after this node became leader. `None` when
    /// this node does not lead.
    pub fn planned_election_ready_at(
        &self,
        state: &ControllerState,
        group: &str,
        now: Instant,
    ) -> Option<Instant> {
        let leader = self.leader?;
        let wait = self.timings.election_wait();
        let group_state = state.group(group);
        let master = group_state.and_then(|g| g.master);
        let table = self.groups.get(group);
        if let (Some(m), Some(g), Some(t)) = (master, group_state, table) {
            if t.stepped_down(m, g) {
                return Some(now);
            }
        }
        let last_grant = master.and_then(|m| table?.grants.get(&m).copied());
        let mut ready = now.max(leader.since + wait);
        if let Some(grant) = last_grant {
            ready = ready.max(grant + wait);
        }
        Some(ready)
    }

    /// The outcome of an election [`Failover::election_for`] returned: its result, or
    /// `None` when the write failed (it may still commit: no lease is granted in the group
    /// for a lease + margin, and it is asked again at the next tick). Logs an election at
    /// WARN, and a refusal for want of an in-sync candidate at WARN once per master epoch.
    pub fn election_written(&mut self, group: &str, result: Option<&CommandResult>, now: Instant) {
        let wait = self.timings.election_wait();
        let Some(table) = self.groups.get_mut(group) else {
            return;
        };
        let Some(pending) = table.pending.take() else {
            return;
        };
        table.hand_over_to = None;
        let facts = pending.facts;
        match result {
            None => table.no_grant_until = Some(now + wait),
            Some(CommandResult::Elected {
                master,
                master_epoch,
                unclean,
                ..
            }) => {
                tracing::warn!(
                    group,
                    old_master = ?pending.old_master,
                    new_master = master,
                    master_epoch,
                    unclean,
                    alive = ?facts.alive,
                    "broker group {group}: member {master} elected master of epoch {master_epoch}"
                );
                table.last_election = Some(ElectionRecord {
                    at: now,
                    old_master: pending.old_master,
                    master: *master,
                    master_epoch: *master_epoch,
                    unclean: *unclean,
                    alive: facts.alive,
                });
                table.refused = None;
            }
            Some(CommandResult::Refused(refusal @ Refusal::NoInSyncCandidate { .. })) => {
                if table.warned_epoch != Some(facts.master_epoch) {
                    table.warned_epoch = Some(facts.master_epoch);
                    tracing::warn!(
                        group,
                        old_master = ?pending.old_master,
                        master_epoch = facts.master_epoch,
                        alive = ?facts.alive,
                        "broker group {group} has no serving master: {refusal}"
                    );
                } else {
                    tracing::debug!(group, alive = ?facts.alive, "election refused: {refusal}");
                }
                table.refused = Some(facts);
            }
            Some(other) => {
                tracing::debug!(group, alive = ?facts.alive, "election not made: {other:?}");
                table.refused = Some(facts);
            }
        }
    }

    /// Per group of `state`: its assignment and what this node knows of it.
    pub fn status(&self, state: &ControllerState, now: Instant) -> FailoverStatus {
        let groups = state
            .groups
            .iter()
            .map(|(name, g)| {
                let table = self.groups.get(name);
                GroupFailoverStatus {
                    group: name.clone(),
                    master: g.master,
                    master_epoch: g.master_epoch,
                    in_sync: g.in_sync.clone(),
                    in_sync_epoch: g.in_sync_epoch,
                    alive: table.map_or_else(BTreeSet::new, |t| {
                        t.alive(g, now, self.timings.member_timeout)
                    }),
                    last_election: table
                        .and_then(|t| t.last_election.clone())
                        .map(|e| (now.saturating_duration_since(e.at), e)),
                    last_grant_age: table
                        .zip(g.master)
                        .and_then(|(t, m)| t.grants.get(&m))
                        .map(|at| now.saturating_duration_since(*at)),
                }
            })
            .collect();
        FailoverStatus {
            leading: self.leader.is_some(),
            leading_for: self.leader.map(|l| now.saturating_duration_since(l.since)),
            groups,
        }
    }
}

impl GroupTable {
    /// Whether `master`'s last beat says it stepped down from the group's current master
    /// epoch (it holds no lease of it and takes none again).
    fn stepped_down(&self, master: MemberId, group: &GroupState) -> bool {
        self.members
            .get(&master)
            .is_some_and(|l| l.report.stepped_down && l.report.master_epoch == group.master_epoch)
    }

    /// Whether `master`, the master of `group`'s current epoch as its last report says,
    /// exited while acknowledging only what every in-sync member holds (see the module doc).
    fn exited_acknowledging_on_every_in_sync(
        &self,
        master: MemberId,
        group: &GroupState,
        now: Instant,
        timeout: Duration,
    ) -> bool {
        self.members.get(&master).is_some_and(|l| {
            l.report.is_master
                && l.report.acks_need_every_in_sync
                && l.report.master_epoch == group.master_epoch
                && l.exited(now, timeout)
        })
    }

    /// The members of `group` that are alive.
    fn alive(&self, group: &GroupState, now: Instant, timeout: Duration) -> BTreeSet<MemberId> {
        self.members
            .iter()
            .filter(|(id, l)| group.members.contains_key(id) && l.alive(now, timeout))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// The `ChangeInSync` a master's beat asks for, if any.
fn in_sync_change(name: &str, group: &GroupState, beat: &MemberBeat) -> Option<Command> {
    let report = &beat.report;
    if group.master != Some(beat.member)
        || !report.is_master
        || report.stepped_down
        || report.master_epoch != group.master_epoch
        || report.in_sync_epoch != group.in_sync_epoch
    {
        return None;
    }
    let proposed: BTreeSet<MemberId> = report
        .in_sync
        .iter()
        .copied()
        .filter(|m| group.members.contains_key(m))
        .collect();
    if !proposed.contains(&beat.member) || proposed == group.in_sync {
        return None;
    }
    Some(Command::ChangeInSync {
        group: name.to_string(),
        master: beat.member,
        master_epoch: group.master_epoch,
        in_sync_epoch: group.in_sync_epoch,
        in_sync: proposed,
    })
}

#[cfg(test)]
#[path = "failover_tests.rs"]
mod tests;

//! Controller mode in the broker table: identity apart from role. A member registered with
//! `controller_mode` keeps its member id (>= 1) as its key for life; its role and master
//! epoch are the ones the controller assigned. The rules:
//!
//! - The group's master is the live member recorded as a master with the highest master
//!   epoch (ties: the lowest member id).
//! - The NameServer remembers the highest master epoch registered for each group (by any
//!   member: a slave follows the epoch of the master it was assigned). A master
//!   registration of a lower epoch is recorded as a slave: it never replaces the newer
//!   master, and a WARN names it once per member and epoch. A master registration that
//!   raises the epoch records the older masters still in the table as slaves.
//! - A registration of the same member replaces its older one (its epoch with it).
//! - Routes and cluster info present the master as broker id 0 and the others under their
//!   member id; `BrokerMember.member_id` and `.master_epoch` always say the truth. A group
//!   without a live master presents no broker id 0, so its routes carry no writable queue.
//!
//! A group takes members of one mode only while any of them is live: a controller-mode
//! member beside a live static one (or the reverse) is refused, since both would claim the
//! presented id 0.

use super::{GroupKey, Member, Registry};
use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest};
use apogee_proto::ApogeeError;
use std::time::Instant;

/// A controller-mode member id is 1 or more.
pub(crate) fn check_member_id(broker_id: i64) -> Result<(), ApogeeError> {
    if broker_id < 1 {
        return Err(ApogeeError::BadRequest(format!(
            "broker_id {broker_id}: in controller mode broker_id is the member id, and member \
             ids start at 1"
        )));
    }
    Ok(())
}

fn is_master_role(role: BrokerRole) -> bool {
    matches!(role, BrokerRole::AsyncMaster | BrokerRole::SyncMaster)
}

impl Registry {
    /// Refuses a registration whose mode differs from the group's live members'.
    pub(super) fn check_one_mode(
        &self,
        key: &GroupKey,
        group: &super::Group,
        req: &RegisterBrokerRequest,
        now: Instant,
    ) -> Result<(), ApogeeError> {
        let other = group.members.iter().find(|(id, m)| {
            **id != req.broker_id
                && m.controller_mode != req.controller_mode
                && self.is_live(m, now)
        });
        let Some((id, m)) = other else {
            return Ok(());
        };
        let mode = |controller: bool| {
            if controller {
                "controller mode"
            } else {
                "static mode (controller_mode off)"
            }
        };
        Err(ApogeeError::PreconditionFailed(format!(
            "broker {key} id {} registers in {}, but member {id} at {} is live in {}: a \
             group runs in one mode",
            req.broker_id,
            mode(req.controller_mode),
            m.endpoint,
            mode(m.controller_mode)
        )))
    }

    /// Applies the epoch rules to `member` (member `id`, about to be recorded in `group`):
    /// raises the group's highest epoch, records a stale master as a slave, and records as
    /// slaves the older masters a newer epoch replaces.
    pub(super) fn record_epoch(
        &self,
        key: &GroupKey,
        group: &mut super::Group,
        id: i64,
        member: &mut Member,
    ) {
        let mut epochs = self.master_epochs.lock();
        let highest = epochs.entry(key.clone()).or_insert(0);
        if is_master_role(member.role) && member.master_epoch < *highest {
            warn_stale(key, id, member, *highest);
            member.role = BrokerRole::Slave;
            return;
        }
        if member.master_epoch <= *highest {
            return;
        }
        *highest = member.master_epoch;
        let newest = *highest;
        for (other_id, other) in group.members.iter_mut() {
            if *other_id != id && is_master_role(other.role) && other.master_epoch < newest {
                warn_stale(key, *other_id, other, newest);
                other.role = BrokerRole::Slave;
            }
        }
    }

    /// The key of the group's master: in controller mode the live member recorded as a
    /// master with the highest epoch (then the lowest id), in static mode a live id 0.
    pub(super) fn master_key(&self, group: &super::Group, now: Instant) -> Option<i64> {
        let live = || group.members.iter().filter(|(_, m)| self.is_live(m, now));
        if !live().any(|(_, m)| m.controller_mode) {
            return live().find(|(id, _)| **id == 0).map(|(id, _)| *id);
        }
        live()
            .filter(|(_, m)| m.controller_mode && is_master_role(m.role))
            .min_by(|(a_id, a), (b_id, b)| b.master_epoch.cmp(&a.master_epoch).then(a_id.cmp(b_id)))
            .map(|(id, _)| *id)
    }

    /// The highest master epoch registered for a group (0: none in controller mode).
    pub fn highest_master_epoch(&self, group: &GroupKey) -> u64 {
        self.master_epochs.lock().get(group).copied().unwrap_or(0)
    }
}

/// The broker id a member is presented under: 0 for the master, else its key.
pub(super) fn presented_id(key: i64, master: Option<i64>) -> i64 {
    if master == Some(key) {
        0
    } else {
        key
    }
}

/// Logs, once per member and epoch, that a master of an older epoch is recorded as a slave.
fn warn_stale(key: &GroupKey, id: i64, member: &mut Member, newest: u64) {
    if member.stale_warned == Some(member.master_epoch) {
        tracing::debug!(broker = %key, member = id, epoch = member.master_epoch, newest,
            "master registration of an older epoch recorded as a slave again");
        return;
    }
    member.stale_warned = Some(member.master_epoch);
    tracing::warn!(
        broker = %key,
        member = id,
        endpoint = %member.endpoint,
        epoch = member.master_epoch,
        newest,
        "a master of master epoch {} is recorded as a slave: the group's newest master epoch is \
         {newest}",
        member.master_epoch
    );
}

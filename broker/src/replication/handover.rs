//! A master's planned handover of its role (controller mode): at SIGTERM, so a rolling
//! restart or an upgrade costs no failed call, and when an operator's switch (`apogee broker
//! elect`) asks for it in the controller's answer to a beat.
//!
//! 1. Sends and the other calls only the master answers are held back
//!    ([`Membership::set_handing_over`]): they wait, they do not fail.
//! 2. The sends admitted before that are answered, and the successor (the member named, or
//!    every connected member of the committed in-sync set) catches up with this log's end,
//!    so nothing this master stored is left behind, acknowledged or not.
//! 3. The master steps down ([`Membership::step_down`]): its lease ends, its next beat (sent
//!    at once) says so, and the controller elects the successor without waiting for a lease
//!    to run out.
//! 4. The controller's answer makes this member a slave of the new master; once its
//!    replication link (and so its pass-through to the new master, `grpc::forward`) is up,
//!    the held calls go on: gRPC calls are passed to the new master, remoting sends are
//!    answered with the slave's refusal, which the 4.x producers retry elsewhere.
//!
//! Every step is bounded by `failover.handover_timeout_ms`. A handover that cannot start (no
//! connected in-sync member) changes nothing; one whose members do not catch up in time
//! gives up before stepping down, and the master goes on; once stepped down there is no way
//! back within the epoch (the controller may elect at once), so a late election only keeps
//! the held calls waiting until the timeout, then they are refused and retried.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Replication;
use crate::membership::Membership;

/// How often the catch-up is looked at.
const CATCH_UP_POLL: Duration = Duration::from_millis(5);

/// A handover that went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandedOver {
    /// The master epoch this member stepped down from.
    pub epoch: u64,
    /// The new master's endpoint.
    pub successor: String,
    /// From the start to the new master's assignment.
    pub took: Duration,
    /// Whether the pass-through to the new master was up when the held calls went on.
    pub linked: bool,
}

/// Lets the held calls go on however the handover ends.
struct Holding<'a>(&'a Membership);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.set_handing_over(false);
    }
}

impl Replication {
    /// Master: the members of the committed in-sync set but this one whose replication
    /// session is up now.
    fn connected_in_sync(&self) -> BTreeSet<u64> {
        let slaves = self.slaves.lock();
        self.membership
            .committed_slaves()
            .into_iter()
            .filter(|id| slaves.get(&(*id as i64)).is_some_and(|e| e.connected))
            .collect()
    }

    /// Whether each of `members` wrote this log up to `end`.
    fn caught_up(&self, members: &BTreeSet<u64>, end: u64) -> bool {
        let slaves = self.slaves.lock();
        members.iter().all(|id| {
            slaves
                .get(&(*id as i64))
                .is_some_and(|e| e.connected && e.written >= end)
        })
    }

    /// Hands this master's role over (module doc): to `target`, or to whichever connected
    /// member of the committed in-sync set the controller elects. Errors say why nothing was
    /// handed over, or at which step it stopped.
    pub async fn hand_over(
        &self,
        target: Option<u64>,
        timeout: Duration,
    ) -> Result<HandedOver, String> {
        let membership = self.membership.as_ref();
        if !membership.controlled_mode() || !membership.is_master() || membership.stepped_down() {
            return Err("this member is not the master of a group in controller mode".into());
        }
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let connected = self.connected_in_sync();
        let successors = match target {
            Some(id) if connected.contains(&id) => BTreeSet::from([id]),
            Some(id) => {
                return Err(format!(
                    "member {id} is not a connected member of the committed in-sync set \
                     {connected:?}"
                ))
            }
            None if connected.is_empty() => {
                return Err(format!(
                    "no other member of the committed in-sync set {:?} is connected: nobody \
                     to hand over to",
                    membership.role_view().in_sync
                ))
            }
            None => connected,
        };
        membership.set_handing_over(true);
        let _holding = Holding(membership);
        while membership.sends_in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} sends were still being stored {} ms after the handover began; this \
                     member stays the master",
                    membership.sends_in_flight(),
                    timeout.as_millis()
                ));
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
        loop {
            let end = self.store.log_end_offset();
            if self.caught_up(&successors, end) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the successors {successors:?} did not catch up with the log end {end} \
                     within {} ms; this member stays the master",
                    timeout.as_millis()
                ));
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
        let mut roles = membership.role_watch();
        let epoch = membership
            .step_down()
            .ok_or("this member stopped being the master during the handover")?;
        let elected = tokio::time::timeout_at(deadline, async {
            roles
                .wait_for(|v| v.master_epoch > epoch && !v.is_master())
                .await
                .is_ok()
        })
        .await;
        if elected != Ok(true) {
            return Err(format!(
                "stepped down from epoch {epoch}, but no successor was elected within {} ms",
                timeout.as_millis()
            ));
        }
        let took = started.elapsed();
        let linked = loop {
            if self.master_channel().is_some() {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        };
        let successor = match membership.role_view().role {
            crate::membership::MemberRole::Slave { master_endpoint } => master_endpoint,
            _ => String::new(),
        };
        Ok(HandedOver {
            epoch,
            successor,
            took,
            linked,
        })
    }
}

//! The broker's place in its group as running state: master, slave or fenced, of which
//! master epoch, with which committed in-sync set, and (in controller mode) the master's
//! lease (automatic failover, docs/REPLICATION.md).
//!
//! Two modes:
//! - **static** (no controller): the role is the configured one, fixed for the process's
//!   life, the epoch 0 and the lease always valid: the broker behaves as it always did.
//! - **controller** (`failover.controller_mode`): the broker starts [`MemberRole::Fenced`]
//!   (no writes, no hand-outs) and its role comes only from the controller's assignments,
//!   passed to [`Membership::assign`] by the NameServer sessions (`registration.rs`). An
//!   assignment of an older master epoch than the one held is ignored; a newer one naming
//!   this member makes it the master, naming another one a slave of that member's endpoint;
//!   one of the same epoch updates the committed in-sync set. The master holds a lease
//!   ([`Membership::renew_lease`]) until the instant it sent the answered beat plus the
//!   lease the controller granted; every send answer needs it valid
//!   ([`Membership::check_serving`]), and so do hand-outs and acks, except on a slave of the
//!   committed in-sync set cut off from its master, which serves them from its copy
//!   ([`Membership::check_consumable`]).
//!
//! A planned handover (SIGTERM of a master, an operator's switch) goes through three states
//! here: [`Membership::set_handing_over`] holds sends and master calls back while the
//! in-sync members catch up, [`Membership::step_down`] gives up the lease of the epoch for
//! good (the next beat says so and the controller elects a successor at once), and the new
//! assignment makes this member a slave; `replication/handover.rs` runs the procedure.
//!
//! This module holds the state only. The broker's role supervisor (`services.rs`) watches
//! [`Membership::role_watch`] and runs the transitions (promotion, demotion) and the tasks of
//! each role; replication reads the epoch and the committed set, and tells the master's
//! measure of its slaves here ([`Membership::set_measured_in_sync`]) for the reports.
//!
//! The lease is measured on CLOCK_BOOTTIME ([`BootInstant`]), which keeps counting while the
//! machine is suspended: a master that slept through its lease must find it expired when it
//! wakes, and the monotonic clock of `std::time::Instant` stops during a suspend on Linux.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use apogee_proto::cluster::{Assignment, MemberReport};
use apogee_proto::ApogeeError;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::{AckMode, FailoverSection, Role};
use crate::store::MessageStore;

/// A point in time on CLOCK_BOOTTIME (Linux; CLOCK_MONOTONIC elsewhere): it counts the time
/// the machine was suspended too, so a lease does not outlive a suspend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootInstant(Duration);

impl BootInstant {
    /// Now.
    pub fn now() -> BootInstant {
        #[cfg(target_os = "linux")]
        const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
        #[cfg(not(target_os = "linux"))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant the
        // platform defines. clock_gettime cannot fail for it.
        let rc = unsafe { libc::clock_gettime(CLOCK, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime of the boot clock failed");
        BootInstant(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    /// This instant moved `by` later.
    pub fn later_by(self, by: Duration) -> BootInstant {
        BootInstant(self.0.saturating_add(by))
    }

    /// This instant moved `by` earlier (no earlier than the clock's zero).
    pub fn earlier_by(self, by: Duration) -> BootInstant {
        BootInstant(self.0.saturating_sub(by))
    }

    /// How long from `earlier` to this instant (zero when `earlier` is later).
    pub fn saturating_duration_since(self, earlier: BootInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// What this broker is in its group now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// Takes the writes; `sync`: a send is acknowledged once slaves have it (SYNC_MASTER;
    /// always in controller mode, where "slaves" is the committed in-sync set).
    Master { sync: bool },
    /// Copies the master at `master_endpoint` (static mode: "", the master is configured or
    /// looked up in the NameServers).
    Slave { master_endpoint: String },
    /// Controller mode, no assignment yet (or one naming no usable master): takes no write
    /// and hands nothing out.
    Fenced,
}

/// A send admitted past the handover gate ([`Membership::send_admitted`],
/// [`Membership::try_admit_send`]), until its answer: a handover steps down only once every
/// admission was dropped. A transport that decides where a send is answered (gRPC's
/// pass-through to the master, `grpc::forward`) admits it there and hands the admission to
/// the producer with the send ([`crate::produce::Sender::admitted`]), so that no handover
/// can begin between its decision and the producer's gate. A clone counts as one more.
pub struct SendAdmission(Arc<Membership>);

impl Clone for SendAdmission {
    fn clone(&self) -> SendAdmission {
        self.0
            .sends_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SendAdmission(self.0.clone())
    }
}

impl Drop for SendAdmission {
    fn drop(&mut self) {
        self.0
            .sends_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for SendAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendAdmission")
    }
}

impl From<&MemberRole> for Role {
    /// In the configuration's terms: a fenced member counts as a slave (it takes no writes).
    fn from(role: &MemberRole) -> Role {
        match role {
            MemberRole::Master { sync: true } => Role::SyncMaster,
            MemberRole::Master { sync: false } => Role::AsyncMaster,
            MemberRole::Slave { .. } | MemberRole::Fenced => Role::Slave,
        }
    }
}

/// The role with the epoch and the committed in-sync set it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleView {
    pub role: MemberRole,
    /// The master epoch of the assignment followed (0: static mode, or none yet).
    pub master_epoch: u64,
    /// The committed in-sync set (member ids, the master among them); empty in static mode.
    pub in_sync: BTreeSet<u64>,
    pub in_sync_epoch: u64,
}

impl RoleView {
    pub fn is_master(&self) -> bool {
        matches!(self.role, MemberRole::Master { .. })
    }
}

/// Where the role comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipMode {
    /// The configured role, fixed.
    Static,
    /// The controller's assignments.
    Controller,
}

/// The role, epoch, in-sync set and lease of one broker (module doc).
pub struct Membership {
    mode: MembershipMode,
    member_id: u64,
    priority: u32,
    min_in_sync_replicas: u32,
    /// Controller mode: the acknowledgement rule, reported to the controller.
    ack: AckMode,
    store: Arc<MessageStore>,
    view: watch::Sender<RoleView>,
    /// Controller mode, master: the lease runs until then.
    lease_until: Mutex<Option<BootInstant>>,
    /// Controller mode, master: Unix ms when an assignment made this broker master (0: not
    /// the master).
    master_since_ms: std::sync::atomic::AtomicI64,
    /// Master: the members its last measure found in sync (itself among them).
    measured: Mutex<BTreeSet<u64>>,
    /// Bumped whenever the role view or the measured set changes.
    changes: watch::Sender<u64>,
    /// Controller mode: the master epoch this member stepped down from (0: none). It holds
    /// no lease of that epoch from then on.
    stepped_down_epoch: std::sync::atomic::AtomicU64,
    /// True while a handover holds sends and master calls back (the watch wakes the held
    /// ones; the flag orders itself with `sends_in_flight`).
    handing_over: watch::Sender<bool>,
    handing_over_flag: std::sync::atomic::AtomicBool,
    /// Sends past the handover gate and not answered yet.
    sends_in_flight: std::sync::atomic::AtomicUsize,
    /// The member an operator's switch asks this master to hand over to (0: none).
    hand_over_wanted: watch::Sender<u64>,
}

impl Membership {
    /// Static mode: `role` for good, epoch 0, the lease always valid.
    pub fn fixed(role: Role, member_id: u64, store: Arc<MessageStore>) -> Arc<Membership> {
        let role = match role {
            Role::SyncMaster => MemberRole::Master { sync: true },
            Role::AsyncMaster => MemberRole::Master { sync: false },
            Role::Slave => MemberRole::Slave {
                master_endpoint: String::new(),
            },
        };
        Self::new(
            MembershipMode::Static,
            role,
            member_id,
            0,
            AckMode::default(),
            1,
            store,
        )
    }

    /// Controller mode: fenced until an assignment; the election priority is reported for
    /// elections, and so is the acknowledgement rule (`failover.ack`); sends are refused while
    /// the committed in-sync set has fewer than `min_in_sync_replicas` members (the master
    /// included).
    pub fn controlled(
        member_id: u64,
        failover: &FailoverSection,
        store: Arc<MessageStore>,
    ) -> Arc<Membership> {
        Self::new(
            MembershipMode::Controller,
            MemberRole::Fenced,
            member_id,
            failover.election_priority,
            failover.ack,
            failover.min_in_sync_replicas.max(1),
            store,
        )
    }

    fn new(
        mode: MembershipMode,
        role: MemberRole,
        member_id: u64,
        priority: u32,
        ack: AckMode,
        min_in_sync_replicas: u32,
        store: Arc<MessageStore>,
    ) -> Arc<Membership> {
        let view = RoleView {
            role,
            master_epoch: 0,
            in_sync: BTreeSet::new(),
            in_sync_epoch: 0,
        };
        Arc::new(Membership {
            mode,
            member_id,
            priority,
            min_in_sync_replicas,
            ack,
            store,
            view: watch::channel(view).0,
            lease_until: Mutex::new(None),
            master_since_ms: std::sync::atomic::AtomicI64::new(0),
            measured: Mutex::new(BTreeSet::new()),
            changes: watch::channel(0).0,
            stepped_down_epoch: std::sync::atomic::AtomicU64::new(0),
            handing_over: watch::channel(false).0,
            handing_over_flag: std::sync::atomic::AtomicBool::new(false),
            sends_in_flight: std::sync::atomic::AtomicUsize::new(0),
            hand_over_wanted: watch::channel(0).0,
        })
    }

    pub fn mode(&self) -> MembershipMode {
        self.mode
    }

    /// Whether the role comes from the controller.
    pub fn controlled_mode(&self) -> bool {
        self.mode == MembershipMode::Controller
    }

    /// This member's id (its broker id).
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// The role view now.
    pub fn role_view(&self) -> RoleView {
        self.view.borrow().clone()
    }

    /// Changes with every new role view (the role supervisor and replication watch it).
    pub fn role_watch(&self) -> watch::Receiver<RoleView> {
        self.view.subscribe()
    }

    /// Changes whenever the role view or the master's measured in-sync set changes: a beat
    /// carrying the new report is due at once.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn is_master(&self) -> bool {
        self.view.borrow().is_master()
    }

    /// Controller mode, the master: Unix ms when an assignment made this broker master (the
    /// group's last failover or planned switch). None otherwise.
    pub fn master_since_ms(&self) -> Option<i64> {
        let since = self
            .master_since_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        (since > 0 && self.is_master()).then_some(since)
    }

    /// The master epoch followed.
    pub fn master_epoch(&self) -> u64 {
        self.view.borrow().master_epoch
    }

    /// The role in the configuration's terms (a fenced member counts as a slave: it takes no
    /// writes).
    pub fn role(&self) -> Role {
        Role::from(&self.view.borrow().role)
    }

    /// Takes the controller's assignment for this member's group (module doc). `my_endpoint`
    /// is this broker's advertised endpoint: an assignment naming another member at it
    /// cannot be followed (the member would copy itself) and fences this one.
    pub fn assign(&self, a: &Assignment, my_endpoint: &str) {
        if self.mode == MembershipMode::Static {
            tracing::debug!("an assignment from the controller, ignored: not in controller mode");
            return;
        }
        let current = self.role_view();
        if a.master_epoch < current.master_epoch {
            tracing::debug!(
                held = current.master_epoch,
                assigned = a.master_epoch,
                "ignoring an assignment of an older master epoch"
            );
            return;
        }
        let role = if a.master_member == 0 {
            MemberRole::Fenced
        } else if a.master_member == self.member_id {
            MemberRole::Master { sync: true }
        } else if a.master_endpoint.is_empty() || a.master_endpoint == my_endpoint {
            tracing::warn!(
                master = a.master_member,
                endpoint = %a.master_endpoint,
                "the assigned master cannot be followed from here (no endpoint, or this \
                 broker's own); staying fenced"
            );
            MemberRole::Fenced
        } else {
            MemberRole::Slave {
                master_endpoint: a.master_endpoint.clone(),
            }
        };
        let wanted = if matches!(role, MemberRole::Master { .. }) {
            a.hand_over_to
        } else {
            0
        };
        self.hand_over_wanted.send_if_modified(|w| {
            let changed = *w != wanted;
            *w = wanted;
            changed
        });
        let newer = a.master_epoch > current.master_epoch;
        let (in_sync, in_sync_epoch) = if newer || a.in_sync_epoch >= current.in_sync_epoch {
            (a.in_sync.iter().copied().collect(), a.in_sync_epoch)
        } else {
            (current.in_sync.clone(), current.in_sync_epoch)
        };
        let next = RoleView {
            role,
            master_epoch: a.master_epoch,
            in_sync,
            in_sync_epoch,
        };
        if next == current {
            return;
        }
        if next.role != current.role || newer {
            *self.lease_until.lock() = None;
            let since = if next.is_master() {
                apogee_proto::time::now_ms()
            } else {
                0
            };
            self.master_since_ms
                .store(since, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(
                epoch = next.master_epoch,
                from = ?current.role,
                to = ?next.role,
                "the controller assigns this broker a new role"
            );
        }
        self.view.send_replace(next);
        self.changes.send_modify(|n| *n += 1);
    }

    /// The master's lease runs until `beat_sent` (when the beat the controller answered was
    /// sent) plus `lease_ms`; it never moves back. Only the master of the epoch held takes
    /// one: call it after [`assign`](Self::assign) of the same answer.
    pub fn renew_lease(&self, beat_sent: BootInstant, lease_ms: u64) {
        if self.mode == MembershipMode::Static
            || lease_ms == 0
            || !self.is_master()
            || self.stepped_down()
        {
            return;
        }
        let until = beat_sent.later_by(Duration::from_millis(lease_ms));
        let mut lease = self.lease_until.lock();
        if lease.is_none_or(|l| l < until) {
            *lease = Some(until);
        }
    }

    /// Whether this broker may answer as the master now: always in static mode; in
    /// controller mode only the master whose lease runs.
    pub fn lease_valid(&self) -> bool {
        match self.mode {
            MembershipMode::Static => true,
            MembershipMode::Controller => {
                self.is_master()
                    && !self.stepped_down()
                    && self
                        .lease_until
                        .lock()
                        .is_some_and(|until| BootInstant::now() < until)
            }
        }
    }

    /// Controller mode: how long the master's lease still runs (zero when it ran out or
    /// this broker is not the master). None in static mode, where there is no lease.
    pub fn lease_remaining(&self) -> Option<Duration> {
        match self.mode {
            MembershipMode::Static => None,
            MembershipMode::Controller => Some(
                self.lease_until
                    .lock()
                    .filter(|_| self.is_master())
                    .map_or(Duration::ZERO, |until| {
                        until.saturating_duration_since(BootInstant::now())
                    }),
            ),
        }
    }

    /// Why this broker may not answer as the master now (controller mode: not the master, or
    /// its lease ran out); Ok in static mode. For sends' answers, hand-outs and acks.
    pub fn check_serving(&self) -> Result<(), ApogeeError> {
        if self.lease_valid() {
            return Ok(());
        }
        let view = self.role_view();
        Err(ApogeeError::Unavailable(match view.role {
            MemberRole::Master { .. } if self.stepped_down() => format!(
                "member {} handed its role of master (epoch {}) over and the controller is \
                 electing its successor: retry",
                self.member_id, view.master_epoch
            ),
            MemberRole::Master { .. } => format!(
                "member {} is the master of epoch {} but holds no valid lease from the \
                 controller (it may be cut off from it, and another member may be elected): \
                 retry",
                self.member_id, view.master_epoch
            ),
            MemberRole::Slave { master_endpoint } => format!(
                "member {} is a slave of {master_endpoint} (epoch {}) and holds no master \
                 lease: send to the group's master",
                self.member_id, view.master_epoch
            ),
            MemberRole::Fenced => format!(
                "member {} is fenced: the controller has not named it the group's master, so \
                 it holds no master lease",
                self.member_id
            ),
        }))
    }

    /// Why this broker may not serve consumers now (hand-outs, acks, invisible-time changes)
    /// from its own consume state; Ok in static mode. In controller mode: the master while
    /// its lease runs, and a slave of the committed in-sync set while it has no link to its
    /// master (`master_linked` false: the master died, hung or is cut off from it), from its
    /// copy, as a static slave does while its master is away. Such a copy holds only what
    /// the master gave it: every record of it is on whichever in-sync member the
    /// controller elects (the candidate with the longest log, this one included while it is
    /// alive), so what it hands out stays delivered. With the link up, consumers are the
    /// master's (gRPC calls are passed on to it before they get here).
    pub fn check_consumable(&self, master_linked: bool) -> Result<(), ApogeeError> {
        if self.lease_valid() {
            return Ok(());
        }
        let view = self.role_view();
        if matches!(view.role, MemberRole::Slave { .. })
            && !master_linked
            && view.in_sync.contains(&self.member_id)
        {
            return Ok(());
        }
        self.check_serving()
    }

    /// Ready for traffic, for an orchestrator's readiness probe (`/readyz`). Static mode:
    /// always. Controller mode: the master holding a lease, or a slave in the committed
    /// in-sync set: so a rolling update that waits for each restarted member to be ready
    /// before stopping the next never takes down the last in-sync copy of the log.
    pub fn readiness(&self) -> Result<(), String> {
        if self.mode == MembershipMode::Static || self.lease_valid() {
            return Ok(());
        }
        let view = self.role_view();
        match view.role {
            MemberRole::Slave { .. } if view.in_sync.contains(&self.member_id) => Ok(()),
            MemberRole::Slave { master_endpoint } => Err(format!(
                "member {} copies the master at {master_endpoint} (epoch {}) and is not yet \
                 in the committed in-sync set {:?}",
                self.member_id, view.master_epoch, view.in_sync
            )),
            MemberRole::Master { .. } => Err(format!(
                "member {} is the master of epoch {} but holds no lease from the controller",
                self.member_id, view.master_epoch
            )),
            MemberRole::Fenced => Err(format!(
                "member {} waits for an assignment from the controller",
                self.member_id
            )),
        }
    }

    /// Before a send is appended (controller mode): the master with a valid lease, and a
    /// committed in-sync set of at least `min_in_sync_replicas` members. Ok in static mode.
    pub fn check_writable(&self) -> Result<(), ApogeeError> {
        if self.mode == MembershipMode::Static {
            return Ok(());
        }
        self.check_serving()?;
        let view = self.role_view();
        let mut members = view.in_sync.clone();
        members.insert(self.member_id);
        if (members.len() as u32) < self.min_in_sync_replicas {
            return Err(ApogeeError::Unavailable(format!(
                "not stored: the committed in-sync set {members:?} (epoch {}) has fewer than \
                 failover.min_in_sync_replicas = {} members",
                view.in_sync_epoch, self.min_in_sync_replicas
            )));
        }
        Ok(())
    }

    /// Controller mode, master: the committed in-sync members a send waits for (the set
    /// without the master). Empty otherwise.
    pub fn committed_slaves(&self) -> BTreeSet<u64> {
        if self.mode == MembershipMode::Static {
            return BTreeSet::new();
        }
        let mut set = self.view.borrow().in_sync.clone();
        set.remove(&self.member_id);
        set
    }

    /// Master: the members its measure finds in sync now (`replication`'s refresh); the
    /// report proposes them. A change wakes [`changed`](Self::changed).
    pub fn set_measured_in_sync(&self, mut members: BTreeSet<u64>) {
        members.insert(self.member_id);
        let mut measured = self.measured.lock();
        if *measured != members {
            *measured = members;
            drop(measured);
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// What this member tells the controller on every beat.
    pub fn report(&self) -> MemberReport {
        let view = self.role_view();
        let is_master = view.is_master();
        MemberReport {
            master_epoch: view.master_epoch,
            last_log_epoch: self.store.epochs().last_epoch(),
            log_end: self.store.log_end_offset(),
            priority: self.priority,
            is_master,
            in_sync: if is_master {
                let mut set = self.measured.lock().clone();
                set.insert(self.member_id);
                set.into_iter().collect()
            } else {
                Vec::new()
            },
            in_sync_epoch: if is_master { view.in_sync_epoch } else { 0 },
            stepped_down: is_master && self.stepped_down(),
            acks_need_every_in_sync: is_master && self.ack == AckMode::AllInSync,
        }
    }

    /// Asks for a beat now (controller mode) instead of at the next tick.
    pub fn beat_now(&self) {
        if self.mode == MembershipMode::Controller {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Controller mode, the master: gives up its role of the epoch held for good (a planned
    /// handover, once the in-sync members caught up): the lease ends now, no other of this
    /// epoch is taken, and the next beat (sent at once) tells the controller, which elects a
    /// successor without waiting for a lease to run out. The epoch stepped down from; None
    /// when this member is not the master.
    pub fn step_down(&self) -> Option<u64> {
        if self.mode == MembershipMode::Static || !self.is_master() {
            return None;
        }
        let epoch = self.master_epoch();
        self.stepped_down_epoch
            .store(epoch, std::sync::atomic::Ordering::SeqCst);
        *self.lease_until.lock() = None;
        tracing::warn!(
            epoch,
            "this master steps down: its role goes to another member"
        );
        self.changes.send_modify(|n| *n += 1);
        Some(epoch)
    }

    /// Whether this member stepped down from the master epoch it holds.
    pub fn stepped_down(&self) -> bool {
        let epoch = self.master_epoch();
        epoch > 0
            && self
                .stepped_down_epoch
                .load(std::sync::atomic::Ordering::SeqCst)
                == epoch
    }

    /// Holds sends and master calls back (`true`) while a handover is under way, or lets
    /// them go on (`false`).
    pub fn set_handing_over(&self, on: bool) {
        self.handing_over_flag
            .store(on, std::sync::atomic::Ordering::SeqCst);
        self.handing_over.send_replace(on);
    }

    /// Whether a handover holds sends and master calls back now.
    pub fn handing_over(&self) -> bool {
        self.handing_over_flag
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A send passes the handover gate: it waits while a handover holds sends back, and
    /// counts as in flight until the returned admission is dropped (its answer), so a
    /// handover steps down only once every send that got past the gate was answered.
    pub async fn send_admitted(self: &Arc<Self>) -> SendAdmission {
        loop {
            if let Some(admitted) = self.try_admit_send() {
                return admitted;
            }
            self.handover_settled().await;
        }
    }

    /// A send past the handover gate now, or None while a handover holds sends back.
    pub fn try_admit_send(self: &Arc<Self>) -> Option<SendAdmission> {
        // Counted first, then the flag read: a handover that sets the flag and then finds
        // no send in flight is never joined by one that missed the flag.
        self.sends_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let admitted = SendAdmission(self.clone());
        (!self
            .handing_over_flag
            .load(std::sync::atomic::Ordering::SeqCst))
        .then_some(admitted)
    }

    /// Sends past the handover gate and not answered yet.
    pub fn sends_in_flight(&self) -> usize {
        self.sends_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no handover holds calls back (a handover is bounded by
    /// `failover.handover_timeout_ms` and lets them go however it ends).
    pub async fn handover_settled(&self) {
        let mut rx = self.handing_over.subscribe();
        let _ = rx.wait_for(|on| !*on).await;
    }

    /// The member an operator's switch asks this master to hand over to (0: none), as the
    /// controller's last answer said.
    pub fn hand_over_wanted(&self) -> watch::Receiver<u64> {
        self.hand_over_wanted.subscribe()
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;

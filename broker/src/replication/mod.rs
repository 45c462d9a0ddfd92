//! Master/slave replication within a broker group (see docs/REPLICATION.md).
//!
//! A slave (`slave.rs`) opens `apogee.cluster.v1.Replication/Replicate` on its master, proves
//! that its log is a prefix of the master's (or truncates to the common prefix), then receives
//! the master's commit log byte for byte and the replicated key-value state ([`journal`],
//! [`state`]). The master side of a session is `master.rs`.
//!
//! This module owns what both sides share:
//! - the master's table of slaves: offsets each slave reported written and synced, whether it
//!   is in sync, its lag in bytes and in time. Every report moves the store's replicated
//!   offset and in-sync flag, which SYNC_MASTER sends wait on (`store/replica_log.rs`);
//! - a slave's view of its master link (for status and the handback), and while it is up a
//!   channel to the master for the calls the slave forwards (`crate::grpc::forward`);
//! - the handback gate: a restarted master that has had slaves holds receives back until a
//!   slave has handed back the consume state it served while the master was away, or
//!   `replication.handback_wait_ms` passed;
//! - a master's planned handover of its role ([`handover`]).
//!
//! The role is the broker's [`Membership`]'s, read when it matters (it changes at runtime in
//! controller mode). There the master's refresh also applies the ack rule ([`ack`],
//! `failover.ack`): by default a send waits for every member of the controller's committed
//! in-sync set but the master (the replicated offset is the slowest one's written offset; the
//! master alone: no wait), with `min_in_sync` for the fastest `min_in_sync_replicas` - 1 of
//! them; and it tells the membership which slaves it measures in sync (its proposal to the
//! controller).

mod ack;
mod handover;
pub mod journal;
mod master;
mod slave;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use apogee_proto::cluster::SlaveStatus;
use apogee_proto::time::now_ms;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{AckMode, BrokerConfig, ReplicationSection, Role};
use crate::membership::{MemberRole, Membership};
use crate::store::keys::{MetaKey, MARKER};
use crate::store::{Cf, KvBatch, MessageStore};

pub use handover::HandedOver;
pub use master::ReplicationService;

/// Meta key (never replicated: `local.` prefix) set once a slave has connected to this master.
const HAD_SLAVES_KEY: &[u8] = MetaKey::HadSlaves.key();
/// How often the master re-evaluates which slaves are in sync.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// Log-end samples kept for the lag-in-time of slaves.
const LOG_TIME_SAMPLES: usize = 8192;

/// What replication works on: its state ([`Replication`]), the broker's config, the store
/// and what replicated state is applied to or adopted into (the journal among them). A
/// slave's loop and the master's gRPC service are built from it.
#[derive(Clone)]
pub struct ReplicationContext {
    pub replication: Arc<Replication>,
    pub config: Arc<BrokerConfig>,
    pub store: Arc<MessageStore>,
    pub targets: state::StateTargets,
}

/// A slave's link to its master, as the slave sees it.
#[derive(Clone, Debug, Default)]
pub struct MasterLink {
    /// The master's endpoint ("" while not known).
    pub endpoint: String,
    pub connected: bool,
    /// The master's log end as last heard.
    pub master_end_offset: u64,
    /// Unix ms of the last message from the master (0: never).
    pub last_contact_ms: i64,
}

/// A slave's way to its master while the replication link is up: the master's endpoint and
/// a channel to it with the link's TLS settings (its own connection, beside the replication
/// stream's).
#[derive(Clone, Debug)]
pub struct MasterChannel {
    pub endpoint: String,
    pub channel: tonic::transport::Channel,
}

/// One slave as the master tracks it.
#[derive(Clone, Debug)]
struct SlaveEntry {
    endpoint: String,
    /// Which session of this slave is current (a reconnect replaces the old one).
    session: u64,
    connected: bool,
    written: u64,
    synced: u64,
    last_report_ms: i64,
    /// Last time the written offset moved, or the slave was seen with nothing to catch up.
    last_progress_ms: i64,
}

/// Replication state of one broker (master or slave).
pub struct Replication {
    /// The broker's role, epoch and committed in-sync set.
    membership: Arc<Membership>,
    config: ReplicationSection,
    /// Controller mode: which committed in-sync members a send waits for (`failover.ack`).
    ack: AckMode,
    min_in_sync_replicas: u32,
    broker_id: i64,
    store: Arc<MessageStore>,
    slaves: Mutex<BTreeMap<i64, SlaveEntry>>,
    next_session: Mutex<u64>,
    /// (log end, unix ms when the master's log reached it), oldest first.
    log_times: Mutex<VecDeque<(u64, i64)>>,
    link: Mutex<MasterLink>,
    /// Slave: the channel to the master while the link is up (None while the master is away).
    master_channel: Mutex<Option<MasterChannel>>,
    /// True while receives must wait for a slave's handback.
    gate_closed: watch::Sender<bool>,
    gate_deadline: tokio::time::Instant,
    /// The cluster secret: a master asks slaves to prove it, a slave proves it.
    pub secret: Option<apogee_proto::cluster_auth::ClusterSecret>,
}

impl Replication {
    /// The replication state of a broker whose role is `config.role` for good (static mode).
    pub fn new(
        config: &BrokerConfig,
        store: Arc<MessageStore>,
        secret: Option<apogee_proto::cluster_auth::ClusterSecret>,
    ) -> Arc<Self> {
        let membership = Membership::fixed(config.role, config.broker_id as u64, store.clone());
        Self::with_membership(config, store, secret, membership)
    }

    /// The replication state of a broker whose role `membership` holds.
    pub fn with_membership(
        config: &BrokerConfig,
        store: Arc<MessageStore>,
        secret: Option<apogee_proto::cluster_auth::ClusterSecret>,
        membership: Arc<Membership>,
    ) -> Arc<Self> {
        let had_slaves = membership.is_master()
            && matches!(store.kv().get(Cf::Meta, HAD_SLAVES_KEY), Ok(Some(_)));
        let wait = Duration::from_millis(config.replication.handback_wait_ms);
        if had_slaves && !wait.is_zero() {
            tracing::info!(
                wait_ms = config.replication.handback_wait_ms,
                "this master has had slaves: receives wait for a slave's handback first"
            );
        }
        let (gate_closed, _) = watch::channel(had_slaves && !wait.is_zero());
        Arc::new(Replication {
            membership,
            config: config.replication.clone(),
            ack: config.failover.ack,
            min_in_sync_replicas: config.failover.min_in_sync_replicas,
            broker_id: config.broker_id,
            store,
            slaves: Mutex::new(BTreeMap::new()),
            next_session: Mutex::new(0),
            log_times: Mutex::new(VecDeque::new()),
            secret,
            link: Mutex::new(MasterLink {
                endpoint: config.replication.master.clone(),
                ..MasterLink::default()
            }),
            master_channel: Mutex::new(None),
            gate_closed,
            gate_deadline: tokio::time::Instant::now() + wait,
        })
    }

    /// Starts the background work of the current role: a master's in-sync evaluation, a
    /// slave's replication loop (a fenced member has none), until `stop` turns true.
    pub fn spawn(ctx: ReplicationContext, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let role = ctx.replication.membership.role_view().role;
        Self::spawn_for(ctx, &role, stop)
    }

    /// [`spawn`](Self::spawn) for `role`.
    pub fn spawn_for(
        ctx: ReplicationContext,
        role: &MemberRole,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        match role {
            MemberRole::Slave { .. } => tokio::spawn(slave::run(ctx, stop)),
            MemberRole::Master { .. } => tokio::spawn(ctx.replication.clone().refresh_loop(stop)),
            MemberRole::Fenced => tokio::spawn(async move {
                let _ = stop.wait_for(|s| *s).await;
            }),
        }
    }

    async fn refresh_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A new committed in-sync set applies at once (controller mode).
        let mut roles = self.membership.role_watch();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = roles.changed() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.note_log_end(now_ms());
            self.refresh(now_ms());
            if *self.gate_closed.borrow() && tokio::time::Instant::now() >= self.gate_deadline {
                tracing::warn!(
                    "no slave handed back its consume state within replication.handback_wait_ms; \
                     serving receives from this master's own state"
                );
                self.gate_closed.send_replace(false);
            }
        }
    }

    // ---- master side ------------------------------------------------------------------

    /// A slave opened a session; returns the session id its later calls carry.
    pub(crate) fn slave_connected(&self, broker_id: i64, endpoint: &str) -> u64 {
        let session = {
            let mut n = self.next_session.lock();
            *n += 1;
            *n
        };
        let now = now_ms();
        let mut slaves = self.slaves.lock();
        let entry = slaves.entry(broker_id).or_insert_with(|| SlaveEntry {
            endpoint: String::new(),
            session,
            connected: false,
            written: 0,
            synced: 0,
            last_report_ms: now,
            last_progress_ms: now,
        });
        entry.endpoint = endpoint.to_string();
        entry.session = session;
        entry.connected = true;
        entry.last_report_ms = now;
        entry.last_progress_ms = now;
        drop(slaves);
        let mut b = KvBatch::new();
        b.put(Cf::Meta, HAD_SLAVES_KEY, MARKER);
        if let Err(e) = self.store.kv().write(b) {
            tracing::warn!(error = %e, "could not note that this master has slaves");
        }
        session
    }

    /// A slave's report of how far it has written and synced.
    pub(crate) fn slave_report(&self, broker_id: i64, session: u64, written: u64, synced: u64) {
        let now = now_ms();
        {
            let mut slaves = self.slaves.lock();
            let Some(e) = slaves.get_mut(&broker_id).filter(|e| e.session == session) else {
                return;
            };
            if written > e.written {
                e.last_progress_ms = now;
            }
            e.written = written;
            e.synced = synced;
            e.last_report_ms = now;
        }
        self.refresh(now);
    }

    fn slave_disconnected(&self, broker_id: i64, session: u64) {
        if let Some(e) = self
            .slaves
            .lock()
            .get_mut(&broker_id)
            .filter(|e| e.session == session)
        {
            e.connected = false;
        }
        self.refresh(now_ms());
    }

    /// The handback of a slave was applied (or it had none): receives may go on.
    fn open_gate(&self) {
        if self.gate_closed.send_replace(false) {
            tracing::info!("a slave reconnected and handed back its consume state");
        }
    }

    fn in_sync(&self, e: &SlaveEntry, end: u64, now: i64) -> bool {
        let lag = end.saturating_sub(e.written);
        e.connected
            && lag <= self.config.max_lag_bytes
            && (lag == 0 || now - e.last_progress_ms <= self.config.sync_timeout_ms as i64)
    }

    /// Re-evaluates the slaves and moves the store's replicated offset and in-sync flag.
    fn refresh(&self, now: i64) {
        if self.membership.controlled_mode() {
            if self.membership.is_master() {
                self.apply_ack_rule(now);
            }
            return;
        }
        let end = self.store.log_end_offset();
        let mut replicated = 0u64;
        let mut any_in_sync = false;
        for e in self.slaves.lock().values_mut() {
            if !e.connected {
                continue;
            }
            if e.written >= end {
                e.last_progress_ms = now;
            }
            replicated = replicated.max(e.written);
            any_in_sync |= self.in_sync(e, end, now);
        }
        self.store.set_replicated(replicated);
        self.store.set_replica_in_sync(any_in_sync);
    }

    /// Controller mode, master: sends wait for the committed in-sync members but this one
    /// that the ack rule names ([`ack::ack_target`]; none: no wait), and the slaves measured
    /// in sync now are the proposal the reports carry.
    fn apply_ack_rule(&self, now: i64) {
        let end = self.store.log_end_offset();
        let waited_for = self.membership.committed_slaves();
        let mut measured = BTreeSet::new();
        let target = {
            let mut slaves = self.slaves.lock();
            for (id, e) in slaves.iter_mut() {
                if e.connected && e.written >= end {
                    e.last_progress_ms = now;
                }
                if self.in_sync(e, end, now) {
                    measured.insert(*id as u64);
                }
            }
            let written: Vec<u64> = waited_for
                .iter()
                .map(|id| slaves.get(&(*id as i64)).map_or(0, |e| e.written))
                .collect();
            ack::ack_target(self.ack, self.min_in_sync_replicas, &written)
        };
        self.membership.set_measured_in_sync(measured);
        match target {
            ack::AckTarget::MasterAlone => {
                if let Err(e) = self.store.set_sync_replicas(false) {
                    tracing::error!(error = %e, "cannot change how sends wait for slaves");
                }
                self.store.set_replicated_exact(u64::MAX);
            }
            ack::AckTarget::Replicated(written) => {
                self.store.set_replica_in_sync(true);
                self.store.set_replicated_exact(written);
                if let Err(e) = self.store.set_sync_replicas(true) {
                    tracing::error!(error = %e, "cannot make sends wait for the in-sync set");
                }
            }
        }
    }

    /// Applies the ack rule now (a promotion, before the store takes writes).
    pub(crate) fn refresh_now(&self) {
        self.note_log_end(now_ms());
        self.refresh(now_ms());
    }

    /// This broker became the master: no master link, no handback to wait for (it is the
    /// consume state's owner now).
    pub(crate) fn became_master(&self) {
        self.set_master_channel(None);
        self.update_link(|l| l.connected = false);
        self.open_gate();
    }

    /// This broker stopped being the master: its slaves' sessions end (`master.rs`), and
    /// what they reported no longer counts.
    pub(crate) fn became_slave(&self) {
        for e in self.slaves.lock().values_mut() {
            e.connected = false;
        }
    }

    fn note_log_end(&self, now: i64) {
        let end = self.store.log_end_offset();
        let mut times = self.log_times.lock();
        if times.back().is_some_and(|&(e, _)| e >= end) {
            return;
        }
        if times.len() >= LOG_TIME_SAMPLES {
            times.pop_front();
        }
        times.push_back((end, now));
    }

    /// How long ago the master's log first went past `written` (0 when it has not).
    fn lag_ms(&self, written: u64, end: u64, now: i64) -> i64 {
        if written >= end {
            return 0;
        }
        let times = self.log_times.lock();
        let idx = times.partition_point(|&(e, _)| e <= written);
        let since = times.get(idx).or(times.front()).map_or(now, |&(_, t)| t);
        (now - since).max(0)
    }

    /// Master: one entry per slave seen since this broker started. Slave: empty.
    pub fn slaves(&self) -> Vec<SlaveStatus> {
        let now = now_ms();
        let end = self.store.log_end_offset();
        let slaves = self.slaves.lock().clone();
        slaves
            .into_iter()
            .map(|(id, e)| SlaveStatus {
                broker_id: id,
                endpoint: e.endpoint.clone(),
                connected: e.connected,
                written_offset: e.written as i64,
                synced_offset: e.synced as i64,
                lag_bytes: end.saturating_sub(e.written) as i64,
                lag_ms: self.lag_ms(e.written, end, now),
                in_sync: self.in_sync(&e, end, now),
                last_report_ms: e.last_report_ms,
            })
            .collect()
    }

    /// The log offset below which every in-sync member has synced what this master wrote
    /// (u64::MAX with no member to wait for): what the object-store tier may upload. In
    /// controller mode the in-sync members are the committed set (one not connected holds
    /// everything back); in static mode the slaves in sync now.
    pub fn in_sync_hold(&self) -> u64 {
        let now = now_ms();
        let end = self.store.log_end_offset();
        let slaves = self.slaves.lock();
        if self.membership.controlled_mode() {
            self.membership
                .committed_slaves()
                .iter()
                .map(|id| {
                    slaves
                        .get(&(*id as i64))
                        .filter(|e| e.connected)
                        .map_or(0, |e| e.synced)
                })
                .min()
                .unwrap_or(u64::MAX)
        } else {
            slaves
                .values()
                .filter(|e| self.in_sync(e, end, now))
                .map(|e| e.synced)
                .min()
                .unwrap_or(u64::MAX)
        }
    }

    /// Whether receives on this master must still wait for a slave's handback.
    pub fn handback_pending(&self) -> bool {
        *self.gate_closed.borrow()
    }

    /// Waits at most `max` for the handback gate to open; true when it is open.
    pub async fn wait_handback(&self, max: Duration) -> bool {
        let mut rx = self.gate_closed.subscribe();
        let opened = tokio::time::timeout(max, rx.wait_for(|closed| !*closed))
            .await
            .is_ok();
        opened
    }

    // ---- slave side -------------------------------------------------------------------

    /// Slave: its link to the master (None on a master).
    pub fn master_link(&self) -> Option<MasterLink> {
        (!self.membership.is_master()).then(|| self.link.lock().clone())
    }

    fn update_link(&self, f: impl FnOnce(&mut MasterLink)) {
        f(&mut self.link.lock());
    }

    /// Slave: the channel to its master while the replication link is up; None on a master
    /// and while the master is away.
    pub fn master_channel(&self) -> Option<MasterChannel> {
        self.master_channel.lock().clone()
    }

    pub(crate) fn set_master_channel(&self, channel: Option<MasterChannel>) {
        *self.master_channel.lock() = channel;
    }

    /// The role now, in the configuration's terms (a fenced member counts as a slave).
    pub fn role(&self) -> Role {
        self.membership.role()
    }

    /// The broker's role, epoch and committed in-sync set.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    pub fn broker_id(&self) -> i64 {
        self.broker_id
    }
}

#[cfg(test)]
mod tests;

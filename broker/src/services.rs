//! The broker's composition root: [`Broker`] holds one of each service a broker runs
//! (store, topics, groups, users and ACLs, consume engine, transactions, schedule,
//! replication, NameServer link, metrics, quotas), and [`Broker::build`] is the one place
//! they are made, from an opened store and the config. `server::serve` builds a broker this
//! way; unit tests do the same over the in-memory index ([`Foundation::in_memory`]).
//!
//! Handlers reach the services through the accessors; nothing here imports a handler,
//! `server`, or anything that imports this module back.
//!
//! [`Broker::spawn_roles`] is the role supervisor: it runs the tasks of the broker's role
//! (a master's check-backs, scheduled delivery, consume background and in-sync refresh; a
//! slave's replication loop) and, in controller mode, the transitions between roles when
//! the [`Membership`] changes (promotion, demotion; see `promote` and `demote`).

use crate::access::AccessTable;
use crate::config::{BrokerConfig, FlushPolicy, Role};
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::membership::{MemberRole, Membership, RoleView};
use crate::metrics::BrokerMetrics;
use crate::produce::{Producer, ProducerConfig, ProducerParts};
use crate::quotas::Quotas;
use crate::registration::NameServerLink;
use crate::replication::journal::JournaledKv;
use crate::replication::state::StateTargets;
use crate::replication::Replication;
use crate::schedule::Schedule;
use crate::store::{FlushMode, MessageStore, RetentionPolicy, StoreConfig, StoreError};
use crate::topics::TopicTable;
use crate::txn::Transactions;
use apogee_proto::auth::Directory;
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::ApogeeError;
use apogee_server::settings::ServerLimits;
use apogee_server::telemetry::Sessions;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] crate::config::InvalidConfig),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(#[from] ApogeeError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A NameServer refused the registration at start (another live process has this broker id).
    #[error(transparent)]
    Registration(#[from] crate::registration::RegistrationRefused),
    #[error(transparent)]
    Tier(#[from] crate::tier::TierError),
}

/// What the services are built on besides the config: the opened (recovered) store, the
/// journal its index writes go through, the cluster secret and the auth guard's directory
/// of users (which the access table keeps current).
pub struct Foundation {
    pub store: Arc<MessageStore>,
    pub journal: Arc<JournaledKv>,
    pub cluster_secret: Option<ClusterSecret>,
    pub directory: Option<Directory>,
}

impl Foundation {
    /// A store over the in-memory index in `config.data_dir`, no secret, no users (for
    /// unit tests: only the commit log's files are on disk). It takes no decision from how
    /// full the host's disk is (it refuses sends and deletes segments only at 100 %): a
    /// unit test's outcome must not depend on the machine it runs on (a CI disk at 90 %
    /// once refused the sends of an unrelated test).
    pub fn in_memory(config: &BrokerConfig) -> Result<Foundation, BrokerError> {
        let journal = Arc::new(JournaledKv::new(Arc::new(crate::store::MemKv::new())));
        let mut settings = store_config(config);
        settings.retention.refuse_ratio = 1.0;
        settings.retention.clean_ratio = 1.0;
        let store = MessageStore::open_with_kv(settings, journal.clone())?;
        Ok(Foundation {
            store,
            journal,
            cluster_secret: None,
            directory: None,
        })
    }
}

/// The store's settings from the broker's config.
pub fn store_config(config: &BrokerConfig) -> StoreConfig {
    StoreConfig {
        data_dir: config.data_dir.clone(),
        segment_size: config.store.segment_bytes,
        preallocate_bytes: config.store.preallocate_bytes,
        cached_tail_bytes: config.store.cached_tail_bytes,
        flush_mode: match config.store.flush {
            FlushPolicy::Sync => FlushMode::Sync,
            FlushPolicy::Async => FlushMode::Async,
        },
        async_flush_interval: Duration::from_millis(config.store.async_flush_interval_ms),
        // Room for the record header, properties and keys around the body,
        // within one segment (tests use tiny segments).
        max_record_size: (config.max_body_bytes
            + 2 * apogee_proto::limits::MAX_PROPERTIES_BYTES
            + 4096)
            .min(config.store.segment_bytes as usize),
        // Controller mode starts fenced: a copy until the controller names it the master.
        replica: config.controller_mode() || config.role == Role::Slave,
        sync_replicas: !config.controller_mode() && config.role == Role::SyncMaster,
        replica_timeout: Duration::from_millis(config.replication.sync_timeout_ms),
        retention: RetentionPolicy {
            max_age: Duration::from_secs(config.store.retention_hours.saturating_mul(3600)),
            clean_ratio: config.store.disk_clean_ratio,
            refuse_ratio: config.store.disk_refuse_ratio,
            check_interval: Duration::from_millis(config.store.retention_check_ms),
        },
    }
}

/// One broker's services.
pub struct Broker {
    config: BrokerConfig,
    store: Arc<MessageStore>,
    topics: Arc<TopicTable>,
    /// Consumer groups' configs.
    groups: Arc<GroupTable>,
    /// Users and ACL entries (the guard's directory follows them).
    access: Arc<AccessTable>,
    consume: Arc<ConsumeEngine>,
    /// Lite subscriptions and their clients' ready sets.
    lite: Arc<crate::consume::lite::LiteRegistry>,
    /// Expiry of lite topics (the master's role task `crate::lite_topics`).
    lite_expiry: Arc<crate::lite_topics::LiteExpiry>,
    limits: ServerLimits,
    nameservers: Arc<NameServerLink>,
    /// Live Telemetry sessions (check-backs are pushed through them).
    sessions: Arc<Sessions>,
    txns: Arc<Transactions>,
    schedule: Arc<Schedule>,
    /// The index database with its journal of replicated writes.
    journal: Arc<JournaledKv>,
    replication: Arc<Replication>,
    /// The role (master, slave, fenced), master epoch and lease.
    membership: Arc<Membership>,
    /// Unix ms when this broker started.
    started_at_ms: i64,
    metrics: Arc<BrokerMetrics>,
    /// Send rates and the cap on waiting receives.
    quotas: Arc<Quotas>,
    /// Validation, admission, routing and append of sends.
    producer: Producer,
    /// The RocketMQ remoting clients connected and their groups.
    remoting_clients: Arc<crate::remoting_state::clients::RemotingClients>,
    /// Queue locks of ordered remoting consumers, per group.
    queue_locks: crate::remoting_state::locks::QueueLocks,
    /// The object-store tier, when `[tier]` names a bucket.
    tier: Option<Arc<crate::tier::Tier>>,
    shutdown: watch::Sender<bool>,
}

impl Broker {
    /// Builds every service from `config` and the opened store, and applies the runtime
    /// settings kept in the index. Starts no task and contacts nobody.
    pub fn build(config: BrokerConfig, base: Foundation) -> Result<Arc<Broker>, BrokerError> {
        let Foundation {
            store,
            journal,
            cluster_secret,
            directory,
        } = base;
        let started_at_ms = apogee_proto::time::now_ms();
        let membership = membership_of(&config, &store);
        let slave_at_start = matches!(membership.role_view().role, MemberRole::Slave { .. });
        let topics = Arc::new(TopicTable::load(store.kv())?);
        topics.set_auto_create(config.auto_create_topics);
        let lost = store.index_rebuild().filter(|r| r.topic_configs_lost);
        if let (Some(found), false) = (lost, slave_at_start) {
            topics.restore_from_log(found)?;
        }
        let groups = Arc::new(GroupTable::load(
            store.kv(),
            config.consume.auto_create_groups,
        )?);
        groups.set_auto_create_start(config.consume.auto_create_start);
        let consume = Arc::new(ConsumeEngine::open(store.clone())?);
        let access = Arc::new(AccessTable::load(
            store.kv(),
            cluster_secret
                .as_ref()
                .map(apogee_proto::auth::acl::SecretSeal::new),
            directory,
        )?);
        let mut link =
            NameServerLink::new(&config, cluster_secret.clone())?.with_access(access.clone());
        if membership.controlled_mode() {
            link = link.with_member(crate::failover_link::controller_member(
                membership.clone(),
                config.advertised_endpoint(),
            ));
        }
        let nameservers = Arc::new(link);
        let limits = ServerLimits {
            max_body_bytes: config.max_body_bytes,
            lite_subscription_quota: config.lite.subscription_quota,
            max_lite_topic_len: config.lite.max_topic_len,
            client_metrics: config
                .telemetry
                .client_metrics()
                .map_err(crate::config::InvalidConfig)?,
            ..ServerLimits::default()
        };
        let sessions = Sessions::with_cap(config.limits.max_sessions_per_address);
        let lite = Arc::new(crate::consume::lite::LiteRegistry::new(
            store.clone(),
            consume.clone(),
            (config.lite.subscription_idle_secs as i64).saturating_mul(1000),
        ));
        {
            let s = sessions.clone();
            lite.set_notifier(Arc::new(move |client, lite_topic| {
                s.push(
                    client,
                    apogee_proto::v2::telemetry_command::Command::NotifyUnsubscribeLiteCommand(
                        apogee_proto::v2::NotifyUnsubscribeLiteCommand {
                            lite_topic: lite_topic.to_string(),
                        },
                    ),
                )
            }));
            let s = sessions.clone();
            lite.set_session_check(Arc::new(move |client| s.contains(client)));
        }
        let lite_expiry =
            crate::lite_topics::LiteExpiry::new(store.clone(), topics.clone(), consume.clone());
        lite_expiry.set_listener(lite.clone());
        let txns = Transactions::new(
            store.clone(),
            topics.clone(),
            sessions.clone(),
            Some(nameservers.clone()),
            config.transaction.clone(),
            config.broker_name.clone(),
        );
        if membership.controlled_mode() {
            let m = membership.clone();
            txns.set_serving_gate(Arc::new(move || m.check_serving()));
        }
        let schedule = Schedule::new(
            store.clone(),
            topics.clone(),
            config.schedule.clone(),
            config.broker_name.clone(),
            crate::schedule::wall_clock(),
        );
        // A slave counts its master as away until it is connected: what it serves is handed back
        // (static mode; in controller mode a rejoining member takes the master's snapshot).
        if membership.controlled_mode() {
            journal.keep_no_handback();
        }
        journal.set_master_away(!membership.is_master());
        let replication = Replication::with_membership(
            &config,
            store.clone(),
            cluster_secret,
            membership.clone(),
        );
        if membership.controlled_mode() {
            // The leased master, or an in-sync slave cut off from its master (module doc of
            // `membership`): the replication link tells the second.
            let (m, r) = (membership.clone(), replication.clone());
            consume.set_serving_gate(Arc::new(move || {
                m.check_consumable(r.master_channel().is_some())
            }));
        }
        let metrics = BrokerMetrics::new(&config);
        metrics.register_transactions(&txns.outcomes);
        let tier = if config.tier.enabled() {
            let tier = crate::tier::Tier::new(
                &config.tier,
                &config.cluster_name,
                &config.broker_name,
                store.clone(),
            )?;
            metrics.register_tier(&tier);
            Some(tier)
        } else {
            None
        };
        let quotas = Arc::new(Quotas::new(&config.limits));
        let producer = Producer::new(
            ProducerConfig::of(&config),
            ProducerParts {
                store: store.clone(),
                topics: topics.clone(),
                txns: txns.clone(),
                schedule: schedule.clone(),
                quotas: quotas.clone(),
                sessions: sessions.clone(),
                membership: membership.clone(),
            },
        );
        let broker = Arc::new(Broker {
            membership,
            quotas,
            producer,
            config,
            store,
            topics,
            groups,
            access,
            consume,
            lite_expiry,
            lite,
            limits,
            nameservers,
            sessions,
            txns,
            schedule,
            journal,
            replication,
            started_at_ms,
            metrics,
            remoting_clients: Arc::new(crate::remoting_state::clients::RemotingClients::new()),
            queue_locks: crate::remoting_state::locks::QueueLocks::new(),
            tier,
            shutdown: watch::channel(false).0,
        });
        crate::runtime_config::restore(&broker.runtime_owners())?;
        Ok(broker)
    }

    /// The configuration the broker was built from.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The commit log and its index.
    pub fn store(&self) -> &Arc<MessageStore> {
        &self.store
    }

    /// The topics this broker hosts.
    pub fn topics(&self) -> &Arc<TopicTable> {
        &self.topics
    }

    /// Consumer groups' configs.
    pub fn groups(&self) -> &Arc<GroupTable> {
        &self.groups
    }

    /// Users and ACL entries.
    pub fn access(&self) -> &Arc<AccessTable> {
        &self.access
    }

    /// Consumer groups' progress: pops, acks, invisible times.
    pub fn consume(&self) -> &Arc<ConsumeEngine> {
        &self.consume
    }

    /// Lite subscriptions (RIP-83 lite topics).
    pub fn lite(&self) -> &Arc<crate::consume::lite::LiteRegistry> {
        &self.lite
    }

    /// Expiry of lite topics (its listener is the lite registry).
    pub fn lite_expiry(&self) -> &Arc<crate::lite_topics::LiteExpiry> {
        &self.lite_expiry
    }

    /// Limits the Telemetry sessions announce.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// The link to the NameServers: registration, routes.
    pub fn nameservers(&self) -> &Arc<NameServerLink> {
        &self.nameservers
    }

    /// Live Telemetry sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Transactional (half) messages.
    pub fn txns(&self) -> &Arc<Transactions> {
        &self.txns
    }

    /// Scheduled (delayed) messages.
    pub fn schedule(&self) -> &Arc<Schedule> {
        &self.schedule
    }

    /// Master/slave replication state.
    pub fn replication(&self) -> &Arc<Replication> {
        &self.replication
    }

    /// The role (master, slave, fenced), master epoch and lease; the NameServer sessions
    /// pass the controller's assignments to it.
    /// The object-store tier, when `[tier]` names a bucket.
    pub fn tier(&self) -> Option<&Arc<crate::tier::Tier>> {
        self.tier.as_ref()
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Unix ms when this broker started.
    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Arc<BrokerMetrics> {
        &self.metrics
    }

    /// Send rates and the cap on waiting receives.
    pub fn quotas(&self) -> &Arc<Quotas> {
        &self.quotas
    }

    /// Validation, admission, routing and append of sends.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The RocketMQ remoting clients connected and their groups.
    pub fn remoting_clients(&self) -> &Arc<crate::remoting_state::clients::RemotingClients> {
        &self.remoting_clients
    }

    /// Queue locks of ordered remoting consumers (LOCK_BATCH_MQ, UNLOCK_BATCH_MQ).
    pub fn queue_locks(&self) -> &crate::remoting_state::locks::QueueLocks {
        &self.queue_locks
    }

    /// Turns true when the broker starts shutting down (ends long polls, Telemetry streams
    /// and the background tasks).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Starts the shutdown: everything watching [`closing`](Self::closing) ends.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// What the consume engine's background task (renewals, dead letters) works on.
    pub fn consume_background(&self) -> crate::consume::background::Background {
        let metrics = self.metrics.clone();
        crate::consume::background::Background {
            consume: self.consume.clone(),
            groups: self.groups.clone(),
            store: self.store.clone(),
            topics: self.topics.clone(),
            auto_renew_period_ms: self.config.consume.auto_renew_period_ms,
            dead_lettered: Box::new(move |topic, group| metrics.dead_lettered(topic, group)),
        }
    }

    /// What the runtime settings change.
    pub fn runtime_owners(&self) -> crate::runtime_config::Owners<'_> {
        crate::runtime_config::Owners {
            config: &self.config,
            store: &self.store,
            topics: &self.topics,
            groups: &self.groups,
            txns: &self.txns,
        }
    }

    /// What the metrics' gauges and the readiness are read from.
    pub fn metric_sources(&self) -> crate::metrics::Sources {
        crate::metrics::Sources {
            metrics: self.metrics.clone(),
            store: self.store.clone(),
            data_dir: self.config.data_dir.clone(),
            topics: self.topics.clone(),
            groups: self.groups.clone(),
            consume: self.consume.clone(),
            lite: self.lite.clone(),
            sessions: self.sessions.clone(),
            remoting_clients: self.remoting_clients.clone(),
            schedule: self.schedule.clone(),
            txns: self.txns.clone(),
            replication: self.replication.clone(),
            nameservers: self.nameservers.clone(),
            nameserver_addrs: self.config.nameservers.clone(),
            closing: self.closing(),
        }
    }

    /// What replication's loop and gRPC service work on.
    pub fn replication_context(&self) -> crate::replication::ReplicationContext {
        crate::replication::ReplicationContext {
            replication: self.replication.clone(),
            config: Arc::new(self.config.clone()),
            store: self.store.clone(),
            targets: self.state_targets(),
        }
    }

    /// What a consumer group's lag is read from.
    pub fn lag_sources(&self) -> crate::consume::lag::LagSources<'_> {
        crate::consume::lag::LagSources {
            consume: &self.consume,
            topics: &self.topics,
            groups: &self.groups,
            sessions: &self.sessions,
            remoting_subscriptions: self.remoting_clients.subscribed_topics(),
        }
    }

    /// What replicated state is applied to (on a slave) or adopted into (a handback).
    fn state_targets(&self) -> StateTargets {
        StateTargets {
            journal: self.journal.clone(),
            consume: self.consume.clone(),
            topics: self.topics.clone(),
            groups: self.groups.clone(),
            access: self.access.clone(),
            runtime: self.runtime_follower(),
        }
    }

    /// [`crate::runtime_config::follow`] over this broker's settings, for replication.
    fn runtime_follower(&self) -> crate::runtime_config::Follower {
        let config = self.config.clone();
        let (store, topics, groups, txns) = (
            self.store.clone(),
            self.topics.clone(),
            self.groups.clone(),
            self.txns.clone(),
        );
        Arc::new(move || {
            let owners = crate::runtime_config::Owners {
                config: &config,
                store: &store,
                topics: &topics,
                groups: &groups,
                txns: &txns,
            };
            if let Err(e) = crate::runtime_config::follow(&owners) {
                tracing::warn!("cannot apply the group's runtime settings: {e}");
            }
        })
    }
}

/// The broker's membership: the controller's (fenced until assigned) in controller mode,
/// else the configured role for good.
fn membership_of(config: &BrokerConfig, store: &Arc<MessageStore>) -> Arc<Membership> {
    let member_id = config.broker_id.max(0) as u64;
    if config.controller_mode() {
        Membership::controlled(member_id, &config.failover, store.clone())
    } else {
        Membership::fixed(config.role, member_id, store.clone())
    }
}

/// Whether going from `a` to `b` changes which tasks run (another role, another master,
/// another epoch); a new committed in-sync set alone does not.
fn role_changed(a: &RoleView, b: &RoleView) -> bool {
    a.role != b.role || a.master_epoch != b.master_epoch
}

impl Broker {
    /// Starts the role supervisor (module doc): it runs the current role's tasks, and on a
    /// role change stops them, waits for them to end, makes the transition and starts the
    /// new role's; it ends, with the tasks, when the broker shuts down. In static mode the
    /// role never changes: it runs one role's tasks, as the broker always did.
    pub fn spawn_roles(self: &Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(self.clone().supervise_roles())
    }

    async fn supervise_roles(self: Arc<Self>) {
        let mut closing = self.closing();
        let mut roles = self.membership.role_watch();
        let mut before: Option<RoleView> = None;
        loop {
            let view = roles.borrow_and_update().clone();
            let ready = self.enter(before.as_ref(), &view).await;
            let (stop, stopped) = watch::channel(false);
            let tasks = if ready {
                self.start_role_tasks(&view.role, stopped)
            } else {
                Vec::new()
            };
            let shutting_down = loop {
                tokio::select! {
                    _ = closing.wait_for(|c| *c) => break true,
                    changed = roles.changed() => {
                        if changed.is_err() {
                            break true;
                        }
                        if role_changed(&view, &roles.borrow()) {
                            break false;
                        }
                    }
                }
            };
            stop.send_replace(true);
            for task in tasks {
                let _ = task.await;
            }
            if shutting_down {
                return;
            }
            before = Some(view);
        }
    }

    /// The tasks of `role`, each ending when `stop` turns true.
    fn start_role_tasks(
        self: &Arc<Self>,
        role: &MemberRole,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![Replication::spawn_for(
            self.replication_context(),
            role,
            stop.clone(),
        )];
        // Slaves hold copies: only the master checks transactions back, publishes what comes
        // due, renews and dead-letters (a slave's state follows its master).
        // In controller mode they act only while the master's lease runs.
        if let (Some(tier), false) = (&self.tier, matches!(role, MemberRole::Master { .. })) {
            tasks.push(tier.spawn_follow(stop.clone()));
        }
        if let MemberRole::Master { .. } = role {
            if self.membership.controlled_mode() {
                tasks.push(self.spawn_handover_on_request(stop.clone()));
            }
            let membership = self.membership.clone();
            let gate: crate::consume::ServingGate = Arc::new(move || membership.check_serving());
            tasks.push(self.txns.clone().spawn_checker(
                self.config.advertised_endpoint(),
                gate.clone(),
                stop.clone(),
            ));
            tasks.push(
                self.schedule
                    .clone()
                    .spawn_delivery(gate.clone(), stop.clone()),
            );
            tasks.push(self.lite_expiry.clone().spawn(
                Duration::from_secs(self.config.lite.expiry_scan_interval_secs),
                gate.clone(),
                stop.clone(),
            ));
            if let Some(tier) = &self.tier {
                let replication = self.replication.clone();
                tasks.push(tier.spawn_offload(
                    self.membership.master_epoch(),
                    Arc::new(move || replication.in_sync_hold()),
                    stop.clone(),
                ));
            }
            tasks.push(crate::consume::background::spawn(
                self.consume_background(),
                gate,
                stop,
            ));
        }
        tasks
    }

    /// Makes the transition from `before` (None: the start) to `now`, with the previous
    /// role's tasks ended; returns whether `now`'s tasks may start (false: a promotion
    /// failed, and the broker stays a copy that takes no writes).
    async fn enter(&self, before: Option<&RoleView>, now: &RoleView) -> bool {
        if !self.membership.controlled_mode() {
            return true;
        }
        let was_master = before.is_some_and(|b| b.is_master());
        match &now.role {
            MemberRole::Master { .. } => {
                let same_epoch =
                    before.is_some_and(|b| b.is_master() && b.master_epoch == now.master_epoch);
                if same_epoch {
                    return true;
                }
                match self.promote(now.master_epoch).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(
                            epoch = now.master_epoch,
                            "could not become the master; taking no writes: {e}"
                        );
                        false
                    }
                }
            }
            MemberRole::Slave { .. } | MemberRole::Fenced => {
                if was_master {
                    self.demote(now);
                }
                true
            }
        }
    }

    /// Slave (or fenced) to master of `epoch`, the slave loop ended: what was received is
    /// synced (it was written and indexed as it came), the epoch's start offset is recorded
    /// in the epoch file, sends wait per the ack rule, the store takes writes, the handback
    /// gate opens and the master's state is this broker's own.
    async fn promote(&self, epoch: u64) -> Result<(), BrokerError> {
        self.store.sync_log().await?;
        let start = self.store.log_end_offset();
        let (store, journal) = (self.store.clone(), self.journal.clone());
        tokio::task::spawn_blocking(move || {
            store.epochs().append(epoch, start)?;
            journal.clear_handback()
        })
        .await??;
        self.journal.set_master_away(false);
        self.replication.became_master();
        self.replication.refresh_now();
        self.store.set_replica(false);
        tracing::warn!("promoted to master of epoch {epoch} at offset {start}");
        if let Err(e) = self.ensure_trace_topic() {
            tracing::error!(error = %e, "cannot make the message trace topic");
        }
        Ok(())
    }

    /// Master to slave (or fenced), the master's tasks ended: the store takes no more sends
    /// (those waiting for slaves are answered "not replicated"), slaves' reports no longer
    /// count, and what this broker serves from now on is handed back to its master.
    fn demote(&self, now: &RoleView) {
        self.store.set_replica(true);
        if let Err(e) = self.store.set_sync_replicas(false) {
            tracing::error!(error = %e, "cannot stop sends waiting for slaves");
        }
        self.replication.became_slave();
        self.journal.set_master_away(true);
        tracing::warn!(
            epoch = now.master_epoch,
            role = ?now.role,
            "no longer the master: this broker takes no writes and follows the assigned master"
        );
    }
}

//! The broker's composition root: [`Broker`] holds one of each service a broker runs
//! (store, topics, groups, users and ACLs, consume engine, transactions, schedule,
//! replication, NameServer link, metrics, quotas), and [`Broker::build`] is the one place
//! they are made, from an opened store and the config. `server::serve` builds a broker this
//! way; unit tests do the same over the in-memory index ([`Foundation::in_memory`]).
//!
//! Handlers reach the services through the accessors; nothing here imports a handler,
//! `server`, or anything that imports this module back.

use crate::access::AccessTable;
use crate::config::{BrokerConfig, FlushPolicy, Role};
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::metrics::BrokerMetrics;
use crate::produce::{Producer, ProducerConfig};
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
    /// unit tests: only the commit log's files are on disk).
    pub fn in_memory(config: &BrokerConfig) -> Result<Foundation, BrokerError> {
        let journal = Arc::new(JournaledKv::new(Arc::new(crate::store::MemKv::new())));
        let store = MessageStore::open_with_kv(store_config(config), journal.clone())?;
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
        replica: config.role == Role::Slave,
        sync_replicas: config.role == Role::SyncMaster,
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
    limits: ServerLimits,
    nameservers: Arc<NameServerLink>,
    /// Live Telemetry sessions (check-backs are pushed through them).
    sessions: Arc<Sessions>,
    txns: Arc<Transactions>,
    schedule: Arc<Schedule>,
    /// The index database with its journal of replicated writes.
    journal: Arc<JournaledKv>,
    replication: Arc<Replication>,
    /// Unix ms when this broker started.
    started_at_ms: i64,
    metrics: Arc<BrokerMetrics>,
    /// Send rates and the cap on waiting receives.
    quotas: Arc<Quotas>,
    /// Validation, admission, routing and append of sends.
    producer: Producer,
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
        let topics = Arc::new(TopicTable::load(store.kv())?);
        topics.set_auto_create(config.auto_create_topics);
        let lost = store.index_rebuild().filter(|r| r.topic_configs_lost);
        if let (Some(found), false) = (lost, config.role == Role::Slave) {
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
        let nameservers = Arc::new(
            NameServerLink::new(&config, cluster_secret.clone())?.with_access(access.clone()),
        );
        let limits = ServerLimits {
            max_body_bytes: config.max_body_bytes,
            ..ServerLimits::default()
        };
        let sessions = Sessions::with_cap(config.limits.max_sessions_per_address);
        let txns = Transactions::new(
            store.clone(),
            topics.clone(),
            sessions.clone(),
            Some(nameservers.clone()),
            config.transaction.clone(),
            config.broker_name.clone(),
        );
        let schedule = Schedule::new(
            store.clone(),
            topics.clone(),
            config.schedule.clone(),
            config.broker_name.clone(),
            crate::schedule::wall_clock(),
        );
        // A slave counts its master as away until it is connected: what it serves is handed back.
        journal.set_master_away(config.role == Role::Slave);
        let replication = Replication::new(&config, store.clone(), cluster_secret);
        let metrics = BrokerMetrics::new(&config);
        metrics.register_transactions(&txns.outcomes);
        let quotas = Arc::new(Quotas::new(&config.limits));
        let producer = Producer::new(
            ProducerConfig::of(&config),
            store.clone(),
            topics.clone(),
            txns.clone(),
            schedule.clone(),
            quotas.clone(),
            sessions.clone(),
        );
        let broker = Arc::new(Broker {
            quotas,
            producer,
            config,
            store,
            topics,
            groups,
            access,
            consume,
            limits,
            nameservers,
            sessions,
            txns,
            schedule,
            journal,
            replication,
            started_at_ms,
            metrics,
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
            sessions: self.sessions.clone(),
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
        }
    }
}

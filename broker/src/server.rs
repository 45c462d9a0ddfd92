//! Assembles a broker: opens the store (recovering it), loads topics and
//! consume state, and serves the v2 MessagingService, the Admin service and
//! gRPC health on one listener while keeping its NameServer registration
//! fresh. Shutdown ends long polls, unregisters, stops the server and
//! flushes the store.

use crate::config::{BrokerConfig, FlushPolicy, Role};
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::grpc::{admin::AdminServer, MessagingServer};
use crate::metrics::{BrokerMetrics, BrokerOps};
use crate::registration::NameServerLink;
use crate::replication::journal::JournaledKv;
use crate::replication::state::StateTargets;
use crate::replication::{Replication, ReplicationService};
use crate::schedule::Schedule;
use crate::store::{FlushMode, MessageStore, RetentionPolicy, StoreConfig, StoreError};
use crate::topics::TopicTable;
use crate::txn::Transactions;
use apogee_proto::cluster::admin_server::AdminServer as AdminService;
use apogee_proto::cluster::replication_server::ReplicationServer;
use apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES;
use apogee_proto::net::Listener;
use apogee_proto::ops::{OpsListener, OpsServer, OpsSlot, RpcMetricsLayer};
use apogee_proto::rpc_span::RpcSpanLayer;
use apogee_proto::settings::ServerLimits;
use apogee_proto::telemetry::Sessions;
use apogee_proto::v2::messaging_service_server::MessagingServiceServer;
use apogee_proto::ApogeeError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower_layer::Layer;

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

/// Everything a request handler needs.
pub struct Broker {
    pub config: BrokerConfig,
    pub store: Arc<MessageStore>,
    pub topics: Arc<TopicTable>,
    /// Consumer groups' configs.
    pub groups: Arc<GroupTable>,
    /// Users and ACL entries (the guard's directory follows them).
    pub access: Arc<crate::access::AccessTable>,
    pub consume: Arc<ConsumeEngine>,
    pub limits: ServerLimits,
    pub nameservers: Arc<NameServerLink>,
    /// Live Telemetry sessions (check-backs are pushed through them).
    pub sessions: Arc<Sessions>,
    pub txns: Arc<Transactions>,
    pub schedule: Arc<Schedule>,
    /// The index database with its journal of replicated writes.
    pub journal: Arc<JournaledKv>,
    pub replication: Arc<Replication>,
    /// Unix ms when this broker started.
    pub started_at_ms: i64,
    pub metrics: Arc<BrokerMetrics>,
    /// Send rates and the cap on waiting receives.
    pub quotas: crate::quotas::Quotas,
    shutdown: watch::Receiver<bool>,
}

impl Broker {
    /// Whether the broker is shutting down (long polls return at once).
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
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
    pub fn state_targets(&self) -> StateTargets {
        StateTargets {
            journal: self.journal.clone(),
            consume: self.consume.clone(),
            topics: self.topics.clone(),
            groups: self.groups.clone(),
            access: self.access.clone(),
        }
    }

    /// Turns true when the broker starts shutting down (ends Telemetry streams).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

fn store_config(config: &BrokerConfig) -> StoreConfig {
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

/// Runs a broker on `listener` until `shutdown` completes, with its
/// operations endpoint (metrics, health) on `ops` when given: that one serves
/// `/healthz` from the start, and `/readyz` and `/metrics` once the store is open.
pub async fn serve(
    config: BrokerConfig,
    listener: Listener,
    ops: Option<OpsListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    config.validate()?;
    let server_tls = config
        .tls
        .server_tls()
        .map_err(|e| BrokerError::Config(crate::config::InvalidConfig(e)))?;
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let ops_addr = ops
        .as_ref()
        .and_then(|o| o.local_addr().ok())
        .map_or_else(|| "off".to_string(), |a| format!("{scheme}://{a}"));
    let ops_slot = OpsSlot::default();
    let ops_server = OpsServer::start(
        ops.map(|o| o.with_tls(server_tls.clone())),
        ops_slot.clone(),
    );
    let tls_reloader = server_tls
        .as_ref()
        .map(|tls| tls.spawn_reloader(config.tls.reload_interval()));
    let metrics = BrokerMetrics::new(&config);
    let store_cfg = store_config(&config);
    let started_at_ms = apogee_proto::time::now_ms();
    let store = tokio::task::spawn_blocking(move || {
        let mut journal = None;
        let store = MessageStore::open_wrapped(store_cfg, |kv| {
            let j = Arc::new(JournaledKv::new(kv));
            journal = Some(j.clone());
            j
        })?;
        Ok::<_, StoreError>((store, journal.expect("the store wraps its index")))
    })
    .await??;
    let (store, journal) = store;
    let topics = Arc::new(TopicTable::load(store.kv())?);
    topics.set_auto_create(config.auto_create_topics);
    if let (Some(found), false) = (store.index_rebuild(), config.role == Role::Slave) {
        topics.restore_from_log(found)?;
    }
    let groups = Arc::new(GroupTable::load(
        store.kv(),
        config.consume.auto_create_groups,
    )?);
    groups.set_auto_create_start(config.consume.auto_create_start);
    let consume = Arc::new(ConsumeEngine::open(store.clone())?);
    let cluster_secret = config
        .security
        .cluster_secret()
        .map_err(|e| BrokerError::Config(crate::config::InvalidConfig(e)))?;
    let auth = config
        .security
        .auth_layer(cluster_secret.clone())
        .map_err(|e| BrokerError::Config(crate::config::InvalidConfig(e)))?;
    let access = Arc::new(crate::access::AccessTable::load(
        store.kv(),
        cluster_secret
            .as_ref()
            .map(apogee_proto::auth::acl::SecretSeal::new),
        auth.directory(),
    )?);
    let nameservers =
        Arc::new(NameServerLink::new(&config, cluster_secret.clone())?.with_access(access.clone()));
    nameservers.register_at_start(&topics, &groups).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
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
    // Slaves hold copies: only the master checks transactions back.
    let checker = (config.role != Role::Slave).then(|| {
        txns.clone()
            .spawn_checker(config.advertised_endpoint(), stop_rx.clone())
    });
    let schedule = Schedule::new(
        store.clone(),
        topics.clone(),
        config.schedule.clone(),
        config.broker_name.clone(),
        crate::schedule::wall_clock(),
    );
    // Slaves hold copies: only the master publishes what comes due.
    let delivery =
        (config.role != Role::Slave).then(|| schedule.clone().spawn_delivery(stop_rx.clone()));
    // A slave counts its master as away until it is connected: what it serves is handed back.
    journal.set_master_away(config.role == Role::Slave);
    let replication = Replication::new(&config, store.clone(), cluster_secret);
    let broker = Arc::new(Broker {
        config: config.clone(),
        store: store.clone(),
        topics: topics.clone(),
        groups: groups.clone(),
        access,
        consume,
        limits,
        nameservers: nameservers.clone(),
        sessions,
        txns,
        schedule,
        journal: journal.clone(),
        replication: replication.clone(),
        started_at_ms,
        metrics: metrics.clone(),
        quotas: crate::quotas::Quotas::new(&config.limits),
        shutdown: stop_rx.clone(),
    });
    crate::runtime_config::restore(&broker)?;
    metrics.register_transactions(&broker.txns.outcomes);
    ops_slot.set(Arc::new(BrokerOps(broker.clone())));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MessagingServiceServer<MessagingServer>>()
        .await;
    let registration =
        tokio::spawn(nameservers.run(topics.clone(), groups.clone(), stop_rx.clone()));
    // Renewals and dead letters: the master's work (a slave's state follows it).
    let consume_task = (config.role != Role::Slave)
        .then(|| crate::consume::background::spawn(broker.clone(), stop_rx.clone()));

    let replicating = replication.spawn(broker.clone(), stop_rx.clone());

    let addr = listener
        .local_addr()
        .map_err(|e| ApogeeError::Internal(e.to_string()))?;
    tracing::info!(
        "broker {} {} (cluster {}, id {}, {:?}) listening on {addr} (gRPC), advertised as {}; \
         metrics and health on {ops_addr}; data in {}; nameservers {}",
        config.broker_name,
        env!("CARGO_PKG_VERSION"),
        config.cluster_name,
        config.broker_id,
        config.role,
        config.advertised_endpoint(),
        config.data_dir.display(),
        config.nameservers.join(", ")
    );
    let mut stop_wait = stop_rx.clone();
    let routes = tonic::service::Routes::new(health_service)
        .add_service(
            MessagingServiceServer::new(MessagingServer::new(broker.clone()))
                .max_decoding_message_size(apogee_proto::limits::max_request_bytes(
                    config.max_body_bytes,
                ))
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            AdminService::new(AdminServer::new(broker.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            ReplicationServer::new(ReplicationService::new(broker.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .prepare();
    // Outermost first: metrics see every call, then the client-certificate check, then auth,
    // then the span of the call (it names the identity auth admitted the call as).
    let service = RpcMetricsLayer::new(metrics.rpc_latency.clone()).layer(
        apogee_proto::cluster_mtls::ClientCertLayer::new(config.tls.cluster_mtls)
            .layer(auth.layer(RpcSpanLayer.layer(routes))),
    );
    let listener = listener
        .with_connection_cap(config.limits.max_connections_per_address)
        .with_tls(server_tls);
    apogee_proto::serve::serve(service, listener, async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stop_wait.changed() => {}
        }
        tracing::info!("broker shutting down");
        let _ = stop_tx.send(true);
    })
    .await;
    if let Some(task) = tls_reloader {
        task.abort();
    }
    let _ = registration.await;
    let _ = replicating.await;
    for task in [checker, delivery, consume_task].into_iter().flatten() {
        let _ = task.await;
    }
    store.shutdown();
    ops_server.stop().await;
    tracing::info!("broker stopped");
    Ok(())
}

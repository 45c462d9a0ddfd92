//! Runs a broker: validates the config and loads TLS, opens the store (recovering it),
//! builds the services (`crate::services`), registers with the NameServers, starts the
//! background tasks and serves the v2 MessagingService, the Admin and Replication services
//! and gRPC health on one listener. Shutdown ends long polls, unregisters, stops the server
//! and flushes the store, in that order. Each step is one function below.

use crate::config::{BrokerConfig, Role};
use crate::grpc::{admin::AdminServer, forward::SlaveForwarding, MessagingServer};
use crate::metrics::BrokerOps;
use crate::replication::journal::JournaledKv;
use crate::replication::ReplicationService;
use crate::services::{store_config, Broker, BrokerError, Foundation};
use crate::store::{MessageStore, OpenOptions, RebuildProgress, StoreError};
use apogee_proto::cluster::admin_server::AdminServer as AdminService;
use apogee_proto::cluster::replication_server::ReplicationServer;
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES;
use apogee_proto::v2::messaging_service_server::MessagingServiceServer;
use apogee_proto::ApogeeError;
use apogee_server::auth::guard::AuthLayer;
use apogee_server::bootstrap::{layer_stack, Bootstrap, Layered};
use apogee_server::net::Listener;
use apogee_server::ops::{OpsListener, OpsSource};
use apogee_server::tls::ServerTls;
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How this start treats the store, from the command line (`apogee-broker --help`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StartOptions {
    /// Drop the derived index state and rebuild it from the commit log at open.
    pub rebuild_index: bool,
    /// Stop once the store is open (after a rebuild, if any), serving nothing.
    pub exit_after_open: bool,
    /// Restore the empty data dir from the tier first (`crate::tier::restore`).
    pub restore_from_tier: bool,
}

/// Runs a broker on `listener` until `shutdown` completes, with its
/// operations endpoint (metrics, health) on `ops` when given: that one serves
/// `/healthz` from the start, `/readyz` (503 "starting", or the progress of an index
/// rebuild, until then) and `/metrics` once the store is open.
pub async fn serve(
    config: BrokerConfig,
    listener: Listener,
    ops: Option<OpsListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    serve_with(config, StartOptions::default(), listener, ops, shutdown).await
}

/// [`serve`] with `start`'s options.
pub async fn serve_with(
    config: BrokerConfig,
    start: StartOptions,
    listener: Listener,
    ops: Option<OpsListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    let server_tls = validate_and_load_tls(&config)?;
    let mut bootstrap = Bootstrap::start(ops, server_tls.as_ref(), config.tls.reload_interval());
    let (cluster_secret, auth) = security(&config)?;
    if start.restore_from_tier {
        let report = crate::tier::restore::restore(&config, store_config(&config)).await?;
        for line in report.lines() {
            if line.starts_with("lost") || line.starts_with("left out") {
                tracing::warn!("{line}");
            } else {
                tracing::info!("{line}");
            }
        }
    }
    let options = OpenOptions {
        rebuild_index: start.rebuild_index,
        progress: RebuildProgress::new(),
    };
    bootstrap
        .ops_slot()
        .set(Arc::new(Opening(options.progress.clone())));
    let foundation = open_store(&config, options, cluster_secret, auth.directory()).await?;
    if start.exit_after_open {
        tracing::info!("the store is open; exiting as asked (--exit-after-rebuild)");
        foundation.store.shutdown();
        return Ok(());
    }
    let broker = Broker::build(config.clone(), foundation)?;
    broker.finish_interrupted_topic_deletes().await?;
    broker.ensure_trace_topic()?;
    broker
        .nameservers()
        .register_at_start(broker.topics(), broker.groups())
        .await?;
    bootstrap
        .ops_slot()
        .set(Arc::new(BrokerOps(broker.metric_sources())));
    bootstrap
        .set_serving::<MessagingServiceServer<MessagingServer>>()
        .await;
    bootstrap.set_remoting(
        Arc::new(crate::remoting::BrokerRemoting::new(broker.clone())),
        config.remoting.clone(),
        &auth,
    );
    broker
        .metrics()
        .register_remoting_frames(bootstrap.remoting_malformed_frames());
    // A remoting listener of its own is bound now: a port it cannot have fails the start.
    bootstrap
        .bind_remoting()
        .await
        .map_err(|e| ApogeeError::Unavailable(format!("cannot listen: {e}")))?;
    let tasks = start_background_tasks(&broker);
    let addr = listener.local_addr().map_err(ApogeeError::internal)?;
    log_listening(&config, addr, bootstrap.ops_addr());
    let service = layer_stack(
        broker.metrics().rpc_latency.clone(),
        config.tls.cluster_mtls,
        &auth,
        routes(&broker, bootstrap.routes()),
    );
    let listener = listener
        .with_connection_cap(config.limits.max_connections_per_address)
        .with_tls(server_tls);
    let failure =
        serve_until_shutdown(bootstrap, &broker, service, listener, shutdown, tasks).await;
    tracing::info!("broker stopped");
    match failure {
        Some(reason) => Err(BrokerError::Store(StoreError::Failed(reason))),
        None => Ok(()),
    }
}

/// Validates the config and loads the server's TLS identity (None: plain text).
fn validate_and_load_tls(config: &BrokerConfig) -> Result<Option<Arc<ServerTls>>, BrokerError> {
    config.validate()?;
    config
        .tls
        .server_tls()
        .map_err(|e| BrokerError::Config(crate::config::InvalidConfig(e)))
}

/// The cluster secret and the auth guard the config asks for.
fn security(config: &BrokerConfig) -> Result<(Option<ClusterSecret>, AuthLayer), BrokerError> {
    let invalid = |e| BrokerError::Config(crate::config::InvalidConfig(e));
    let cluster_secret = config.security.cluster_secret().map_err(invalid)?;
    let auth = config
        .security
        .auth_layer(cluster_secret.clone())
        .map_err(invalid)?;
    Ok((cluster_secret, auth))
}

/// What the operations endpoint reports while the store opens: not ready, "starting", or how
/// far a rebuild of the index is.
struct Opening(RebuildProgress);

impl OpsSource for Opening {
    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        Vec::new()
    }
    fn readiness(&self) -> Result<(), String> {
        Err(self.0.status().unwrap_or_else(|| "starting".into()))
    }
    fn has_metrics(&self) -> bool {
        false
    }
}

/// Opens the store (recovering it) with its index behind the replication journal.
async fn open_store(
    config: &BrokerConfig,
    options: OpenOptions,
    cluster_secret: Option<ClusterSecret>,
    directory: Option<apogee_proto::auth::Directory>,
) -> Result<Foundation, BrokerError> {
    let store_cfg = store_config(config);
    let (store, journal) = tokio::task::spawn_blocking(move || {
        let mut journal = None;
        let store = MessageStore::open_wrapped_with(store_cfg, options, |kv| {
            let j = Arc::new(JournaledKv::new(kv));
            journal = Some(j.clone());
            j
        })?;
        Ok::<_, StoreError>((store, journal.expect("the store wraps its index")))
    })
    .await??;
    Ok(Foundation {
        store,
        journal,
        cluster_secret,
        directory,
    })
}

/// The background tasks, each ending when the broker starts shutting down.
struct BackgroundTasks {
    registration: JoinHandle<()>,
    /// The role supervisor and its role's tasks (`Broker::spawn_roles`): a master's
    /// check-backs, scheduled delivery, renewals and dead letters and in-sync refresh, a
    /// slave's replication loop.
    roles: JoinHandle<()>,
    /// The traffic history's sampler (`crate::metrics::traffic`).
    traffic: JoinHandle<()>,
}

fn start_background_tasks(broker: &Arc<Broker>) -> BackgroundTasks {
    let registration = tokio::spawn(broker.nameservers().clone().run(
        broker.topics().clone(),
        broker.groups().clone(),
        broker.closing(),
    ));
    BackgroundTasks {
        registration,
        roles: broker.spawn_roles(),
        traffic: broker.metrics().traffic().clone().spawn(broker.closing()),
    }
}

fn log_listening(config: &BrokerConfig, addr: std::net::SocketAddr, ops_addr: &str) {
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
}

/// MessagingService, Admin and Replication added to `routes` (the bootstrap's, with health).
/// A slave's MessagingService is behind its pass-through to the master (`grpc::forward`),
/// and so is every controller-mode broker's: the pass-through decides per call from the role
/// then (a promoted broker serves directly, a demoted one passes calls on).
fn routes(broker: &Arc<Broker>, routes: tonic::service::Routes) -> tonic::service::Routes {
    let config = broker.config();
    let messaging = MessagingServiceServer::new(MessagingServer::new(broker.clone()))
        .max_decoding_message_size(apogee_proto::limits::max_request_bytes(
            config.max_body_bytes,
        ))
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let routes = if config.role == Role::Slave || config.controller_mode() {
        routes.add_service(SlaveForwarding::new(
            messaging,
            broker.replication().clone(),
            &config.broker_name,
            &config.advertised_endpoint(),
        ))
    } else {
        routes.add_service(messaging)
    };
    routes
        .add_service(
            AdminService::new(AdminServer::new(broker.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            ReplicationServer::new(
                ReplicationService::new(broker.replication_context()).ending_on(broker.closing()),
            )
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .prepare()
}

/// Serves until `shutdown` completes (then a controller-mode master hands its role over and
/// drains: [`Broker::leave`]), the broker starts shutting down otherwise, or its store
/// fails, then stops in the bootstrap's order: health NOT_SERVING, every service told
/// to stop (long polls end), the drain of the open calls, then [`shut_down`] (which
/// unregisters). Returns the store's failure when that was the cause.
///
/// A failed store takes no more writes and its index may refuse the consume-state writes
/// reads need, so a broker that stayed up would stay in the routes and fail every call sent
/// to it. Stopping takes it out of the routes at once (clients go to the slave, the other
/// groups), and the exit status tells its supervisor to start it again, which recovers from
/// the log; Kafka stops a broker whose last log directory failed for the same reason.
async fn serve_until_shutdown(
    bootstrap: Bootstrap,
    broker: &Arc<Broker>,
    service: Layered,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tasks: BackgroundTasks,
) -> Option<String> {
    let mut stop_wait = broker.closing();
    let stopping = broker.clone();
    let store = broker.store().clone();
    let failure = Arc::new(parking_lot::Mutex::new(None));
    let failed = failure.clone();
    let leaving = broker.clone();
    let signal = async move {
        tokio::select! {
            // A controller-mode master hands its role over and drains first.
            _ = shutdown => leaving.leave().await,
            _ = stop_wait.changed() => {}
            reason = store.failed() => {
                tracing::error!(
                    "the store failed, the broker stops (a restart recovers from the log): {reason}"
                );
                *failed.lock() = Some(reason);
            }
        }
    };
    let on_stop = move || {
        tracing::info!("broker shutting down");
        stopping.begin_shutdown();
    };
    bootstrap
        .serve(service, listener, signal, on_stop, shut_down(broker, tasks))
        .await;
    let reason = failure.lock().take();
    reason
}

/// After the drain: the background tasks (registration ends with unregistering), then the
/// store's flush.
async fn shut_down(broker: &Broker, tasks: BackgroundTasks) {
    let _ = tasks.registration.await;
    let _ = tasks.roles.await;
    let _ = tasks.traffic.await;
    broker.store().shutdown();
}

//! Runs a broker: validates the config and loads TLS, opens the store (recovering it),
//! builds the services (`crate::services`), registers with the NameServers, starts the
//! background tasks and serves the v2 MessagingService, the Admin and Replication services
//! and gRPC health on one listener. Shutdown ends long polls, unregisters, stops the server
//! and flushes the store, in that order. Each step is one function below.

use crate::config::{BrokerConfig, Role};
use crate::grpc::{admin::AdminServer, MessagingServer};
use crate::metrics::BrokerOps;
use crate::replication::journal::JournaledKv;
use crate::replication::ReplicationService;
use crate::services::{store_config, BrokerError, Foundation};
use crate::store::{MessageStore, StoreError};
use apogee_server::auth::guard::AuthLayer;
use apogee_proto::cluster::admin_server::AdminServer as AdminService;
use apogee_proto::cluster::replication_server::ReplicationServer;
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES;
use apogee_server::net::Listener;
use apogee_server::ops::{OpsListener, OpsServer, OpsSlot, RpcMetricsLayer};
use apogee_server::rpc_span::RpcSpanLayer;
use apogee_server::tls::ServerTls;
use apogee_proto::v2::messaging_service_server::MessagingServiceServer;
use apogee_proto::ApogeeError;
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tower_layer::Layer;

/// Where `Broker` was before it moved to [`crate::services`] (for the handlers not moved yet).
pub use crate::services::Broker;

/// Runs a broker on `listener` until `shutdown` completes, with its
/// operations endpoint (metrics, health) on `ops` when given: that one serves
/// `/healthz` from the start, and `/readyz` and `/metrics` once the store is open.
pub async fn serve(
    config: BrokerConfig,
    listener: Listener,
    ops: Option<OpsListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    let server_tls = validate_and_load_tls(&config)?;
    let ops = start_ops(ops, &server_tls);
    let tls_reloader = spawn_tls_reloader(&config, &server_tls);
    let (cluster_secret, auth) = security(&config)?;
    let foundation = open_store(&config, cluster_secret, auth.directory()).await?;
    let broker = Broker::build(config.clone(), foundation)?;
    broker
        .nameservers
        .register_at_start(&broker.topics, &broker.groups)
        .await?;
    ops.slot.set(Arc::new(BrokerOps(broker.clone())));
    let health_service = serving_health().await;
    let tasks = start_background_tasks(&broker);
    let addr = listener
        .local_addr()
        .map_err(|e| ApogeeError::Internal(e.to_string()))?;
    log_listening(&config, addr, &ops.addr);
    let service = layer_stack(&broker, auth, routes(&broker, health_service));
    let listener = listener
        .with_connection_cap(config.limits.max_connections_per_address)
        .with_tls(server_tls);
    accept_until_shutdown(&broker, service, listener, shutdown).await;
    shut_down(&broker, tasks, tls_reloader, ops.server).await;
    Ok(())
}

/// Validates the config and loads the server's TLS identity (None: plain text).
fn validate_and_load_tls(config: &BrokerConfig) -> Result<Option<Arc<ServerTls>>, BrokerError> {
    config.validate()?;
    config
        .tls
        .server_tls()
        .map_err(|e| BrokerError::Config(crate::config::InvalidConfig(e)))
}

/// The operations endpoint, serving `/healthz` until [`OpsSlot::set`] gives it the rest.
struct Ops {
    server: OpsServer,
    slot: OpsSlot,
    /// Where it listens, for the start log line ("off" without one).
    addr: String,
}

fn start_ops(ops: Option<OpsListener>, server_tls: &Option<Arc<ServerTls>>) -> Ops {
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let addr = ops
        .as_ref()
        .and_then(|o| o.local_addr().ok())
        .map_or_else(|| "off".to_string(), |a| format!("{scheme}://{a}"));
    let slot = OpsSlot::default();
    let server = OpsServer::start(ops.map(|o| o.with_tls(server_tls.clone())), slot.clone());
    Ops { server, slot, addr }
}

/// Reloads the certificate and key when their files change.
fn spawn_tls_reloader(
    config: &BrokerConfig,
    server_tls: &Option<Arc<ServerTls>>,
) -> Option<JoinHandle<()>> {
    server_tls
        .as_ref()
        .map(|tls| tls.spawn_reloader(config.tls.reload_interval()))
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

/// Opens the store (recovering it) with its index behind the replication journal.
async fn open_store(
    config: &BrokerConfig,
    cluster_secret: Option<ClusterSecret>,
    directory: Option<apogee_proto::auth::Directory>,
) -> Result<Foundation, BrokerError> {
    let store_cfg = store_config(config);
    let (store, journal) = tokio::task::spawn_blocking(move || {
        let mut journal = None;
        let store = MessageStore::open_wrapped(store_cfg, |kv| {
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

/// gRPC health, reporting the messaging service as serving.
async fn serving_health(
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MessagingServiceServer<MessagingServer>>()
        .await;
    health_service
}

/// The background tasks, each ending when the broker starts shutting down.
struct BackgroundTasks {
    registration: JoinHandle<()>,
    replicating: JoinHandle<()>,
    /// The master's: transaction check-backs, scheduled delivery, renewals and dead letters.
    others: Vec<JoinHandle<()>>,
}

fn start_background_tasks(broker: &Arc<Broker>) -> BackgroundTasks {
    let config = &broker.config;
    let stop = broker.closing();
    let mut others = Vec::new();
    // Slaves hold copies: only the master checks transactions back, publishes what comes
    // due, renews and dead-letters (a slave's state follows its master).
    if config.role != Role::Slave {
        others.push(
            broker
                .txns
                .clone()
                .spawn_checker(config.advertised_endpoint(), stop.clone()),
        );
        others.push(broker.schedule.clone().spawn_delivery(stop.clone()));
        others.push(crate::consume::background::spawn(
            broker.clone(),
            stop.clone(),
        ));
    }
    let registration = tokio::spawn(broker.nameservers.clone().run(
        broker.topics.clone(),
        broker.groups.clone(),
        stop.clone(),
    ));
    let replicating = broker.replication.spawn(broker.clone(), stop);
    BackgroundTasks {
        registration,
        replicating,
        others,
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

/// Health, MessagingService, Admin and Replication on one router.
fn routes(
    broker: &Arc<Broker>,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::service::Routes {
    tonic::service::Routes::new(health_service)
        .add_service(
            MessagingServiceServer::new(MessagingServer::new(broker.clone()))
                .max_decoding_message_size(apogee_proto::limits::max_request_bytes(
                    broker.config.max_body_bytes,
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
        .prepare()
}

/// The routes inside their layers.
type Layered = apogee_server::ops::RpcMetrics<
    apogee_server::cluster_mtls::ClientCertCheck<
        apogee_server::auth::guard::AuthService<
            apogee_server::rpc_span::RpcSpan<tonic::service::Routes>,
        >,
    >,
>;

/// The layers around the routes. Outermost first: metrics see every call, then the
/// client-certificate check, then auth, then the span of the call (it names the identity
/// auth admitted the call as).
fn layer_stack(broker: &Broker, auth: AuthLayer, routes: tonic::service::Routes) -> Layered {
    RpcMetricsLayer::new(broker.metrics.rpc_latency.clone()).layer(
        apogee_server::cluster_mtls::ClientCertLayer::new(broker.config.tls.cluster_mtls)
            .layer(auth.layer(RpcSpanLayer.layer(routes))),
    )
}

/// Accepts connections until `shutdown` completes or the broker starts shutting down
/// otherwise; then tells every service to stop and waits for the open calls.
async fn accept_until_shutdown(
    broker: &Arc<Broker>,
    service: Layered,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut stop_wait = broker.closing();
    let stopping = broker.clone();
    apogee_server::serve::serve(service, listener, async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stop_wait.changed() => {}
        }
        tracing::info!("broker shutting down");
        stopping.begin_shutdown();
    })
    .await;
}

/// After the listener closed: the TLS reloader, the background tasks (registration ends
/// with unregistering), the store's flush, then the operations endpoint.
async fn shut_down(
    broker: &Broker,
    tasks: BackgroundTasks,
    tls_reloader: Option<JoinHandle<()>>,
    ops_server: OpsServer,
) {
    if let Some(task) = tls_reloader {
        task.abort();
    }
    let _ = tasks.registration.await;
    let _ = tasks.replicating.await;
    for task in tasks.others {
        let _ = task.await;
    }
    broker.store.shutdown();
    ops_server.stop().await;
    tracing::info!("broker stopped");
}

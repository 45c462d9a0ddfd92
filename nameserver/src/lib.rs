//! apogee-nameserver: the NameServer as a library, so the `apogee-nameserver`
//! executable (nameserver/cmd) and the broker's `--standalone` mode run the same code.
//!
//! - [`config`]: the NameServer's config (loaded and, where both servers share settings,
//!   validated by apogee-server).
//! - [`registry`]: the broker table (membership, expiry, routes).
//! - [`grpc`]: the Registry, Admin and client access-point services.
//! - [`metrics`]: its Prometheus metrics and readiness (the HTTP endpoint).
//! - [`console`]: where it serves the web console at `/console`; the console's routes come
//!   from the executable (apogee-console is not a dependency of this library).
//! - [`remoting`]: the answers to RocketMQ 4.x remoting clients (routes, cluster info,
//!   topic lists), served beside gRPC.
//! - [`serve`]: runs all of it on a listener until a shutdown future fires, with the
//!   controller of automatic failover (apogee-controller) embedded when
//!   `controller.enabled`, or reached at `controller.endpoints` when it runs as its own
//!   process.
//! - [`controller_process`]: that process (the `apogee-controller` binary): its config
//!   (the `[controller]` section above, with a listener, TLS and the cluster secret) and
//!   its server.
//! - [`startup`]: what the `apogee-nameserver` and `apogee-controller` executables do the
//!   same way once their command lines are parsed.
//!
//! No global state: no global tracing subscriber, no statics.

pub mod access;
pub mod config;
pub mod console;
pub mod controller_process;
mod expiry;
pub mod grpc;
pub mod metrics;
pub mod registry;
pub mod remoting;
pub mod startup;

pub use apogee_server::config_file::ConfigError;
pub use config::NameServerConfig;

use apogee_proto::cluster::admin_server::AdminServer;
use apogee_proto::cluster::registry_server::RegistryServer;
use apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES;
use apogee_proto::v2::messaging_service_server::MessagingServiceServer;
use apogee_server::bootstrap::{layer_stack, Bootstrap};
use apogee_server::net::Listener;
use apogee_server::ops::OpsListener;
use apogee_server::settings::ServerLimits;
use apogee_server::web_console::ConsoleRoutes;
use registry::Registry;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why the NameServer could not run.
#[derive(Debug, thiserror::Error)]
pub enum NameServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("controller: {0}")]
    Controller(#[from] apogee_controller::StartError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// Serves the NameServer on `listener` (and its operations endpoint on `ops`
/// when given, with the web console built by `console` when `[console]` enables it) until
/// `shutdown` completes, then shuts down gracefully (open
/// Telemetry streams are ended so clients reconnect elsewhere). The config's
/// `listen` and `http_listen` are not used: the caller binds.
pub async fn serve(
    config: NameServerConfig,
    listener: Listener,
    ops: Option<OpsListener>,
    console: Option<ConsoleRoutes>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NameServerError> {
    config.validate()?;
    let node_id = listener
        .local_addr()
        .map_or_else(|_| config.listen.clone(), |a| a.to_string());
    let metrics = Arc::new(metrics::NameServerMetrics::new(&node_id)?);
    let cluster_secret = config
        .security
        .cluster_secret()
        .map_err(ConfigError::Invalid)?;
    let registry = Arc::new(
        Registry::new(config.broker_expiry())
            .with_missed_heartbeats(config.broker_missed_heartbeats),
    );
    let limits = ServerLimits {
        max_body_bytes: config.max_body_bytes,
        client_metrics: config
            .telemetry
            .client_metrics()
            .map_err(ConfigError::Invalid)?,
        ..ServerLimits::default()
    };
    let sessions = apogee_server::telemetry::Sessions::with_cap(config.max_sessions_per_address);
    let server_tls = config.tls.server_tls().map_err(ConfigError::Invalid)?;
    let broker_tls = config.tls.client_tls().map_err(ConfigError::Invalid)?;
    let broker_channels = Arc::new(grpc::BrokerChannels::new(
        cluster_secret.clone(),
        broker_tls.clone(),
    ));
    let access_point = grpc::AccessPoint::new(registry.clone(), limits, sessions.clone())
        .with_broker_channels(broker_channels.clone())
        .with_route_addresses(config.route_addresses);
    // Any user may list topics, groups and their own ACL entries here, each answer filtered
    // to what their entries grant (the console shows a user who is not an admin that much).
    let auth = config
        .security
        .auth_layer(cluster_secret.clone())
        .map_err(ConfigError::Invalid)?
        .with_user_listings();
    let access = Arc::new(access::AccessBook::new(
        cluster_secret
            .as_ref()
            .map(apogee_proto::auth::acl::SecretSeal::new),
        auth.directory(),
    ));

    // The controller of automatic failover. Its calls carry what a broker's calls to a
    // NameServer carry: the cluster proof, over TLS when the server has it.
    let console_tls = broker_tls.clone();
    let trust = apogee_controller::PeerTrust {
        secret: cluster_secret.clone(),
        tls: broker_tls,
    };
    let remote_endpoints = config
        .controller
        .remote_endpoints()
        .map_err(ConfigError::Invalid)?;
    // Embedded (`controller.enabled`): a voter served on this listener, a single voter at
    // the listener's address when no peers are named.
    let controller = if config.controller.enabled {
        let controller_config = config
            .controller
            .controller_config(&node_id)
            .map_err(ConfigError::Invalid)?;
        tracing::info!(
            node = controller_config.node_id,
            peers = ?controller_config.peers,
            data_dir = %controller_config.data_dir.display(),
            "starting the embedded controller"
        );
        Some(apogee_controller::Controller::start(controller_config, trust.clone()).await?)
    } else {
        None
    };
    // Remote (`controller.endpoints`): apogee-controller processes, the leader found among
    // them on each call.
    let authority: Option<apogee_controller::SharedAuthority> =
        match (&controller, remote_endpoints) {
            (Some(embedded), _) => Some(Arc::new(embedded.clone())),
            (None, Some(endpoints)) => {
                tracing::info!(?endpoints, "using the controllers at these endpoints");
                Some(Arc::new(apogee_controller::RemoteController::new(
                    endpoints, trust,
                )))
            }
            (None, None) => None,
        };

    let grpc_addr = listener.local_addr()?;
    let (ops, console_server) = console::mount(
        console::Mount {
            section: &config.console,
            routes: console,
            grpc: grpc_addr,
            authentication: config.security.authentication,
            server_tls: server_tls.clone(),
            client_tls: console_tls,
        },
        ops,
    )
    .await?;
    let mut bootstrap = Bootstrap::start(ops, server_tls.as_ref(), config.tls.reload_interval());
    bootstrap
        .set_serving::<RegistryServer<grpc::RegistryService>>()
        .await;
    bootstrap
        .set_serving::<AdminServer<grpc::AdminService>>()
        .await;
    bootstrap
        .set_serving::<MessagingServiceServer<grpc::AccessPoint>>()
        .await;

    // The VIP channel is a broker's (its port minus 2): never on a NameServer.
    bootstrap.set_remoting(
        Arc::new(remoting::NameServerRemoting::new(registry.clone())),
        apogee_server::remoting::RemotingSection {
            vip_channel: false,
            ..config.remoting.clone()
        },
        &auth,
    );
    bootstrap.bind_remoting().await?;
    metrics.register_remoting_frames(bootstrap.remoting_malformed_frames())?;

    let expiry_task = expiry::spawn(
        registry.clone(),
        config.expiry_scan_interval(),
        metrics.liveness.clone(),
    );

    let closing = Arc::new(AtomicBool::new(false));
    bootstrap.ops_slot().set(Arc::new(metrics::NameServerOps {
        metrics: metrics.clone(),
        registry: registry.clone(),
        sessions: sessions.clone(),
        closing: closing.clone(),
        controller: controller.clone(),
    }));

    let registry_service = grpc::RegistryService::new(registry.clone(), sessions.clone())
        .with_cluster_secret(cluster_secret.clone())
        .with_access(access.clone(), broker_channels.clone())
        .with_counters(metrics.liveness.clone())
        .with_controller(authority.clone());
    let routes = bootstrap
        .routes()
        .add_service(
            RegistryServer::new(registry_service.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            AdminServer::new(
                grpc::AdminService::new(registry.clone())
                    .with_sessions(sessions)
                    .with_broker_channels(broker_channels)
                    .with_access(access)
                    .with_controller(authority),
            )
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            MessagingServiceServer::new(access_point.clone())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        );
    let routes = match &controller {
        Some(controller) => routes.add_service(controller.grpc_service()),
        None => routes,
    }
    .prepare();
    let service = layer_stack(
        metrics.rpc_latency.clone(),
        config.tls.cluster_mtls,
        &auth,
        routes,
    );
    let listener = listener
        .with_connection_cap(config.max_connections_per_address)
        .with_tls(server_tls);
    bootstrap
        .serve(
            service,
            listener,
            shutdown,
            move || {
                closing.store(true, Ordering::Relaxed);
                tracing::info!("nameserver shutting down");
                // Telemetry streams end so that clients reconnect elsewhere, broker
                // sessions so that brokers reconnect when it is back.
                access_point.close_streams();
                registry_service.close_sessions();
            },
            async move {
                expiry_task.abort();
                if let Some(console) = console_server {
                    console.stop().await;
                }
                if let Some(controller) = controller {
                    controller.shutdown().await;
                }
            },
        )
        .await;
    Ok(())
}

//! The start and the stop both servers share, in one order.
//!
//! Start ([`Bootstrap::start`]): the operations endpoint (`/healthz` from the start; the rest
//! once the server hands its [`OpsSlot`] a source), the TLS reloader, and the gRPC health
//! reporter. The server then builds its own state, marks its services serving
//! ([`Bootstrap::set_serving`]), adds them to [`Bootstrap::routes`] and wraps the routes in
//! [`layer_stack`] (RPC metrics, then the client-certificate check, then auth, then the rpc
//! span, then the routes).
//!
//! Remoting ([`Bootstrap::set_remoting`]): served beside gRPC on the server's listener, or
//! on `remoting.listen` alone (bound by [`Bootstrap::bind_remoting`], or by `serve`), and on
//! the gRPC port minus 2 with `remoting.vip_channel` (a port it cannot bind is a warning).
//!
//! Stop ([`Bootstrap::serve`]), when the shutdown future completes: health reports
//! NOT_SERVING first (the overall status and every service marked serving), so load balancers
//! and clients watching health move away before anything closes; then the server's own
//! `on_stop` hook (end long polls and Telemetry streams); then the listener stops accepting
//! and the open calls drain; then the TLS reloader stops, the server's own teardown runs, and
//! the operations endpoint closes last.

use crate::auth::guard::{AuthLayer, AuthService};
use crate::cluster_mtls::{ClientCertCheck, ClientCertLayer};
use crate::net::Listener;
use crate::ops::{OpsListener, OpsServer, OpsSlot, RpcMetrics, RpcMetricsLayer};
use crate::remoting::{
    MalformedFrames, RemotingAuth, RemotingSection, RemotingServer, RemotingService,
};
use crate::rpc_span::{RpcSpan, RpcSpanLayer};
use crate::serve::Serving;
use crate::tls::ServerTls;
use apogee_proto::remoting::frame::FrameLimits;
use parking_lot::Mutex;
use prometheus::HistogramVec;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tower_layer::Layer;

/// A server's routes inside the layers every call passes ([`layer_stack`]).
pub type Layered = RpcMetrics<ClientCertCheck<AuthService<RpcSpan<Routes>>>>;

/// The layers around a server's routes. Outermost first: metrics see every call, then the
/// client-certificate check (`cluster_mtls`), then auth, then the span of the call (it names
/// the identity auth admitted the call as).
pub fn layer_stack(
    rpc_latency: HistogramVec,
    cluster_mtls: bool,
    auth: &AuthLayer,
    routes: Routes,
) -> Layered {
    RpcMetricsLayer::new(rpc_latency)
        .layer(ClientCertLayer::new(cluster_mtls).layer(auth.layer(RpcSpanLayer.layer(routes))))
}

/// What a server runs beside its own services, from its start to its stop.
pub struct Bootstrap {
    ops: OpsServer,
    ops_slot: OpsSlot,
    ops_addr: String,
    tls_reloader: Option<tokio::task::JoinHandle<()>>,
    health: HealthReporter,
    /// The services marked serving: each reports NOT_SERVING at the stop.
    serving: Mutex<Vec<&'static str>>,
    /// What answers remoting clients, its settings and the auth its requests pass (none:
    /// gRPC only).
    remoting: Option<(Arc<dyn RemotingService>, RemotingSection, AuthLayer)>,
    /// Remoting's own listener (`remoting.listen`), once bound.
    remoting_listener: Option<Listener>,
    /// Remoting connections closed for a malformed frame (for the server's metrics).
    malformed_frames: MalformedFrames,
}

impl Bootstrap {
    /// Starts the operations endpoint on `ops` (with the listeners' TLS, when on) and the
    /// reloader of `tls` (checking the files every `reload_interval`, and on SIGHUP).
    pub fn start(
        ops: Option<OpsListener>,
        tls: Option<&Arc<ServerTls>>,
        reload_interval: Duration,
    ) -> Bootstrap {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ops_addr = ops
            .as_ref()
            .and_then(|o| o.local_addr().ok())
            .map_or_else(|| "off".to_string(), |a| format!("{scheme}://{a}"));
        let ops_slot = OpsSlot::default();
        let ops = OpsServer::start(ops.map(|o| o.with_tls(tls.cloned())), ops_slot.clone());
        Bootstrap {
            ops,
            ops_slot,
            ops_addr,
            tls_reloader: tls.map(|tls| tls.spawn_reloader(reload_interval)),
            health: HealthReporter::new(),
            serving: Mutex::new(Vec::new()),
            remoting: None,
            remoting_listener: None,
            malformed_frames: MalformedFrames::default(),
        }
    }

    /// Serves remoting clients with `service` as `section` says (when it is enabled): on
    /// the gRPC listener, or on a listener of its own; each request checked by `auth` (the
    /// same users and ACLs as gRPC calls, RocketMQ's ACL signature).
    pub fn set_remoting(
        &mut self,
        service: Arc<dyn RemotingService>,
        section: RemotingSection,
        auth: &AuthLayer,
    ) {
        self.remoting = section.enabled.then(|| (service, section, auth.clone()));
    }

    /// Binds remoting's own listener when `remoting.listen` names one, and returns its
    /// address (`None`: remoting shares the gRPC listener, or is off). A server calls this
    /// before [`Bootstrap::serve`] to fail its start on a port it cannot have; `serve`
    /// binds it itself otherwise (and logs an error when it cannot).
    pub async fn bind_remoting(&mut self) -> std::io::Result<Option<SocketAddr>> {
        if let Some(bound) = &self.remoting_listener {
            return bound.local_addr().map(Some);
        }
        let Some((_, section, _)) = &self.remoting else {
            return Ok(None);
        };
        if section.listen.is_empty() {
            return Ok(None);
        }
        let listener = Listener::bind(&section.listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("remoting.listen {}: {e}", section.listen))
        })?;
        let addr = listener.local_addr()?;
        self.remoting_listener = Some(listener);
        Ok(Some(addr))
    }

    /// The count of remoting connections closed for a malformed frame, from the start of
    /// `serve` (for the server's metrics: it reads the count without a handle on the
    /// transport).
    pub fn remoting_malformed_frames(&self) -> MalformedFrames {
        self.malformed_frames.clone()
    }

    /// The listeners `serve` serves, `listener` first, and what answers remoting on them.
    async fn listeners(
        &mut self,
        listener: Listener,
    ) -> (Vec<(Listener, Serving)>, Option<Arc<RemotingServer>>) {
        let Some((service, section, auth)) = self.remoting.clone() else {
            return (vec![(listener, Serving::Grpc)], None);
        };
        let remoting = Arc::new(
            RemotingServer::new(
                service,
                RemotingAuth::new(&auth),
                FrameLimits::with_max_frame(section.max_frame_bytes),
            )
            .with_malformed_frames(self.malformed_frames.clone()),
        );
        let (cap, tls) = (listener.connection_cap(), listener.tls());
        let like_grpc = |l: Listener| l.with_connection_cap(cap).with_tls(tls.clone());
        let vip = section
            .vip_channel
            .then(|| listener.local_addr().ok())
            .flatten()
            .filter(|addr| addr.port() > 2)
            .map(|addr| SocketAddr::new(addr.ip(), addr.port() - 2));
        let mut listeners = Vec::new();
        if section.listen.is_empty() {
            listeners.push((listener, Serving::GrpcAndRemoting));
        } else {
            listeners.push((listener, Serving::Grpc));
            match self.bind_remoting().await {
                Ok(_) => {
                    let own = self.remoting_listener.take().expect("bound");
                    tracing::info!(addr = ?own.local_addr().ok(), "remoting listening");
                    listeners.push((like_grpc(own), Serving::Remoting));
                }
                Err(e) => tracing::error!("remoting is not served: {e}"),
            }
        }
        if let Some(vip) = vip {
            match Listener::bind(&vip.to_string()).await {
                Ok(l) => {
                    tracing::info!(%vip, "remoting VIP channel listening");
                    listeners.push((like_grpc(l), Serving::Remoting));
                }
                Err(e) => tracing::warn!(%vip, "the remoting VIP channel is not served: {e}"),
            }
        }
        (listeners, Some(remoting))
    }

    /// Where the operations endpoint takes the server's metrics and readiness from.
    pub fn ops_slot(&self) -> &OpsSlot {
        &self.ops_slot
    }

    /// The operations endpoint's address as a URL, or "off" (for the start-up log line).
    pub fn ops_addr(&self) -> &str {
        &self.ops_addr
    }

    /// Reports service `S` as serving on gRPC health (until the stop).
    pub async fn set_serving<S: NamedService>(&self) {
        self.serving.lock().push(S::NAME);
        self.health.set_serving::<S>().await;
    }

    /// The router with gRPC health on it, for the server to add its services to.
    pub fn routes(&self) -> Routes {
        Routes::new(HealthServer::new(HealthService::from_health_reporter(
            self.health.clone(),
        )))
    }

    /// Health NOT_SERVING: the overall status and every service marked serving.
    async fn report_not_serving(&self) {
        let serving: Vec<&'static str> = self.serving.lock().clone();
        for name in std::iter::once("").chain(serving) {
            self.health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }

    /// Serves `service` on `listener` until `shutdown` completes, then stops in the one
    /// order of both servers: health NOT_SERVING, `on_stop`, stop accepting and drain the
    /// open calls, stop the TLS reloader, `teardown` (the server's own), and last the
    /// operations endpoint. Returns what `teardown` returns.
    pub async fn serve<T>(
        mut self,
        service: Layered,
        listener: Listener,
        shutdown: impl Future<Output = ()> + Send,
        on_stop: impl FnOnce() + Send,
        teardown: impl Future<Output = T>,
    ) -> T {
        let (listeners, remoting) = self.listeners(listener).await;
        let signal = async {
            shutdown.await;
            self.report_not_serving().await;
            on_stop();
        };
        crate::serve::serve_listeners(service, listeners, remoting, signal).await;
        if let Some(task) = &self.tls_reloader {
            task.abort();
        }
        let out = teardown.await;
        self.ops.stop().await;
        out
    }
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;

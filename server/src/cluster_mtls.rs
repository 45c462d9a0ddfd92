//! Mutual TLS as cluster trust (`tls.cluster_mtls`), the other form of the shared secret in
//! [`apogee_proto::cluster_auth`]: the calls only cluster members make (a broker's registration,
//! heartbeat, unregistration and check-back relay on a NameServer; a slave's replication
//! stream on a master; every call of the controllers' Raft service) are taken only over a connection whose client presented a
//! certificate the server verified against `tls.client_ca_file`. Every other call (the
//! clients' MessagingService, Admin, route and cluster queries) stays open to clients
//! without a certificate.
//!
//! [`ClientCertLayer`] does the check in front of every service of a server, by the call's
//! gRPC path ([`cluster_only`]); a refused call gets UNAUTHENTICATED and is logged with the
//! peer's address.

use apogee_proto::cluster::{registry_server, replication_server};
use apogee_proto::controller::raft_server;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Whether the gRPC path (`/package.Service/Method`) is a call only cluster members make.
pub fn cluster_only(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    (service == registry_server::SERVICE_NAME
        && matches!(
            method,
            "RegisterBroker"
                | "BrokerHeartbeat"
                | "BrokerSession"
                | "UnregisterBroker"
                | "RelayCheckBack"
        ))
        || (service == replication_server::SERVICE_NAME && method == "Replicate")
        || service == raft_server::SERVICE_NAME
}

/// Refuses cluster-only calls without a verified client certificate, when `required`.
#[derive(Clone, Copy, Debug)]
pub struct ClientCertLayer {
    required: bool,
}

impl ClientCertLayer {
    /// The check, on (`required`) or passing every call through.
    pub fn new(required: bool) -> ClientCertLayer {
        ClientCertLayer { required }
    }
}

impl<S> tower_layer::Layer<S> for ClientCertLayer {
    type Service = ClientCertCheck<S>;
    fn layer(&self, inner: S) -> ClientCertCheck<S> {
        ClientCertCheck {
            inner,
            required: self.required,
        }
    }
}

/// The service of [`ClientCertLayer`].
#[derive(Clone, Debug)]
pub struct ClientCertCheck<S> {
    inner: S,
    required: bool,
}

/// Whether the connection a request came on presented a verified client certificate (the
/// server's TLS verified every certificate presented), and the peer's address.
fn client_cert<B>(request: &http::Request<B>) -> (bool, String) {
    let tls = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
    let verified = tls
        .and_then(|i| i.peer_certs())
        .is_some_and(|certs| !certs.is_empty());
    let peer = tls
        .and_then(|i| i.get_ref().remote_addr())
        .or_else(|| {
            request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|i| i.remote_addr())
        })
        .map_or_else(|| "unknown".to_string(), |a| a.to_string());
    (verified, peer)
}

impl<S, B> tower_service::Service<http::Request<B>> for ClientCertCheck<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.required && cluster_only(request.uri().path()) {
            let (verified, peer) = client_cert(&request);
            if !verified {
                let call = request.uri().path().to_string();
                tracing::warn!(
                    %peer,
                    "refused {call}: no verified client certificate (tls.cluster_mtls)"
                );
                let status = tonic::Status::unauthenticated(format!(
                    "{call} refused: this server takes it only from cluster members with a \
                     client certificate (tls.cluster_mtls), and none was presented"
                ));
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_members_calls_are_cluster_only() {
        for path in [
            "/apogee.cluster.v1.Registry/RegisterBroker",
            "/apogee.cluster.v1.Registry/BrokerHeartbeat",
            "/apogee.cluster.v1.Registry/BrokerSession",
            "/apogee.cluster.v1.Registry/UnregisterBroker",
            "/apogee.cluster.v1.Registry/RelayCheckBack",
            "/apogee.cluster.v1.Replication/Replicate",
            "/apogee.controller.v1.Raft/Vote",
            "/apogee.controller.v1.Raft/Write",
        ] {
            assert!(cluster_only(path), "{path}");
        }
        for path in [
            "/apogee.cluster.v1.Registry/GetRoute",
            "/apogee.cluster.v1.Registry/GetClusterInfo",
            "/apogee.cluster.v1.Admin/CreateTopic",
            "/apache.rocketmq.v2.MessagingService/SendMessage",
            "/",
            "",
        ] {
            assert!(!cluster_only(path), "{path}");
        }
    }

    /// A service answering OK to everything.
    #[derive(Clone)]
    struct Ok200;
    impl tower_service::Service<http::Request<()>> for Ok200 {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(tonic::body::Body::empty())))
        }
    }

    fn grpc_status(response: &http::Response<tonic::body::Body>) -> Option<String> {
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn without_a_certificate_cluster_calls_are_refused_and_others_pass() {
        use tower_layer::Layer;
        use tower_service::Service;
        let call = |path: &str| {
            http::Request::builder()
                .uri(format!("http://x{path}"))
                .body(())
                .unwrap()
        };
        let mut on = ClientCertLayer::new(true).layer(Ok200);
        let refused = on
            .call(call("/apogee.cluster.v1.Registry/RegisterBroker"))
            .await
            .unwrap();
        // UNAUTHENTICATED is gRPC status 16.
        assert_eq!(grpc_status(&refused).as_deref(), Some("16"));
        let open = on
            .call(call("/apogee.cluster.v1.Registry/GetClusterInfo"))
            .await
            .unwrap();
        assert_eq!(grpc_status(&open), None);
        let mut off = ClientCertLayer::new(false).layer(Ok200);
        let passed = off
            .call(call("/apogee.cluster.v1.Replication/Replicate"))
            .await
            .unwrap();
        assert_eq!(grpc_status(&passed), None);
    }
}

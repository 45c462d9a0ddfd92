//! A `tracing` span around every gRPC call a server answers, so that whatever a handler
//! logs says which call it was and who made it.
//!
//! [`RpcSpanLayer`] opens one `rpc` span per call with four fields:
//!
//! - `method`: the service and method, without the package
//!   (`MessagingService/SendMessage`, `Admin/CreateTopic`);
//! - `peer`: the address the connection came from (`-` when unknown);
//! - `client_id`: the `x-mq-client-id` header the RocketMQ clients send (`-` without one);
//! - `identity`: who the auth guard admitted the call as ([`caller`]: the access key,
//!   `cluster` for another server of the cluster, `anonymous` when authentication is off).
//!
//! The handler is called and its future polled inside the span; tasks a handler spawns
//! carry it only when they are spawned with `in_current_span()`. The layer sits inside the
//! auth guard (it reads the identity the guard leaves in the request extensions) and beside
//! [`crate::ops::RpcMetricsLayer`]; calls the guard refuses are logged by the guard itself with
//! the same fields. The span borrows its fields from the request while it is created and
//! adds no allocation of its own; with a filter that leaves its level out it is not created.
//!
//! Its level: DEBUG for the calls a client makes per message or per poll (every
//! `MessagingService` method but the session's `Telemetry` and `NotifyClientTermination`),
//! INFO for the rest (admin, registry, replication, health, Telemetry sessions). A span
//! the log filter lets through is formatted by the log layer when it is made: at INFO it cost
//! about 2 µs of broker CPU per 1 KiB unary send, 6% of the whole send (docs/PERFORMANCE.md),
//! so at the default level the data path runs without it and logs its failures with their
//! topic, group and client named in the event. `log_level = "info,apogee_server::rpc_span=debug"`
//! (or `RUST_LOG`) turns the data path's spans on.

use apogee_proto::auth::Identity;
use std::fmt;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::instrument::{Instrument, Instrumented};

/// The header the RocketMQ clients name themselves with.
pub const CLIENT_ID_HEADER: &str = "x-mq-client-id";

/// Who a call was admitted as, for logs: the user's access key, `cluster` for another
/// server of the cluster, `anonymous` when no identity was established (authentication
/// off, or an open call such as a health probe).
pub fn caller(extensions: &http::Extensions) -> &str {
    match extensions.get::<Identity>() {
        Some(Identity::User { access_key, .. }) => access_key,
        Some(Identity::Cluster) => "cluster",
        None => "anonymous",
    }
}

/// The address a request's connection came from, over TLS or not.
pub fn peer_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    match extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        Some(tls) => tls.get_ref().remote_addr(),
        None => extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr),
    }
}

/// The service and method of a gRPC path, without the package:
/// `/apache.rocketmq.v2.MessagingService/SendMessage` -> `MessagingService/SendMessage`.
/// A path of another shape is returned without its leading slash.
pub fn method_name(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    let Some((service, _)) = path.rsplit_once('/') else {
        return path;
    };
    match service.rfind('.') {
        Some(dot) => &path[dot + 1..],
        None => path,
    }
}

/// A peer address as a log field: the address, or `-`.
struct Peer(Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The `rpc` span of one request (module doc).
pub fn rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
    let client_id = request
        .headers()
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let method = method_name(request.uri().path());
    let peer = Peer(peer_addr(request));
    let identity = caller(request.extensions());
    // One call site per level: a span's level is fixed where it is made.
    if is_data_path(method) {
        tracing::debug_span!("rpc", method, peer = %peer, client_id, identity)
    } else {
        tracing::info_span!("rpc", method, peer = %peer, client_id, identity)
    }
}

/// Whether `method` (as [`method_name`] gives it) is one a client makes per message or per
/// poll, whose span is at DEBUG (module doc).
pub fn is_data_path(method: &str) -> bool {
    match method.strip_prefix("MessagingService/") {
        Some(call) => !matches!(call, "Telemetry" | "NotifyClientTermination"),
        None => false,
    }
}

/// The layer opening an [`rpc_span`] around every call (module doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcSpanLayer;

impl<S> tower_layer::Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> RpcSpan<S> {
        RpcSpan { inner }
    }
}

/// The service of [`RpcSpanLayer`].
#[derive(Clone, Debug)]
pub struct RpcSpan<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for RpcSpan<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = rpc_span(&request);
        let call = span.in_scope(|| self.inner.call(request));
        call.instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::auth::Role;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use tower_layer::Layer as _;
    use tower_service::Service as _;
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    type Fields = BTreeMap<String, String>;
    /// An event's message and the spans it was logged in (name and fields, outermost first).
    type Logged = (String, Vec<(String, Fields)>);

    #[derive(Default)]
    struct FieldText(Fields);

    impl tracing::field::Visit for FieldText {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0
                .insert(field.name().to_string(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
    }

    /// What the capturing layer saw: per event, its message and the fields of the spans it
    /// was logged in (outermost first).
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<Logged>>>);

    impl<S> tracing_subscriber::Layer<S> for Captured
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: LayerContext<'_, S>,
        ) {
            let mut fields = FieldText::default();
            attrs.record(&mut fields);
            ctx.span(id).unwrap().extensions_mut().insert(fields.0);
        }

        fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
            let mut message = FieldText::default();
            event.record(&mut message);
            let spans = ctx
                .event_scope(event)
                .map(|scope| {
                    scope
                        .from_root()
                        .map(|span| {
                            let fields = span.extensions().get::<Fields>().cloned();
                            (span.name().to_string(), fields.unwrap_or_default())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = message.0.remove("message").unwrap_or_default();
            self.0.lock().unwrap().push((text, spans));
        }
    }

    /// A handler that logs once when called and once when its future is polled.
    #[derive(Clone)]
    struct Logging;

    impl tower_service::Service<http::Request<()>> for Logging {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            tracing::info!("called");
            Box::pin(async {
                tracing::warn!("polled");
                Ok(http::Response::new(()))
            })
        }
    }

    /// Calls `request` through the layer; what the handler logged.
    fn logs_of(request: http::Request<()>) -> Vec<Logged> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let mut service = RpcSpanLayer.layer(Logging);
            futures::executor::block_on(service.call(request)).unwrap();
        });
        let logs = captured.0.lock().unwrap().clone();
        logs
    }

    fn request(path: &str) -> http::Request<()> {
        let mut request = http::Request::builder().uri(path).body(()).unwrap();
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some("10.1.2.3:40000".parse().unwrap()),
        });
        request
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_call_with_a_client_id_and_an_identity_logs_in_a_span_naming_them() {
        let mut request = request("/apache.rocketmq.v2.MessagingService/SendMessage");
        request
            .headers_mut()
            .insert(CLIENT_ID_HEADER, "host@1234#5678".parse().unwrap());
        request.extensions_mut().insert(Identity::User {
            access_key: "billing-app".into(),
            role: Role::User,
        });
        let expected = fields(&[
            ("method", "MessagingService/SendMessage"),
            ("peer", "10.1.2.3:40000"),
            ("client_id", "host@1234#5678"),
            ("identity", "billing-app"),
        ]);
        let logs = logs_of(request);
        let messages: Vec<&str> = logs.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(messages, ["called", "polled"]);
        for (message, spans) in &logs {
            assert_eq!(
                spans,
                &vec![("rpc".to_string(), expected.clone())],
                "{message}"
            );
        }
    }

    #[test]
    fn a_call_without_client_id_or_identity_says_so() {
        let logs = logs_of(request("/apogee.cluster.v1.Admin/CreateTopic"));
        let expected = fields(&[
            ("method", "Admin/CreateTopic"),
            ("peer", "10.1.2.3:40000"),
            ("client_id", "-"),
            ("identity", "anonymous"),
        ]);
        assert_eq!(logs.len(), 2);
        for (message, spans) in &logs {
            assert_eq!(
                spans,
                &vec![("rpc".to_string(), expected.clone())],
                "{message}"
            );
        }
    }

    #[test]
    fn a_cluster_call_over_an_unknown_connection_is_named_so() {
        let mut request = http::Request::builder()
            .uri("/apogee.cluster.v1.Replication/Replicate")
            .body(())
            .unwrap();
        request.extensions_mut().insert(Identity::Cluster);
        let logs = logs_of(request);
        let expected = fields(&[
            ("method", "Replication/Replicate"),
            ("peer", "-"),
            ("client_id", "-"),
            ("identity", "cluster"),
        ]);
        assert_eq!(logs[0].1, vec![("rpc".to_string(), expected)]);
    }

    /// What a handler logs under a subscriber that lets INFO and above through.
    fn logs_at_info(request: http::Request<()>) -> Vec<Logged> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry()
            .with(captured.clone())
            .with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            let mut service = RpcSpanLayer.layer(Logging);
            futures::executor::block_on(service.call(request)).unwrap();
        });
        let logs = captured.0.lock().unwrap().clone();
        logs
    }

    #[test]
    fn at_info_the_data_path_runs_without_a_span_and_every_other_call_has_one() {
        for path in [
            "/apache.rocketmq.v2.MessagingService/SendMessage",
            "/apache.rocketmq.v2.MessagingService/ReceiveMessage",
            "/apache.rocketmq.v2.MessagingService/AckMessage",
            "/apache.rocketmq.v2.MessagingService/QueryRoute",
        ] {
            let logs = logs_at_info(request(path));
            assert_eq!(logs.len(), 2, "{path}: the handler's own logs still pass");
            for (message, spans) in &logs {
                assert!(spans.is_empty(), "{path}: {message} logged in {spans:?}");
            }
        }
        for (path, method) in [
            ("/apogee.cluster.v1.Admin/CreateTopic", "Admin/CreateTopic"),
            (
                "/apache.rocketmq.v2.MessagingService/Telemetry",
                "MessagingService/Telemetry",
            ),
            (
                "/apogee.cluster.v1.Replication/Replicate",
                "Replication/Replicate",
            ),
        ] {
            let logs = logs_at_info(request(path));
            for (message, spans) in &logs {
                assert_eq!(spans.len(), 1, "{path}: {message}");
                assert_eq!(spans[0].1["method"], method);
            }
        }
    }

    #[test]
    fn methods_are_named_by_service_and_method_without_the_package() {
        assert_eq!(
            method_name("/apache.rocketmq.v2.MessagingService/ReceiveMessage"),
            "MessagingService/ReceiveMessage"
        );
        assert_eq!(method_name("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method_name("/Plain/Call"), "Plain/Call");
        assert_eq!(method_name("/"), "");
        assert_eq!(method_name("odd"), "odd");
    }
}

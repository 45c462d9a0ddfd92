//! The operations endpoint every server runs beside its gRPC listener, over
//! HTTP/1.1 (inside TLS when the server has TLS, [`OpsListener::with_tls`]):
//!
//! - `GET /metrics`: Prometheus text exposition (format 0.0.4) of the
//!   server's registry, gauges that are read from live state refreshed first;
//! - `GET /healthz`: 200 while the process serves (liveness; also during a
//!   long recovery, so an orchestrator does not kill a broker rebuilding its index);
//! - `GET /readyz`: 200 once the server is ready for traffic, else 503 with
//!   the reason (readiness).
//!
//! A server may mount more routes on the same listener ([`OpsListener::with_routes`]: the
//! NameServer's web console), or serve only its own routes on a listener of their own
//! ([`OpsListener::routes_only`]).
//!
//! The listener is bound before the server starts (so a port clash fails at
//! once) and serves from the first moment; the server plugs its
//! [`OpsSource`] into the [`OpsSlot`] when it has one. Also the gRPC request
//! layer [`RpcMetricsLayer`] that times every call into a histogram.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use parking_lot::RwLock;
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpListener;

/// What a server exposes on its operations endpoint.
pub trait OpsSource: Send + Sync + 'static {
    /// The metric families to expose, scrape-time gauges refreshed first.
    fn gather(&self) -> Vec<prometheus::proto::MetricFamily>;
    /// `Ok` when the server is ready for traffic, else why not.
    fn readiness(&self) -> Result<(), String>;
    /// Whether `/metrics` serves [`gather`](Self::gather) (else 503 "starting", as before
    /// any source: a source that only reports readiness while the server starts).
    fn has_metrics(&self) -> bool {
        true
    }
}

/// Where a server plugs its [`OpsSource`] in once it has one; until then
/// `/readyz` answers "starting" and `/metrics` 503.
#[derive(Clone, Default)]
pub struct OpsSlot(Arc<RwLock<Option<Arc<dyn OpsSource>>>>);

impl OpsSlot {
    pub fn set(&self, source: Arc<dyn OpsSource>) {
        *self.0.write() = Some(source);
    }

    fn get(&self) -> Option<Arc<dyn OpsSource>> {
        self.0.read().clone()
    }
}

/// A bound operations listener (bind first, so a clash fails before the server starts).
pub struct OpsListener {
    inner: TcpListener,
    tls: Option<Arc<crate::tls::ServerTls>>,
    /// Routes served beside (or, without `ops_endpoints`, instead of) the endpoints.
    routes: Option<Router>,
    /// Whether `/metrics`, `/healthz` and `/readyz` are served.
    ops_endpoints: bool,
}

impl OpsListener {
    pub async fn bind(addr: &str) -> std::io::Result<OpsListener> {
        Ok(OpsListener {
            inner: TcpListener::bind(addr).await?,
            tls: None,
            routes: None,
            ops_endpoints: true,
        })
    }

    /// Also serves `routes` (paths other than the endpoints').
    pub fn with_routes(mut self, routes: Router) -> OpsListener {
        self.routes = Some(match self.routes.take() {
            Some(r) => r.merge(routes),
            None => routes,
        });
        self
    }

    /// Serves `routes` alone: a listener of their own, without the endpoints.
    pub fn routes_only(mut self, routes: Router) -> OpsListener {
        self.ops_endpoints = false;
        self.with_routes(routes)
    }

    /// Whether it serves the endpoints (else only its routes).
    pub fn serves_endpoints(&self) -> bool {
        self.ops_endpoints
    }

    /// Serves HTTPS with `tls` (none: plain HTTP).
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::ServerTls>>) -> OpsListener {
        self.tls = tls;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` completes.
pub async fn serve(
    listener: OpsListener,
    slot: OpsSlot,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = Router::new();
    if listener.ops_endpoints {
        app = app.merge(
            Router::new()
                .route("/metrics", get(metrics))
                .route("/healthz", get(|| async { "ok\n" }))
                .route("/readyz", get(readyz))
                .with_state(slot),
        );
    }
    if let Some(routes) = listener.routes {
        app = app.merge(routes);
    }
    match listener.tls {
        None => {
            axum::serve(listener.inner, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let incoming = crate::net::Listener::from(listener.inner)
                .incoming()
                .tls(tls, crate::tls::Protocol::Http);
            axum::serve(TlsConnections(incoming), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// The operations endpoint's connections after their TLS handshakes.
struct TlsConnections(crate::net::TlsIncoming);

impl axum::serve::Listener for TlsConnections {
    type Io = tokio_rustls::server::TlsStream<crate::net::Accepted>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_stream::StreamExt;
        loop {
            match self.0.next().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.stream().peer_addr();
                    let peer = peer.unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                    return (stream, peer);
                }
                Some(Err(e)) => {
                    // As axum does for a plain listener: out of file descriptors and the like.
                    tracing::warn!("operations endpoint: accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The operations endpoint of a running server (or none, with no listener).
pub struct OpsServer {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl OpsServer {
    /// Serves `slot` on `listener`, when there is one, until [`OpsServer::stop`].
    pub fn start(listener: Option<OpsListener>, slot: OpsSlot) -> OpsServer {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = listener.map(|listener| {
            tokio::spawn(serve(listener, slot, async move {
                // Also when the handle is dropped without stop (a failed start).
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        OpsServer { stop, task }
    }

    /// Stops serving and waits for the endpoint to close.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// The content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(slot): State<OpsSlot>) -> Response {
    let Some(source) = slot.get().filter(|s| s.has_metrics()) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    };
    // Gauges read live state (locks, RocksDB reads): off the async threads.
    let rendered = tokio::task::spawn_blocking(move || {
        let families = source.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&families, &mut out).map(|_| out)
    })
    .await;
    match rendered {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn readyz(State(slot): State<OpsSlot>) -> Response {
    match slot.get().map(|s| s.readiness()) {
        Some(Ok(())) => (StatusCode::OK, "ready\n".to_string()).into_response(),
        Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string()).into_response(),
    }
}

/// Buckets of `rocketmq_rpc_latency`, in milliseconds.
pub const RPC_LATENCY_BUCKETS_MS: [f64; 13] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0, 3000.0, 10000.0,
];

/// Prometheus' standard process metrics of this process (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
/// `process_max_fds`, `process_threads`, `process_start_time_seconds`), from the
/// `prometheus` crate's collector, which reads them from /proc at each scrape.
pub fn register_process_metrics(registry: &Registry) -> prometheus::Result<()> {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    registry.register(Box::new(collector))
}

/// `rocketmq_rpc_latency{protocol_type, request_code, response_code}` (ms): the
/// time from a request's arrival to its response headers, by gRPC method and
/// gRPC status. Streams (Telemetry) are not timed: they last as long as the client.
pub fn rpc_latency(registry: &Registry) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(
            "rocketmq_rpc_latency",
            "Time to answer a gRPC request, by method and gRPC status, in milliseconds.",
        )
        .buckets(RPC_LATENCY_BUCKETS_MS.to_vec()),
        &["protocol_type", "request_code", "response_code"],
    )?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Keeps a labelled metric visible before its first real series, so a dashboard shows 0 and
/// not "No data" on a server that has seen nothing yet: while `family` has no series, it
/// gets one with every label empty, at 0 (Prometheus treats an empty label as absent: the
/// sample reads as the family's total, none so far); once another series exists, that one
/// goes. Called at each scrape, after the scrape-time gauges are filled.
pub fn zero_until_first<P: prometheus::core::MetricVecBuilder>(
    family: &prometheus::core::MetricVec<P>,
) {
    use prometheus::core::Collector;
    let labels = family.desc().first().map_or(0, |d| d.variable_labels.len());
    let empty = vec![""; labels];
    let series: usize = family.collect().iter().map(|f| f.get_metric().len()).sum();
    match series {
        0 => drop(family.with_label_values(&empty)),
        1 => {}
        // Absent already when the first real series came before any scrape.
        _ => drop(family.remove_label_values(&empty)),
    }
}

/// `rocketmq_producer_connections{language, version}` and
/// `rocketmq_consumer_connections{consumer_group, language, version}`: the
/// clients with a live Telemetry session to this server, read at each scrape, and the
/// remoting clients a server adds ([`ClientGauges::add_remoting`]: version `remoting/<n>`).
pub struct ClientGauges {
    producers: prometheus::IntGaugeVec,
    consumers: prometheus::IntGaugeVec,
}

impl ClientGauges {
    pub fn new(registry: &Registry) -> prometheus::Result<ClientGauges> {
        let producers = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "rocketmq_producer_connections",
                "Producers with a live Telemetry session to this server.",
            ),
            &["language", "version"],
        )?;
        let consumers = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "rocketmq_consumer_connections",
                "Consumers with a live Telemetry session to this server.",
            ),
            &["consumer_group", "language", "version"],
        )?;
        registry.register(Box::new(producers.clone()))?;
        registry.register(Box::new(consumers.clone()))?;
        Ok(ClientGauges {
            producers,
            consumers,
        })
    }

    /// Counts a remoting client: a producer of one or more groups, and a consumer of each
    /// of `consumer_groups`. Call after [`ClientGauges::refresh`] (which starts the count
    /// again).
    pub fn add_remoting<'g>(
        &self,
        language: &str,
        version: i32,
        producer: bool,
        consumer_groups: impl IntoIterator<Item = &'g str>,
    ) {
        let version = format!("remoting/{version}");
        if producer {
            self.producers
                .with_label_values(&[language, &version])
                .inc();
        }
        for group in consumer_groups {
            self.consumers
                .with_label_values(&[group, language, &version])
                .inc();
        }
    }

    /// Both families at 0 while no client is connected ([`zero_until_first`]); call after
    /// the count (and [`ClientGauges::add_remoting`]).
    pub fn zero_until_first(&self) {
        zero_until_first(&self.producers);
        zero_until_first(&self.consumers);
    }

    /// Counts the live sessions again.
    pub fn refresh(&self, sessions: &crate::telemetry::Sessions) {
        use apogee_proto::v2::{ClientType, Language};
        self.producers.reset();
        self.consumers.reset();
        for s in sessions.list() {
            let language = match s.language {
                Language::Unspecified => "",
                l => l.as_str_name(),
            };
            match (s.kind, &s.group) {
                (ClientType::Producer, _) => self
                    .producers
                    .with_label_values(&[language, &s.version])
                    .inc(),
                (_, Some(group)) => self
                    .consumers
                    .with_label_values(&[group.as_str(), language, &s.version])
                    .inc(),
                _ => {}
            }
        }
    }
}

/// A tower layer timing each gRPC call into [`rpc_latency`].
#[derive(Clone)]
pub struct RpcMetricsLayer {
    latency: HistogramVec,
}

impl RpcMetricsLayer {
    pub fn new(latency: HistogramVec) -> Self {
        RpcMetricsLayer { latency }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            latency: self.latency.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    latency: HistogramVec,
}

/// The method of a gRPC path (`/apache.rocketmq.v2.MessagingService/SendMessage`
/// -> `SendMessage`); `None` for the long-lived Telemetry stream.
fn timed_method(path: &str) -> Option<&str> {
    let method = path.rsplit('/').next().filter(|m| !m.is_empty())?;
    (method != "Telemetry" && method != "Replicate").then_some(method)
}

/// The gRPC status a response carries in its headers (an error answered
/// trailers-only); a response without one is answered OK or in its trailers.
fn status_name<B>(response: &axum::http::Response<B>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::Internal => "INTERNAL",
        _ => "OTHER",
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<axum::http::Request<ReqBody>> for RpcMetrics<S>
where
    S: tower_service::Service<
        axum::http::Request<ReqBody>,
        Response = axum::http::Response<ResBody>,
    >,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<ReqBody>) -> Self::Future {
        let method = timed_method(request.uri().path()).map(str::to_owned);
        let latency = self.latency.clone();
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            if let (Some(method), Ok(response)) = (method, &result) {
                latency
                    .with_label_values(&["grpc", &method, status_name(response)])
                    .observe(started.elapsed().as_secs_f64() * 1000.0);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_shows_zero_until_its_first_series_then_only_its_own() {
        let family = prometheus::IntCounterVec::new(
            prometheus::Opts::new("t_total", "t"),
            &["topic", "group"],
        )
        .unwrap();
        let samples = |f: &prometheus::IntCounterVec| -> Vec<(Vec<String>, f64)> {
            use prometheus::core::Collector;
            f.collect()
                .iter()
                .flat_map(|mf| mf.get_metric().to_vec())
                .map(|m| {
                    let labels = m.get_label().iter().map(|l| l.value().to_string());
                    (labels.collect(), m.get_counter().get_value())
                })
                .collect()
        };
        zero_until_first(&family);
        assert_eq!(samples(&family), vec![(vec![String::new(); 2], 0.0)]);
        zero_until_first(&family);
        assert_eq!(
            samples(&family).len(),
            1,
            "one placeholder, however many scrapes"
        );
        family.with_label_values(&["orders", "g"]).inc();
        zero_until_first(&family);
        // Prometheus keeps a series' labels sorted by name: group, then topic.
        assert_eq!(
            samples(&family),
            vec![(vec!["g".to_string(), "orders".to_string()], 1.0)]
        );
    }

    #[test]
    fn remoting_clients_are_counted_beside_grpc_sessions() {
        let registry = Registry::new();
        let gauges = ClientGauges::new(&registry).unwrap();
        gauges.refresh(&crate::telemetry::Sessions::default());
        gauges.add_remoting("JAVA", 401, true, ["orders-g", "audit-g"]);
        gauges.add_remoting("JAVA", 401, true, []);
        gauges.add_remoting("GO", 399, false, ["orders-g"]);
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let value = |family: &str, labels: &[(&str, &str)]| -> i64 {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .find(|l| {
                    labels
                        .iter()
                        .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        let java = [("language", "JAVA"), ("version", "remoting/401")];
        assert_eq!(value("rocketmq_producer_connections", &java), 2);
        assert_eq!(
            value(
                "rocketmq_consumer_connections",
                &[("consumer_group", "orders-g"), ("language", "GO")]
            ),
            1
        );
        assert_eq!(
            value(
                "rocketmq_consumer_connections",
                &[("consumer_group", "audit-g"), ("version", "remoting/401")]
            ),
            1
        );
    }

    #[test]
    fn methods_are_named_by_the_last_path_segment_and_streams_are_not_timed() {
        assert_eq!(
            timed_method("/apache.rocketmq.v2.MessagingService/SendMessage"),
            Some("SendMessage")
        );
        assert_eq!(
            timed_method("/apache.rocketmq.v2.MessagingService/Telemetry"),
            None
        );
        assert_eq!(timed_method("/"), None);
    }

    #[test]
    fn a_trailers_only_error_is_labelled_with_its_status() {
        let ok = axum::http::Response::new(());
        assert_eq!(status_name(&ok), "OK");
        let mut err = axum::http::Response::new(());
        err.headers_mut()
            .insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_name(&err), "NOT_FOUND");
    }

    struct Fixed(Registry, Result<(), String>);
    impl OpsSource for Fixed {
        fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
            self.0.gather()
        }
        fn readiness(&self) -> Result<(), String> {
            self.1.clone()
        }
    }

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out)
    }

    #[tokio::test]
    async fn endpoints_answer_before_and_after_the_server_plugs_in() {
        let listener = OpsListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slot = OpsSlot::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, slot.clone(), async move {
            let _ = stopped.await;
        }));
        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        let (code, body) = get_text(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.ends_with("starting\n"), "{body}");
        assert_eq!(get_text(addr, "/metrics").await.0, 503);

        let registry = Registry::new();
        let c = prometheus::IntCounter::new("apogee_test_total", "a test counter").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc_by(7);
        slot.set(Arc::new(Fixed(registry, Err("not registered yet".into()))));
        let (code, body) = get_text(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.ends_with("not registered yet\n"), "{body}");
        let (code, body) = get_text(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("\r\n\r\n# HELP apogee_test_total a test counter"),
            "{body}"
        );
        assert!(body.contains("\napogee_test_total 7\n"), "{body}");
        assert!(body.contains("text/plain; version=0.0.4"), "{body}");
        assert_eq!(get_text(addr, "/nothing").await.0, 404);

        slot.set(Arc::new(Fixed(Registry::new(), Ok(()))));
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

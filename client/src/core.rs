//! The state every client shares: configuration, connections, the access
//! points and the route cache, telemetry sessions and the heartbeat task; plus
//! the unary-call helper that applies metadata and deadlines and opens a
//! telemetry session on the first use of an endpoint. Routes come from the
//! NameServers (failing over between them); while none can give one, the
//! cached route is used.

use crate::access_point::AccessPoints;
use crate::route::{Freshness, Route, RouteCache, REFRESH_RETRY};
use crate::telemetry::{build_settings, Role, Sessions};
use crate::transaction::TransactionChecker;
use crate::transport::{request, to_endpoints, Connections, MessagingClient};
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::v2;
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;

/// How often the client sends Heartbeat to the endpoints it uses.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Slack added to a gRPC deadline before the local timer gives up.
const LOCAL_SLACK: Duration = Duration::from_millis(500);

pub(crate) struct Core {
    pub(crate) config: ClientConfig,
    pub(crate) role: Role,
    conns: Connections,
    access_points: AccessPoints,
    pub(crate) routes: RouteCache,
    refresh: tokio::sync::Mutex<()>,
    pub(crate) sessions: Sessions,
    topics: RwLock<Topics>,
    heartbeat: Mutex<Option<AbortHandle>>,
}

/// The topics a producer has used, in the order of first use (as its settings list them).
#[derive(Default)]
struct Topics {
    names: Vec<String>,
    known: HashSet<String>,
}

impl Core {
    /// Builds the core and starts its heartbeat task; `checker` answers
    /// transaction check-backs arriving on the telemetry streams.
    pub(crate) fn start(
        config: ClientConfig,
        role: Role,
        checker: Option<Arc<dyn TransactionChecker>>,
    ) -> Result<Arc<Core>> {
        config.validate()?;
        let core = Arc::new(Core {
            conns: Connections::new(config.request_timeout, config.tls.clone()),
            access_points: AccessPoints::new(config.nameservers.clone()),
            config,
            role,
            routes: RouteCache::default(),
            refresh: tokio::sync::Mutex::new(()),
            sessions: Sessions::new(checker),
            topics: RwLock::new(Topics::default()),
            heartbeat: Mutex::new(None),
        });
        let weak = Arc::downgrade(&core);
        let task = tokio::spawn(heartbeat_loop(weak));
        *core.heartbeat.lock() = Some(task.abort_handle());
        Ok(core)
    }

    /// A resource (topic or group) in the configured namespace.
    pub(crate) fn resource(&self, name: &str) -> v2::Resource {
        v2::Resource {
            resource_namespace: self.config.namespace.clone(),
            name: name.to_string(),
        }
    }

    fn settings(&self) -> v2::Settings {
        build_settings(&self.config, &self.role, &self.topics.read().names)
    }

    /// The topics a producer declares in its settings.
    pub(crate) fn topics(&self) -> Vec<String> {
        self.topics.read().names.clone()
    }

    /// Records a topic a producer uses; new ones are announced on the
    /// open telemetry streams. Called on every send: a known topic costs one
    /// hash lookup under a shared lock.
    pub(crate) fn note_topic(&self, topic: &str) {
        if self.topics.read().known.contains(topic) {
            return;
        }
        {
            let mut topics = self.topics.write();
            if !topics.known.insert(topic.to_string()) {
                return;
            }
            topics.names.push(topic.to_string());
        }
        self.sessions.broadcast(self.settings());
    }

    /// Opens the endpoint's telemetry session if needed and returns its stub.
    pub(crate) async fn client(&self, addr: &str) -> Result<MessagingClient> {
        self.sessions
            .ensure(
                addr,
                || self.conns.client(addr),
                &self.config,
                || self.settings(),
            )
            .await;
        self.conns.client(addr)
    }

    /// Opens a telemetry session to every broker a producer may send the
    /// topic's messages to, so their check-backs can reach this client.
    pub(crate) async fn open_sessions(&self, topic: &str) -> Result<()> {
        let route = self.route(topic).await?;
        let mut endpoints: Vec<String> = route
            .writable_queues()
            .iter()
            .filter_map(crate::route::queue_endpoint)
            .collect();
        endpoints.sort();
        endpoints.dedup();
        for addr in endpoints {
            self.client(&addr).await?;
        }
        Ok(())
    }

    /// One unary call to `addr` with metadata and the given deadline.
    pub(crate) async fn call<Req, Resp, F, Fut>(
        &self,
        addr: &str,
        message: Req,
        timeout: Duration,
        f: F,
    ) -> Result<Resp>
    where
        F: FnOnce(MessagingClient, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let client = self.client(addr).await?;
        let req = request(&self.config, message, timeout);
        let resp = tokio::time::timeout(timeout + LOCAL_SLACK, f(client, req)).await??;
        Ok(resp.into_inner())
    }

    /// The route of a topic: cached while fresh, fetched otherwise. When the
    /// fetch fails (no NameServer reachable, or the ones reached do not know the
    /// topic yet, as after a restart) a cached route is used as it is and the
    /// fetch is tried again [`REFRESH_RETRY`] later.
    pub(crate) async fn route(&self, topic: &str) -> Result<Arc<Route>> {
        if let Some((route, Freshness::Fresh | Freshness::RetryLater)) = self.routes.get(topic) {
            return Ok(route);
        }
        let _guard = self.refresh.lock().await;
        let cached = match self.routes.get(topic) {
            Some((route, Freshness::Fresh | Freshness::RetryLater)) => return Ok(route),
            Some((route, Freshness::Stale)) => Some(route),
            None => None,
        };
        match (self.fetch_route(topic).await, cached) {
            (Ok(route), _) => Ok(route),
            (Err(e @ ClientError::Config(_)), _) | (Err(e), None) => Err(e),
            (Err(e), Some(route)) => {
                self.routes.refresh_failed(topic);
                tracing::warn!(
                    topic,
                    error = %e,
                    "route refresh failed; using the cached route, retrying in {REFRESH_RETRY:?}"
                );
                Ok(route)
            }
        }
    }

    /// Asks the NameServers in turn (the one that answered last first, ones that
    /// could not be reached last); the first route wins. When all fail, a server
    /// status is preferred over a transport error.
    async fn fetch_route(&self, topic: &str) -> Result<Arc<Route>> {
        let mut server_err = None;
        let mut other_err = None;
        for ns in self.access_points.order() {
            let req = v2::QueryRouteRequest {
                topic: Some(self.resource(topic)),
                endpoints: Some(to_endpoints(ns)?),
            };
            let res = self
                .call(
                    ns,
                    req,
                    self.config.request_timeout,
                    |mut c, r| async move { c.query_route(r).await },
                )
                .await
                .and_then(|resp: v2::QueryRouteResponse| {
                    ClientError::check(resp.status.as_ref())?;
                    Ok(resp.message_queues)
                });
            match res {
                Ok(queues) if !queues.is_empty() => {
                    self.access_points.answered(ns);
                    return Ok(self.routes.put(Route::new(topic, queues)));
                }
                Ok(_) => {
                    server_err = Some(ClientError::NoRoute(format!(
                        "nameserver {ns} returned no queue for topic {topic}"
                    )))
                }
                Err(e @ ClientError::Server(_)) => server_err = Some(e),
                Err(e) => {
                    tracing::debug!(nameserver = %ns, error = %e, "query route failed");
                    self.access_points.unreachable(ns);
                    // Name the NameServer: with several, the error says which one failed how.
                    other_err = Some(match e {
                        ClientError::Transport(m) => {
                            ClientError::Transport(format!("cannot reach nameserver {ns}: {m}"))
                        }
                        ClientError::Timeout => ClientError::Transport(format!(
                            "nameserver {ns} did not answer within {:?}",
                            self.config.request_timeout
                        )),
                        e => e,
                    })
                }
            }
        }
        Err(server_err
            .or(other_err)
            .unwrap_or_else(|| ClientError::Config("no nameserver configured".into())))
    }

    fn group(&self) -> Option<v2::Resource> {
        match &self.role {
            Role::SimpleConsumer { group, .. }
            | Role::PushConsumer { group, .. }
            | Role::LiteConsumer { group, .. } => Some(self.resource(group)),
            Role::Producer => None,
        }
    }

    /// Sends one Heartbeat to every endpoint with an open session; a
    /// producer with a transaction checker first reopens the sessions to
    /// the brokers of its topics (a broker restart ends them).
    async fn heartbeat_once(&self) {
        if self.sessions.has_checker() {
            for topic in self.topics() {
                if let Err(e) = self.open_sessions(&topic).await {
                    tracing::debug!(topic, error = %e, "cannot open sessions for the topic");
                }
            }
        }
        for addr in self.sessions.open_endpoints() {
            let req = v2::HeartbeatRequest {
                group: self.group(),
                client_type: self.role.client_type() as i32,
            };
            let res = self
                .call(
                    &addr,
                    req,
                    self.config.request_timeout,
                    |mut c, r| async move { c.heartbeat(r).await },
                )
                .await
                .and_then(|r: v2::HeartbeatResponse| ClientError::check(r.status.as_ref()));
            if let Err(e) = res {
                tracing::debug!(endpoint = %addr, error = %e, "heartbeat failed");
            }
        }
    }

    /// Tells the servers this client is going away and closes its streams.
    pub(crate) async fn shutdown(&self) {
        if let Some(h) = self.heartbeat.lock().take() {
            h.abort();
        }
        let calls = self
            .sessions
            .open_endpoints()
            .into_iter()
            .map(|addr| async move {
                let req = v2::NotifyClientTerminationRequest {
                    group: self.group(),
                };
                let _ = self
                    .call(
                        &addr,
                        req,
                        self.config.request_timeout,
                        |mut c, r| async move { c.notify_client_termination(r).await },
                    )
                    .await;
            });
        futures::future::join_all(calls).await;
        self.sessions.close_all();
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.lock().take() {
            h.abort();
        }
    }
}

async fn heartbeat_loop(core: Weak<Core>) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        core.heartbeat_once().await;
    }
}

//! The broker's link to its NameServers: it registers (with its topics, its
//! consumer groups and data version) with every configured NameServer, sends
//! light heartbeats in between, registers again at once when its topics or
//! groups change or a NameServer asks, and unregisters on shutdown. It also forwards the route queries
//! clients send to the broker (QueryRoute, QueryAssignment) to a NameServer,
//! and relays transaction check-backs through the NameServers.

use crate::config::{BrokerConfig, Role};
use crate::groups::GroupTable;
use crate::topics::TopicTable;
use apogee_proto::cluster::{self, registry_client::RegistryClient, BrokerRole};
use apogee_proto::v2::{self, messaging_service_client::MessagingServiceClient};
use apogee_proto::ApogeeError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

const RPC_TIMEOUT: Duration = Duration::from_secs(3);

pub struct NameServerLink {
    config: BrokerConfig,
    channels: Vec<(String, Channel)>,
}

fn channel(addr: &str) -> Result<Channel, ApogeeError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| ApogeeError::BadRequest(format!("nameserver address {addr:?}: {e}")))?
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy())
}

impl NameServerLink {
    pub fn new(config: &BrokerConfig) -> Result<Self, ApogeeError> {
        let channels = config
            .nameservers
            .iter()
            .map(|a| Ok((a.clone(), channel(a)?)))
            .collect::<Result<_, ApogeeError>>()?;
        Ok(NameServerLink {
            config: config.clone(),
            channels,
        })
    }

    fn registration(
        &self,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> cluster::RegisterBrokerRequest {
        cluster::RegisterBrokerRequest {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            endpoint: self.config.advertised_endpoint(),
            role: match self.config.role {
                Role::AsyncMaster => BrokerRole::AsyncMaster,
                Role::SyncMaster => BrokerRole::SyncMaster,
                Role::Slave => BrokerRole::Slave,
            } as i32,
            topics: topics.list(),
            data_version: data_version(topics, groups),
            groups: groups
                .list()
                .iter()
                .map(|g| cluster::GroupConfig::from(g.as_ref()))
                .collect(),
        }
    }

    async fn register_one(
        &self,
        channel: &Channel,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> Result<(), tonic::Status> {
        RegistryClient::new(channel.clone())
            .register_broker(self.registration(topics, groups))
            .await?;
        Ok(())
    }

    /// Registers with every NameServer once (failures are logged).
    pub async fn register_all(&self, topics: &TopicTable, groups: &GroupTable) {
        for (addr, ch) in &self.channels {
            match self.register_one(ch, topics, groups).await {
                Ok(()) => tracing::debug!(nameserver = %addr, "registered"),
                Err(e) => {
                    tracing::warn!(nameserver = %addr, "registration failed: {}", e.message())
                }
            }
        }
    }

    async fn heartbeat_all(&self, topics: &TopicTable, groups: &GroupTable) {
        for (addr, ch) in &self.channels {
            let req = cluster::BrokerHeartbeatRequest {
                cluster_name: self.config.cluster_name.clone(),
                broker_name: self.config.broker_name.clone(),
                broker_id: self.config.broker_id,
                data_version: data_version(topics, groups),
            };
            match RegistryClient::new(ch.clone()).broker_heartbeat(req).await {
                Ok(r) if r.get_ref().register_required => {
                    if let Err(e) = self.register_one(ch, topics, groups).await {
                        tracing::warn!(nameserver = %addr, "registration failed: {}", e.message());
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(nameserver = %addr, "heartbeat failed: {}", e.message()),
            }
        }
    }

    async fn unregister_all(&self) {
        for (addr, ch) in &self.channels {
            let req = cluster::UnregisterBrokerRequest {
                cluster_name: self.config.cluster_name.clone(),
                broker_name: self.config.broker_name.clone(),
                broker_id: self.config.broker_id,
            };
            if let Err(e) = RegistryClient::new(ch.clone()).unregister_broker(req).await {
                tracing::warn!(nameserver = %addr, "unregister failed: {}", e.message());
            }
        }
    }

    /// Keeps the registration fresh until `shutdown` turns true, then unregisters.
    pub async fn run(
        self: Arc<Self>,
        topics: Arc<TopicTable>,
        groups: Arc<GroupTable>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut register =
            tokio::time::interval(Duration::from_secs(self.config.register_interval_secs));
        let mut heartbeat =
            tokio::time::interval(Duration::from_secs(self.config.heartbeat_interval_secs));
        heartbeat.tick().await;
        loop {
            let changed = topics.changed().notified();
            let groups_changed = groups.changed().notified();
            tokio::select! {
                _ = register.tick() => self.register_all(&topics, &groups).await,
                _ = heartbeat.tick() => self.heartbeat_all(&topics, &groups).await,
                _ = changed => self.register_all(&topics, &groups).await,
                _ = groups_changed => self.register_all(&topics, &groups).await,
                _ = shutdown.changed() => break,
            }
        }
        self.unregister_all().await;
    }

    /// Asks the NameServers in turn until `accept` takes an answer; returns it, or the last
    /// transport error.
    async fn ask_each<T, F, Fut>(
        &self,
        call: F,
        accept: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, ApogeeError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = Err(ApogeeError::Unavailable("no nameserver configured".into()));
        for (addr, ch) in &self.channels {
            match call(ch.clone()).await {
                Ok(r) if accept(r.get_ref()) => return Ok(Some(r.into_inner())),
                Ok(_) => last = Ok(None),
                Err(e) => {
                    last = Err(ApogeeError::Unavailable(format!(
                        "nameserver {addr}: {}",
                        e.message()
                    )))
                }
            }
        }
        last
    }

    /// Asks the NameServers in turn; the first answer wins.
    pub async fn query_route(&self, req: v2::QueryRouteRequest) -> v2::QueryRouteResponse {
        let answer = self
            .ask_each(
                |ch| {
                    let req = req.clone();
                    async move { MessagingServiceClient::new(ch).query_route(req).await }
                },
                |_| true,
            )
            .await;
        match answer {
            Ok(Some(r)) => r,
            other => v2::QueryRouteResponse {
                status: Some(failure_status(&other)),
                message_queues: vec![],
            },
        }
    }

    pub async fn query_assignment(
        &self,
        req: v2::QueryAssignmentRequest,
    ) -> v2::QueryAssignmentResponse {
        let answer = self
            .ask_each(
                |ch| {
                    let req = req.clone();
                    async move { MessagingServiceClient::new(ch).query_assignment(req).await }
                },
                |_| true,
            )
            .await;
        match answer {
            Ok(Some(r)) => r,
            other => v2::QueryAssignmentResponse {
                status: Some(failure_status(&other)),
                assignments: vec![],
            },
        }
    }

    /// Asks the NameServers in turn to push a transaction check-back to a producer connected
    /// to them; returns the client reached.
    pub async fn relay_check_back(&self, req: cluster::RelayCheckBackRequest) -> Option<String> {
        let answer = self
            .ask_each(
                |ch| {
                    let req = req.clone();
                    async move { RegistryClient::new(ch).relay_check_back(req).await }
                },
                |r: &cluster::RelayCheckBackResponse| !r.delivered_to.is_empty(),
            )
            .await;
        match answer {
            Ok(r) => r.map(|r| r.delivered_to),
            Err(e) => {
                tracing::debug!(error = %e, "could not relay a check-back");
                None
            }
        }
    }
}

/// The version a NameServer compares: it grows with every topic or group change (both
/// counters are persisted and only grow).
fn data_version(topics: &TopicTable, groups: &GroupTable) -> i64 {
    topics.data_version().saturating_add(groups.data_version())
}

/// The status to answer when no NameServer gave an answer.
fn failure_status<T>(answer: &Result<Option<T>, ApogeeError>) -> v2::Status {
    match answer {
        Err(e) => e.to_status(),
        Ok(_) => ApogeeError::Unavailable("no nameserver answered".into()).to_status(),
    }
}

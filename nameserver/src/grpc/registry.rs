//! `apogee.cluster.v1.Registry` over the broker table: brokers register,
//! keep their liveness session ([`super::broker_session`]; the unary heartbeat is kept
//! for brokers of earlier releases) and unregister here; tools read routes and cluster info. Input is
//! validated here (names, ids, endpoints, topic and group configs) so the table only
//! ever holds well-formed entries; a broker id held by another live endpoint is refused
//! (ALREADY_EXISTS). Brokers also relay transaction check-backs
//! through it to producers whose Telemetry stream is open with this NameServer. Registrations
//! carry the brokers' users and ACL entries, merged into the [`AccessBook`]; a master lacking
//! some of what the book knows is sent them.

use super::broker_session::{self, validate_identity, SessionHost, SessionStream};
use super::brokers::BrokerChannels;
use crate::access::AccessBook;
use crate::metrics::LivenessCounters;
use crate::registry::Registry;
use apogee_controller::failover::NameServerId;
use apogee_proto::cluster::registry_server::Registry as RegistryRpc;
use apogee_proto::cluster::{
    ApplyAccessRequest, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRole,
    GetClusterInfoRequest, GetClusterInfoResponse, GetRouteRequest, GetRouteResponse,
    RegisterBrokerRequest, RegisterBrokerResponse, RelayCheckBackRequest, RelayCheckBackResponse,
    SessionBeat, TopicConfig, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::v2::{telemetry_command::Command, RecoverOrphanedTransactionCommand};
use apogee_proto::{limits, ApogeeError};
use apogee_server::cluster_proof;
use apogee_server::endpoint;
use apogee_server::telemetry::Sessions;
use prost::Message as _;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

/// The Registry gRPC service.
#[derive(Clone)]
pub struct RegistryService {
    registry: Arc<Registry>,
    /// The clients' live Telemetry sessions (check-backs are relayed through them).
    sessions: Arc<Sessions>,
    /// With a cluster secret, brokers must prove it to register, heartbeat, unregister and
    /// relay check-backs (`apogee_proto::cluster_auth`).
    secret: Option<ClusterSecret>,
    /// Learns the users and ACL entries brokers register.
    access: Arc<AccessBook>,
    /// Sends a master the users and entries it lacks (none: it is not sent them).
    channels: Option<Arc<BrokerChannels>>,
    /// Registrations and beats received, brokers dropped.
    counters: LivenessCounters,
    /// Set on shutdown: every broker session ends.
    closing: Arc<watch::Sender<bool>>,
    /// The controller (embedded or remote): sessions in controller mode pass their beats to
    /// it.
    controller: Option<apogee_controller::SharedAuthority>,
    /// This NameServer process, as the controller tells the sessions of a member apart.
    via: NameServerId,
}

impl RegistryService {
    pub fn new(registry: Arc<Registry>, sessions: Arc<Sessions>) -> Self {
        RegistryService {
            registry,
            sessions,
            secret: None,
            access: Arc::default(),
            channels: None,
            counters: LivenessCounters::unregistered(),
            closing: Arc::new(watch::channel(false).0),
            controller: None,
            // Random per process, never 0.
            via: uuid::Uuid::new_v4().as_u64_pair().0 | 1,
        }
    }

    /// Passes the beats of sessions in controller mode to `controller`.
    pub fn with_controller(
        mut self,
        controller: Option<apogee_controller::SharedAuthority>,
    ) -> Self {
        self.controller = controller;
        self
    }

    /// Counts registrations and beats (and drops) in `counters`.
    pub fn with_counters(mut self, counters: LivenessCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Ends every broker session (the NameServer is shutting down; brokers reconnect).
    pub fn close_sessions(&self) {
        self.closing.send_replace(true);
    }

    /// Merges the users and ACL entries of every registration into `access`, and sends a
    /// registering master what it lacks of them through `channels`.
    pub fn with_access(mut self, access: Arc<AccessBook>, channels: Arc<BrokerChannels>) -> Self {
        self.access = access;
        self.channels = Some(channels);
        self
    }

    /// Sends a registering master the users and ACL entries it lacks (in the background: the
    /// registration does not wait; a failure is logged, and the next registration tries again).
    fn catch_up(&self, req: &RegisterBrokerRequest) {
        let Some(channels) = &self.channels else {
            return;
        };
        if req.role == BrokerRole::Slave as i32 {
            return;
        }
        let (users, acls) = self.access.missing_from(&req.users, &req.acls);
        if users.is_empty() && acls.is_empty() {
            return;
        }
        let broker = format!("{}-{}", req.broker_name, req.broker_id);
        let client = channels.admin(&req.endpoint);
        let (endpoint, channels) = (req.endpoint.clone(), channels.clone());
        tokio::spawn(async move {
            let (n_users, n_acls) = (users.len(), acls.len());
            let sent = match client {
                Ok(mut c) => {
                    let call = c.apply_access(ApplyAccessRequest { users, acls });
                    channels
                        .bounded(&endpoint, call)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.message().to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(()) => tracing::info!(
                    broker,
                    users = n_users,
                    acls = n_acls,
                    "sent a master the users and ACL entries it lacked"
                ),
                Err(e) => tracing::warn!(broker, "could not send users and ACL entries: {e}"),
            }
        });
    }

    /// Requires brokers to prove the cluster secret.
    pub fn with_cluster_secret(mut self, secret: Option<ClusterSecret>) -> Self {
        self.secret = secret;
        self
    }
}

/// Checks a controller-mode member id (a registration's or a session's `broker_id`): member
/// ids start at 1.
pub(crate) fn validate_member_id(broker_id: i64) -> Result<(), Status> {
    crate::registry::check_member_id(broker_id).map_err(Status::from)
}

fn validate_topic_config(t: &TopicConfig) -> Result<(), Status> {
    limits::validate_topic(&t.name)?;
    if !(1..=limits::MAX_QUEUES_PER_TOPIC).contains(&t.queue_count) {
        return Err(Status::invalid_argument(format!(
            "topic {} has queue_count {}, expected 1..={}",
            t.name,
            t.queue_count,
            limits::MAX_QUEUES_PER_TOPIC
        )));
    }
    Ok(())
}

fn validate_register(req: &RegisterBrokerRequest) -> Result<(), Status> {
    validate_identity(&req.cluster_name, &req.broker_name, req.broker_id)?;
    endpoint::parse(&req.endpoint).map_err(Status::invalid_argument)?;
    if !req.remoting_endpoint.is_empty() {
        endpoint::parse(&req.remoting_endpoint).map_err(Status::invalid_argument)?;
    }
    let role = BrokerRole::try_from(req.role)
        .map_err(|_| Status::invalid_argument(format!("unknown broker role {}", req.role)))?;
    if req.controller_mode {
        // The id is the member's for life and the role the controller's: any pairing.
        validate_member_id(req.broker_id)?;
    }
    match (req.broker_id, role) {
        _ if req.controller_mode => {}
        (0, BrokerRole::Slave) => {
            return Err(Status::invalid_argument(
                "broker_id 0 is the master; a SLAVE needs an id > 0",
            ))
        }
        (id, BrokerRole::AsyncMaster | BrokerRole::SyncMaster) if id > 0 => {
            return Err(Status::invalid_argument(format!(
                "broker_id {id} is a slave id; a master has id 0"
            )))
        }
        _ => {}
    }
    for t in &req.topics {
        validate_topic_config(t)?;
    }
    for g in &req.groups {
        apogee_proto::group::GroupConfig::try_from(g)
            .map_err(|e| Status::invalid_argument(format!("group {}: {e}", g.name)))?;
    }
    Ok(())
}

#[tonic::async_trait]
impl RegistryRpc for RegistryService {
    async fn register_broker(
        &self,
        request: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "broker registration")?;
        let req = request.into_inner();
        self.counters.registrations.inc();
        self.counters
            .registration_bytes
            .inc_by(req.encoded_len() as u64);
        validate_register(&req)?;
        let registered = self.registry.register(&req).inspect_err(|e| {
            tracing::warn!(
                cluster = %req.cluster_name,
                broker_name = %req.broker_name,
                broker_id = req.broker_id,
                endpoint = %req.endpoint,
                "registration refused: {e}"
            )
        })?;
        self.access.merge(req.users.clone(), req.acls.clone());
        self.catch_up(&req);
        if registered.is_new {
            tracing::info!(
                cluster = %req.cluster_name,
                broker_name = %req.broker_name,
                broker_id = req.broker_id,
                endpoint = %req.endpoint,
                topics = req.topics.len(),
                data_version = req.data_version,
                "broker registered"
            );
        } else {
            tracing::debug!(
                cluster = %req.cluster_name,
                broker_name = %req.broker_name,
                broker_id = req.broker_id,
                topics = req.topics.len(),
                data_version = req.data_version,
                "broker re-registered"
            );
        }
        Ok(Response::new(RegisterBrokerResponse {
            master_endpoint: registered.master_endpoint.unwrap_or_default(),
        }))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "broker heartbeat")?;
        let req = request.into_inner();
        validate_identity(&req.cluster_name, &req.broker_name, req.broker_id)?;
        let register_required = self.registry.heartbeat(
            &req.cluster_name,
            &req.broker_name,
            req.broker_id,
            req.data_version,
        );
        if register_required {
            tracing::debug!(
                cluster = %req.cluster_name,
                broker_name = %req.broker_name,
                broker_id = req.broker_id,
                "heartbeat from unknown broker or changed data version: asking for a register"
            );
        }
        Ok(Response::new(BrokerHeartbeatResponse { register_required }))
    }

    type BrokerSessionStream = SessionStream;

    async fn broker_session(
        &self,
        request: Request<Streaming<SessionBeat>>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "broker session")?;
        let host = SessionHost {
            registry: self.registry.clone(),
            counters: self.counters.clone(),
            closing: self.closing.subscribe(),
            controller: self.controller.clone(),
            via: self.via,
        };
        let answers = broker_session::open(host, request.into_inner()).await?;
        Ok(Response::new(answers))
    }

    async fn unregister_broker(
        &self,
        request: Request<UnregisterBrokerRequest>,
    ) -> Result<Response<UnregisterBrokerResponse>, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "broker unregistration")?;
        let req = request.into_inner();
        validate_identity(&req.cluster_name, &req.broker_name, req.broker_id)?;
        if self
            .registry
            .unregister(&req.cluster_name, &req.broker_name, req.broker_id)
        {
            tracing::info!(
                cluster = %req.cluster_name,
                broker_name = %req.broker_name,
                broker_id = req.broker_id,
                "broker unregistered"
            );
        }
        Ok(Response::new(UnregisterBrokerResponse {}))
    }

    async fn get_route(
        &self,
        request: Request<GetRouteRequest>,
    ) -> Result<Response<GetRouteResponse>, Status> {
        let topic = request.into_inner().topic;
        limits::validate_topic(&topic)?;
        let placements: Vec<_> = self
            .registry
            .route(&topic)
            .iter()
            .map(|p| p.to_proto())
            .collect();
        if placements.is_empty() {
            return Err(ApogeeError::TopicNotFound(topic).into());
        }
        Ok(Response::new(GetRouteResponse { topic, placements }))
    }

    async fn get_cluster_info(
        &self,
        _request: Request<GetClusterInfoRequest>,
    ) -> Result<Response<GetClusterInfoResponse>, Status> {
        Ok(Response::new(GetClusterInfoResponse {
            groups: self.registry.cluster_info(),
        }))
    }

    async fn relay_check_back(
        &self,
        request: Request<RelayCheckBackRequest>,
    ) -> Result<Response<RelayCheckBackResponse>, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "check-back relay")?;
        let req = request.into_inner();
        limits::validate_topic(&req.topic)?;
        let command =
            Command::RecoverOrphanedTransactionCommand(RecoverOrphanedTransactionCommand {
                message: req.message,
                transaction_id: req.transaction_id.clone(),
            });
        let delivered_to = self
            .sessions
            .push_to_producer_of(&req.topic, &req.preferred_producer, command)
            .unwrap_or_default();
        tracing::debug!(txn = %req.transaction_id, client = %delivered_to, "check-back relayed");
        Ok(Response::new(RelayCheckBackResponse { delivered_to }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "b".into(),
            broker_id: 0,
            endpoint: "127.0.0.1:10911".into(),
            role: BrokerRole::AsyncMaster as i32,
            topics: vec![TopicConfig {
                name: "t".into(),
                queue_count: 4,
                permission: 0,
                message_types: vec![],
                lite_expire_after_secs: 0,
            }],
            data_version: 1,
            groups: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn register_validation() {
        assert!(validate_register(&req()).is_ok());
        let cases: [fn(&mut RegisterBrokerRequest); 9] = [
            |r| r.cluster_name.clear(),
            |r| r.remoting_endpoint = "127.0.0.1".into(),
            |r| r.broker_name = "a b".into(),
            |r| r.broker_id = -1,
            |r| r.endpoint = "nowhere".into(),
            |r| r.role = BrokerRole::Slave as i32,
            |r| r.role = 42,
            |r| r.topics[0].name.clear(),
            |r| r.topics[0].queue_count = 0,
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut r = req();
            mutate(&mut r);
            let err = validate_register(&r).unwrap_err();
            assert_eq!(
                err.code(),
                tonic::Code::InvalidArgument,
                "case {i}: {err:?}"
            );
        }
    }

    #[test]
    fn controller_mode_takes_any_role_under_a_member_id_from_one() {
        let controller = |id: i64, role: BrokerRole| RegisterBrokerRequest {
            broker_id: id,
            role: role as i32,
            controller_mode: true,
            master_epoch: 3,
            ..req()
        };
        assert!(validate_register(&controller(2, BrokerRole::SyncMaster)).is_ok());
        assert!(validate_register(&controller(1, BrokerRole::Slave)).is_ok());
        let err = validate_register(&controller(0, BrokerRole::SyncMaster)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("member ids start at 1"),
            "{}",
            err.message()
        );
    }
}

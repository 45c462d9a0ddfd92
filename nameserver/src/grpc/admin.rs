//! `apogee.cluster.v1.Admin` on the NameServer: validates a topic operation,
//! picks the broker groups it concerns, fans it out to each group's master
//! (which serves the same Admin service and applies it locally), then updates
//! the broker table so routes reflect the change at once. ListTopics is
//! answered from the table; transactions are routed by [`transactions`], scheduled messages
//! by [`schedule`], message query and dead letters by [`admin_messages`], consumer groups by
//! [`admin_groups`], users and ACL entries by [`admin_access`]. GetBrokerStatus is refused: brokers answer it themselves.

use super::brokers::BrokerChannels;
use super::{admin_access, admin_groups, admin_messages, admin_ops, schedule, transactions};
use crate::access::AccessBook;
use crate::registry::{AdminTarget, GroupKey, Registry};
use apogee_proto::auth::cluster_calls::SignedChannel;
use apogee_proto::cluster as cl;
use apogee_proto::cluster::admin_client::AdminClient;
use apogee_proto::cluster::admin_server::Admin;
use apogee_proto::cluster::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    ListScheduledRequest, ListScheduledResponse, ListTopicsRequest, ListTopicsResponse,
    ListTransactionsRequest, ListTransactionsResponse, ResolveTransactionRequest,
    ResolveTransactionResponse, TopicConfig, TopicSummary, UpdateTopicRequest, UpdateTopicResponse,
};
use apogee_proto::cluster::{
    FindMessagesRequest, FindMessagesResponse, GetMessageRequest, GetMessageResponse,
    ListDeadLettersRequest, ListDeadLettersResponse, ReadQueueRequest, ReadQueueResponse,
    ResendDeadLettersRequest, ResendDeadLettersResponse,
};
use apogee_proto::telemetry::Sessions;
use apogee_proto::{limits, names, ApogeeError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Queue count of a topic created without one (RocketMQ's default).
pub const DEFAULT_QUEUE_COUNT: i32 = 8;
/// How long the NameServer waits to connect to a broker during a fan-out.
const FANOUT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one broker may take to apply a fanned-out operation.
const FANOUT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The Admin gRPC service of the NameServer.
#[derive(Clone)]
pub struct AdminService {
    registry: Arc<Registry>,
    channels: Arc<BrokerChannels>,
    /// Clients' Telemetry sessions with this NameServer (listed by DescribeGroup).
    sessions: Arc<Sessions>,
    /// Users and ACL entries (changed through the brokers, see [`admin_access`]).
    access: Arc<AccessBook>,
}

impl AdminService {
    pub fn new(registry: Arc<Registry>) -> Self {
        AdminService {
            registry,
            channels: Arc::default(),
            sessions: Sessions::new(),
            access: Arc::default(),
        }
    }

    /// Keeps users and ACL entries in `access` (the guard's directory follows it).
    pub fn with_access(mut self, access: Arc<AccessBook>) -> Self {
        self.access = access;
        self
    }

    fn access_admin(&self) -> admin_access::AccessAdmin<'_> {
        admin_access::AccessAdmin {
            registry: &self.registry,
            channels: &self.channels,
            book: &self.access,
        }
    }

    /// Calls brokers (fan-outs) through `channels` (the server's one set: signed with the
    /// cluster proof, over TLS when configured).
    pub fn with_broker_channels(mut self, channels: Arc<BrokerChannels>) -> Self {
        self.channels = channels;
        self
    }

    /// Lists the clients of `sessions` in group descriptions.
    pub fn with_sessions(mut self, sessions: Arc<Sessions>) -> Self {
        self.sessions = sessions;
        self
    }
}

/// A broker group's master to send an operation to.
#[derive(Clone, Debug)]
struct Target {
    group: GroupKey,
    endpoint: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "CreateTopic",
            Op::Update => "UpdateTopic",
            Op::Delete => "DeleteTopic",
        }
    }
}

fn check_user_topic(name: &str) -> Result<(), Status> {
    limits::validate_topic(name)?;
    if names::is_system_topic(name) {
        return Err(ApogeeError::Forbidden(format!(
            "{name} is a system topic; only brokers manage it"
        ))
        .into());
    }
    Ok(())
}

/// Validates a topic config and fills in the defaults (8 queues, READ_WRITE,
/// NORMAL messages).
pub(crate) fn normalize_topic(topic: Option<TopicConfig>) -> Result<TopicConfig, Status> {
    let t = topic.ok_or_else(|| Status::invalid_argument("topic is required"))?;
    check_user_topic(&t.name)?;
    limits::normalize_topic(t, DEFAULT_QUEUE_COUNT)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The broker groups an operation goes to. `requested` are broker names
/// (empty: every eligible group).
fn select_targets(
    all: Vec<AdminTarget>,
    requested: &[String],
    topic: &str,
    op: Op,
) -> Result<Vec<Target>, Status> {
    let must_host = op != Op::Create;
    let mut chosen: Vec<AdminTarget> = Vec::new();
    if requested.is_empty() {
        chosen = all
            .into_iter()
            .filter(|t| !must_host || t.hosts_topic)
            .collect();
        if chosen.is_empty() && must_host {
            return Err(ApogeeError::TopicNotFound(topic.to_string()).into());
        }
        let skipped: Vec<String> = chosen
            .iter()
            .filter(|t| t.master_endpoint.is_none())
            .map(|t| t.group.to_string())
            .collect();
        chosen.retain(|t| t.master_endpoint.is_some());
        if chosen.is_empty() {
            return Err(Status::unavailable(if skipped.is_empty() {
                "no broker group is registered".to_string()
            } else {
                format!("no live master in broker group(s) {}", skipped.join(", "))
            }));
        }
        if !skipped.is_empty() {
            tracing::warn!(topic, skipped = %skipped.join(", "), "{}: skipping broker groups without a live master", op.name());
        }
    } else {
        for name in requested {
            let groups: Vec<&AdminTarget> = all
                .iter()
                .filter(|t| &t.group.broker_name == name)
                .collect();
            if groups.is_empty() {
                return Err(Status::not_found(format!(
                    "broker group {name} is not registered"
                )));
            }
            for g in groups {
                if must_host && !g.hosts_topic {
                    return Err(Status::not_found(format!(
                        "topic {topic} does not exist on broker group {name}"
                    )));
                }
                if g.master_endpoint.is_none() {
                    return Err(Status::unavailable(format!(
                        "broker group {} has no live master",
                        g.group
                    )));
                }
                if !chosen.iter().any(|c| c.group == g.group) {
                    chosen.push(g.clone());
                }
            }
        }
    }
    if op == Op::Create {
        if let Some(t) = chosen.iter().find(|t| t.hosts_topic) {
            return Err(Status::already_exists(format!(
                "topic {topic} already exists on broker group {}",
                t.group.broker_name
            )));
        }
    }
    Ok(chosen
        .into_iter()
        .filter_map(|t| {
            t.master_endpoint.map(|endpoint| Target {
                group: t.group,
                endpoint,
            })
        })
        .collect())
}

async fn connect(
    channels: &BrokerChannels,
    endpoint: &str,
) -> Result<AdminClient<SignedChannel>, Status> {
    let channel = channels
        .endpoint(endpoint)?
        .connect_timeout(FANOUT_CONNECT_TIMEOUT)
        .timeout(FANOUT_REQUEST_TIMEOUT)
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("cannot connect to {endpoint}: {e}")))?;
    Ok(AdminClient::new(channels.signer().wrap(channel))
        .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES))
}

/// Sends the operation to every target's master concurrently. Returns the
/// groups that applied it and the ones that failed, with their errors.
async fn fan_out<F, Fut>(
    channels: &BrokerChannels,
    targets: Vec<Target>,
    call: F,
) -> (Vec<GroupKey>, Vec<(Target, Status)>)
where
    F: Fn(AdminClient<SignedChannel>) -> Fut,
    Fut: Future<Output = Result<(), Status>>,
{
    let calls = targets.into_iter().map(|target| {
        let call = &call;
        async move {
            let result = match connect(channels, &target.endpoint).await {
                Ok(client) => call(client).await,
                Err(e) => Err(e),
            };
            (target, result)
        }
    });
    let mut applied = Vec::new();
    let mut failed = Vec::new();
    for (target, result) in futures::future::join_all(calls).await {
        match result {
            Ok(()) => applied.push(target.group),
            Err(e) => failed.push((target, e)),
        }
    }
    (applied, failed)
}

/// Turns a fan-out outcome into the broker names, or one error naming every
/// failed group (and the ones that did apply it).
fn outcome(
    op: Op,
    topic: &str,
    applied: &[GroupKey],
    failed: Vec<(Target, Status)>,
) -> Result<Vec<String>, Status> {
    let mut names: Vec<String> = applied.iter().map(|g| g.broker_name.clone()).collect();
    names.sort();
    names.dedup();
    if failed.is_empty() {
        tracing::info!(topic, brokers = %names.join(","), "{} applied", op.name());
        return Ok(names);
    }
    let code = failed[0].1.code();
    let details: Vec<String> = failed
        .iter()
        .map(|(t, e)| format!("{} ({}): {}", t.group.broker_name, t.endpoint, e.message()))
        .collect();
    let mut message = format!(
        "{} of topic {topic} failed on {}",
        op.name(),
        details.join("; ")
    );
    if !names.is_empty() {
        message.push_str(&format!("; applied on {}", names.join(", ")));
    }
    tracing::warn!(topic, "{message}");
    Err(Status::new(code, message))
}

/// A NameServer keeps no broker's log or replication state: GetBrokerStatus is for brokers.
fn broker_status_refused() -> ApogeeError {
    ApogeeError::Unsupported(
        "a NameServer has no broker status; ask a broker directly: \
         `apogee broker status <broker addr>` (the addresses are in `apogee cluster list`)"
            .into(),
    )
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_broker_status(
        &self,
        _request: Request<cl::GetBrokerStatusRequest>,
    ) -> Result<Response<cl::GetBrokerStatusResponse>, Status> {
        Err(broker_status_refused().into())
    }

    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let req = request.into_inner();
        let topic = normalize_topic(req.topic)?;
        let targets = select_targets(
            self.registry.admin_targets(&topic.name),
            &req.broker_names,
            &topic.name,
            Op::Create,
        )?;
        let (applied, failed) = fan_out(&self.channels, targets, |mut client| {
            let request = CreateTopicRequest {
                topic: Some(topic.clone()),
                broker_names: Vec::new(),
            };
            async move { client.create_topic(request).await.map(|_| ()) }
        })
        .await;
        for group in &applied {
            self.registry.upsert_topic(group, &topic);
        }
        let broker_names = outcome(Op::Create, &topic.name, &applied, failed)?;
        Ok(Response::new(CreateTopicResponse { broker_names }))
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<UpdateTopicResponse>, Status> {
        let req = request.into_inner();
        let topic = normalize_topic(req.topic)?;
        let targets = select_targets(
            self.registry.admin_targets(&topic.name),
            &req.broker_names,
            &topic.name,
            Op::Update,
        )?;
        let (applied, failed) = fan_out(&self.channels, targets, |mut client| {
            let request = UpdateTopicRequest {
                topic: Some(topic.clone()),
                broker_names: Vec::new(),
            };
            async move { client.update_topic(request).await.map(|_| ()) }
        })
        .await;
        for group in &applied {
            self.registry.upsert_topic(group, &topic);
        }
        let broker_names = outcome(Op::Update, &topic.name, &applied, failed)?;
        Ok(Response::new(UpdateTopicResponse { broker_names }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let req = request.into_inner();
        check_user_topic(&req.topic)?;
        let targets = select_targets(
            self.registry.admin_targets(&req.topic),
            &req.broker_names,
            &req.topic,
            Op::Delete,
        )?;
        let (applied, failed) = fan_out(&self.channels, targets, |mut client| {
            let request = DeleteTopicRequest {
                topic: req.topic.clone(),
                broker_names: Vec::new(),
            };
            async move { client.delete_topic(request).await.map(|_| ()) }
        })
        .await;
        for group in &applied {
            self.registry.remove_topic(group, &req.topic);
        }
        let broker_names = outcome(Op::Delete, &req.topic, &applied, failed)?;
        Ok(Response::new(DeleteTopicResponse { broker_names }))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let include_system = request.into_inner().include_system;
        let topics = self
            .registry
            .topics()
            .into_iter()
            .filter(|(name, _)| include_system || !names::is_system_topic(name))
            .map(|(_, listing)| TopicSummary {
                config: Some(listing.config),
                broker_names: listing.broker_names,
            })
            .collect();
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn list_transactions(
        &self,
        request: Request<ListTransactionsRequest>,
    ) -> Result<Response<ListTransactionsResponse>, Status> {
        let transactions =
            transactions::list(&self.registry, &self.channels, request.into_inner()).await?;
        Ok(Response::new(ListTransactionsResponse { transactions }))
    }

    async fn resolve_transaction(
        &self,
        request: Request<ResolveTransactionRequest>,
    ) -> Result<Response<ResolveTransactionResponse>, Status> {
        Ok(Response::new(
            transactions::resolve(&self.registry, &self.channels, request.into_inner()).await?,
        ))
    }

    async fn list_scheduled(
        &self,
        request: Request<ListScheduledRequest>,
    ) -> Result<Response<ListScheduledResponse>, Status> {
        Ok(Response::new(
            schedule::list(&self.registry, &self.channels, request.into_inner()).await?,
        ))
    }

    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<GetMessageResponse>, Status> {
        let r = admin_messages::get_message(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn find_messages(
        &self,
        request: Request<FindMessagesRequest>,
    ) -> Result<Response<FindMessagesResponse>, Status> {
        let r = admin_messages::find_messages(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn read_queue(
        &self,
        request: Request<ReadQueueRequest>,
    ) -> Result<Response<ReadQueueResponse>, Status> {
        let r = admin_messages::read_queue(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let r =
            admin_messages::list_dead_letters(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn resend_dead_letters(
        &self,
        request: Request<ResendDeadLettersRequest>,
    ) -> Result<Response<ResendDeadLettersResponse>, Status> {
        let r = admin_messages::resend_dead_letters(
            &self.registry,
            &self.channels,
            request.into_inner(),
        );
        Ok(Response::new(r.await?))
    }

    async fn create_group(
        &self,
        request: Request<cl::CreateGroupRequest>,
    ) -> Result<Response<cl::CreateGroupResponse>, Status> {
        let r = admin_groups::create(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn update_group(
        &self,
        request: Request<cl::UpdateGroupRequest>,
    ) -> Result<Response<cl::UpdateGroupResponse>, Status> {
        let r = admin_groups::update(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn delete_group(
        &self,
        request: Request<cl::DeleteGroupRequest>,
    ) -> Result<Response<cl::DeleteGroupResponse>, Status> {
        let r = admin_groups::delete(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn list_groups(
        &self,
        _request: Request<cl::ListGroupsRequest>,
    ) -> Result<Response<cl::ListGroupsResponse>, Status> {
        Ok(Response::new(admin_groups::list(&self.registry)))
    }

    async fn topic_status(
        &self,
        request: Request<cl::TopicStatusRequest>,
    ) -> Result<Response<cl::TopicStatusResponse>, Status> {
        let r = super::admin_topics::status(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn describe_group(
        &self,
        request: Request<cl::DescribeGroupRequest>,
    ) -> Result<Response<cl::DescribeGroupResponse>, Status> {
        let req = request.into_inner();
        let r = admin_groups::describe(&self.registry, &self.channels, &self.sessions, req);
        Ok(Response::new(r.await?))
    }

    async fn reset_group_offset(
        &self,
        request: Request<cl::ResetGroupOffsetRequest>,
    ) -> Result<Response<cl::ResetGroupOffsetResponse>, Status> {
        let req = request.into_inner();
        let r = admin_ops::reset_offset(&self.registry, &self.channels, req);
        Ok(Response::new(r.await?))
    }

    async fn list_clients(
        &self,
        _request: Request<cl::ListClientsRequest>,
    ) -> Result<Response<cl::ListClientsResponse>, Status> {
        let r = admin_ops::list_clients(&self.registry, &self.channels, &self.sessions);
        Ok(Response::new(r.await?))
    }

    async fn get_broker_config(
        &self,
        _request: Request<cl::GetBrokerConfigRequest>,
    ) -> Result<Response<cl::GetBrokerConfigResponse>, Status> {
        Err(Status::unimplemented(
            "a NameServer has no broker config: ask the broker (apogee broker config get <broker address>)",
        ))
    }

    async fn update_broker_config(
        &self,
        _request: Request<cl::UpdateBrokerConfigRequest>,
    ) -> Result<Response<cl::UpdateBrokerConfigResponse>, Status> {
        Err(Status::unimplemented(
            "a NameServer has no broker config: ask the broker (apogee broker config set <broker address> KEY VALUE)",
        ))
    }

    async fn create_user(
        &self,
        request: Request<cl::CreateUserRequest>,
    ) -> Result<Response<cl::AccessChangeResponse>, Status> {
        let r = self.access_admin().create_user(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn update_user(
        &self,
        request: Request<cl::UpdateUserRequest>,
    ) -> Result<Response<cl::AccessChangeResponse>, Status> {
        let r = self.access_admin().update_user(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn delete_user(
        &self,
        request: Request<cl::DeleteUserRequest>,
    ) -> Result<Response<cl::AccessChangeResponse>, Status> {
        let r = self.access_admin().delete_user(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn list_users(
        &self,
        _request: Request<cl::ListUsersRequest>,
    ) -> Result<Response<cl::ListUsersResponse>, Status> {
        Ok(Response::new(self.access_admin().list_users()))
    }

    async fn grant(
        &self,
        request: Request<cl::GrantRequest>,
    ) -> Result<Response<cl::AccessChangeResponse>, Status> {
        let r = self.access_admin().grant(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn revoke(
        &self,
        request: Request<cl::RevokeRequest>,
    ) -> Result<Response<cl::AccessChangeResponse>, Status> {
        let r = self.access_admin().revoke(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn list_acls(
        &self,
        request: Request<cl::ListAclsRequest>,
    ) -> Result<Response<cl::ListAclsResponse>, Status> {
        Ok(Response::new(
            self.access_admin().list_acls(request.get_ref()),
        ))
    }

    async fn apply_access(
        &self,
        _request: Request<cl::ApplyAccessRequest>,
    ) -> Result<Response<cl::ApplyAccessResponse>, Status> {
        Err(Status::unimplemented(
            "brokers take ApplyAccess; change users on a NameServer with CreateUser, Grant, ...",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::v2::{MessageType, Permission};

    fn target(name: &str, master: bool, hosts: bool) -> AdminTarget {
        AdminTarget {
            group: GroupKey::new("c", name),
            master_endpoint: master.then(|| format!("{name}:10911")),
            hosts_topic: hosts,
        }
    }

    #[tokio::test]
    async fn broker_status_points_at_the_brokers() {
        let service = AdminService::new(Arc::new(Registry::new(Duration::from_secs(30))));
        let err = service
            .get_broker_status(Request::new(cl::GetBrokerStatusRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(
            err.message().contains("apogee broker status"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn topic_defaults_are_filled_in() {
        let t = normalize_topic(Some(TopicConfig {
            name: "orders".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(t.queue_count, 8);
        assert_eq!(t.permission, Permission::ReadWrite as i32);
        assert_eq!(t.message_types, vec![MessageType::Normal as i32]);
    }

    #[test]
    fn bad_topics_are_refused() {
        let cfg = |name: &str, queues: i32| {
            Some(TopicConfig {
                name: name.into(),
                queue_count: queues,
                ..Default::default()
            })
        };
        assert_eq!(
            normalize_topic(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            normalize_topic(cfg("bad name", 1)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            normalize_topic(cfg("%RETRY%g", 1)).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            normalize_topic(cfg("TBW102", 1)).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            normalize_topic(cfg("t", 1025)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            normalize_topic(cfg("t", -1)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn create_targets_every_group_with_a_live_master() {
        let all = vec![
            target("b1", true, false),
            target("b2", false, false),
            target("b3", true, false),
        ];
        let t = select_targets(all, &[], "t", Op::Create).unwrap();
        let names: Vec<_> = t.iter().map(|t| t.group.broker_name.as_str()).collect();
        assert_eq!(names, ["b1", "b3"]);
    }

    #[test]
    fn create_fails_without_masters_or_when_the_topic_exists() {
        let err =
            select_targets(vec![target("b1", false, false)], &[], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        let err = select_targets(vec![], &[], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        let err = select_targets(vec![target("b1", true, true)], &[], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
    }

    #[test]
    fn named_targets_must_exist_and_have_a_master() {
        let all = || vec![target("b1", true, false), target("b2", false, false)];
        let t = select_targets(all(), &["b1".into()], "t", Op::Create).unwrap();
        assert_eq!(t.len(), 1);
        let err = select_targets(all(), &["nope".into()], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = select_targets(all(), &["b2".into()], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn update_and_delete_need_an_existing_topic() {
        let all = || vec![target("b1", true, true), target("b2", true, false)];
        let t = select_targets(all(), &[], "t", Op::Delete).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].group.broker_name, "b1");
        let err =
            select_targets(vec![target("b2", true, false)], &[], "t", Op::Update).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = select_targets(all(), &["b2".into()], "t", Op::Update).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}

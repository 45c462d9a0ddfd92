//! `apogee.cluster.v1.Admin` on the NameServer. Topic changes and status are
//! [`admin_topics`]' (fanned out to the groups' masters, which serve the same
//! Admin service and apply them locally, then recorded in the broker table so
//! routes reflect them at once); ListTopics is answered from the table; transactions are routed by [`transactions`], scheduled messages
//! by [`schedule`], message query and dead letters by [`admin_messages`], consumer groups by
//! [`admin_groups`], users and ACL entries by [`admin_access`], the embedded controller's
//! status and planned elections by [`admin_controller`], the traffic history by [`admin_traffic`]. GetBrokerStatus is refused: brokers answer it themselves.
//! ListTopics, ListGroups and ListAcls answer a user who is not an admin (the guard lets them
//! call these) only the topics and groups their ACL entries grant and their own entries.

use super::admin_topics::TopicChange;
use super::brokers::BrokerChannels;
use super::{
    admin_access, admin_controller, admin_groups, admin_messages, admin_ops, admin_topics,
    admin_traffic, lite, schedule, transactions,
};
use crate::access::AccessBook;
use crate::registry::Registry;
use apogee_proto::auth::acl::{ListingScope, ResourceKind as Kind};
use apogee_proto::cluster as cl;
use apogee_proto::cluster::admin_server::Admin;
use apogee_proto::cluster::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    ListScheduledRequest, ListScheduledResponse, ListTopicsRequest, ListTopicsResponse,
    ListTransactionsRequest, ListTransactionsResponse, ResolveTransactionRequest,
    ResolveTransactionResponse, TopicSummary, UpdateTopicRequest, UpdateTopicResponse,
};
use apogee_proto::cluster::{
    FindMessagesRequest, FindMessagesResponse, GetMessageRequest, GetMessageResponse,
    ListDeadLettersRequest, ListDeadLettersResponse, ReadQueueRequest, ReadQueueResponse,
    ResendDeadLettersRequest, ResendDeadLettersResponse,
};
use apogee_proto::{names, ApogeeError};
use apogee_server::telemetry::Sessions;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub use admin_topics::DEFAULT_QUEUE_COUNT;

/// The Admin gRPC service of the NameServer.
#[derive(Clone)]
pub struct AdminService {
    registry: Arc<Registry>,
    channels: Arc<BrokerChannels>,
    /// Clients' Telemetry sessions with this NameServer (listed by DescribeGroup).
    sessions: Arc<Sessions>,
    /// Users and ACL entries (changed through the brokers, see [`admin_access`]).
    access: Arc<AccessBook>,
    /// The controller of automatic failover, embedded (`[controller] enabled`) or remote
    /// (`[controller] endpoints`).
    controller: Option<apogee_controller::SharedAuthority>,
}

impl AdminService {
    pub fn new(registry: Arc<Registry>) -> Self {
        AdminService {
            registry,
            channels: Arc::default(),
            sessions: Sessions::new(),
            access: Arc::default(),
            controller: None,
        }
    }

    /// Answers ControllerStatus and ElectMaster with `controller` (none: FAILED_PRECONDITION).
    pub fn with_controller(
        mut self,
        controller: Option<apogee_controller::SharedAuthority>,
    ) -> Self {
        self.controller = controller;
        self
    }

    fn controller_admin(&self) -> admin_controller::ControllerAdmin<'_> {
        admin_controller::ControllerAdmin {
            controller: self.controller.as_deref(),
            registry: &self.registry,
            channels: &self.channels,
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

    async fn change_topic(
        &self,
        change: TopicChange,
        broker_names: &[String],
    ) -> Result<Vec<String>, Status> {
        admin_topics::change(&self.registry, &self.channels, change, broker_names).await
    }

    /// Lists the clients of `sessions` in group descriptions.
    pub fn with_sessions(mut self, sessions: Arc<Sessions>) -> Self {
        self.sessions = sessions;
        self
    }
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
        let change = TopicChange::create(req.topic)?;
        let broker_names = self.change_topic(change, &req.broker_names).await?;
        Ok(Response::new(CreateTopicResponse { broker_names }))
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<UpdateTopicResponse>, Status> {
        let req = request.into_inner();
        let change = TopicChange::update(req.topic)?;
        let broker_names = self.change_topic(change, &req.broker_names).await?;
        Ok(Response::new(UpdateTopicResponse { broker_names }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let req = request.into_inner();
        let change = TopicChange::delete(req.topic)?;
        let broker_names = self.change_topic(change, &req.broker_names).await?;
        Ok(Response::new(DeleteTopicResponse { broker_names }))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let scope = ListingScope::of(&request);
        let include_system = request.into_inner().include_system;
        let topics = self
            .registry
            .topics()
            .into_iter()
            .filter(|(name, _)| include_system || !names::is_system_topic(name))
            .filter(|(name, _)| scope.as_ref().is_none_or(|s| s.shows(Kind::Topic, name)))
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

    async fn list_lite_topics(
        &self,
        request: Request<cl::ListLiteTopicsRequest>,
    ) -> Result<Response<cl::ListLiteTopicsResponse>, Status> {
        let r = lite::list(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }

    async fn describe_lite_topic(
        &self,
        request: Request<cl::DescribeLiteTopicRequest>,
    ) -> Result<Response<cl::DescribeLiteTopicResponse>, Status> {
        let r = lite::describe(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
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
        request: Request<cl::ListGroupsRequest>,
    ) -> Result<Response<cl::ListGroupsResponse>, Status> {
        let scope = ListingScope::of(&request);
        let r = admin_groups::list(&self.registry, &self.channels, request.into_inner());
        let mut listed = r.await?;
        if let Some(scope) = scope {
            listed.groups.retain(|g| {
                let name = g.config.as_ref().map_or("", |c| c.name.as_str());
                scope.shows(Kind::Group, name)
            });
        }
        Ok(Response::new(listed))
    }

    async fn topic_status(
        &self,
        request: Request<cl::TopicStatusRequest>,
    ) -> Result<Response<cl::TopicStatusResponse>, Status> {
        let r = admin_topics::status(&self.registry, &self.channels, request.into_inner());
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
        let mut req = request.get_ref().clone();
        // A user who is not an admin lists their own entries, whoever they name.
        if let Some(scope) = ListingScope::of(&request) {
            req.access_key = scope.access_key().to_string();
        }
        Ok(Response::new(self.access_admin().list_acls(&req)))
    }

    async fn apply_access(
        &self,
        _request: Request<cl::ApplyAccessRequest>,
    ) -> Result<Response<cl::ApplyAccessResponse>, Status> {
        Err(Status::unimplemented(
            "brokers take ApplyAccess; change users on a NameServer with CreateUser, Grant, ...",
        ))
    }

    async fn controller_status(
        &self,
        request: Request<cl::ControllerStatusRequest>,
    ) -> Result<Response<cl::ControllerStatusResponse>, Status> {
        let r = self.controller_admin().status(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn elect_master(
        &self,
        request: Request<cl::ElectMasterRequest>,
    ) -> Result<Response<cl::ElectMasterResponse>, Status> {
        let r = self.controller_admin().elect(request.into_inner()).await;
        Ok(Response::new(r?))
    }

    async fn traffic_history(
        &self,
        request: Request<cl::TrafficHistoryRequest>,
    ) -> Result<Response<cl::TrafficHistoryResponse>, Status> {
        let r = admin_traffic::history(&self.registry, &self.channels, request.into_inner());
        Ok(Response::new(r.await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    /// A registry with a master of each group `(name, endpoint)`.
    fn registry_of(masters: &[(&str, &str)]) -> Arc<Registry> {
        use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest};
        let registry = Arc::new(Registry::new(Duration::from_secs(120)));
        for (name, endpoint) in masters {
            registry
                .register(&RegisterBrokerRequest {
                    cluster_name: "c".into(),
                    broker_name: name.to_string(),
                    broker_id: 0,
                    endpoint: endpoint.to_string(),
                    role: BrokerRole::AsyncMaster as i32,
                    data_version: 1,
                    ..Default::default()
                })
                .unwrap();
        }
        registry
    }

    /// A gRPC server on loopback with no service (every call: UNIMPLEMENTED).
    async fn serviceless_broker() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router =
            tonic::transport::Server::builder().add_routes(tonic::service::Routes::default());
        tokio::spawn(router.serve_with_incoming(incoming));
        addr
    }

    async fn dead_broker() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    }

    fn topic(name: &str) -> Option<cl::TopicConfig> {
        Some(cl::TopicConfig {
            name: name.into(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_failed_topic_change_names_each_group_and_records_nothing() {
        let (bare, dead) = (serviceless_broker().await, dead_broker().await);
        let registry = registry_of(&[("b1", &bare), ("b2", &dead)]);
        let service = AdminService::new(registry.clone());
        let err = service
            .create_topic(Request::new(CreateTopicRequest {
                topic: topic("t"),
                broker_names: vec![],
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        let text = err.message();
        assert!(
            text.starts_with("CreateTopic of topic t failed on b1: "),
            "{text}"
        );
        assert!(text.contains(&format!("(at {bare}); b2: ")), "{text}");
        assert!(!text.contains("applied on"), "{text}");
        assert!(!registry.topics().contains_key("t"));

        // Only b1 asked: its own status.
        let err = service
            .create_topic(Request::new(CreateTopicRequest {
                topic: topic("t"),
                broker_names: vec!["b1".into()],
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
        // Nothing hosts t: update and delete are refused before any broker is asked.
        let err = service
            .update_topic(Request::new(UpdateTopicRequest {
                topic: topic("t"),
                broker_names: vec![],
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
        let err = service
            .delete_topic(Request::new(DeleteTopicRequest {
                topic: "t".into(),
                broker_names: vec![],
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    }

    #[tokio::test]
    async fn calls_without_a_master_answer_as_before() {
        let service = AdminService::new(registry_of(&[]));
        let err = service
            .create_topic(Request::new(CreateTopicRequest {
                topic: topic("t"),
                broker_names: vec![],
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(err.message(), "no broker group is registered");
        let group = Some(cl::GroupConfig {
            name: "g".into(),
            ..Default::default()
        });
        let err = service
            .create_group(Request::new(cl::CreateGroupRequest { group }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(err.message(), "no broker group has a live master");
        let err = service
            .delete_group(Request::new(cl::DeleteGroupRequest { group: "g".into() }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
        let listed = service
            .list_transactions(Request::new(ListTransactionsRequest::default()))
            .await
            .unwrap();
        assert!(listed.into_inner().transactions.is_empty());
        let err = service
            .grant(Request::new(cl::GrantRequest { entry: None }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_failed_group_change_names_the_group_that_failed() {
        let dead = dead_broker().await;
        let service = AdminService::new(registry_of(&[("b1", &dead)]));
        let group = Some(cl::GroupConfig {
            name: "g".into(),
            ..Default::default()
        });
        let err = service
            .create_group(Request::new(cl::CreateGroupRequest { group }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        let text = err.message();
        assert!(
            text.starts_with("CreateGroup of g failed on b1: "),
            "{text}"
        );
        assert!(text.ends_with(&format!("(at {dead})")), "{text}");
    }
}

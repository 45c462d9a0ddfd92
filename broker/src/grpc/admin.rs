//! `apogee.cluster.v1.Admin` on a broker: topic operations applied to this
//! broker group (the NameServer fans cluster-wide requests out to here), and
//! the listing and operator resolution of this broker's transactions, and the listing of its
//! scheduled messages; the lite topics of a LITE parent in [`admin_lite`]. GetBrokerStatus (this broker's log and replication state) is built in
//! [`admin_status`]. Each handler decodes, calls one of the broker's admin actions
//! (`crate::actions::admin`) and encodes what it answers.

use super::{admin_access, admin_groups, admin_lite, admin_messages, admin_ops, admin_status};
use crate::services::Broker;
use crate::topics::TopicConfig;
use apogee_proto::cluster::{self, admin_server::Admin};
use apogee_proto::ApogeeError;
use apogee_server::rpc_span::caller;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminServer {
    broker: Arc<Broker>,
}

impl AdminServer {
    pub fn new(broker: Arc<Broker>) -> Self {
        AdminServer { broker }
    }

    /// The request's topic config, with this broker's defaults.
    fn requested(&self, topic: Option<cluster::TopicConfig>) -> Result<TopicConfig, ApogeeError> {
        let wire = topic.ok_or_else(|| ApogeeError::BadRequest("topic is required".into()))?;
        self.broker.requested_topic(wire)
    }

    fn me(&self) -> Vec<String> {
        vec![self.broker.config().broker_name.clone()]
    }
}

#[tonic::async_trait]
impl Admin for AdminServer {
    async fn get_broker_status(
        &self,
        _req: Request<cluster::GetBrokerStatusRequest>,
    ) -> Result<Response<cluster::GetBrokerStatusResponse>, Status> {
        Ok(Response::new(cluster::GetBrokerStatusResponse {
            status: Some(admin_status::broker_status(&self.broker)),
        }))
    }

    async fn create_topic(
        &self,
        req: Request<cluster::CreateTopicRequest>,
    ) -> Result<Response<cluster::CreateTopicResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        let config = self.requested(req.topic)?;
        self.broker.create_topic(config, caller(&extensions))?;
        Ok(Response::new(cluster::CreateTopicResponse {
            broker_names: self.me(),
        }))
    }

    async fn update_topic(
        &self,
        req: Request<cluster::UpdateTopicRequest>,
    ) -> Result<Response<cluster::UpdateTopicResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        let config = self.requested(req.topic)?;
        self.broker.update_topic(config, caller(&extensions))?;
        Ok(Response::new(cluster::UpdateTopicResponse {
            broker_names: self.me(),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<cluster::DeleteTopicRequest>,
    ) -> Result<Response<cluster::DeleteTopicResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        let topic = req.topic;
        tracing::info!(topic = %topic, by = caller(&extensions), "deleting topic");
        self.broker.delete_topic(&topic).await?;
        Ok(Response::new(cluster::DeleteTopicResponse {
            broker_names: self.me(),
        }))
    }

    async fn list_topics(
        &self,
        req: Request<cluster::ListTopicsRequest>,
    ) -> Result<Response<cluster::ListTopicsResponse>, Status> {
        let include_system = req.into_inner().include_system;
        let topics = self
            .broker
            .list_topics(include_system)
            .into_iter()
            .map(|config| cluster::TopicSummary {
                config: Some(config.to_wire()),
                broker_names: self.me(),
            })
            .collect();
        Ok(Response::new(cluster::ListTopicsResponse { topics }))
    }

    async fn topic_status(
        &self,
        req: Request<cluster::TopicStatusRequest>,
    ) -> Result<Response<cluster::TopicStatusResponse>, Status> {
        let topic = req.into_inner().topic;
        let queues = self
            .broker
            .topic_queues(&topic)?
            .into_iter()
            .map(|q| cluster::QueueStatus {
                broker_name: self.broker.config().broker_name.clone(),
                queue_id: q.queue_id,
                min_offset: q.min_offset,
                max_offset: q.max_offset,
                last_store_ms: q.last_store_ms,
            })
            .collect();
        Ok(Response::new(cluster::TopicStatusResponse { queues }))
    }

    async fn list_transactions(
        &self,
        req: Request<cluster::ListTransactionsRequest>,
    ) -> Result<Response<cluster::ListTransactionsResponse>, Status> {
        let req = req.into_inner();
        let transactions = self
            .broker
            .list_transactions(req.unresolved_only, req.topic, req.limit as usize)
            .await?;
        Ok(Response::new(cluster::ListTransactionsResponse {
            transactions,
        }))
    }

    async fn resolve_transaction(
        &self,
        req: Request<cluster::ResolveTransactionRequest>,
    ) -> Result<Response<cluster::ResolveTransactionResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        let transaction = self
            .broker
            .resolve_transaction(&req.transaction_id, req.commit, caller(&extensions))
            .await?;
        Ok(Response::new(cluster::ResolveTransactionResponse {
            transaction: Some(transaction),
        }))
    }

    async fn list_lite_topics(
        &self,
        req: Request<cluster::ListLiteTopicsRequest>,
    ) -> Result<Response<cluster::ListLiteTopicsResponse>, Status> {
        Ok(Response::new(admin_lite::list(
            &self.broker,
            req.get_ref(),
        )?))
    }

    async fn describe_lite_topic(
        &self,
        req: Request<cluster::DescribeLiteTopicRequest>,
    ) -> Result<Response<cluster::DescribeLiteTopicResponse>, Status> {
        Ok(Response::new(admin_lite::describe(
            &self.broker,
            req.get_ref(),
        )?))
    }

    async fn list_scheduled(
        &self,
        req: Request<cluster::ListScheduledRequest>,
    ) -> Result<Response<cluster::ListScheduledResponse>, Status> {
        let req = req.into_inner();
        let listing = self
            .broker
            .list_scheduled(req.topic, req.limit as usize)
            .await?;
        Ok(Response::new(cluster::ListScheduledResponse {
            messages: listing.messages,
            stats: vec![listing.stats],
        }))
    }

    async fn get_message(
        &self,
        req: Request<cluster::GetMessageRequest>,
    ) -> Result<Response<cluster::GetMessageResponse>, Status> {
        let r = admin_messages::get_message(&self.broker, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn find_messages(
        &self,
        req: Request<cluster::FindMessagesRequest>,
    ) -> Result<Response<cluster::FindMessagesResponse>, Status> {
        let r = admin_messages::find_messages(&self.broker, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn read_queue(
        &self,
        req: Request<cluster::ReadQueueRequest>,
    ) -> Result<Response<cluster::ReadQueueResponse>, Status> {
        let r = admin_messages::read_queue(&self.broker, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn list_dead_letters(
        &self,
        req: Request<cluster::ListDeadLettersRequest>,
    ) -> Result<Response<cluster::ListDeadLettersResponse>, Status> {
        let r = admin_messages::list_dead_letters(&self.broker, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn resend_dead_letters(
        &self,
        req: Request<cluster::ResendDeadLettersRequest>,
    ) -> Result<Response<cluster::ResendDeadLettersResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        let r = admin_messages::resend_dead_letters(&self.broker, req, caller(&extensions)).await?;
        Ok(Response::new(r))
    }

    async fn create_group(
        &self,
        req: Request<cluster::CreateGroupRequest>,
    ) -> Result<Response<cluster::CreateGroupResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        Ok(Response::new(admin_groups::create(
            &self.broker,
            req,
            caller(&extensions),
        )?))
    }

    async fn update_group(
        &self,
        req: Request<cluster::UpdateGroupRequest>,
    ) -> Result<Response<cluster::UpdateGroupResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        Ok(Response::new(admin_groups::update(
            &self.broker,
            req,
            caller(&extensions),
        )?))
    }

    async fn delete_group(
        &self,
        req: Request<cluster::DeleteGroupRequest>,
    ) -> Result<Response<cluster::DeleteGroupResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        Ok(Response::new(admin_groups::delete(
            &self.broker,
            req,
            caller(&extensions),
        )?))
    }

    async fn list_groups(
        &self,
        req: Request<cluster::ListGroupsRequest>,
    ) -> Result<Response<cluster::ListGroupsResponse>, Status> {
        let r = admin_groups::list(&self.broker, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn describe_group(
        &self,
        req: Request<cluster::DescribeGroupRequest>,
    ) -> Result<Response<cluster::DescribeGroupResponse>, Status> {
        Ok(Response::new(admin_groups::describe(
            &self.broker,
            req.into_inner(),
        )?))
    }

    async fn reset_group_offset(
        &self,
        req: Request<cluster::ResetGroupOffsetRequest>,
    ) -> Result<Response<cluster::ResetGroupOffsetResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        let r = admin_ops::reset_offset(&self.broker, req, caller(&extensions))?;
        Ok(Response::new(r))
    }

    async fn list_clients(
        &self,
        _req: Request<cluster::ListClientsRequest>,
    ) -> Result<Response<cluster::ListClientsResponse>, Status> {
        Ok(Response::new(admin_ops::list_clients(&self.broker)))
    }

    async fn get_broker_config(
        &self,
        _req: Request<cluster::GetBrokerConfigRequest>,
    ) -> Result<Response<cluster::GetBrokerConfigResponse>, Status> {
        Ok(Response::new(admin_ops::get_config(&self.broker)?))
    }

    async fn update_broker_config(
        &self,
        req: Request<cluster::UpdateBrokerConfigRequest>,
    ) -> Result<Response<cluster::UpdateBrokerConfigResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        Ok(Response::new(admin_ops::update_config(
            &self.broker,
            req,
            caller(&extensions),
        )?))
    }

    async fn create_user(
        &self,
        _req: Request<cluster::CreateUserRequest>,
    ) -> Result<Response<cluster::AccessChangeResponse>, Status> {
        Err(admin_access::on_a_nameserver("CreateUser"))
    }

    async fn update_user(
        &self,
        _req: Request<cluster::UpdateUserRequest>,
    ) -> Result<Response<cluster::AccessChangeResponse>, Status> {
        Err(admin_access::on_a_nameserver("UpdateUser"))
    }

    async fn delete_user(
        &self,
        _req: Request<cluster::DeleteUserRequest>,
    ) -> Result<Response<cluster::AccessChangeResponse>, Status> {
        Err(admin_access::on_a_nameserver("DeleteUser"))
    }

    async fn list_users(
        &self,
        _req: Request<cluster::ListUsersRequest>,
    ) -> Result<Response<cluster::ListUsersResponse>, Status> {
        Ok(Response::new(admin_access::list_users(&self.broker)))
    }

    async fn grant(
        &self,
        _req: Request<cluster::GrantRequest>,
    ) -> Result<Response<cluster::AccessChangeResponse>, Status> {
        Err(admin_access::on_a_nameserver("Grant"))
    }

    async fn revoke(
        &self,
        _req: Request<cluster::RevokeRequest>,
    ) -> Result<Response<cluster::AccessChangeResponse>, Status> {
        Err(admin_access::on_a_nameserver("Revoke"))
    }

    async fn list_acls(
        &self,
        req: Request<cluster::ListAclsRequest>,
    ) -> Result<Response<cluster::ListAclsResponse>, Status> {
        Ok(Response::new(admin_access::list_acls(
            &self.broker,
            req.get_ref(),
        )))
    }

    async fn apply_access(
        &self,
        req: Request<cluster::ApplyAccessRequest>,
    ) -> Result<Response<cluster::ApplyAccessResponse>, Status> {
        let (_, extensions, req) = req.into_parts();
        Ok(Response::new(admin_access::apply(
            &self.broker,
            req,
            caller(&extensions),
        )?))
    }

    async fn controller_status(
        &self,
        _req: Request<cluster::ControllerStatusRequest>,
    ) -> Result<Response<cluster::ControllerStatusResponse>, Status> {
        Err(Status::unimplemented(
            "the controller runs in the NameServers: ask one (apogee controller status)",
        ))
    }

    async fn elect_master(
        &self,
        _req: Request<cluster::ElectMasterRequest>,
    ) -> Result<Response<cluster::ElectMasterResponse>, Status> {
        Err(Status::unimplemented(
            "a master is elected by the controller in the NameServers: ask one (apogee broker elect)",
        ))
    }

    async fn traffic_history(
        &self,
        req: Request<cluster::TrafficHistoryRequest>,
    ) -> Result<Response<cluster::TrafficHistoryResponse>, Status> {
        Ok(Response::new(self.broker.traffic_history(req.get_ref())))
    }
}

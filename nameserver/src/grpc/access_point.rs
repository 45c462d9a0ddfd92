//! The clients' access point: `apache.rocketmq.v2.MessagingService` on the
//! NameServer, so a RocketMQ 5 client configured with a NameServer address
//! works. Serves QueryRoute, QueryAssignment, Heartbeat, Telemetry (settings
//! exchange) and NotifyClientTermination from the broker table, forwards
//! EndTransaction and RecallMessage to the broker holding the transaction or
//! scheduled message, and SyncLiteSubscription to the master hosting the lite consumer's
//! bind topic (after checking the caller's permission on the topic: the broker sees
//! the NameServer's cluster proof, not the caller); every other
//! message-level RPC answers NOT_IMPLEMENTED pointing at the brokers.
//!
//! As the protocol requires, results travel as a `Status` in the response
//! body; the gRPC status stays OK.

use super::brokers::BrokerChannels;
use super::route;
use super::{lite, schedule, transactions};
use crate::config::RouteAddresses;
use crate::registry::Registry;
use apogee_proto::error::ok_status;
use apogee_proto::v2::messaging_service_server::MessagingService;
use apogee_proto::v2::{self, *};
use apogee_proto::{limits, ApogeeError};
use apogee_server::auth::guarded::check;
use apogee_server::settings::ServerLimits;
use apogee_server::telemetry::{client_id, serve_session, Sessions};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The MessagingService of the NameServer.
#[derive(Clone)]
pub struct AccessPoint {
    registry: Arc<Registry>,
    limits: ServerLimits,
    sessions: Arc<Sessions>,
    channels: Arc<BrokerChannels>,
    closing: Arc<watch::Sender<bool>>,
    route_addresses: RouteAddresses,
}

impl AccessPoint {
    pub fn new(registry: Arc<Registry>, limits: ServerLimits, sessions: Arc<Sessions>) -> Self {
        AccessPoint {
            registry,
            limits,
            sessions,
            channels: Arc::default(),
            closing: Arc::new(watch::Sender::new(false)),
            route_addresses: RouteAddresses::default(),
        }
    }

    /// Routes list the members' addresses `policy` says (see [`route::member_addresses`]).
    pub fn with_route_addresses(mut self, policy: RouteAddresses) -> Self {
        self.route_addresses = policy;
        self
    }

    /// The addresses to list for the client that sent `request`.
    fn member_addresses<T>(&self, request: &Request<T>) -> route::MemberAddresses {
        let language = request
            .metadata()
            .get("x-mq-language")
            .and_then(|v| v.to_str().ok());
        route::member_addresses(self.route_addresses, language)
    }

    /// Calls brokers (forwarded calls) through `channels` (the server's one set: signed with the
    /// cluster proof, over TLS when configured).
    pub fn with_broker_channels(mut self, channels: Arc<BrokerChannels>) -> Self {
        self.channels = channels;
        self
    }

    /// Consumers' Settings replies carry their group's config as the brokers registered it
    /// (the defaults for a group no broker holds yet).
    fn group_lookup(&self) -> apogee_server::telemetry::GroupLookup {
        let registry = self.registry.clone();
        Arc::new(move |group| {
            Ok(registry
                .group(group)
                .and_then(|wire| apogee_proto::group::GroupConfig::try_from(&wire).ok())
                .map(Arc::new))
        })
    }

    /// Ends every open Telemetry stream (and every one opened later), so a
    /// graceful shutdown does not wait for clients to hang up.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }
}

/// The status of an RPC only brokers serve.
fn broker_only(rpc: &str) -> v2::Status {
    ApogeeError::NotImplemented(format!(
        "{rpc} is served by brokers; use the endpoints from QueryRoute"
    ))
    .to_status()
}

/// The topic of a request, checked; the error is the status to answer.
fn requested_topic(topic: Option<Resource>) -> Result<Resource, v2::Status> {
    let topic =
        topic.ok_or_else(|| ApogeeError::IllegalTopic("topic is required".into()).to_status())?;
    limits::validate_topic(&topic.name).map_err(|e| e.to_status())?;
    Ok(topic)
}

type Single<T> = tokio_stream::Once<Result<T, Status>>;

#[tonic::async_trait]
impl MessagingService for AccessPoint {
    async fn query_route(
        &self,
        request: Request<QueryRouteRequest>,
    ) -> Result<Response<QueryRouteResponse>, Status> {
        let addresses = self.member_addresses(&request);
        let topic = match requested_topic(request.into_inner().topic) {
            Ok(t) => t,
            Err(status) => {
                return Ok(Response::new(QueryRouteResponse {
                    status: Some(status),
                    message_queues: vec![],
                }))
            }
        };
        let message_queues =
            route::message_queues(&self.registry.route(&topic.name), &topic, addresses);
        let status = if message_queues.is_empty() {
            ApogeeError::TopicNotFound(topic.name.clone()).to_status()
        } else {
            ok_status()
        };
        Ok(Response::new(QueryRouteResponse {
            status: Some(status),
            message_queues,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        tracing::trace!(client = %client_id(&request), "client heartbeat");
        Ok(Response::new(HeartbeatResponse {
            status: Some(ok_status()),
        }))
    }

    async fn send_message(
        &self,
        _request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        Ok(Response::new(SendMessageResponse {
            status: Some(broker_only("SendMessage")),
            entries: vec![],
        }))
    }

    async fn query_assignment(
        &self,
        request: Request<QueryAssignmentRequest>,
    ) -> Result<Response<QueryAssignmentResponse>, Status> {
        let addresses = self.member_addresses(&request);
        let topic = match requested_topic(request.into_inner().topic) {
            Ok(t) => t,
            Err(status) => {
                return Ok(Response::new(QueryAssignmentResponse {
                    status: Some(status),
                    assignments: vec![],
                }))
            }
        };
        let assignments = route::assignments(&self.registry.route(&topic.name), &topic, addresses);
        let status = if assignments.is_empty() {
            ApogeeError::TopicNotFound(topic.name.clone()).to_status()
        } else {
            ok_status()
        };
        Ok(Response::new(QueryAssignmentResponse {
            status: Some(status),
            assignments,
        }))
    }

    type ReceiveMessageStream = Single<ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        _request: Request<ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        Ok(Response::new(tokio_stream::once(Ok(
            ReceiveMessageResponse {
                content: Some(receive_message_response::Content::Status(broker_only(
                    "ReceiveMessage",
                ))),
            },
        ))))
    }

    async fn ack_message(
        &self,
        _request: Request<AckMessageRequest>,
    ) -> Result<Response<AckMessageResponse>, Status> {
        Ok(Response::new(AckMessageResponse {
            status: Some(broker_only("AckMessage")),
            entries: vec![],
        }))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _request: Request<ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<ForwardMessageToDeadLetterQueueResponse>, Status> {
        Ok(Response::new(ForwardMessageToDeadLetterQueueResponse {
            status: Some(broker_only("ForwardMessageToDeadLetterQueue")),
        }))
    }

    type PullMessageStream = Single<PullMessageResponse>;

    async fn pull_message(
        &self,
        _request: Request<PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        Ok(Response::new(tokio_stream::once(Ok(PullMessageResponse {
            content: Some(pull_message_response::Content::Status(broker_only(
                "PullMessage",
            ))),
        }))))
    }

    async fn update_offset(
        &self,
        _request: Request<UpdateOffsetRequest>,
    ) -> Result<Response<UpdateOffsetResponse>, Status> {
        Ok(Response::new(UpdateOffsetResponse {
            status: Some(broker_only("UpdateOffset")),
        }))
    }

    async fn get_offset(
        &self,
        _request: Request<GetOffsetRequest>,
    ) -> Result<Response<GetOffsetResponse>, Status> {
        Ok(Response::new(GetOffsetResponse {
            status: Some(broker_only("GetOffset")),
            offset: 0,
        }))
    }

    async fn query_offset(
        &self,
        _request: Request<QueryOffsetRequest>,
    ) -> Result<Response<QueryOffsetResponse>, Status> {
        Ok(Response::new(QueryOffsetResponse {
            status: Some(broker_only("QueryOffset")),
            offset: 0,
        }))
    }

    async fn end_transaction(
        &self,
        request: Request<EndTransactionRequest>,
    ) -> Result<Response<EndTransactionResponse>, Status> {
        // Forwarded with the cluster proof: the caller's permission is checked here.
        if let Err(e) = check(&request) {
            return Ok(Response::new(EndTransactionResponse {
                status: Some(e.to_status()),
            }));
        }
        let forwarded =
            transactions::forward_end(&self.registry, &self.channels, request.into_inner()).await;
        Ok(Response::new(forwarded.unwrap_or_else(|e| {
            EndTransactionResponse {
                status: Some(e.to_status()),
            }
        })))
    }

    type TelemetryStream = ReceiverStream<Result<TelemetryCommand, Status>>;

    async fn telemetry(
        &self,
        request: Request<Streaming<TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let client = client_id(&request);
        let address = apogee_server::telemetry::peer_address(&request);
        Ok(Response::new(serve_session(
            client,
            address,
            request.into_inner(),
            self.limits.clone(),
            self.sessions.clone(),
            self.group_lookup(),
            self.closing.subscribe(),
        )))
    }

    async fn notify_client_termination(
        &self,
        request: Request<NotifyClientTerminationRequest>,
    ) -> Result<Response<NotifyClientTerminationResponse>, Status> {
        tracing::debug!(client = %client_id(&request), "client terminated");
        Ok(Response::new(NotifyClientTerminationResponse {
            status: Some(ok_status()),
        }))
    }

    async fn change_invisible_duration(
        &self,
        _request: Request<ChangeInvisibleDurationRequest>,
    ) -> Result<Response<ChangeInvisibleDurationResponse>, Status> {
        Ok(Response::new(ChangeInvisibleDurationResponse {
            status: Some(broker_only("ChangeInvisibleDuration")),
            receipt_handle: String::new(),
        }))
    }

    async fn recall_message(
        &self,
        request: Request<RecallMessageRequest>,
    ) -> Result<Response<RecallMessageResponse>, Status> {
        if let Err(e) = check(&request) {
            return Ok(Response::new(RecallMessageResponse {
                status: Some(e.to_status()),
                message_id: String::new(),
            }));
        }
        let forwarded =
            schedule::forward_recall(&self.registry, &self.channels, request.into_inner()).await;
        Ok(Response::new(forwarded.unwrap_or_else(|e| {
            RecallMessageResponse {
                status: Some(e.to_status()),
                message_id: String::new(),
            }
        })))
    }

    async fn sync_lite_subscription(
        &self,
        mut request: Request<SyncLiteSubscriptionRequest>,
    ) -> Result<Response<SyncLiteSubscriptionResponse>, Status> {
        // Before the forward, which does not pass the client's language on.
        apogee_server::client_defects::repair_lite_sync(&mut request);
        // Forwarded with the cluster proof: the caller's permission is checked here.
        if let Err(e) = check(&request) {
            return Ok(Response::new(SyncLiteSubscriptionResponse {
                status: Some(e.to_status()),
            }));
        }
        let client = client_id(&request);
        let forwarded = lite::forward_sync(
            &self.registry,
            &self.channels,
            request.into_inner(),
            &client,
        )
        .await;
        Ok(Response::new(forwarded.unwrap_or_else(|e| {
            SyncLiteSubscriptionResponse {
                status: Some(e.to_status()),
            }
        })))
    }
}

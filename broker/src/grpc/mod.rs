//! The broker's gRPC services.
//!
//! - [`MessagingServer`]: every RPC of `apache.rocketmq.v2.MessagingService`
//!   (send in [`send`], pop-style consumption in [`receive`], offset-based
//!   consumption in [`offsets`], EndTransaction in [`end_transaction`],
//!   RecallMessage in `crate::schedule`;
//!   Telemetry is the shared session of `apogee_server::telemetry`); on a slave it sits
//!   behind [`forward::SlaveForwarding`], which passes what only the master can answer to it.
//! - [`admin::AdminServer`]: the typed `apogee.cluster.v1.Admin` operations
//!   applied to this broker (message query and dead letters in [`admin_messages`],
//!   consumer groups in [`admin_groups`], GetBrokerStatus in [`admin_status`], users and
//!   ACL entries in [`admin_access`]).
//!
//! v2 responses carry their outcome in a `Status` inside the body; the gRPC
//! status is only non-OK for transport-level problems.

pub mod admin;
pub mod admin_access;
pub mod admin_groups;
pub mod admin_lite;
pub mod admin_messages;
pub mod admin_ops;
pub mod admin_status;
pub mod convert;
pub mod end_transaction;
pub mod forward;
pub mod lite;
pub mod offsets;
pub mod receive;
pub mod send;

use crate::membership::SendAdmission;
use crate::services::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::v2::{self, messaging_service_server::MessagingService};
use apogee_server::auth::guarded::check;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> ResponseStream<T> {
    Box::pin(futures::stream::iter(items.into_iter().map(Ok)))
}

fn peer_host<T>(req: &Request<T>) -> String {
    req.remote_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// Milliseconds left before the client's gRPC deadline (`grpc-timeout`
/// header: an integer and a unit H, M, S, m, u or n), if it sent one.
fn deadline_ms<T>(req: &Request<T>) -> Option<i64> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: i64 = num.parse().ok()?;
    Some(match unit {
        "H" => n.saturating_mul(3_600_000),
        "M" => n.saturating_mul(60_000),
        "S" => n.saturating_mul(1_000),
        "m" => n,
        "u" => n / 1_000,
        "n" => n / 1_000_000,
        _ => return None,
    })
}

/// A unary response refusing the call with `e`'s status (field `status` of every v2 response).
macro_rules! refuse {
    ($response:ident, $e:expr) => {{
        // Some responses have more fields than the status, some do not.
        #[allow(clippy::needless_update)]
        let response = v2::$response {
            status: Some($e.to_status()),
            ..Default::default()
        };
        return Ok(Response::new(response));
    }};
}

pub struct MessagingServer {
    broker: Arc<Broker>,
}

impl MessagingServer {
    pub fn new(broker: Arc<Broker>) -> Self {
        MessagingServer { broker }
    }

    /// Consumers' Settings replies carry their group's config (the defaults for a group
    /// its first receive will create, or refused, as `consume.auto_create_groups` says).
    fn group_lookup(&self) -> apogee_server::telemetry::GroupLookup {
        let broker = self.broker.clone();
        Arc::new(move |group| broker.consumer_group(group))
    }

    /// Notes that the request's client is alive; returns its id.
    fn seen<T>(&self, req: &Request<T>) -> String {
        let client = apogee_server::telemetry::client_id(req);
        self.broker.client_seen(&client);
        client
    }
}

#[tonic::async_trait]
impl MessagingService for MessagingServer {
    async fn query_route(
        &self,
        req: Request<v2::QueryRouteRequest>,
    ) -> Result<Response<v2::QueryRouteResponse>, Status> {
        Ok(Response::new(self.broker.route(req.into_inner()).await))
    }

    async fn heartbeat(
        &self,
        req: Request<v2::HeartbeatRequest>,
    ) -> Result<Response<v2::HeartbeatResponse>, Status> {
        self.seen(&req);
        // A consumer's heartbeat names its group: an unknown one is refused unless its
        // first receive will create it.
        let group = req.get_ref().group.as_ref().map(|g| g.name.as_str());
        let status = match group.filter(|g| !g.is_empty()) {
            Some(g) => match self.broker.consumer_group(g) {
                Ok(_) => ok_status(),
                Err(e) => e.to_status(),
            },
            None => ok_status(),
        };
        Ok(Response::new(v2::HeartbeatResponse {
            status: Some(status),
        }))
    }

    async fn send_message(
        &self,
        mut req: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(SendMessageResponse, e);
        }
        let peer = peer_host(&req);
        let client = apogee_server::telemetry::client_id(&req);
        let admitted = req.extensions_mut().remove::<SendAdmission>();
        Ok(Response::new(
            send::send_message(
                &self.broker,
                req.into_inner(),
                &peer,
                &client,
                admitted.as_ref(),
            )
            .await,
        ))
    }

    async fn query_assignment(
        &self,
        req: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, Status> {
        Ok(Response::new(
            self.broker.assignment(req.into_inner()).await,
        ))
    }

    type ReceiveMessageStream = ResponseStream<v2::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        req: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        let client = self.seen(&req);
        if let Err(e) = check(&req) {
            return Ok(Response::new(stream_of(vec![v2::ReceiveMessageResponse {
                content: Some(v2::receive_message_response::Content::Status(e.to_status())),
            }])));
        }
        let (responses, created_group) =
            receive::receive(&self.broker, req.get_ref(), &client, deadline_ms(&req)).await;
        let mut response = Response::new(stream_of(responses));
        if let Some(start) = created_group {
            // Tells the client that this receive created its group, and where it starts.
            response.metadata_mut().insert(
                apogee_proto::group::GROUP_CREATED_HEADER,
                tonic::metadata::MetadataValue::from_static(start.as_str()),
            );
        }
        Ok(response)
    }

    async fn ack_message(
        &self,
        req: Request<v2::AckMessageRequest>,
    ) -> Result<Response<v2::AckMessageResponse>, Status> {
        self.seen(&req);
        if let Err(e) = check(&req) {
            refuse!(AckMessageResponse, e);
        }
        Ok(Response::new(receive::ack(&self.broker, req.into_inner())))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        req: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(ForwardMessageToDeadLetterQueueResponse, e);
        }
        Ok(Response::new(
            receive::forward_to_dead_letter(&self.broker, req.into_inner()).await,
        ))
    }

    type PullMessageStream = ResponseStream<v2::PullMessageResponse>;

    async fn pull_message(
        &self,
        req: Request<v2::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        if let Err(e) = check(&req) {
            return Ok(Response::new(stream_of(vec![v2::PullMessageResponse {
                content: Some(v2::pull_message_response::Content::Status(e.to_status())),
            }])));
        }
        let client = self.seen(&req);
        let deadline = deadline_ms(&req);
        Ok(Response::new(stream_of(
            offsets::pull(&self.broker, req.into_inner(), &client, deadline).await,
        )))
    }

    async fn update_offset(
        &self,
        req: Request<v2::UpdateOffsetRequest>,
    ) -> Result<Response<v2::UpdateOffsetResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(UpdateOffsetResponse, e);
        }
        Ok(Response::new(offsets::update_offset(
            &self.broker,
            req.into_inner(),
        )))
    }

    async fn get_offset(
        &self,
        req: Request<v2::GetOffsetRequest>,
    ) -> Result<Response<v2::GetOffsetResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(GetOffsetResponse, e);
        }
        Ok(Response::new(offsets::get_offset(
            &self.broker,
            req.into_inner(),
        )))
    }

    async fn query_offset(
        &self,
        req: Request<v2::QueryOffsetRequest>,
    ) -> Result<Response<v2::QueryOffsetResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(QueryOffsetResponse, e);
        }
        Ok(Response::new(offsets::query_offset(
            &self.broker,
            req.into_inner(),
        )))
    }

    async fn end_transaction(
        &self,
        req: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(EndTransactionResponse, e);
        }
        let status = match end_transaction::end(&self.broker, &req).await {
            Ok(()) => ok_status(),
            Err(e) => e.to_status(),
        };
        Ok(Response::new(v2::EndTransactionResponse {
            status: Some(status),
        }))
    }

    type TelemetryStream = ResponseStream<v2::TelemetryCommand>;

    async fn telemetry(
        &self,
        req: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let client = apogee_server::telemetry::client_id(&req);
        let address = apogee_server::telemetry::peer_address(&req);
        Ok(Response::new(Box::pin(
            apogee_server::telemetry::serve_session(
                client,
                address,
                req.into_inner(),
                self.broker.limits().clone(),
                self.broker.sessions().clone(),
                self.group_lookup(),
                self.broker.closing(),
            ),
        )))
    }

    async fn notify_client_termination(
        &self,
        req: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, Status> {
        // Its auto-renew deliveries are not renewed any more: they come back.
        let client = apogee_server::telemetry::client_id(&req);
        self.broker.client_gone(&client);
        Ok(Response::new(v2::NotifyClientTerminationResponse {
            status: Some(ok_status()),
        }))
    }

    async fn change_invisible_duration(
        &self,
        req: Request<v2::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<v2::ChangeInvisibleDurationResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(ChangeInvisibleDurationResponse, e);
        }
        self.seen(&req);
        Ok(Response::new(receive::change_invisible(
            &self.broker,
            req.into_inner(),
        )))
    }

    async fn recall_message(
        &self,
        req: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, Status> {
        if let Err(e) = check(&req) {
            refuse!(RecallMessageResponse, e);
        }
        let req = req.into_inner();
        let topic = req.topic.as_ref().map_or("", |t| t.name.as_str());
        let recalled = self.broker.recall(topic, &req.recall_handle).await;
        Ok(Response::new(match recalled {
            Ok(message_id) => v2::RecallMessageResponse {
                status: Some(ok_status()),
                message_id,
            },
            Err(e) => v2::RecallMessageResponse {
                status: Some(e.to_status()),
                message_id: String::new(),
            },
        }))
    }

    async fn sync_lite_subscription(
        &self,
        mut req: Request<v2::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<v2::SyncLiteSubscriptionResponse>, Status> {
        apogee_server::client_defects::repair_lite_sync(&mut req);
        let client = self.seen(&req);
        if let Err(e) = check(&req) {
            refuse!(SyncLiteSubscriptionResponse, e);
        }
        let status = match lite::sync(&self.broker, req.get_ref(), &client) {
            Ok(()) => ok_status(),
            Err(e) => e.to_status(),
        };
        Ok(Response::new(v2::SyncLiteSubscriptionResponse {
            status: Some(status),
        }))
    }
}

#[cfg(test)]
mod tests_admin;
#[cfg(test)]
mod tests_lite;
#[cfg(test)]
mod tests_messaging;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_is_read_in_every_unit() {
        let with = |v: &str| {
            let mut r = Request::new(());
            r.metadata_mut().insert("grpc-timeout", v.parse().unwrap());
            deadline_ms(&r)
        };
        assert_eq!(with("43000m"), Some(43_000));
        assert_eq!(with("5S"), Some(5_000));
        assert_eq!(with("2M"), Some(120_000));
        assert_eq!(with("1500000u"), Some(1_500));
        assert_eq!(with("bogus"), None);
        assert_eq!(deadline_ms(&Request::new(())), None);
    }

    #[test]
    fn long_polling_is_capped_by_the_maximum_and_the_client_deadline() {
        let d = |ms: u64| apogee_proto::time::duration(std::time::Duration::from_millis(ms));
        assert_eq!(
            receive::long_polling_ms(Some(&d(40_000)), None).unwrap(),
            30_000
        );
        assert_eq!(
            receive::long_polling_ms(Some(&d(20_000)), Some(10_000)).unwrap(),
            9_500
        );
        assert_eq!(receive::long_polling_ms(None, None).unwrap(), 0);
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(
            receive::long_polling_ms(Some(&negative), None)
                .unwrap_err()
                .code() as i32,
            40018
        );
    }
}

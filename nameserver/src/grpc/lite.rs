//! Lite topics seen from a NameServer. It keeps no subscription: the official lite consumers
//! send SyncLiteSubscription to their access point, which forwards it to the live master of
//! the broker group hosting the LITE parent topic (a LITE parent lives on one broker group),
//! with the client's id, where the subscriptions live. The admin's lite listing and
//! description go to that master too.

use super::brokers::BrokerChannels;
use crate::registry::Registry;
use apogee_proto::cluster::{
    DescribeLiteTopicRequest, DescribeLiteTopicResponse, ListLiteTopicsRequest,
    ListLiteTopicsResponse,
};
use apogee_proto::v2::{SyncLiteSubscriptionRequest, SyncLiteSubscriptionResponse};
use apogee_proto::ApogeeError;
use tonic::Status;

/// The client-id header every RocketMQ 5 client sends.
const CLIENT_ID_HEADER: &str = "x-mq-client-id";

/// The live master of the broker group hosting `topic`.
pub fn master_hosting(registry: &Registry, topic: &str) -> Result<String, ApogeeError> {
    let placements = registry.route(topic);
    let Some(placement) = placements.first() else {
        return Err(ApogeeError::TopicNotFound(topic.to_string()));
    };
    placement
        .master()
        .map(|m| m.endpoint.clone())
        .ok_or_else(|| {
            ApogeeError::Unavailable(format!(
                "broker group {}, which hosts topic {topic}, has no live master",
                placement.group.broker_name
            ))
        })
}

/// Forwards a SyncLiteSubscription of `client_id` to the master hosting its bind topic; the
/// answer is that broker's.
pub async fn forward_sync(
    registry: &Registry,
    channels: &BrokerChannels,
    req: SyncLiteSubscriptionRequest,
    client_id: &str,
) -> Result<SyncLiteSubscriptionResponse, ApogeeError> {
    let topic = req
        .topic
        .as_ref()
        .map_or("", |t| t.name.as_str())
        .to_string();
    apogee_proto::limits::validate_topic(&topic)?;
    let master = master_hosting(registry, &topic)?;
    tracing::debug!(topic, client = client_id, broker = %master, "forwarding SyncLiteSubscription");
    let mut client = channels.messaging(&master)?;
    let mut request = tonic::Request::new(req);
    if let Ok(v) = client_id.parse() {
        request.metadata_mut().insert(CLIENT_ID_HEADER, v);
    }
    channels
        .bounded(&master, client.sync_lite_subscription(request))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| ApogeeError::Unavailable(format!("broker {master}: {}", e.message())))
}

/// A page of a LITE parent's lite topics, from the master hosting it.
pub async fn list(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ListLiteTopicsRequest,
) -> Result<ListLiteTopicsResponse, Status> {
    let master = master_hosting(registry, &req.parent)?;
    let mut client = channels.admin(&master)?;
    let answer = channels.bounded(&master, client.list_lite_topics(req));
    Ok(answer.await?.into_inner())
}

/// One lite topic, from the master hosting its parent.
pub async fn describe(
    registry: &Registry,
    channels: &BrokerChannels,
    req: DescribeLiteTopicRequest,
) -> Result<DescribeLiteTopicResponse, Status> {
    let master = master_hosting(registry, &req.parent)?;
    let mut client = channels.admin(&master)?;
    let answer = channels.bounded(&master, client.describe_lite_topic(req));
    Ok(answer.await?.into_inner())
}

//! Scheduled messages seen from a NameServer. It keeps no schedule state: a recall handle
//! names the broker group holding the message (`apogee_proto::routed_id`), so a RecallMessage
//! sent to the access point (where official clients send it) is forwarded to that group's live
//! master. Listing asks every group's master and merges the answers.

use super::brokers::{master_of, BrokerChannels};
use super::fan_out::{every_master, fan_out};
use crate::registry::Registry;
use apogee_proto::cluster::{ListScheduledRequest, ListScheduledResponse};
use apogee_proto::v2::{RecallMessageRequest, RecallMessageResponse};
use apogee_proto::{routed_id, ApogeeError};
use tonic::Status;

/// Forwards a RecallMessage to the broker that holds the message; the answer is that broker's.
pub async fn forward_recall(
    registry: &Registry,
    channels: &BrokerChannels,
    req: RecallMessageRequest,
) -> Result<RecallMessageResponse, ApogeeError> {
    let broker = routed_id::broker_of_recall_handle(&req.recall_handle).ok_or_else(|| {
        ApogeeError::BadRequest(format!(
            "{:?} is not a recall handle issued by an Apogee broker",
            req.recall_handle
        ))
    })?;
    let master = master_of(registry, broker, "the scheduled message")?;
    tracing::debug!(handle = %req.recall_handle, broker = %master, "forwarding RecallMessage");
    let mut client = channels.messaging(&master)?;
    channels
        .bounded(&master, client.recall_message(req))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| ApogeeError::Unavailable(format!("broker {master}: {}", e.message())))
}

/// Every live master's waiting messages (earliest due first) and counters.
pub async fn list(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ListScheduledRequest,
) -> Result<ListScheduledResponse, Status> {
    let answers = fan_out(
        channels,
        every_master(registry),
        "ListScheduled",
        |mut c| {
            let req = req.clone();
            async move { c.list_scheduled(req).await }
        },
    )
    .await
    .answers()?;
    let mut merged = ListScheduledResponse::default();
    for (_, a) in answers {
        merged.messages.extend(a.messages);
        merged.stats.extend(a.stats);
    }
    merged
        .messages
        .sort_by(|a, b| (a.due_ms, &a.recall_handle).cmp(&(b.due_ms, &b.recall_handle)));
    merged
        .stats
        .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    Ok(merged)
}

//! `TopicStatus` on a NameServer: asks every broker group's master for its queues of the
//! topic and lists them together (a group that does not host the topic answers NOT_FOUND and
//! is left out; any other failure names the group).

use super::admin_groups::outcome;
use super::brokers::{each_master, BrokerChannels};
use crate::registry::Registry;
use apogee_proto::cluster::{TopicStatusRequest, TopicStatusResponse};
use apogee_proto::{limits, ApogeeError};
use tonic::{Code, Status};

pub async fn status(
    registry: &Registry,
    channels: &BrokerChannels,
    req: TopicStatusRequest,
) -> Result<TopicStatusResponse, Status> {
    limits::validate_topic(&req.topic)?;
    let answers = each_master(registry, channels, |mut c| {
        let r = req.clone();
        async move { c.topic_status(r).await }
    })
    .await;
    let what = format!("TopicStatus of {}", req.topic);
    let (found, error) = outcome(&what, answers, Some(Code::NotFound));
    if let Some(e) = error {
        return Err(e);
    }
    if found.is_empty() {
        return Err(ApogeeError::TopicNotFound(req.topic).into());
    }
    let mut queues: Vec<_> = found.into_iter().flat_map(|(_, r)| r.queues).collect();
    queues.sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
    Ok(TopicStatusResponse { queues })
}

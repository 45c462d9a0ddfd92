//! SyncLiteSubscription: a lite consumer's set of lite topics (RIP-83), kept by
//! `crate::consume::lite::LiteRegistry`.
//!
//! The request names the LITE parent topic (the group's bind topic), the group, an action and
//! lite topic names. The group must be a lite group bound to that topic; an unknown group is
//! created as a shared lite group bound to it when this broker creates groups on first use
//! (`consume.auto_create_groups`), as a receive on a LITE parent creates it. Names follow the
//! lite-name rule and `lite.max_topic_len` (ILLEGAL_LITE_TOPIC); a client holds at most its
//! group's `lite_subscription_quota` lite topics, or `lite.subscription_quota` when the group
//! sets none (LITE_SUBSCRIPTION_QUOTA_EXCEEDED, and nothing changes).

use crate::consume::lite::{StartOffset, SyncAction, SyncRequest};
use crate::services::Broker;
use apogee_proto::time::now_ms;
use apogee_proto::v2::{self, LiteSubscriptionAction};
use apogee_proto::{limits, ApogeeError};

/// Handles one SyncLiteSubscription from `client_id`.
pub fn sync(
    broker: &Broker,
    req: &v2::SyncLiteSubscriptionRequest,
    client_id: &str,
) -> Result<(), ApogeeError> {
    let group = req.group.as_ref().map_or("", |g| g.name.as_str());
    limits::validate_group(group)?;
    let parent = req.topic.as_ref().map_or("", |t| t.name.as_str());
    limits::validate_topic(parent)?;
    if broker.topics().get(parent).is_none() {
        return Err(ApogeeError::TopicNotFound(parent.to_string()));
    }
    if !broker.is_lite_parent(parent) {
        return Err(ApogeeError::BadRequest(format!(
            "topic {parent} is not a LITE topic (create it with `apogee topic create {parent} --type lite`)"
        )));
    }
    let action = match LiteSubscriptionAction::try_from(req.action) {
        Ok(LiteSubscriptionAction::PartialAdd) => SyncAction::PartialAdd,
        Ok(LiteSubscriptionAction::PartialRemove) => SyncAction::PartialRemove,
        Ok(LiteSubscriptionAction::CompleteAdd) => SyncAction::CompleteAdd,
        Ok(LiteSubscriptionAction::CompleteRemove) => SyncAction::CompleteRemove,
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown lite subscription action {}",
                req.action
            )))
        }
    };
    let lite_config = &broker.config().lite;
    for name in &req.lite_topic_set {
        limits::validate_lite_topic(name, lite_config.max_topic_len)?;
    }
    let group_config = broker.lite_group(group, parent, client_id)?;
    let binding = group_config.lite.as_ref().expect("lite_group checks it");
    let quota = match binding.subscription_quota {
        0 => lite_config.subscription_quota,
        q => q,
    };
    let start = match &req.offset_option {
        Some(o) => StartOffset::from_v2(o)?,
        None => None,
    };
    let mut names = req.lite_topic_set.clone();
    names.sort();
    names.dedup();
    broker.lite().sync(&SyncRequest {
        client_id,
        group,
        parent,
        exclusive: binding.exclusive,
        action,
        lite_topics: &names,
        start,
        quota: quota as usize,
        now_ms: now_ms(),
    })
}

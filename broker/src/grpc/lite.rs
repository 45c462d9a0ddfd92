//! SyncLiteSubscription: a lite consumer's set of lite topics (RIP-83), decoded onto the
//! core's [`Broker::sync_lite_subscription`], whose module says the rules.

use crate::actions::LiteSubscriptionChange;
use crate::consume::lite::{StartOffset, SyncAction};
use crate::services::Broker;
use apogee_proto::v2::{self, LiteSubscriptionAction};
use apogee_proto::ApogeeError;

/// Handles one SyncLiteSubscription from `client_id`.
pub fn sync(
    broker: &Broker,
    req: &v2::SyncLiteSubscriptionRequest,
    client_id: &str,
) -> Result<(), ApogeeError> {
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
    let start = match &req.offset_option {
        Some(o) => StartOffset::from_v2(o)?,
        None => None,
    };
    broker.sync_lite_subscription(LiteSubscriptionChange {
        client_id,
        group: req.group.as_ref().map_or("", |g| g.name.as_str()),
        parent: req.topic.as_ref().map_or("", |t| t.name.as_str()),
        action,
        lite_topics: req.lite_topic_set.clone(),
        start,
    })
}

//! The lite rules both a pop and a subscription change apply: which topics are LITE
//! parents, and the lite group bound to one; and [`Broker::sync_lite_subscription`], a lite
//! consumer's change of its set of lite topics (RIP-83), kept by
//! `crate::consume::lite::LiteRegistry`.
//!
//! A subscription change names the LITE parent topic (the group's bind topic), the group,
//! an action and lite topic names. The group must be a lite group bound to that topic; an
//! unknown group is created as a shared lite group bound to it when this broker creates
//! groups on first use (`consume.auto_create_groups`), as a receive on a LITE parent creates
//! it. Names follow the lite-name rule and `lite.max_topic_len` (ILLEGAL_LITE_TOPIC); a
//! client holds at most its group's `lite_subscription_quota` lite topics, or
//! `lite.subscription_quota` when the group sets none (LITE_SUBSCRIPTION_QUOTA_EXCEEDED, and
//! nothing changes).

use crate::consume::lite::{StartOffset, SyncAction, SyncRequest};
use crate::services::Broker;
use apogee_proto::group::{GroupConfig, LiteBinding};
use apogee_proto::time::now_ms;
use apogee_proto::{limits, ApogeeError};
use std::sync::Arc;

/// A lite consumer's change of its lite topics.
#[derive(Debug)]
pub struct LiteSubscriptionChange<'a> {
    pub client_id: &'a str,
    pub group: &'a str,
    /// The LITE parent topic the group is bound to.
    pub parent: &'a str,
    pub action: SyncAction,
    pub lite_topics: Vec<String>,
    /// Where a newly subscribed lite topic starts, when the client says.
    pub start: Option<StartOffset>,
}

impl Broker {
    /// Whether `topic` is a LITE parent topic on this broker.
    pub fn is_lite_parent(&self, topic: &str) -> bool {
        self.topics()
            .get_shared(topic)
            .is_some_and(|t| t.is_lite_parent())
    }

    /// The lite group `group` bound to `parent`: created (shared, the broker's quota) when it
    /// is unknown and groups are created on first use; refused when it is bound elsewhere or
    /// not lite.
    pub fn lite_group(
        &self,
        group: &str,
        parent: &str,
        client_id: &str,
    ) -> Result<Arc<GroupConfig>, ApogeeError> {
        let groups = self.groups();
        let config = match groups.get(group) {
            Some(g) => g,
            None if groups.auto_creates() => {
                let config = GroupConfig {
                    lite: Some(LiteBinding {
                        bind_topic: parent.to_string(),
                        exclusive: false,
                        subscription_quota: 0,
                    }),
                    ..GroupConfig::with_defaults(group)
                };
                match groups.create(config) {
                    Ok(g) => {
                        tracing::info!(
                            group,
                            topic = parent,
                            client = client_id,
                            "lite consumer group did not exist: created on first use, shared, bound to its topic"
                        );
                        g
                    }
                    Err(ApogeeError::AlreadyExists(_)) => groups
                        .get(group)
                        .ok_or_else(|| ApogeeError::ConsumerGroupNotFound(group.to_string()))?,
                    Err(e) => return Err(e),
                }
            }
            None => {
                return Err(ApogeeError::ConsumerGroupNotFound(format!(
                    "consumer group {group} does not exist and this broker does not create groups on first use; \
                     create it with `apogee group create {group} --lite-bind {parent}`"
                )))
            }
        };
        match &config.lite {
            Some(b) if b.bind_topic == parent => Ok(config),
            Some(b) => Err(ApogeeError::BadRequest(format!(
                "consumer group {group} is bound to lite topic parent {}, not {parent}",
                b.bind_topic
            ))),
            None => Err(ApogeeError::BadRequest(format!(
                "consumer group {group} is not a lite group; lite subscriptions need a group made with \
                 `apogee group create {group} --lite-bind {parent}`"
            ))),
        }
    }

    /// Applies a lite consumer's change of its lite topics (see the module doc).
    pub fn sync_lite_subscription(
        &self,
        change: LiteSubscriptionChange<'_>,
    ) -> Result<(), ApogeeError> {
        let (group, parent) = (change.group, change.parent);
        limits::validate_group(group)?;
        limits::validate_topic(parent)?;
        if self.topics().get(parent).is_none() {
            return Err(ApogeeError::TopicNotFound(parent.to_string()));
        }
        if !self.is_lite_parent(parent) {
            return Err(ApogeeError::BadRequest(format!(
                "topic {parent} is not a LITE topic (create it with `apogee topic create {parent} --type lite`)"
            )));
        }
        let lite_config = &self.config().lite;
        for name in &change.lite_topics {
            limits::validate_lite_topic(name, lite_config.max_topic_len)?;
        }
        let group_config = self.lite_group(group, parent, change.client_id)?;
        let binding = group_config.lite.as_ref().expect("lite_group checks it");
        let quota = match binding.subscription_quota {
            0 => lite_config.subscription_quota,
            q => q,
        };
        let mut names = change.lite_topics;
        names.sort();
        names.dedup();
        self.lite().sync(&SyncRequest {
            client_id: change.client_id,
            group,
            parent,
            exclusive: binding.exclusive,
            action: change.action,
            lite_topics: &names,
            start: change.start,
            quota: quota as usize,
            now_ms: now_ms(),
        })
    }
}

//! The lite rules both a pop and a subscription change apply: which topics are LITE
//! parents, and the lite group bound to one.

use crate::services::Broker;
use apogee_proto::cluster::TopicConfig;
use apogee_proto::group::{GroupConfig, LiteBinding};
use apogee_proto::v2::MessageType;
use apogee_proto::ApogeeError;
use std::sync::Arc;

/// Whether `topic` is a LITE parent topic.
pub(crate) fn is_lite_parent(topic: &TopicConfig) -> bool {
    topic.message_types.contains(&(MessageType::Lite as i32))
}

impl Broker {
    /// Whether `topic` is a LITE parent topic on this broker.
    pub fn is_lite_parent(&self, topic: &str) -> bool {
        self.topics()
            .get_shared(topic)
            .is_some_and(|t| is_lite_parent(&t))
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
}

//! Topic and group changes in the shape RocketMQ's admin requests ask for them (served to
//! `mqadmin` over remoting by `crate::remoting::admin_writes`): one request makes a topic or
//! group if it is missing and changes it otherwise, keeping what the request has no way to
//! say; a delete of something this broker group does not hold is no error (a cluster-wide
//! delete reaches every master, holding it or not). Every change is the master's: a slave
//! refuses it, naming its master ([`Broker::refuse_on_slave`], which the topic, group and
//! offset changes of the admin protocol call too).

use crate::services::Broker;
use crate::topics::{MessageKind, MessageKinds, TopicConfig, TopicPermission};
use apogee_proto::group::GroupConfig;
use apogee_proto::ApogeeError;
use std::sync::Arc;

/// A topic as a create-or-update asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicUpsert {
    pub name: String,
    pub queues: u32,
    pub permission: TopicPermission,
    /// The message types it takes; None keeps a topic's own (NORMAL for a new one).
    pub kinds: Option<MessageKinds>,
}

/// What a create-or-update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    /// The request asked for what was there already: nothing written.
    Unchanged,
}

impl Broker {
    /// Refuses `what` (an operator's change of the group's topics, groups or offsets) on a
    /// member that is not the master: the group's tables are the master's, and its members
    /// follow them by replication.
    pub fn refuse_on_slave(&self, what: &str) -> Result<(), ApogeeError> {
        if self.membership().is_master() {
            return Ok(());
        }
        Err(ApogeeError::PreconditionFailed(format!(
            "member {} of broker group {} is not the master: {what} is made on {}, \
             which passes it to every member",
            self.config().broker_id,
            self.config().broker_name,
            self.master_named()
        )))
    }

    /// "its master at <endpoint>" on a member that knows its master's, else "its master":
    /// where a slave's refusals send the operator.
    pub(crate) fn master_named(&self) -> String {
        self.replication()
            .master_link()
            .map(|l| l.endpoint)
            .filter(|e| !e.is_empty())
            .map_or_else(
                || "its master".to_string(),
                |e| format!("its master at {e}"),
            )
    }

    /// Creates the topic, or changes it to `wanted` if it exists (its lite expiry kept, and
    /// its message types unless `wanted` names some); `by` is who asked (for the log).
    pub fn upsert_topic(
        &self,
        wanted: TopicUpsert,
        by: &str,
    ) -> Result<(TopicConfig, Upserted), ApogeeError> {
        self.refuse_on_slave("a topic change")?;
        match self.topics().get(&wanted.name) {
            Some(old) => {
                let mut config = old.clone();
                config.queues = wanted.queues;
                config.permission = wanted.permission;
                if let Some(kinds) = wanted.kinds {
                    config.kinds = kinds;
                }
                if config == old {
                    return Ok((old, Upserted::Unchanged));
                }
                Ok((self.update_topic(config, by)?, Upserted::Updated))
            }
            None => {
                let mut config =
                    TopicConfig::new(wanted.name, wanted.queues).with_permission(wanted.permission);
                config.kinds = wanted
                    .kinds
                    .unwrap_or_else(|| MessageKinds::of(&[MessageKind::Normal]));
                Ok((self.create_topic(config, by)?, Upserted::Created))
            }
        }
    }

    /// Deletes the topic if this broker group hosts it (a system topic it hosts is refused);
    /// answers whether it did. `by` is who asked (for the log).
    pub async fn remove_topic(&self, topic: &str, by: &str) -> Result<bool, ApogeeError> {
        self.refuse_on_slave("a topic deletion")?;
        apogee_proto::limits::validate_topic(topic)?;
        // Absent, even under a system topic's name (`mqadmin deleteSubGroup` asks the
        // group's retry and dead-letter topics away): nothing to do. A hosted system topic
        // is refused by the deletion.
        if self.topics().get_shared(topic).is_none() {
            return Ok(false);
        }
        tracing::info!(topic, by, "deleting topic");
        match self.delete_topic(topic).await {
            Ok(()) => Ok(true),
            Err(ApogeeError::TopicNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the group, or changes it to `wanted` if it exists (its lite binding and
    /// priority setting kept: RocketMQ's group config has no words for them); `by` is who
    /// asked (for the log).
    pub fn upsert_group(
        &self,
        wanted: GroupConfig,
        by: &str,
    ) -> Result<(Arc<GroupConfig>, Upserted), ApogeeError> {
        self.refuse_on_slave("a consumer group change")?;
        match self.groups().get(&wanted.name) {
            Some(old) => {
                let config = GroupConfig {
                    lite: old.lite.clone(),
                    priority_off: old.priority_off,
                    ..wanted
                };
                if config == *old {
                    return Ok((old, Upserted::Unchanged));
                }
                Ok((self.update_group(config, by)?, Upserted::Updated))
            }
            None => Ok((self.create_group(wanted, by)?, Upserted::Created)),
        }
    }

    /// Deletes the group's config here, and with `with_progress` its offsets and in-flight
    /// deliveries too (without, they stay: a group made again resumes from them); answers
    /// whether there was anything to delete. `by` is who asked (for the log).
    pub fn remove_group(
        &self,
        group: &str,
        with_progress: bool,
        by: &str,
    ) -> Result<bool, ApogeeError> {
        self.refuse_on_slave("a consumer group deletion")?;
        let done = if with_progress {
            self.delete_group(group, by)
        } else {
            apogee_proto::limits::validate_group(group)?;
            tracing::info!(
                group,
                by,
                "deleting consumer group config, keeping its offsets"
            );
            self.groups().delete(group)
        };
        match done {
            Ok(()) => Ok(true),
            Err(ApogeeError::ConsumerGroupNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

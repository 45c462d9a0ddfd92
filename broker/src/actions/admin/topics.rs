//! Topics as an operator changes and reads them on this broker group: a requested config
//! gets this broker's defaults ([`Broker::requested_topic`]), a create or update refuses
//! system topics, a listing leaves system topics out unless asked, and a topic's queues show
//! their stored bounds and when each last took a message.

use crate::services::Broker;
use crate::topics::TopicConfig;
use apogee_proto::{cluster, limits, names, ApogeeError};

/// One queue of a topic: its stored bounds and when it last took a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueState {
    pub queue_id: u32,
    /// The oldest offset still stored.
    pub min_offset: u64,
    /// The offset the queue's next message will get.
    pub max_offset: u64,
    /// Store time (Unix ms) of the queue's last message; 0 when it holds none.
    pub last_store_ms: i64,
}

impl Broker {
    /// The config an operator's request (the admin protocol's) asks for: the queue count
    /// this broker gives a topic when the request names none (`default_queue_count`),
    /// read-write and NORMAL when unset, every value checked.
    pub fn requested_topic(&self, wire: cluster::TopicConfig) -> Result<TopicConfig, ApogeeError> {
        TopicConfig::from_wire(wire, self.config().default_queue_count)
    }

    /// Creates a topic; `by` is who asked (for the log). Answers the config as stored.
    pub fn create_topic(&self, config: TopicConfig, by: &str) -> Result<TopicConfig, ApogeeError> {
        refuse_system_topic(&config)?;
        self.refuse_on_slave("a topic change")?;
        tracing::info!(topic = %config.name, queues = config.queues, by, "creating topic");
        self.topics().create(config)
    }

    /// Changes a topic's config; `by` is who asked (for the log). Answers the config as
    /// stored.
    pub fn update_topic(&self, config: TopicConfig, by: &str) -> Result<TopicConfig, ApogeeError> {
        refuse_system_topic(&config)?;
        self.refuse_on_slave("a topic change")?;
        tracing::info!(topic = %config.name, queues = config.queues, by, "updating topic");
        self.topics().update(config)
    }

    /// The topics hosted here; system topics only with `include_system`.
    pub fn list_topics(&self, include_system: bool) -> Vec<TopicConfig> {
        self.topics()
            .list()
            .into_iter()
            .filter(|t| include_system || !names::is_system_topic(&t.name))
            .collect()
    }

    /// Every queue of `topic` with its bounds and last store time.
    pub fn topic_queues(&self, topic: &str) -> Result<Vec<QueueState>, ApogeeError> {
        limits::validate_topic(topic)?;
        let config = self
            .topics()
            .get(topic)
            .ok_or_else(|| ApogeeError::TopicNotFound(topic.to_string()))?;
        let store = self.store();
        let mut queues = Vec::with_capacity(config.queue_ids().len());
        for queue_id in config.queue_ids() {
            let (min, max) = store
                .queue_bounds(topic, queue_id)
                .map_err(ApogeeError::from)?;
            let last_store_ms = match max.checked_sub(1) {
                Some(last) if last >= min => store
                    .queue_entries(topic, queue_id, last, 1)
                    .map_err(ApogeeError::from)?
                    .first()
                    .map_or(0, |e| e.store_timestamp_ms),
                _ => 0,
            };
            queues.push(QueueState {
                queue_id,
                min_offset: min,
                max_offset: max,
                last_store_ms,
            });
        }
        Ok(queues)
    }
}

/// Operators do not create or change system topics; the broker owns them.
fn refuse_system_topic(config: &TopicConfig) -> Result<(), ApogeeError> {
    if names::is_system_topic(&config.name) {
        return Err(ApogeeError::Forbidden(format!(
            "{} is a system topic",
            config.name
        )));
    }
    Ok(())
}

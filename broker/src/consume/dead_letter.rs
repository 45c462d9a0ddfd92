//! Dead letters: a delivery that used up its group's attempts (or that a
//! FIFO consumer forwards) is written to the group's dead-letter topic
//! `%DLQ%<group>` and leaves the group's in-flight set.
//!
//! The copy keeps the message id, tag, keys, message group, properties and
//! body; broker-internal properties name where it came from
//! (`record::internal::DLQ_*`). Writing the copy and removing the delivery
//! are two steps: a crash between them writes the copy again on restart
//! unless it is found already stored (by message id and origin), so a
//! dead letter is stored once.

use super::state::{internal, ConsumeEngine, Expired};
use crate::store::record::internal as prop;
use crate::store::{MessageStore, StoredMessage};
use crate::topics::TopicTable;
use apogee_proto::{names, ApogeeError};

/// Writes the delivery `e` names to its group's dead-letter topic (once)
/// and removes it from the group's in-flight set. Returns false when the
/// delivery had ended in between (acked, or already dead-lettered).
pub async fn dead_letter(
    store: &MessageStore,
    topics: &TopicTable,
    engine: &ConsumeEngine,
    e: &Expired,
) -> Result<bool, ApogeeError> {
    let Some(message) = engine.read_one(&e.key.topic, e.key.queue_id, e.queue_offset)? else {
        // Gone from the store (retention): nothing to keep.
        return engine.finish_dead_letter(e);
    };
    let origin = DeadLetterOrigin {
        group: &e.key.group,
        topic: &e.key.topic,
        queue_id: e.key.queue_id,
        queue_offset: e.queue_offset,
        attempts: e.attempt,
    };
    store_dead_letter(store, topics, &message, &origin).await?;
    engine.finish_dead_letter(e)
}

/// Where a dead letter comes from: the group that gave up on it, the message's queue and
/// offset, and the deliveries it had.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetterOrigin<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub attempts: u32,
}

/// Writes `message` to its group's dead-letter topic (created with one queue when missing)
/// unless its copy is there already (by message id and origin). Returns whether it wrote one.
/// Also used by remoting consumers' send-back once a message used up its reconsume times.
pub async fn store_dead_letter(
    store: &MessageStore,
    topics: &TopicTable,
    message: &StoredMessage,
    origin: &DeadLetterOrigin<'_>,
) -> Result<bool, ApogeeError> {
    let dlq = names::dlq_topic(origin.group);
    topics.ensure_system_topic(&dlq, 1)?;
    if already_stored(store, &dlq, message)? {
        return Ok(false);
    }
    store
        .append_internal(vec![copy_for(&dlq, message, origin)])
        .await
        .map_err(internal)?;
    tracing::info!(
        group = %origin.group, topic = %origin.topic, queue = origin.queue_id,
        offset = origin.queue_offset, attempts = origin.attempts,
        message_id = %message.msg.message_id, "dead-lettered to {dlq}"
    );
    Ok(true)
}

/// The dead-letter record of `message`.
fn copy_for(
    dlq: &str,
    message: &StoredMessage,
    origin: &DeadLetterOrigin<'_>,
) -> crate::store::NewMessage {
    let mut msg = message.msg.clone();
    msg.topic = dlq.to_string();
    msg.queue_id = 0;
    msg.delivery_timestamp_ms = None;
    // Transaction and schedule markers would mean something to their indexes.
    msg.internal.retain(prop::is_carried);
    msg.internal.extend([
        (prop::DLQ_GROUP.to_string(), origin.group.to_string()),
        (prop::DLQ_TOPIC.to_string(), origin.topic.to_string()),
        (prop::DLQ_QUEUE.to_string(), origin.queue_id.to_string()),
        (
            prop::DLQ_OFFSET.to_string(),
            origin.queue_offset.to_string(),
        ),
        (prop::DLQ_ATTEMPTS.to_string(), origin.attempts.to_string()),
    ]);
    msg
}

/// Whether the dead-letter copy of `message` is already in `dlq`.
fn already_stored(
    store: &MessageStore,
    dlq: &str,
    message: &StoredMessage,
) -> Result<bool, ApogeeError> {
    let origin = |m: &StoredMessage, key: &str| {
        m.msg
            .internal
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let offset = message.queue_offset.to_string();
    Ok(store
        .lookup_all_by_id(&message.msg.message_id, 64)
        .map_err(internal)?
        .iter()
        .any(|m| {
            m.msg.topic == dlq
                && origin(m, prop::DLQ_TOPIC).as_deref() == Some(message.msg.topic.as_str())
                && origin(m, prop::DLQ_QUEUE) == Some(message.msg.queue_id.to_string())
                && origin(m, prop::DLQ_OFFSET).as_deref() == Some(offset.as_str())
        }))
}

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
    let dlq = names::dlq_topic(&e.key.group);
    topics.ensure_system_topic(&dlq, 1)?;
    if !already_stored(store, &dlq, &message)? {
        store
            .append_internal(vec![copy_for(&dlq, &message, e)])
            .await
            .map_err(internal)?;
        tracing::info!(
            group = %e.key.group, topic = %e.key.topic, queue = e.key.queue_id,
            offset = e.queue_offset, attempts = e.attempt, message_id = %message.msg.message_id,
            "dead-lettered to {dlq}"
        );
    }
    engine.finish_dead_letter(e)
}

/// The dead-letter record of `message`.
fn copy_for(dlq: &str, message: &StoredMessage, e: &Expired) -> crate::store::NewMessage {
    let mut msg = message.msg.clone();
    msg.topic = dlq.to_string();
    msg.queue_id = 0;
    msg.delivery_timestamp_ms = None;
    // Transaction and schedule markers would mean something to their indexes.
    msg.internal.retain(|(k, _)| k == prop::BODY_ENCODING);
    msg.internal.extend([
        (prop::DLQ_GROUP.to_string(), e.key.group.clone()),
        (prop::DLQ_TOPIC.to_string(), e.key.topic.clone()),
        (prop::DLQ_QUEUE.to_string(), e.key.queue_id.to_string()),
        (prop::DLQ_OFFSET.to_string(), e.queue_offset.to_string()),
        (prop::DLQ_ATTEMPTS.to_string(), e.attempt.to_string()),
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

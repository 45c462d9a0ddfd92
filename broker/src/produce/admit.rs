//! Admission of a valid message to its topic on this broker: the topic exists (or is
//! created, when `auto_create_topics` is on), is writable here, accepts the message's type,
//! and has the queue it names; a FIFO message names its group.
//!
//! (The send quotas and the slave refusal are checked for the request as a whole, in
//! [`Producer::send`](super::Producer::send).)

use super::validate::Valid;
use super::Outgoing;
use crate::topics::{MessageKind, TopicTable};
use apogee_proto::v2::MessageType;
use apogee_proto::ApogeeError;

/// Where an admitted message goes and what it is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub queue_id: u32,
    /// Its type as stored (an UNSPECIFIED type is NORMAL).
    pub message_type: MessageType,
    /// Its delivery time (Unix ms), when it has one.
    pub delivery_ms: Option<i64>,
}

/// Admits `m` (already [`Valid`] as `valid`) to its topic in `topics`, which creates a
/// missing topic with `default_queue_count` queues when it auto-creates topics.
pub fn to_topic(
    topics: &TopicTable,
    default_queue_count: u32,
    m: &Outgoing,
    valid: Valid,
) -> Result<Admitted, ApogeeError> {
    let topic = m.topic.as_str();
    let config = topics.for_send(topic, topics.auto_creates(), default_queue_count)?;
    if !config.permission.writable() {
        return Err(ApogeeError::Forbidden(format!(
            "topic {topic} is not writable on this broker"
        )));
    }
    let message_type = if valid.message_type == MessageType::Unspecified {
        MessageType::Normal
    } else {
        valid.message_type
    };
    if !MessageKind::from_wire(message_type).is_some_and(|kind| config.accepts(kind)) {
        return Err(ApogeeError::MessageTypeConflict(format!(
            "topic {topic} does not accept {} messages",
            message_type.as_str_name()
        )));
    }
    if valid.message_type == MessageType::Fifo
        && m.message_group.as_deref().unwrap_or("").is_empty()
    {
        return Err(ApogeeError::IllegalMessageGroup(
            "FIFO messages need a message group".into(),
        ));
    }
    // A PRIORITY message goes to its priority's queue, whatever queue the client named.
    let queue_id = match m.priority {
        Some(p) if message_type == MessageType::Priority => {
            super::priority::queue_of(p, config.queues)
        }
        _ => config.queue(i64::from(m.queue_id)).ok_or_else(|| {
            ApogeeError::BadRequest(format!(
                "queue {} does not exist; topic {topic} has {} queues on this broker",
                m.queue_id, config.queues
            ))
        })?,
    };
    Ok(Admitted {
        queue_id,
        message_type,
        delivery_ms: valid.delivery_ms,
    })
}

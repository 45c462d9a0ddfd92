//! Lite messages on the producer side (RocketMQ's RIP-83 lite topics): what a LITE message
//! must be, where it is stored, and the broker's lite-topic quota.
//!
//! A message is a lite message when its type is LITE or it names a `lite_topic` (an
//! UNSPECIFIED type with a lite topic is LITE). Admission has already checked that its topic
//! accepts LITE messages (a LITE parent topic accepts nothing else: MESSAGE_TYPE_CONFLICT
//! either way). Here:
//! - a lite message names a lite topic that follows the name rule
//!   (`apogee_proto::limits::validate_lite_topic` with `lite.max_topic_len`): else
//!   ILLEGAL_LITE_TOPIC; a message of another explicit type that names one, and a lite
//!   message with a message group (or a delivery time, a transaction or a priority, which
//!   validation refuses on any non-DELAY, non-TRANSACTION or non-PRIORITY message already),
//!   is a MESSAGE_TYPE_CONFLICT, the status every type mismatch of a send gets;
//! - it is stored as a record of the lite queue `%LITE%<parent>%<lite>`, queue 0
//!   (`apogee_proto::names::lite_queue_topic`), and converted back on delivery
//!   (`crate::v2_message`);
//! - a send that would create lite topics beyond `lite.max_lite_topics` (this broker, all
//!   parents) is refused with LITE_TOPIC_QUOTA_EXCEEDED before anything is stored.
//!
//! The quota counts the lite queues the store holds ([`MessageStore::lite_queue_count`],
//! kept by the writer) plus the creations of sends under way here ([`LiteQuota`]'s
//! reservations, taken before the append and returned once it is answered). A send counts as
//! a creation for each distinct lite queue of it that has no queue head when admitted, so
//! concurrent sends never take the broker past the quota; two sends creating the same lite
//! topic at once both reserve it, so near the limit one of them may be refused while the
//! other creates it (conservative, never over). Sends that only add to existing lite topics
//! pass at any count.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use apogee_proto::v2::MessageType;
use apogee_proto::{limits, names, ApogeeError};

use super::admit::Admitted;
use super::Outgoing;
use crate::store::MessageStore;

/// The lite limits of the producer (`[lite]` of the broker's config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteLimits {
    /// `lite.max_topic_len`: the longest lite topic name.
    pub max_topic_len: usize,
    /// `lite.max_lite_topics`: most lite topics on this broker, all parents together.
    pub max_lite_topics: u64,
}

impl LiteLimits {
    pub fn of(config: &crate::config::BrokerConfig) -> LiteLimits {
        LiteLimits {
            max_topic_len: config.lite.max_topic_len,
            max_lite_topics: config.lite.max_lite_topics,
        }
    }
}

/// The lite topic `m` is sent to, when it is a lite message, checked against the rules of
/// the module doc (`message_type`: its type as validation read it).
pub fn check<'a>(
    limits: &LiteLimits,
    m: &'a Outgoing,
    message_type: MessageType,
) -> Result<Option<&'a str>, ApogeeError> {
    let named = m.lite_topic.as_deref();
    let is_lite = message_type == MessageType::Lite
        || (message_type == MessageType::Unspecified && named.is_some());
    if !is_lite {
        if let Some(lite) = named {
            return Err(ApogeeError::MessageTypeConflict(format!(
                "a {} message cannot name a lite topic ({lite:?}); send it as LITE to a LITE \
                 topic",
                message_type.as_str_name()
            )));
        }
        return Ok(None);
    }
    let Some(lite) = named else {
        return Err(ApogeeError::IllegalLiteTopic(format!(
            "a LITE message to topic {} names no lite topic",
            m.topic
        )));
    };
    limits::validate_lite_topic(lite, limits.max_topic_len)?;
    if m.message_group.as_deref().is_some_and(|g| !g.is_empty()) {
        return Err(ApogeeError::MessageTypeConflict(
            "a LITE message cannot have a message group: a lite topic is ordered as one".into(),
        ));
    }
    if m.delivery_timestamp.is_some() {
        return Err(ApogeeError::MessageTypeConflict(
            "a LITE message cannot have a delivery timestamp".into(),
        ));
    }
    Ok(Some(lite))
}

/// Sends under way that create lite topics: what the store does not count yet.
#[derive(Default)]
pub struct LiteQuota {
    pending: Arc<AtomicU64>,
}

/// Lite-topic creations reserved by one send; returned when dropped (after its append).
pub struct Reservation {
    pending: Arc<AtomicU64>,
    count: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.count, Ordering::SeqCst);
    }
}

impl LiteQuota {
    /// Reserves the creation of the lite queues among `lite_queues` (parent, lite) that do not
    /// exist yet, or refuses the send when they would take the broker past `max`.
    pub fn reserve(
        &self,
        store: &MessageStore,
        lite_queues: &BTreeSet<(&str, &str)>,
        max: u64,
    ) -> Result<Reservation, ApogeeError> {
        let mut new = 0u64;
        for (parent, lite) in lite_queues {
            if !store
                .lite_queue_exists(parent, lite)
                .map_err(ApogeeError::from)?
            {
                new += 1;
            }
        }
        let reservation = Reservation {
            pending: self.pending.clone(),
            count: new,
        };
        if new == 0 {
            return Ok(reservation);
        }
        let before = self.pending.fetch_add(new, Ordering::SeqCst);
        // The store's count is read after the reservation: a send whose queues the writer
        // created meanwhile is counted twice at most (refused near the limit), never missed.
        let existing = store.lite_queue_count();
        if existing + before + new > max {
            drop(reservation);
            return Err(ApogeeError::LiteTopicQuotaExceeded(format!(
                "this broker holds {existing} lite topics, the limit (lite.max_lite_topics) is \
                 {max}; a new lite topic is created when an old one expires (the parent's \
                 lite_expire_after_secs)"
            )));
        }
        Ok(reservation)
    }
}

/// Moves the lite messages among `messages` (with `lite[i]` the lite topic of message `i`)
/// to their lite queues: topic `%LITE%<parent>%<lite>`, queue 0.
pub fn route(messages: &mut [Outgoing], admitted: &mut [Admitted], lite: &[Option<String>]) {
    for ((m, a), lite) in messages.iter_mut().zip(admitted.iter_mut()).zip(lite) {
        if let Some(lite) = lite {
            m.topic = names::lite_queue_topic(&m.topic, lite);
            a.queue_id = 0;
            a.message_type = MessageType::Lite;
        }
    }
}

//! Priority messages (RocketMQ's RIP-80) on the producer side: what a send with a priority
//! must be and where it goes.
//!
//! A PRIORITY message is `message_type = PRIORITY` with `system_properties.priority >= 0`;
//! its topic must accept PRIORITY (admission's type check). Priority `p` is stored in queue
//! `min(p, queue_count - 1)` of the topic on this broker, whatever queue the client named, so
//! priorities at or above the queue count share the top queue. The priority itself is kept
//! in the record (internal property [`internal::PRIORITY`]) and handed back on delivery as
//! `system_properties.priority`. The receive side (which queue is served first) is
//! `crate::consume::priority`.
//!
//! Refusals:
//! - a negative priority: ILLEGAL_MESSAGE_PROPERTY_KEY (the BAD_REQUEST-class status for a
//!   property the broker cannot take; RocketMQ's proxy answers a bad system property value
//!   with a 400-class code, and this is the one that names a property);
//! - a priority on a message of another type, a PRIORITY message without a priority, or a
//!   PRIORITY message with a message group (a delivery time on anything but DELAY is refused
//!   by validation already, a lite topic by the lite checks): MESSAGE_PROPERTY_CONFLICT_WITH_TYPE.

use super::Outgoing;
use crate::store::record::internal;
use apogee_proto::v2::MessageType;
use apogee_proto::ApogeeError;

/// Checks a message's priority against its declared type (`message_type` as validation
/// reads it).
pub fn check(m: &Outgoing, message_type: MessageType) -> Result<(), ApogeeError> {
    match (message_type, m.priority) {
        (MessageType::Priority, None) => Err(ApogeeError::MessageTypeConflict(
            "a PRIORITY message needs system_properties.priority".into(),
        )),
        (MessageType::Priority, Some(p)) if p < 0 => Err(ApogeeError::IllegalProperty(format!(
            "priority {p} is negative; a priority is 0 or more (higher is served first)"
        ))),
        (MessageType::Priority, Some(_)) => {
            if m.message_group.as_deref().is_some_and(|g| !g.is_empty()) {
                return Err(ApogeeError::MessageTypeConflict(
                    "a PRIORITY message cannot have a message group".into(),
                ));
            }
            Ok(())
        }
        (t, Some(p)) => Err(ApogeeError::MessageTypeConflict(format!(
            "priority {p} on a {} message; only PRIORITY messages have a priority",
            t.as_str_name()
        ))),
        (_, None) => Ok(()),
    }
}

/// The queue priority `priority` (checked: 0 or more) goes to on a topic with `queues`
/// queues here: `min(priority, queues - 1)`.
pub fn queue_of(priority: i32, queues: u32) -> u32 {
    u32::try_from(priority)
        .unwrap_or(0)
        .min(queues.saturating_sub(1))
}

/// The internal property that keeps a priority in its record.
pub fn record_property(priority: i32) -> (String, String) {
    (internal::PRIORITY.to_string(), priority.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::v2::Code;

    fn with(priority: Option<i32>, group: Option<&str>) -> Outgoing {
        Outgoing {
            priority,
            message_group: group.map(str::to_string),
            ..Outgoing::default()
        }
    }

    fn code(m: &Outgoing, t: MessageType) -> Option<Code> {
        check(m, t).err().map(|e| e.code())
    }

    #[test]
    fn priorities_map_to_queues_and_the_top_queue_takes_the_rest() {
        let on_ten: Vec<u32> = (0..12).map(|p| queue_of(p, 10)).collect();
        assert_eq!(on_ten, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]);
        let on_eight: Vec<u32> = (0..10).map(|p| queue_of(p, 8)).collect();
        assert_eq!(on_eight, vec![0, 1, 2, 3, 4, 5, 6, 7, 7, 7]);
        assert_eq!(queue_of(i32::MAX, 8), 7);
        assert_eq!(queue_of(5, 1), 0);
    }

    #[test]
    fn a_priority_is_only_on_priority_messages_and_never_negative() {
        use MessageType::*;
        assert_eq!(code(&with(Some(0), None), Priority), None);
        assert_eq!(code(&with(Some(9), Some("")), Priority), None);
        assert_eq!(code(&with(None, None), Normal), None);
        assert_eq!(
            code(&with(Some(-1), None), Priority),
            Some(Code::IllegalMessagePropertyKey)
        );
        assert_eq!(
            code(&with(None, None), Priority),
            Some(Code::MessagePropertyConflictWithType)
        );
        for t in [Normal, Fifo, Delay, Transaction, Lite, Unspecified] {
            assert_eq!(
                code(&with(Some(3), None), t),
                Some(Code::MessagePropertyConflictWithType),
                "{t:?}"
            );
        }
        assert_eq!(
            code(&with(Some(3), Some("g")), Priority),
            Some(Code::MessagePropertyConflictWithType)
        );
    }

    #[test]
    fn the_priority_is_kept_in_the_record() {
        let plain = crate::store::NewMessage::op_record("t", Vec::new());
        assert_eq!(plain.priority(), None);
        let m = crate::store::NewMessage::op_record("t", vec![record_property(7)]);
        assert_eq!(m.priority(), Some(7));
    }
}

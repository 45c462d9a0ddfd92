//! Limits and naming rules shared by the NameServer, the broker and the
//! clients. Every limit is a named constant here; the broker's config may
//! lower or raise the configurable ones (body size) within these bounds.

use crate::ApogeeError;

/// Longest topic name (RocketMQ's rule).
pub const MAX_TOPIC_NAME_LEN: usize = 127;
/// Longest consumer or producer group name (RocketMQ's rule).
pub const MAX_GROUP_NAME_LEN: usize = 120;
/// Default largest message body, configurable per broker.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most messages in one SendMessage request.
pub const MAX_BATCH_MESSAGES: usize = 1024;
/// Most bytes (bodies and properties) in one SendMessage request.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Largest total size of a message's user properties, keys and tag.
pub const MAX_PROPERTIES_BYTES: usize = 16 * 1024;
/// Most user properties on one message.
pub const MAX_PROPERTY_COUNT: usize = 128;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 255;
/// Longest single message key.
pub const MAX_KEY_LEN: usize = 255;
/// Most queues a topic may have on one broker group.
pub const MAX_QUEUES_PER_TOPIC: i32 = 1024;
/// Shortest and longest beat interval a broker may announce on its NameServer session
/// (`heartbeat_interval_ms`): shorter floods the NameServers, longer leaves a hung broker
/// in the routes for minutes.
pub const MIN_HEARTBEAT_INTERVAL_MS: u64 = 10;
pub const MAX_HEARTBEAT_INTERVAL_MS: u64 = 60_000;
/// Shortest and longest invisible duration a consumer may ask for.
pub const MIN_INVISIBLE_MS: i64 = 1_000;
pub const MAX_INVISIBLE_MS: i64 = 12 * 3600 * 1000;
/// Longest long-polling wait the server grants (longer asks are shortened).
pub const MAX_LONG_POLLING_MS: i64 = 30_000;
/// Most messages one ReceiveMessage returns.
pub const MAX_RECEIVE_BATCH: i32 = 64;
/// Room for everything around the bodies in one request (ids, properties, framing).
pub const REQUEST_OVERHEAD_BYTES: usize = 1024 * 1024;
/// gRPC frame limit the servers accept (a full batch plus framing).
pub const MAX_GRPC_MESSAGE_BYTES: usize = MAX_BATCH_BYTES + REQUEST_OVERHEAD_BYTES;
/// The largest HTTP/2 DATA frame our servers accept (SETTINGS_MAX_FRAME_SIZE; HTTP/2's
/// default is 16 KiB). A batch of 32 1 KiB messages then arrives in one frame instead of
/// three, and the client writes it with one syscall (PERFORMANCE.md: T3 +5 %).
pub const HTTP2_MAX_FRAME_BYTES: u32 = 256 * 1024;
// HTTP/2 allows 16 KiB to 16 MiB - 1.
const _: () = assert!(HTTP2_MAX_FRAME_BYTES >= 16 * 1024 && HTTP2_MAX_FRAME_BYTES < 1 << 24);

/// The largest client request a server with this body limit decodes: as many bodies as a
/// batch may hold at `max_body_bytes` each (at most [`MAX_BATCH_BYTES`]) plus the overhead.
/// A larger request is refused from its length prefix, before it is buffered.
pub fn max_request_bytes(max_body_bytes: usize) -> usize {
    max_body_bytes
        .saturating_mul(MAX_BATCH_MESSAGES)
        .min(MAX_BATCH_BYTES)
        + REQUEST_OVERHEAD_BYTES
}

fn name_chars_ok(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// A topic name matches `^[%|a-zA-Z0-9_-]+$` and has at most 127 characters.
pub fn validate_topic(name: &str) -> Result<(), ApogeeError> {
    if name.is_empty() {
        return Err(ApogeeError::IllegalTopic("topic name is empty".into()));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(ApogeeError::IllegalTopic(format!(
            "topic name has {} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        )));
    }
    if !name_chars_ok(name) {
        return Err(ApogeeError::IllegalTopic(format!(
            "topic name {name:?} may only contain letters, digits, '%', '|', '_' and '-'"
        )));
    }
    Ok(())
}

/// Default longest lite topic name (RocketMQ's `maxLiteTopicSize`), told to clients in
/// Settings (`subscription.max_lite_topic_size`).
pub const DEFAULT_MAX_LITE_TOPIC_LEN: usize = 64;

/// A lite topic name is non-empty, at most `max_len` bytes, and only `[a-zA-Z0-9_-]` (no
/// `%`, so it can end a lite queue's name unambiguously: `crate::names::lite_queue_topic`).
pub fn validate_lite_topic(name: &str, max_len: usize) -> Result<(), ApogeeError> {
    if name.is_empty() {
        return Err(ApogeeError::IllegalLiteTopic(
            "lite topic name is empty".into(),
        ));
    }
    if name.len() > max_len {
        return Err(ApogeeError::IllegalLiteTopic(format!(
            "lite topic name has {} characters, the limit is {max_len}",
            name.len()
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApogeeError::IllegalLiteTopic(format!(
            "lite topic name {name:?} may only contain letters, digits, '_' and '-'"
        )));
    }
    Ok(())
}

/// A group name follows the topic character rule and has at most 120 characters.
pub fn validate_group(name: &str) -> Result<(), ApogeeError> {
    if name.is_empty() {
        return Err(ApogeeError::IllegalConsumerGroup(
            "group name is empty".into(),
        ));
    }
    if name.len() > MAX_GROUP_NAME_LEN {
        return Err(ApogeeError::IllegalConsumerGroup(format!(
            "group name has {} characters, the limit is {MAX_GROUP_NAME_LEN}",
            name.len()
        )));
    }
    if !name_chars_ok(name) {
        return Err(ApogeeError::IllegalConsumerGroup(format!(
            "group name {name:?} may only contain letters, digits, '%', '|', '_' and '-'"
        )));
    }
    Ok(())
}

/// A tag is non-blank, has no '|' (the filter separator) and at most 255 characters.
pub fn validate_tag(tag: &str) -> Result<(), ApogeeError> {
    if tag.trim().is_empty() {
        return Err(ApogeeError::IllegalTag("tag is blank".into()));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(ApogeeError::IllegalTag(format!(
            "tag has {} characters, the limit is {MAX_TAG_LEN}",
            tag.len()
        )));
    }
    if tag.contains('|') || tag.chars().any(char::is_control) {
        return Err(ApogeeError::IllegalTag(format!(
            "tag {tag:?} contains '|' or a control character"
        )));
    }
    Ok(())
}

/// A key is non-blank, has no control characters and at most 255 characters.
pub fn validate_key(key: &str) -> Result<(), ApogeeError> {
    if key.trim().is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(ApogeeError::IllegalKey(format!(
            "key {key:?} must be non-blank, at most {MAX_KEY_LEN} characters, without control characters"
        )));
    }
    Ok(())
}

/// A body is non-empty and at most `limit` bytes.
pub fn validate_body(len: usize, limit: usize) -> Result<(), ApogeeError> {
    if len == 0 {
        return Err(ApogeeError::MessageBodyEmpty);
    }
    if len > limit {
        return Err(ApogeeError::MessageBodyTooLarge { size: len, limit });
    }
    Ok(())
}

/// Fills in the defaults of a topic config (queue count, read-write
/// permission, NORMAL messages) and checks every value. The NameServer and
/// the broker both apply it, so a topic means the same everywhere.
pub fn normalize_topic(
    mut t: crate::cluster::TopicConfig,
    default_queue_count: i32,
) -> Result<crate::cluster::TopicConfig, ApogeeError> {
    use crate::v2::{MessageType, Permission};
    validate_topic(&t.name)?;
    if t.queue_count == 0 {
        t.queue_count = default_queue_count;
    }
    if !(1..=MAX_QUEUES_PER_TOPIC).contains(&t.queue_count) {
        return Err(ApogeeError::BadRequest(format!(
            "queue count {} is outside 1..={MAX_QUEUES_PER_TOPIC}",
            t.queue_count
        )));
    }
    match Permission::try_from(t.permission) {
        Ok(Permission::Unspecified) => t.permission = Permission::ReadWrite as i32,
        Ok(_) => {}
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown permission {}",
                t.permission
            )))
        }
    }
    if t.message_types.is_empty() {
        t.message_types = vec![MessageType::Normal as i32];
    }
    if let Some(bad) = t.message_types.iter().find(|&&mt| {
        matches!(
            MessageType::try_from(mt),
            Ok(MessageType::Unspecified) | Err(_)
        )
    }) {
        return Err(ApogeeError::BadRequest(format!(
            "invalid message type {bad}"
        )));
    }
    t.message_types.sort_unstable();
    t.message_types.dedup();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_limit_follows_the_body_limit_up_to_a_full_batch() {
        assert_eq!(
            max_request_bytes(DEFAULT_MAX_BODY_BYTES),
            MAX_GRPC_MESSAGE_BYTES
        );
        assert_eq!(
            max_request_bytes(1024),
            1024 * 1024 + REQUEST_OVERHEAD_BYTES
        );
        assert_eq!(max_request_bytes(usize::MAX), MAX_GRPC_MESSAGE_BYTES);
    }

    #[test]
    fn topic_names_follow_rocketmq_rule() {
        assert!(validate_topic("Orders_2024-eu|%x").is_ok());
        assert!(validate_topic(&"a".repeat(127)).is_ok());
        assert!(validate_topic(&"a".repeat(128)).is_err());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("has space").is_err());
        assert!(validate_topic("dot.ted").is_err());
        assert!(validate_topic("ünicode").is_err());
    }

    #[test]
    fn group_names_allow_at_most_120_characters() {
        assert!(validate_group(&"g".repeat(120)).is_ok());
        let e = validate_group(&"g".repeat(121)).unwrap_err();
        assert_eq!(e.code() as i32, 40003);
        assert!(validate_group("bad/group").is_err());
    }

    #[test]
    fn bodies_must_be_non_empty_and_within_limit() {
        assert_eq!(validate_body(0, 10), Err(ApogeeError::MessageBodyEmpty));
        assert!(validate_body(10, 10).is_ok());
        assert!(matches!(
            validate_body(11, 10),
            Err(ApogeeError::MessageBodyTooLarge {
                size: 11,
                limit: 10
            })
        ));
    }

    #[test]
    fn topic_configs_get_defaults_and_bad_values_are_refused() {
        use crate::cluster::TopicConfig;
        let t = normalize_topic(
            TopicConfig {
                name: "t".into(),
                ..Default::default()
            },
            8,
        )
        .unwrap();
        assert_eq!(
            (t.queue_count, t.permission, t.message_types.clone()),
            (
                8,
                crate::v2::Permission::ReadWrite as i32,
                vec![crate::v2::MessageType::Normal as i32]
            )
        );
        let too_many = TopicConfig {
            name: "t".into(),
            queue_count: 1025,
            ..Default::default()
        };
        assert!(normalize_topic(too_many, 8).is_err());
        let bad_type = TopicConfig {
            name: "t".into(),
            message_types: vec![0],
            ..Default::default()
        };
        assert!(normalize_topic(bad_type, 8).is_err());
        let bad_name = TopicConfig {
            name: "a b".into(),
            ..Default::default()
        };
        assert_eq!(
            normalize_topic(bad_name, 8).unwrap_err().code() as i32,
            40002
        );
    }

    #[test]
    fn tags_and_keys_are_checked() {
        assert!(validate_tag("TagA").is_ok());
        assert!(validate_tag("a||b").is_err());
        assert!(validate_tag("  ").is_err());
        assert!(validate_key("order-1").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn lite_topic_names_follow_rocketmq_rule() {
        for ok in ["a", "session-1", "A_b-9", &"x".repeat(64)] {
            validate_lite_topic(ok, DEFAULT_MAX_LITE_TOPIC_LEN).unwrap();
        }
        for bad in ["", "a%b", "a b", "a.b", "ü", &"x".repeat(65)] {
            let e = validate_lite_topic(bad, DEFAULT_MAX_LITE_TOPIC_LEN).unwrap_err();
            assert_eq!(e.code(), crate::v2::Code::IllegalLiteTopic, "{bad:?}");
        }
    }
}

//! Stored messages as `apache.rocketmq.v2` messages: what a consumer receives, what a
//! transaction check-back pushes to a producer, what an offset pull returns. Used by the
//! transport (`grpc`) and by the domain services that talk v2 on their own (`txn`'s
//! check-back), so neither imports the other for it.
//!
//! The producer's direction (a v2 message into a record) is `crate::produce`'s.

use crate::store::record::internal;
use crate::store::{NewMessage, StoredMessage};
use apogee_proto::remoting::message::property;
use apogee_proto::time::timestamp;
use apogee_proto::v2::{self, DigestType, Encoding};
use md5::{Digest as _, Md5};

/// The value of `internal::BODY_ENCODING` for a gzip-compressed body.
pub const GZIP: &str = "gzip";

/// The body's encoding as the producer declared it.
pub fn body_encoding(m: &NewMessage) -> Encoding {
    let gzip = m
        .internal
        .iter()
        .any(|(k, v)| k == internal::BODY_ENCODING && v == GZIP);
    if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// MD5 of the body (as stored, so compressed if it was sent compressed), in
/// upper-case hex: the one digest text every official client reads alike
/// (their CRC32 texts differ: padded, unpadded, decimal).
fn body_digest(s: &StoredMessage) -> v2::Digest {
    v2::Digest {
        r#type: DigestType::Md5 as i32,
        checksum: hex::encode_upper(Md5::digest(&s.msg.body)),
    }
}

/// The user properties a v2 client reads of `m` (see [`to_v2_message`]).
fn user_properties(m: &NewMessage) -> std::collections::HashMap<String, String> {
    let mut properties: std::collections::HashMap<String, String> =
        m.properties.iter().cloned().collect();
    if let Some(group) = &m.message_group {
        properties.insert(property::SHARDING_KEY.to_string(), group.clone());
    }
    properties
}

/// A stored message as clients receive it (without delivery fields). A lite topic's message
/// (a record of the lite queue `%LITE%<parent>%<lite>`) shows its parent topic, its lite
/// topic (`system_properties.lite_topic`) and type LITE; its dead-letter copy keeps type
/// LITE and shows the lite topic it came from.
///
/// The user properties are as RocketMQ's proxy shows them: the producer's, a transaction's
/// `__transactionId__` (stored with the half message, `crate::txn`) and a message group's
/// `__SHARDINGKEY` (the group, also in `system_properties.message_group`).
pub fn to_v2_message(s: &StoredMessage, namespace: &str, store_host: &str) -> v2::Message {
    let m = &s.msg;
    let (topic, lite_topic) = match apogee_proto::names::split_lite_queue_topic(&m.topic) {
        Some((parent, lite)) => (parent.to_string(), Some(lite.to_string())),
        None => {
            let dead_lite = m
                .internal(internal::DLQ_TOPIC)
                .and_then(apogee_proto::names::split_lite_queue_topic)
                .map(|(_, lite)| lite.to_string());
            (m.topic.clone(), dead_lite)
        }
    };
    let lite_queue = m.topic.starts_with(apogee_proto::names::LITE_PREFIX);
    let message_type = if lite_queue {
        v2::MessageType::Lite as i32
    } else {
        i32::from(m.message_type)
    };
    v2::Message {
        topic: Some(v2::Resource {
            resource_namespace: namespace.to_string(),
            name: topic,
        }),
        user_properties: user_properties(m),
        system_properties: Some(v2::SystemProperties {
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            message_id: m.message_id.clone(),
            body_digest: Some(body_digest(s)),
            body_encoding: body_encoding(m) as i32,
            message_type,
            born_timestamp: Some(timestamp(m.born_timestamp_ms)),
            born_host: m.born_host.clone(),
            store_timestamp: Some(timestamp(s.store_timestamp_ms)),
            store_host: store_host.to_string(),
            delivery_timestamp: m.delivery_timestamp_ms.map(timestamp),
            queue_id: m.queue_id as i32,
            queue_offset: Some(s.queue_offset as i64),
            message_group: m.message_group.clone(),
            priority: m.priority(),
            lite_topic,
            trace_context: m.internal(internal::TRACE_CONTEXT).map(str::to_string),
            ..Default::default()
        }),
        body: m.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stored(message_group: Option<&str>, properties: &[(&str, &str)]) -> StoredMessage {
        StoredMessage {
            msg: NewMessage {
                topic: "orders".into(),
                queue_id: 0,
                message_id: "M1".into(),
                tag: None,
                keys: Vec::new(),
                message_group: message_group.map(str::to_string),
                message_type: v2::MessageType::Fifo as u8,
                born_timestamp_ms: 1,
                born_host: String::new(),
                delivery_timestamp_ms: None,
                reconsume_times: 0,
                properties: properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                internal: Vec::new(),
                body: Bytes::from_static(b"body"),
            },
            queue_offset: 0,
            log_offset: 0,
            record_size: 0,
            store_timestamp_ms: 2,
            body_crc32: 0,
        }
    }

    #[test]
    fn a_message_group_is_also_the_sharding_key_property_as_rocketmqs_proxy_shows_it() {
        let m = to_v2_message(&stored(Some("g1"), &[("color", "blue")]), "", "b:1");
        assert_eq!(m.user_properties["__SHARDINGKEY"], "g1");
        assert_eq!(m.user_properties["color"], "blue");
        let sp = m.system_properties.unwrap();
        assert_eq!(sp.message_group.as_deref(), Some("g1"));
        // Without a group, no sharding key; a transaction's stored id shows as it is.
        let m = to_v2_message(&stored(None, &[("__transactionId__", "T1")]), "", "b:1");
        assert!(!m.user_properties.contains_key("__SHARDINGKEY"));
        assert_eq!(m.user_properties["__transactionId__"], "T1");
    }
}

//! Conversions between the v2 wire messages and the store's records.

use crate::consume::Delivery;
use crate::store::record::internal;
use crate::store::{NewMessage, StoredMessage};
use apogee_proto::time::{duration, timestamp, timestamp_ms};
use apogee_proto::v2::{self, DigestType, Encoding, MessageType};
use md5::{Digest as _, Md5};
use std::time::Duration;

/// The store record for a validated v2 message, moving its fields (body, properties, ids)
/// into the record without copying them.
pub fn into_new_message(m: v2::Message, queue_id: u32, born_host_fallback: &str) -> NewMessage {
    let sp = m.system_properties.unwrap_or_default();
    let born_host = if sp.born_host.is_empty() {
        born_host_fallback.to_string()
    } else {
        sp.born_host
    };
    let mut properties: Vec<(String, String)> = m.user_properties.into_iter().collect();
    properties.sort_unstable();
    NewMessage {
        topic: m.topic.map(|t| t.name).unwrap_or_default(),
        queue_id,
        message_id: sp.message_id,
        tag: sp.tag.filter(|t| !t.is_empty()),
        keys: sp.keys,
        message_group: sp.message_group.filter(|g| !g.is_empty()),
        message_type: u8::try_from(sp.message_type).unwrap_or(MessageType::Normal as u8),
        born_timestamp_ms: sp
            .born_timestamp
            .as_ref()
            .map(timestamp_ms)
            .unwrap_or_else(apogee_proto::time::now_ms),
        born_host,
        delivery_timestamp_ms: sp.delivery_timestamp.as_ref().map(timestamp_ms),
        reconsume_times: 0,
        properties,
        internal: match Encoding::try_from(sp.body_encoding) {
            Ok(Encoding::Gzip) => vec![(internal::BODY_ENCODING.to_string(), GZIP.to_string())],
            _ => Vec::new(),
        },
        body: m.body,
    }
}

/// The value of `internal::BODY_ENCODING` for a gzip-compressed body.
const GZIP: &str = "gzip";

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

/// A stored message as clients receive it (without delivery fields).
pub fn to_v2_message(s: &StoredMessage, namespace: &str, store_host: &str) -> v2::Message {
    let m = &s.msg;
    v2::Message {
        topic: Some(v2::Resource {
            resource_namespace: namespace.to_string(),
            name: m.topic.clone(),
        }),
        user_properties: m.properties.iter().cloned().collect(),
        system_properties: Some(v2::SystemProperties {
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            message_id: m.message_id.clone(),
            body_digest: Some(body_digest(s)),
            body_encoding: body_encoding(m) as i32,
            message_type: i32::from(m.message_type),
            born_timestamp: Some(timestamp(m.born_timestamp_ms)),
            born_host: m.born_host.clone(),
            store_timestamp: Some(timestamp(s.store_timestamp_ms)),
            store_host: store_host.to_string(),
            delivery_timestamp: m.delivery_timestamp_ms.map(timestamp),
            queue_id: m.queue_id as i32,
            queue_offset: Some(s.queue_offset as i64),
            message_group: m.message_group.clone(),
            ..Default::default()
        }),
        body: m.body.clone(),
    }
}

/// A delivered message: the stored one plus its receipt handle, delivery
/// attempt and invisible duration.
pub fn delivery_to_v2(d: &Delivery, namespace: &str, store_host: &str) -> v2::Message {
    let mut m = to_v2_message(&d.message, namespace, store_host);
    if let Some(sp) = m.system_properties.as_mut() {
        sp.receipt_handle = Some(d.receipt_handle.clone());
        sp.delivery_attempt = Some(d.attempt as i32);
        sp.invisible_duration = Some(duration(
            Duration::from_millis(d.invisible_ms.max(0) as u64),
        ));
    }
    m
}

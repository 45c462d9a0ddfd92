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

/// 5000-01-01T00:00:00Z in Unix seconds: a delivery timestamp whose `seconds` is later than
/// this may hold milliseconds (see [`delivery_time_ms`]).
const LATEST_DELIVERY_SECONDS: i64 = 95_617_584_000;

/// The delivery time (Unix ms) a message's `delivery_timestamp` names. A `seconds` value too
/// large to be seconds (later than year 5000) is read as milliseconds, its `nanos` ignored,
/// when that reading is a valid delivery time: within `max_delay_ms` (`schedule.max_delay_ms`)
/// of `now_ms`, ahead or behind. The official Python client (rocketmq-python-client 5.1.2)
/// puts its millisecond delivery time there. Any other value is read as a timestamp, so a
/// real out-of-range time stays out of range and is refused with ILLEGAL_DELIVERY_TIME.
pub fn delivery_time_ms(
    ts: &prost_types::Timestamp,
    now_ms: i64,
    max_delay_ms: i64,
    message_id: &str,
) -> i64 {
    let as_timestamp = timestamp_ms(ts);
    if ts.seconds <= LATEST_DELIVERY_SECONDS
        || ts.seconds.abs_diff(now_ms) > max_delay_ms.unsigned_abs()
    {
        return as_timestamp;
    }
    tracing::debug!(
        message_id,
        seconds = ts.seconds,
        "delivery timestamp's seconds is past year 5000: read as milliseconds"
    );
    ts.seconds
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

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::time::timestamp;

    const NOW: i64 = 1_795_612_000_000;
    const WEEK: i64 = 7 * 24 * 3600 * 1000;

    fn seconds(seconds: i64) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos: 0 }
    }

    fn read(ts: prost_types::Timestamp) -> i64 {
        delivery_time_ms(&ts, NOW, WEEK, "id")
    }

    #[test]
    fn a_timestamp_is_read_as_seconds_and_nanos() {
        assert_eq!(read(timestamp(NOW + 41_208)), NOW + 41_208);
        let last_second = prost_types::Timestamp {
            seconds: LATEST_DELIVERY_SECONDS,
            nanos: 500_000_000,
        };
        assert_eq!(read(last_second), LATEST_DELIVERY_SECONDS * 1000 + 500);
    }

    #[test]
    fn milliseconds_in_the_seconds_field_within_the_limit_are_read_as_milliseconds() {
        // What rocketmq-python-client 5.1.2 sends for a delivery time in milliseconds.
        assert_eq!(read(seconds(NOW + 41_208)), NOW + 41_208);
        assert_eq!(read(seconds(NOW + WEEK)), NOW + WEEK);
        // A past time within the limit too (it is delivered at once).
        assert_eq!(read(seconds(NOW - WEEK)), NOW - WEEK);
    }

    #[test]
    fn seconds_past_year_5000_that_are_no_valid_time_in_milliseconds_stay_out_of_range() {
        for s in [
            NOW + WEEK + 1,
            NOW - WEEK - 1,
            LATEST_DELIVERY_SECONDS + 1,
            i64::MAX,
        ] {
            assert_eq!(read(seconds(s)), s.saturating_mul(1000), "seconds {s}");
        }
    }

    #[test]
    fn year_5000_is_the_boundary() {
        // 1970-01-01 to 5000-01-01: 3030 years, 735 of them leap years.
        assert_eq!(LATEST_DELIVERY_SECONDS, (3030 * 365 + 735) * 86_400);
    }
}

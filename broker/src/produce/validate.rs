//! What a send is checked against before anything about the broker's state is read: the
//! request's size (message count, body bytes) and each message on its own (topic name, id,
//! body, tag, keys, properties, type, encoding, delivery time). Pure functions over
//! [`SendLimits`], so every case is a row of a table test (`tests_validate.rs`).
//!
//! The checks that read state (quotas, the topic's existence, permission, accepted types and
//! queues) are admission, in `admit.rs`.

use super::Outgoing;
use apogee_proto::v2::{Encoding, MessageType};
use apogee_proto::{limits, message_id, names, ApogeeError};

/// The configured limits a send is checked against (the rest are protocol constants of
/// `apogee_proto::limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLimits {
    /// `max_body_bytes`: the largest body of one message.
    pub max_body_bytes: usize,
    /// `schedule.max_delay_ms`: how far ahead a delivery time may be (also how a delivery
    /// timestamp holding milliseconds is told apart, see [`delivery_time_ms`]).
    pub max_delay_ms: i64,
    /// `trace.enabled`: clients may write trace records to
    /// [`names::TRACE_TOPIC`], the one system topic they may write.
    pub trace_enabled: bool,
}

impl SendLimits {
    /// The limits of a broker's config.
    pub fn of(config: &crate::config::BrokerConfig) -> SendLimits {
        SendLimits {
            max_body_bytes: config.max_body_bytes,
            max_delay_ms: i64::try_from(config.schedule.max_delay_ms).unwrap_or(i64::MAX),
            trace_enabled: config.trace.enabled,
        }
    }
}

/// A message that passed [`message`]: its type as it will be treated and its delivery time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Valid {
    /// The declared type; a message that names none but has a delivery time is DELAY.
    /// (Still UNSPECIFIED when it names none and has no delivery time.)
    pub message_type: MessageType,
    /// The delivery time (Unix ms) its delivery timestamp names, as [`delivery_time_ms`]
    /// reads it.
    pub delivery_ms: Option<i64>,
}

/// Checks the request as a whole: at least one message, at most
/// [`limits::MAX_BATCH_MESSAGES`] of them and [`limits::MAX_BATCH_BYTES`] of bodies.
pub fn request(messages: &[Outgoing]) -> Result<(), ApogeeError> {
    if messages.is_empty() {
        return Err(ApogeeError::BadRequest("no messages in the request".into()));
    }
    if messages.len() > limits::MAX_BATCH_MESSAGES {
        return Err(ApogeeError::PayloadTooLarge(format!(
            "{} messages in one request, the limit is {}",
            messages.len(),
            limits::MAX_BATCH_MESSAGES
        )));
    }
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    if total > limits::MAX_BATCH_BYTES {
        return Err(ApogeeError::PayloadTooLarge(format!(
            "{total} bytes of bodies in one request, the limit is {}",
            limits::MAX_BATCH_BYTES
        )));
    }
    Ok(())
}

/// Checks one message on its own (reading it, copying nothing), `now_ms` being the time a
/// delivery timestamp is read against.
pub fn message(limits: &SendLimits, m: &Outgoing, now_ms: i64) -> Result<Valid, ApogeeError> {
    let topic = m.topic.as_str();
    limits::validate_topic(topic)?;
    if topic == names::TRACE_TOPIC {
        if !limits.trace_enabled {
            return Err(ApogeeError::Forbidden(format!(
                "message trace is off on this broker (trace.enabled = false): it takes no \
                 trace records in {topic}"
            )));
        }
    } else if names::is_system_topic(topic) {
        return Err(ApogeeError::Forbidden(format!(
            "topic {topic} is a system topic; clients cannot write it"
        )));
    }
    if !m.has_system_properties {
        return Err(ApogeeError::BadRequest(
            "message has no system properties".into(),
        ));
    }
    if !message_id::is_acceptable_message_id(&m.message_id) {
        return Err(ApogeeError::IllegalMessageId(format!(
            "message id {:?} must be 1 to {} letters, digits, '-' or '_'",
            m.message_id,
            message_id::MAX_MESSAGE_ID_LEN
        )));
    }
    limits::validate_body(m.body.len(), limits.max_body_bytes)?;
    properties(m)?;
    let message_type = message_type(m)?;
    super::priority::check(m, message_type)?;
    Ok(Valid {
        message_type,
        delivery_ms: m
            .delivery_timestamp
            .as_ref()
            .map(|ts| delivery_time_ms(ts, now_ms, limits.max_delay_ms, &m.message_id)),
    })
}

/// The tag, the keys and the user properties: each valid, together within their limits.
fn properties(m: &Outgoing) -> Result<(), ApogeeError> {
    if let Some(tag) = m.tag.as_deref() {
        limits::validate_tag(tag)?;
    }
    for key in &m.keys {
        limits::validate_key(key)?;
    }
    if m.properties.len() > limits::MAX_PROPERTY_COUNT {
        return Err(ApogeeError::MessagePropertiesTooLarge(format!(
            "{} user properties, the limit is {}",
            m.properties.len(),
            limits::MAX_PROPERTY_COUNT
        )));
    }
    let props_bytes: usize = m
        .properties
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + m.keys.iter().map(String::len).sum::<usize>()
        + m.tag.as_ref().map_or(0, String::len)
        + m.trace_context.as_ref().map_or(0, String::len);
    if props_bytes > limits::MAX_PROPERTIES_BYTES {
        return Err(ApogeeError::MessagePropertiesTooLarge(format!(
            "{props_bytes} bytes of properties, keys, tag and trace context; the limit is {}",
            limits::MAX_PROPERTIES_BYTES
        )));
    }
    if let Some((k, _)) = m
        .properties
        .iter()
        .find(|(k, _)| k.is_empty() || k.chars().any(char::is_control))
    {
        return Err(ApogeeError::IllegalProperty(format!(
            "property key {k:?} is empty or has control characters"
        )));
    }
    Ok(())
}

/// The declared type and encoding, known, and a delivery time exactly on DELAY messages.
fn message_type(m: &Outgoing) -> Result<MessageType, ApogeeError> {
    let message_type = match MessageType::try_from(m.message_type) {
        // A client that names no type but sets a delivery time means DELAY.
        Ok(MessageType::Unspecified) if m.delivery_timestamp.is_some() => MessageType::Delay,
        Ok(t) => t,
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown message type {}",
                m.message_type
            )))
        }
    };
    match Encoding::try_from(m.body_encoding) {
        Ok(Encoding::Unspecified | Encoding::Identity | Encoding::Gzip) => {}
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown body encoding {}",
                m.body_encoding
            )))
        }
    }
    match message_type {
        MessageType::Delay if m.delivery_timestamp.is_none() => Err(
            ApogeeError::IllegalDeliveryTime("a DELAY message needs a delivery timestamp".into()),
        ),
        MessageType::Delay => Ok(message_type),
        // As RocketMQ 5: only DELAY messages have a delivery time.
        t if m.delivery_timestamp.is_some() => Err(ApogeeError::MessageTypeConflict(format!(
            "a {} message cannot have a delivery timestamp; send it as DELAY",
            t.as_str_name()
        ))),
        t => Ok(t),
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
    let as_timestamp = apogee_proto::time::timestamp_ms(ts);
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

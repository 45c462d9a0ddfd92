//! Messages: what a producer sends ([`Message`] and its builder, local
//! validation, conversion to the protocol's `Message`) and what a consumer
//! receives ([`ReceivedMessage`], converted from the protocol's `Message`),
//! plus subscription filters.

use apogee_proto::{delay_level, limits, names, time, v2, ApogeeError};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A message to send.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub topic: String,
    pub body: bytes::Bytes,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub properties: HashMap<String, String>,
    /// Ordering key: makes it a FIFO message.
    pub message_group: Option<String>,
    /// Earliest delivery time: makes it a delayed message.
    pub delivery_timestamp: Option<SystemTime>,
    /// The lite topic under a LITE parent topic: makes it a lite message.
    pub lite_topic: Option<String>,
    /// The priority on a PRIORITY topic (higher is served first by default): makes it a
    /// priority message.
    pub priority: Option<u32>,
}

impl Message {
    /// A plain message. The body is taken as it is (a `Vec<u8>`, a `String` or shared
    /// [`bytes::Bytes`]), not copied.
    pub fn new(topic: impl Into<String>, body: impl Into<bytes::Bytes>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            ..Default::default()
        }
    }

    /// Starts a builder.
    pub fn builder(topic: impl Into<String>, body: impl Into<bytes::Bytes>) -> MessageBuilder {
        MessageBuilder(Message::new(topic, body))
    }

    /// The protocol message type implied by the message's fields.
    pub fn message_type(&self) -> v2::MessageType {
        if self.lite_topic.is_some() {
            v2::MessageType::Lite
        } else if self.priority.is_some() {
            v2::MessageType::Priority
        } else if self.message_group.is_some() {
            v2::MessageType::Fifo
        } else if self.delivery_timestamp.is_some() {
            v2::MessageType::Delay
        } else {
            v2::MessageType::Normal
        }
    }

    /// Checks the message against the shared limits before it is sent.
    pub fn validate(&self, max_body: usize) -> Result<(), ApogeeError> {
        limits::validate_topic(&self.topic)?;
        if names::is_system_topic(&self.topic) {
            return Err(ApogeeError::IllegalTopic(format!(
                "{} is a system topic and cannot be written by clients",
                self.topic
            )));
        }
        limits::validate_body(self.body.len(), max_body)?;
        let mut props_bytes = 0;
        if let Some(tag) = &self.tag {
            limits::validate_tag(tag)?;
            props_bytes += tag.len();
        }
        for key in &self.keys {
            limits::validate_key(key)?;
            props_bytes += key.len();
        }
        if self.properties.len() > limits::MAX_PROPERTY_COUNT {
            return Err(ApogeeError::MessagePropertiesTooLarge(format!(
                "{} properties, the limit is {}",
                self.properties.len(),
                limits::MAX_PROPERTY_COUNT
            )));
        }
        for (k, v) in &self.properties {
            if k.trim().is_empty() || k.chars().any(char::is_control) {
                return Err(ApogeeError::IllegalProperty(format!(
                    "property key {k:?} is blank or has control characters"
                )));
            }
            props_bytes += k.len() + v.len();
        }
        if props_bytes > limits::MAX_PROPERTIES_BYTES {
            return Err(ApogeeError::MessagePropertiesTooLarge(format!(
                "tag, keys and properties take {props_bytes} bytes, the limit is {}",
                limits::MAX_PROPERTIES_BYTES
            )));
        }
        if let Some(group) = &self.message_group {
            if group.trim().is_empty()
                || group.len() > limits::MAX_KEY_LEN
                || group.chars().any(char::is_control)
            {
                return Err(ApogeeError::IllegalMessageGroup(format!(
                    "message group {group:?} must be non-blank, at most {} characters",
                    limits::MAX_KEY_LEN
                )));
            }
            if self.delivery_timestamp.is_some() {
                return Err(ApogeeError::MessageTypeConflict(
                    "a message cannot have both a message group and a delivery time".into(),
                ));
            }
        }
        self.validate_lite_and_priority()
    }

    /// A lite topic and a priority each make their own message type: neither goes with the
    /// other, with a message group or with a delivery time.
    fn validate_lite_and_priority(&self) -> Result<(), ApogeeError> {
        let kinds = [
            ("a lite topic", self.lite_topic.is_some()),
            ("a priority", self.priority.is_some()),
            ("a message group", self.message_group.is_some()),
            ("a delivery time", self.delivery_timestamp.is_some()),
        ];
        let set: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
        if set.len() > 1 && (self.lite_topic.is_some() || self.priority.is_some()) {
            return Err(ApogeeError::MessageTypeConflict(format!(
                "a message cannot have both {} and {}",
                set[0], set[1]
            )));
        }
        if let Some(lite) = &self.lite_topic {
            limits::validate_lite_topic(lite, limits::DEFAULT_MAX_LITE_TOPIC_LEN)?;
        }
        if let Some(p) = self.priority {
            if p > i32::MAX as u32 {
                return Err(ApogeeError::IllegalProperty(format!(
                    "priority {p} is above the largest the protocol carries ({})",
                    i32::MAX
                )));
            }
        }
        Ok(())
    }

    /// The protocol message, with the system properties a producer sets (`born_ms`: when the
    /// request is built, one clock read for all of its messages).
    pub(crate) fn to_v2(
        &self,
        namespace: &str,
        message_id: &str,
        queue_id: i32,
        born_host: &str,
        born_ms: i64,
    ) -> v2::Message {
        v2::Message {
            topic: Some(v2::Resource {
                resource_namespace: namespace.to_string(),
                name: self.topic.clone(),
            }),
            user_properties: self.properties.clone(),
            system_properties: Some(v2::SystemProperties {
                tag: self.tag.clone(),
                keys: self.keys.clone(),
                message_id: message_id.to_string(),
                body_encoding: v2::Encoding::Identity as i32,
                message_type: self.message_type() as i32,
                born_timestamp: Some(time::timestamp(born_ms)),
                born_host: born_host.to_string(),
                delivery_timestamp: self
                    .delivery_timestamp
                    .map(|t| time::timestamp(system_time_ms(t))),
                queue_id,
                message_group: self.message_group.clone(),
                lite_topic: self.lite_topic.clone(),
                priority: self.priority.map(|p| p as i32),
                ..Default::default()
            }),
            body: self.body.clone(),
        }
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Builds a [`Message`].
#[derive(Clone, Debug)]
pub struct MessageBuilder(Message);

impl From<Message> for MessageBuilder {
    /// Continues building from an existing message.
    fn from(m: Message) -> Self {
        MessageBuilder(m)
    }
}

impl MessageBuilder {
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.0.tag = Some(tag.into());
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.0.keys.push(key.into());
        self
    }

    pub fn keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.0.keys.extend(keys.into_iter().map(Into::into));
        self
    }

    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.properties.insert(key.into(), value.into());
        self
    }

    pub fn message_group(mut self, group: impl Into<String>) -> Self {
        self.0.message_group = Some(group.into());
        self
    }

    /// Delivers the message at `at` (a scheduled message, type DELAY); a time in the past
    /// means at once. The broker refuses times beyond its maximum delay (7 days by default).
    pub fn deliver_at(mut self, at: SystemTime) -> Self {
        self.0.delivery_timestamp = Some(at);
        self
    }

    /// Sends the message to lite topic `lite` under the message's (LITE parent) topic: type
    /// LITE, `system_properties.lite_topic`. Names follow RocketMQ's rule (`[a-zA-Z0-9_-]`,
    /// at most 64 characters by default).
    pub fn lite_topic(mut self, lite: &str) -> Self {
        self.0.lite_topic = Some(lite.to_string());
        self
    }

    /// Gives the message a priority on a PRIORITY topic: type PRIORITY,
    /// `system_properties.priority`. The broker stores priority `p` in queue
    /// `min(p, queues - 1)` and a receive serves the highest queue with a message first.
    pub fn priority(mut self, priority: u32) -> Self {
        self.0.priority = Some(priority);
        self
    }

    /// Delivers the message `delay` from now.
    pub fn deliver_after(self, delay: Duration) -> Self {
        self.deliver_at(SystemTime::now() + delay)
    }

    /// Delivers the message after one of the 18 classic delay levels (1 = 1 s ... 18 = 2 h,
    /// see `apogee_proto::delay_level`). As in RocketMQ 4.x, level 0 means no delay and levels
    /// above 18 mean 18.
    pub fn delay_level(self, level: u32) -> Self {
        let top = delay_level::LEVELS_SECS.len() as u32;
        match delay_level::delay_of(level.min(top)) {
            Some(delay) => self.deliver_after(delay),
            None => self,
        }
    }

    pub fn build(self) -> Message {
        self.0
    }
}

/// Language of a subscription filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// `*` or tags separated by `||`.
    Tag,
    /// An SQL92 expression over properties.
    Sql92,
}

/// A subscription filter; the default accepts every tag (`TAG "*"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterExpression {
    pub kind: FilterKind,
    pub expression: String,
}

impl Default for FilterExpression {
    fn default() -> Self {
        FilterExpression::tag("*")
    }
}

impl FilterExpression {
    pub fn tag(expression: impl Into<String>) -> Self {
        FilterExpression {
            kind: FilterKind::Tag,
            expression: expression.into(),
        }
    }

    pub fn sql92(expression: impl Into<String>) -> Self {
        FilterExpression {
            kind: FilterKind::Sql92,
            expression: expression.into(),
        }
    }

    pub(crate) fn to_v2(&self) -> v2::FilterExpression {
        v2::FilterExpression {
            r#type: match self.kind {
                FilterKind::Tag => v2::FilterType::Tag,
                FilterKind::Sql92 => v2::FilterType::Sql,
            } as i32,
            expression: self.expression.clone(),
        }
    }
}

/// A message handed out by a broker; ack it (or change its invisible
/// duration) with its receipt handle, at the broker it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedMessage {
    pub topic: String,
    pub message_id: String,
    pub body: bytes::Bytes,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub properties: HashMap<String, String>,
    pub message_group: Option<String>,
    /// The lite topic of a message from a LITE parent topic.
    pub lite_topic: Option<String>,
    /// The priority of a message from a PRIORITY topic.
    pub priority: Option<i32>,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub delivery_attempt: i32,
    pub receipt_handle: String,
    pub born_timestamp_ms: i64,
    pub store_timestamp_ms: i64,
    /// The delivery time a scheduled message asked for.
    pub delivery_timestamp_ms: Option<i64>,
    /// Broker group the message came from.
    pub broker_name: String,
    /// `host:port` of the broker the message came from (acks go there).
    pub endpoint: String,
}

impl ReceivedMessage {
    /// Converts a received protocol message.
    pub(crate) fn from_v2(m: v2::Message, broker_name: &str, endpoint: &str) -> Self {
        let sp = m.system_properties.unwrap_or_default();
        ReceivedMessage {
            topic: m.topic.map(|t| t.name).unwrap_or_default(),
            message_id: sp.message_id,
            body: m.body,
            tag: sp.tag,
            keys: sp.keys,
            properties: m.user_properties,
            message_group: sp.message_group,
            lite_topic: sp.lite_topic,
            priority: sp.priority,
            queue_id: sp.queue_id,
            queue_offset: sp.queue_offset.unwrap_or(-1),
            delivery_attempt: sp.delivery_attempt.unwrap_or(1),
            receipt_handle: sp.receipt_handle.unwrap_or_default(),
            born_timestamp_ms: sp
                .born_timestamp
                .as_ref()
                .map(time::timestamp_ms)
                .unwrap_or(0),
            store_timestamp_ms: sp
                .store_timestamp
                .as_ref()
                .map(time::timestamp_ms)
                .unwrap_or(0),
            delivery_timestamp_ms: sp.delivery_timestamp.as_ref().map(time::timestamp_ms),
            broker_name: broker_name.to_string(),
            endpoint: endpoint.to_string(),
        }
    }

    /// The body as UTF-8, with invalid sequences replaced.
    pub fn body_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field_and_type() {
        let m = Message::builder("T", "hi")
            .tag("A")
            .key("k1")
            .keys(["k2"])
            .property("p", "v")
            .build();
        assert_eq!(m.keys, vec!["k1", "k2"]);
        assert_eq!(m.message_type(), v2::MessageType::Normal);
        assert!(m.validate(1024).is_ok());
        let fifo = Message::builder("T", "x").message_group("g").build();
        assert_eq!(fifo.message_type(), v2::MessageType::Fifo);
        let delayed = Message::builder("T", "x")
            .deliver_after(Duration::from_secs(5))
            .build();
        assert_eq!(delayed.message_type(), v2::MessageType::Delay);
        let lite = Message::builder("T", "x").lite_topic("session-1").build();
        assert_eq!(lite.message_type(), v2::MessageType::Lite);
        assert!(lite.validate(1024).is_ok());
        let prio = Message::builder("T", "x").priority(7).build();
        assert_eq!(prio.message_type(), v2::MessageType::Priority);
        assert!(prio.validate(1024).is_ok());
        let sp = prio.to_v2("", "ID", 0, "h", 0).system_properties.unwrap();
        assert_eq!(
            (sp.priority, sp.message_type),
            (Some(7), v2::MessageType::Priority as i32)
        );
        let sp = lite.to_v2("", "ID", 0, "h", 0).system_properties.unwrap();
        assert_eq!(
            (sp.lite_topic.as_deref(), sp.message_type),
            (Some("session-1"), v2::MessageType::Lite as i32)
        );
    }

    #[test]
    fn lite_and_priority_go_with_no_other_type() {
        let code = |m: Message| m.validate(1024).unwrap_err().code() as i32;
        let b = || Message::builder("T", "1");
        assert_eq!(code(b().priority(1).message_group("g").build()), 40014);
        assert_eq!(code(b().priority(1).lite_topic("l").build()), 40014);
        assert_eq!(
            code(
                b().lite_topic("l")
                    .deliver_after(Duration::from_secs(1))
                    .build()
            ),
            40014
        );
        assert_eq!(code(b().lite_topic("bad name").build()), 40020);
        assert_eq!(code(b().priority(u32::MAX).build()), 40007);
    }

    #[test]
    fn delay_levels_are_a_shorthand_for_delays() {
        let at = |level| {
            let m = Message::builder("T", "x").delay_level(level).build();
            m.delivery_timestamp.map(|t| {
                t.duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_secs_f64()
                    .round() as u64
            })
        };
        assert_eq!(at(0), None);
        assert_eq!(at(1), Some(1));
        assert_eq!(at(4), Some(30));
        assert_eq!(at(18), Some(7200));
        assert_eq!(at(99), Some(7200));
    }

    #[test]
    fn validation_rejects_bad_messages() {
        let code = |m: Message| m.validate(4).unwrap_err().code() as i32;
        assert_eq!(code(Message::new("T", "")), 41302);
        assert_eq!(code(Message::new("T", "12345")), 41301);
        assert_eq!(code(Message::new("bad topic", "1")), 40002);
        assert_eq!(code(Message::new("%RETRY%g", "1")), 40002);
        assert_eq!(code(Message::builder("T", "1").tag("a|b").build()), 40004);
        assert_eq!(code(Message::builder("T", "1").key(" ").build()), 40005);
        assert_eq!(
            code(Message::builder("T", "1").message_group("").build()),
            40006
        );
        let both = Message::builder("T", "1")
            .message_group("g")
            .deliver_after(Duration::from_secs(1))
            .build();
        assert_eq!(code(both), 40014);
    }

    #[test]
    fn conversion_to_protocol_sets_system_properties() {
        let m = Message::builder("T", "body").tag("A").key("k").build();
        let v = m.to_v2("ns", "ID1", 3, "host", 1_700_000_000_123);
        let sp = v.system_properties.unwrap();
        assert_eq!(v.topic.unwrap().resource_namespace, "ns");
        assert_eq!(sp.message_id, "ID1");
        assert_eq!(sp.queue_id, 3);
        assert_eq!(sp.message_type, v2::MessageType::Normal as i32);
        assert_eq!(sp.born_host, "host");
        assert_eq!(
            sp.born_timestamp.map(|t| (t.seconds, t.nanos)),
            Some((1_700_000_000, 123_000_000))
        );
        assert_eq!(sp.tag.as_deref(), Some("A"));
        assert_eq!(&v.body[..], b"body");
    }

    #[test]
    fn conversion_from_protocol_keeps_the_receipt() {
        let v = v2::Message {
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "T".into(),
            }),
            user_properties: HashMap::from([("p".to_string(), "v".to_string())]),
            system_properties: Some(v2::SystemProperties {
                message_id: "ID".into(),
                receipt_handle: Some("RH".into()),
                queue_id: 2,
                queue_offset: Some(7),
                delivery_attempt: Some(3),
                store_timestamp: Some(time::timestamp(1_000)),
                born_timestamp: Some(time::timestamp(500)),
                ..Default::default()
            }),
            body: bytes::Bytes::from_static(b"x"),
        };
        let r = ReceivedMessage::from_v2(v, "broker-a", "h:1");
        assert_eq!((r.queue_id, r.queue_offset, r.delivery_attempt), (2, 7, 3));
        assert_eq!(r.receipt_handle, "RH");
        assert_eq!((r.born_timestamp_ms, r.store_timestamp_ms), (500, 1_000));
        assert_eq!(r.endpoint, "h:1");
        assert_eq!(r.properties["p"], "v");
        assert_eq!(r.body_lossy(), "x");
    }

    #[test]
    fn default_filter_accepts_every_tag() {
        let f = FilterExpression::default().to_v2();
        assert_eq!(f.r#type, v2::FilterType::Tag as i32);
        assert_eq!(f.expression, "*");
        assert_eq!(
            FilterExpression::sql92("a > 1").to_v2().r#type,
            v2::FilterType::Sql as i32
        );
    }
}

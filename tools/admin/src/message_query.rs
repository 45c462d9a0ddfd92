//! The admin library behind `apogee message get|find|print`: looks messages up through a
//! NameServer's Admin service (by id on every broker group, by topic and key, or a range of
//! one queue) and turns the answers into rows.
//!
//! Bodies are printed as UTF-8 text when they are valid UTF-8, else as lower-case hex
//! (`body_format` says which); a body the producer compressed (`body_encoding` "gzip") is shown
//! as stored, so as hex.

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::output::{one_line, TableRow};
use apogee_proto::cluster::{self, admin_client::AdminClient};
use apogee_proto::limits;
use apogee_proto::v2::MessageType;
use serde::Serialize;
use std::collections::BTreeMap;

/// Characters of a body shown in a table cell.
const TABLE_BODY_CHARS: usize = 48;

/// A read of consecutive messages of one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRead {
    /// The topic to read.
    pub topic: String,
    /// Queue id (queue ids are per broker group).
    pub queue: u32,
    /// First queue offset to read.
    pub from: u64,
    /// How many messages to read.
    pub count: u32,
    /// Broker group to read from (none: every group hosting the topic).
    pub broker: Option<String>,
}

/// A body as printable text: UTF-8 when valid, else hex; and which of the two it is.
pub fn body_text(body: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(body) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (body.iter().map(|b| format!("{b:02x}")).collect(), "hex"),
    }
}

/// Unix ms as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The name of a message type value (NORMAL, FIFO, DELAY, TRANSACTION), else its number.
fn type_name(t: i32) -> String {
    match MessageType::try_from(t) {
        Ok(MessageType::Unspecified) | Err(_) => t.to_string(),
        Ok(m) => m.as_str_name().to_string(),
    }
}

/// A table cell: `-` for nothing.
pub(crate) fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// User properties as one table cell: `k=v` pairs joined by commas, `-` for none.
pub fn properties_cell(properties: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    dash(&one_line(&pairs.join(",")))
}

/// A body cut to fit a table cell, on one line.
pub fn short_body(body: &str) -> String {
    let line = one_line(body);
    if line.chars().count() <= TABLE_BODY_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(TABLE_BODY_CHARS).collect();
    cut.push_str("...");
    cut
}

/// One stored record of a message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MessageRow {
    pub message_id: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub log_offset: i64,
    pub broker: String,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub properties: BTreeMap<String, String>,
    /// When the broker stored it (ms since the epoch, and RFC 3339).
    pub store_timestamp_ms: i64,
    pub store_time: String,
    pub born_timestamp_ms: i64,
    pub born_host: String,
    pub message_group: Option<String>,
    /// NORMAL, FIFO, DELAY or TRANSACTION.
    pub message_type: String,
    pub delivery_timestamp_ms: Option<i64>,
    /// Groups holding it in flight, with their delivery attempts so far.
    pub delivery_attempts: BTreeMap<String, u32>,
    /// "identity" or "gzip" (as the producer sent it).
    pub body_encoding: String,
    /// UTF-8 text, or hex when the body is not valid UTF-8 (see `body_format`).
    pub body: String,
    /// "utf8" or "hex".
    pub body_format: String,
    pub body_size: usize,
}

impl From<&cluster::MessageView> for MessageRow {
    fn from(m: &cluster::MessageView) -> Self {
        let (body, format) = body_text(&m.body);
        MessageRow {
            message_id: m.message_id.clone(),
            topic: m.topic.clone(),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            log_offset: m.log_offset,
            broker: m.broker_name.clone(),
            tag: Some(m.tag.clone()).filter(|t| !t.is_empty()),
            keys: m.keys.clone(),
            properties: m.user_properties.clone().into_iter().collect(),
            store_timestamp_ms: m.store_timestamp_ms,
            store_time: rfc3339(m.store_timestamp_ms),
            born_timestamp_ms: m.born_timestamp_ms,
            born_host: m.born_host.clone(),
            message_group: Some(m.message_group.clone()).filter(|g| !g.is_empty()),
            message_type: type_name(m.message_type),
            delivery_timestamp_ms: Some(m.delivery_timestamp_ms).filter(|t| *t > 0),
            delivery_attempts: m
                .delivery_attempts
                .iter()
                .map(|a| (a.group.clone(), a.attempts))
                .collect(),
            body_encoding: if m.body_encoding.is_empty() {
                "identity".into()
            } else {
                m.body_encoding.clone()
            },
            body,
            body_format: format.to_string(),
            body_size: m.body.len(),
        }
    }
}

impl TableRow for MessageRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "MESSAGE ID",
            "TOPIC",
            "QUEUE",
            "OFFSET",
            "BROKER",
            "TAG",
            "KEYS",
            "PROPERTIES",
            "STORED",
            "ATTEMPTS",
            "BODY",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let attempts: Vec<String> = self
            .delivery_attempts
            .iter()
            .map(|(g, n)| format!("{g}={n}"))
            .collect();
        vec![
            self.message_id.clone(),
            self.topic.clone(),
            self.queue_id.to_string(),
            self.queue_offset.to_string(),
            self.broker.clone(),
            dash(self.tag.as_deref().unwrap_or("")),
            dash(&self.keys.join(",")),
            properties_cell(&self.properties),
            self.store_time.clone(),
            dash(&attempts.join(",")),
            short_body(&self.body),
        ]
    }
}

/// Rows of the views, in the order the NameServer gave.
pub fn rows(views: &[cluster::MessageView]) -> Vec<MessageRow> {
    views.iter().map(MessageRow::from).collect()
}

/// What to say when a queue read found nothing: the offsets each group holds.
pub fn empty_queue_note(topic: &str, queue: u32, bounds: &[cluster::QueueBounds]) -> String {
    let parts: Vec<String> = bounds
        .iter()
        .map(|b| {
            if b.next_offset == 0 {
                format!("{}: empty", b.broker_name)
            } else {
                format!(
                    "{}: offsets {}..{}",
                    b.broker_name,
                    b.min_offset,
                    b.next_offset - 1
                )
            }
        })
        .collect();
    format!(
        "no messages at the requested offsets of {topic} queue {queue} ({})",
        parts.join("; ")
    )
}

impl Admin {
    /// The Admin client, allowed answers as large as a broker may send (bodies included).
    pub(crate) fn big_admin(&self) -> AdminClient<crate::admin::NameServerChannel> {
        self.admin
            .clone()
            .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES)
    }

    /// Every stored record with the id (the message, its dead-letter copy ...).
    pub async fn get_message(&self, id: &str) -> ToolResult<Vec<MessageRow>> {
        if id.trim().is_empty() {
            return Err(ToolError::Usage("the message id is empty".into()));
        }
        let resp = self
            .big_admin()
            .get_message(self.req(cluster::GetMessageRequest {
                message_id: id.to_string(),
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(rows(&resp.messages))
    }

    /// Messages of `topic` carrying `key`.
    pub async fn find_messages(
        &self,
        topic: &str,
        key: &str,
        limit: u32,
    ) -> ToolResult<Vec<MessageRow>> {
        let resp = self
            .big_admin()
            .find_messages(self.req(cluster::FindMessagesRequest {
                topic: topic.to_string(),
                key: key.to_string(),
                limit,
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(rows(&resp.messages))
    }

    /// Up to `count` messages of one queue from `from`, and the queue's bounds per group.
    pub async fn read_queue(
        &self,
        a: &QueueRead,
    ) -> ToolResult<(Vec<MessageRow>, Vec<cluster::QueueBounds>)> {
        let resp = self
            .big_admin()
            .read_queue(self.req(cluster::ReadQueueRequest {
                topic: a.topic.clone(),
                queue_id: a.queue,
                from_offset: a.from,
                count: a.count,
                broker_name: a.broker.clone().unwrap_or_default(),
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok((rows(&resp.messages), resp.bounds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    fn view() -> cluster::MessageView {
        cluster::MessageView {
            topic: "T".into(),
            queue_id: 2,
            queue_offset: 7,
            log_offset: 4096,
            message_id: "M1".into(),
            tag: "tagA".into(),
            keys: vec!["k1".into(), "k2".into()],
            user_properties: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())]
                .into_iter()
                .collect(),
            body: b"hello\nworld".to_vec(),
            store_timestamp_ms: 1_700_000_000_123,
            born_timestamp_ms: 1_700_000_000_000,
            delivery_attempts: vec![cluster::GroupAttempts {
                group: "G".into(),
                attempts: 2,
            }],
            broker_name: "b1".into(),
            message_type: MessageType::Normal as i32,
            ..Default::default()
        }
    }

    #[test]
    fn bodies_are_text_when_utf8_else_hex() {
        assert_eq!(body_text(b"caf\xc3\xa9"), ("café".to_string(), "utf8"));
        assert_eq!(
            body_text(&[0xff, 0x00, 0x1f]),
            ("ff001f".to_string(), "hex")
        );
        assert_eq!(body_text(b""), (String::new(), "utf8"));
    }

    #[test]
    fn a_view_becomes_a_row_with_every_field() {
        let r = MessageRow::from(&view());
        assert_eq!(r.tag.as_deref(), Some("tagA"));
        assert_eq!(r.store_time, "2023-11-14T22:13:20.123Z");
        assert_eq!(r.message_type, "NORMAL");
        assert_eq!(r.body_encoding, "identity");
        assert_eq!(r.delivery_timestamp_ms, None);
        assert_eq!(r.message_group, None);
        assert_eq!(r.body_size, 11);
        let v: serde_json::Value =
            serde_json::from_str(&render_list(std::slice::from_ref(&r), Format::Json)).unwrap();
        assert_eq!(v[0]["properties"]["a"], "1");
        assert_eq!(v[0]["delivery_attempts"]["G"], 2);
        assert_eq!(v[0]["keys"][1], "k2");
        assert_eq!(v[0]["body"], "hello\nworld");
        assert_eq!(v[0]["body_format"], "utf8");
        assert_eq!(r.cells().len(), MessageRow::headers().len());
        let table = render_list(&[r], Format::Table);
        let line = table.lines().nth(1).unwrap();
        assert!(line.contains("k1,k2") && line.contains("G=2"), "{table}");
        assert!(line.contains("a=1"), "user properties shown: {table}");
        assert!(line.ends_with("hello\\nworld"), "{table}");
        assert_eq!(MessageRow::headers().len(), 11);
    }

    #[test]
    fn long_bodies_are_cut_in_tables() {
        let cell = short_body(&"x".repeat(100));
        assert_eq!(cell.len(), TABLE_BODY_CHARS + 3);
        assert!(cell.ends_with("..."));
    }

    #[test]
    fn an_empty_read_names_the_offsets_there_are() {
        let bounds = [
            cluster::QueueBounds {
                broker_name: "b1".into(),
                min_offset: 3,
                next_offset: 10,
            },
            cluster::QueueBounds {
                broker_name: "b2".into(),
                min_offset: 0,
                next_offset: 0,
            },
        ];
        assert_eq!(
            empty_queue_note("T", 1, &bounds),
            "no messages at the requested offsets of T queue 1 (b1: offsets 3..9; b2: empty)"
        );
    }
}

//! `apogee topic status`: per queue of a topic on every broker group, the first offset still
//! stored, the next offset, the messages between them and the last store time.

use crate::admin::{check_topic_name, Admin};
use crate::error::ToolResult;
use crate::message_query::rfc3339;
use crate::output::TableRow;
use apogee_proto::cluster;
use serde::Serialize;

/// One queue of the topic on one broker group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct QueueStatusRow {
    pub broker: String,
    pub queue: u32,
    /// First offset still stored (retention moves it up).
    pub min_offset: u64,
    /// Next offset to be assigned.
    pub max_offset: u64,
    /// Messages stored: max_offset - min_offset.
    pub messages: u64,
    /// Store time of the last message (RFC 3339), none for an empty queue.
    pub last_store_time: Option<String>,
}

impl TableRow for QueueStatusRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "BROKER",
            "QUEUE",
            "MIN OFFSET",
            "MAX OFFSET",
            "MESSAGES",
            "LAST STORED",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.broker.clone(),
            self.queue.to_string(),
            self.min_offset.to_string(),
            self.max_offset.to_string(),
            self.messages.to_string(),
            self.last_store_time.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}

pub fn rows(resp: cluster::TopicStatusResponse) -> Vec<QueueStatusRow> {
    resp.queues
        .into_iter()
        .map(|q| QueueStatusRow {
            messages: q.max_offset.saturating_sub(q.min_offset),
            last_store_time: (q.last_store_ms > 0).then(|| rfc3339(q.last_store_ms)),
            broker: q.broker_name,
            queue: q.queue_id,
            min_offset: q.min_offset,
            max_offset: q.max_offset,
        })
        .collect()
}

impl Admin {
    /// Every queue of `name` on every broker group hosting it.
    pub async fn topic_status(&self, name: &str) -> ToolResult<Vec<QueueStatusRow>> {
        check_topic_name(name)?;
        let resp = self
            .admin
            .clone()
            .topic_status(self.req(cluster::TopicStatusRequest {
                topic: name.to_string(),
            }))
            .await
            .map_err(self.err(Some(name)))?
            .into_inner();
        Ok(rows(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_messages_and_mark_empty_queues() {
        let resp = cluster::TopicStatusResponse {
            queues: vec![
                cluster::QueueStatus {
                    broker_name: "b".into(),
                    queue_id: 0,
                    min_offset: 10,
                    max_offset: 25,
                    last_store_ms: 1_700_000_000_000,
                },
                cluster::QueueStatus {
                    broker_name: "b".into(),
                    queue_id: 1,
                    ..Default::default()
                },
            ],
        };
        let r = rows(resp);
        assert_eq!(r[0].messages, 15);
        assert_eq!(
            r[0].last_store_time.as_deref(),
            Some("2023-11-14T22:13:20.000Z")
        );
        assert_eq!((r[1].messages, r[1].last_store_time.as_ref()), (0, None));
        assert_eq!(r[1].cells()[5], "-");
    }
}

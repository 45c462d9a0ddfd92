//! `apogee lite list|describe`: the lite topics (RIP-83) of a LITE parent topic, from the
//! broker group hosting it (through a NameServer): backlog and subscribers of each, and for
//! one lite topic its offsets and, per consumer group, position, lag, deliveries in flight
//! and subscribers.

use crate::admin::Admin;
use crate::error::ToolResult;
use crate::output::TableRow;
use apogee_proto::cluster;
use serde::Serialize;

/// One lite topic of a listing.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LiteTopicRow {
    pub lite_topic: String,
    pub broker: String,
    pub min_offset: u64,
    pub next_offset: u64,
    /// Unix ms of its newest stored message; None when none is stored.
    pub last_store_ms: Option<i64>,
    pub backlog: u64,
    pub subscribers: u32,
}

impl TableRow for LiteTopicRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "LITE TOPIC",
            "BACKLOG",
            "SUBSCRIBERS",
            "MIN",
            "NEXT",
            "LAST STORED (MS)",
            "BROKER",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.lite_topic.clone(),
            self.backlog.to_string(),
            self.subscribers.to_string(),
            self.min_offset.to_string(),
            self.next_offset.to_string(),
            self.last_store_ms
                .map_or_else(|| "-".to_string(), |ms| ms.to_string()),
            self.broker.clone(),
        ]
    }
}

/// One consumer group's state in a lite topic.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LiteGroupRow {
    pub group: String,
    pub committed_offset: u64,
    pub lag: u64,
    pub inflight: u32,
    pub subscribers: Vec<String>,
}

impl TableRow for LiteGroupRow {
    fn headers() -> Vec<&'static str> {
        vec!["GROUP", "COMMITTED", "LAG", "IN FLIGHT", "SUBSCRIBERS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.group.clone(),
            self.committed_offset.to_string(),
            self.lag.to_string(),
            self.inflight.to_string(),
            if self.subscribers.is_empty() {
                "-".into()
            } else {
                self.subscribers.join(",")
            },
        ]
    }
}

/// `apogee lite describe`'s result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LiteDescription {
    pub lite_topic: Option<LiteTopicRow>,
    pub groups: Vec<LiteGroupRow>,
}

fn topic_row(s: cluster::LiteTopicSummary) -> LiteTopicRow {
    LiteTopicRow {
        lite_topic: s.lite_topic,
        broker: s.broker_name,
        min_offset: s.min_offset,
        next_offset: s.next_offset,
        last_store_ms: (s.last_store_ms > 0).then_some(s.last_store_ms),
        backlog: s.backlog,
        subscribers: s.subscribers,
    }
}

impl Admin {
    /// One page of `parent`'s lite topics and the `after` of the next page (None: the last).
    pub async fn list_lite_topics(
        &self,
        parent: &str,
        group: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> ToolResult<(Vec<LiteTopicRow>, Option<String>)> {
        let resp = self
            .admin
            .clone()
            .list_lite_topics(self.req(cluster::ListLiteTopicsRequest {
                parent: parent.to_string(),
                group: group.unwrap_or_default().to_string(),
                after: after.unwrap_or_default().to_string(),
                limit: limit.unwrap_or(0),
            }))
            .await
            .map_err(self.err(Some(parent)))?
            .into_inner();
        let next = (!resp.next_after.is_empty()).then_some(resp.next_after);
        Ok((resp.lite_topics.into_iter().map(topic_row).collect(), next))
    }

    /// One lite topic of `parent`.
    pub async fn describe_lite_topic(
        &self,
        parent: &str,
        lite: &str,
        group: Option<&str>,
    ) -> ToolResult<LiteDescription> {
        let resp = self
            .admin
            .clone()
            .describe_lite_topic(self.req(cluster::DescribeLiteTopicRequest {
                parent: parent.to_string(),
                lite_topic: lite.to_string(),
                group: group.unwrap_or_default().to_string(),
            }))
            .await
            .map_err(self.err(Some(parent)))?
            .into_inner();
        Ok(LiteDescription {
            lite_topic: resp.lite_topic.map(topic_row),
            groups: resp
                .groups
                .into_iter()
                .map(|g| LiteGroupRow {
                    group: g.group,
                    committed_offset: g.committed_offset,
                    lag: g.lag,
                    inflight: g.inflight,
                    subscribers: g.subscribers,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_dashes_for_what_is_missing() {
        let row = topic_row(cluster::LiteTopicSummary {
            lite_topic: "s1".into(),
            broker_name: "broker-a".into(),
            min_offset: 2,
            next_offset: 5,
            last_store_ms: 0,
            backlog: 3,
            subscribers: 1,
        });
        assert_eq!(row.last_store_ms, None);
        assert_eq!(row.cells(), vec!["s1", "3", "1", "2", "5", "-", "broker-a"]);
        let g = LiteGroupRow {
            group: "g".into(),
            committed_offset: 4,
            lag: 1,
            inflight: 1,
            subscribers: vec![],
        };
        assert_eq!(g.cells(), vec!["g", "4", "1", "1", "-"]);
    }
}

//! The traffic history behind `apogee stats traffic` and the console's rates page: messages
//! in per topic and out per topic and consumer group, per 10 s over the last hour, as every
//! live broker counts them (masters and slaves), summed by the NameServer. [`Admin::
//! traffic_history`] returns the buckets; the command prints per series the rate over the last
//! minute and the messages in the hour.

use crate::admin::Admin;
use crate::error::ToolResult;
use crate::output::TableRow;
use apogee_proto::cluster::{self, TrafficDirection};
use serde::Serialize;

/// Which way a series' messages went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Stored in the topic.
    In,
    /// Delivered to the group.
    Out,
}

/// One series of the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficSeries {
    pub direction: Direction,
    pub topic: String,
    /// The consumer group (out); None for in.
    pub group: Option<String>,
    /// Messages per bucket, oldest first: `bucket_count` of them, the last one the current
    /// bucket, ending at the history's `newest_end_ms`.
    pub counts: Vec<u64>,
}

/// The cluster's traffic over the last hour.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficHistory {
    pub bucket_secs: u32,
    /// Unix ms at which the newest (current) bucket ends; it is counted up to `sampled_at_ms`.
    pub newest_end_ms: i64,
    pub sampled_at_ms: i64,
    pub series: Vec<TrafficSeries>,
    /// Samples a broker could not keep (it tracks its maximum of series): traffic missing.
    pub untracked_samples: u64,
}

impl TrafficHistory {
    fn from_wire(r: cluster::TrafficHistoryResponse) -> TrafficHistory {
        let width = r.bucket_count as usize;
        let series = r
            .series
            .into_iter()
            .map(|s| {
                let out = s.direction == TrafficDirection::TrafficOut as i32;
                // The wire leaves out the oldest buckets without traffic.
                let mut counts = vec![0; width.saturating_sub(s.counts.len())];
                counts.extend(s.counts.iter().rev().take(width).rev());
                TrafficSeries {
                    direction: if out { Direction::Out } else { Direction::In },
                    topic: s.topic,
                    group: (out || !s.group.is_empty()).then_some(s.group),
                    counts,
                }
            })
            .collect();
        TrafficHistory {
            bucket_secs: r.bucket_secs,
            newest_end_ms: r.newest_end_ms,
            sampled_at_ms: r.sampled_at_ms,
            series,
            untracked_samples: r.untracked_samples,
        }
    }

    /// Messages per second of `series` over about the last `secs` seconds: the newest buckets
    /// covering them, divided by the time they cover up to the sample (the newest bucket is
    /// partial).
    pub fn rate(&self, series: &TrafficSeries, secs: u32) -> f64 {
        let width = u64::from(self.bucket_secs.max(1));
        let buckets = u64::from(secs).div_ceil(width).max(1) as usize;
        let counted: u64 = series.counts.iter().rev().take(buckets).sum();
        let start_ms = self.newest_end_ms - (buckets as i64) * (width as i64) * 1000;
        let covered_ms = (self.sampled_at_ms - start_ms).max(1);
        counted as f64 * 1000.0 / covered_ms as f64
    }

    /// Per series the rate over the last minute and the messages in the hour.
    pub fn rates(&self) -> Vec<TrafficRate> {
        self.series
            .iter()
            .map(|s| TrafficRate {
                direction: s.direction,
                topic: s.topic.clone(),
                group: s.group.clone(),
                per_sec_last_minute: (self.rate(s, 60) * 100.0).round() / 100.0,
                messages_last_hour: s.counts.iter().sum(),
            })
            .collect()
    }
}

/// One series as `apogee stats traffic` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficRate {
    pub direction: Direction,
    pub topic: String,
    pub group: Option<String>,
    /// Messages per second over the last minute, to two decimals.
    pub per_sec_last_minute: f64,
    pub messages_last_hour: u64,
}

impl TableRow for TrafficRate {
    fn headers() -> Vec<&'static str> {
        vec![
            "DIRECTION",
            "TOPIC",
            "GROUP",
            "PER SEC (1M)",
            "MESSAGES (1H)",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            match self.direction {
                Direction::In => "in".into(),
                Direction::Out => "out".into(),
            },
            self.topic.clone(),
            self.group.clone().unwrap_or_else(|| "-".into()),
            format!("{:.2}", self.per_sec_last_minute),
            self.messages_last_hour.to_string(),
        ]
    }
}

impl Admin {
    /// The traffic history of every series (only `topic`'s and/or only deliveries to `group`
    /// when given), sorted by direction, topic and group.
    pub async fn traffic_history(
        &self,
        topic: Option<&str>,
        group: Option<&str>,
    ) -> ToolResult<TrafficHistory> {
        let resp = self
            .admin
            .clone()
            .traffic_history(self.req(cluster::TrafficHistoryRequest {
                topic: topic.unwrap_or_default().to_string(),
                group: group.unwrap_or_default().to_string(),
            }))
            .await
            .map_err(self.err(topic))?
            .into_inner();
        Ok(TrafficHistory::from_wire(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(series: Vec<cluster::TrafficSeries>) -> cluster::TrafficHistoryResponse {
        cluster::TrafficHistoryResponse {
            bucket_secs: 10,
            bucket_count: 8,
            newest_end_ms: 100_000,
            // 5 s into the newest bucket.
            sampled_at_ms: 95_000,
            series,
            untracked_samples: 0,
        }
    }

    #[test]
    fn series_are_padded_to_the_hour_and_rated_over_the_last_minute() {
        let history = TrafficHistory::from_wire(wire(vec![
            cluster::TrafficSeries {
                direction: TrafficDirection::TrafficIn as i32,
                topic: "t".into(),
                group: String::new(),
                counts: vec![100, 0, 0, 0, 0, 0, 0, 110],
            },
            cluster::TrafficSeries {
                direction: TrafficDirection::TrafficOut as i32,
                topic: "t".into(),
                group: "g".into(),
                counts: vec![7, 3],
            },
        ]));
        let out = &history.series[1];
        assert_eq!(out.counts, [0, 0, 0, 0, 0, 0, 7, 3]);
        assert_eq!(out.group.as_deref(), Some("g"));
        assert_eq!(history.series[0].group, None);
        // The last minute: 6 buckets, 5 full and the newest one 5 s in: 55 s.
        assert_eq!(history.rate(&history.series[0], 60), 2.0);
        let rates = history.rates();
        assert_eq!(rates[0].messages_last_hour, 210);
        assert_eq!(rates[1].per_sec_last_minute, 0.18);
        assert_eq!(
            rates[1].cells(),
            ["out", "t", "g", "0.18", "10"].map(String::from)
        );
    }
}

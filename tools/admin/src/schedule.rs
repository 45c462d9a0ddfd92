//! Scheduled delivery in the CLI: `send --delay | --deliver-at | --delay-level` (scheduled
//! sends that print their recall handles), `message recall` and `schedule list` (waiting
//! messages of every broker group by due time, through a NameServer's Admin service) and
//! `schedule stats` (each broker group's counters).

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::message_query::rfc3339;
use crate::messaging::{build_message, producer_for, send_each, SendSpec};
use crate::output::TableRow;
use crate::views::format_ago;
use apogee_client::{ClientConfig, ClientError, Producer};
use apogee_proto::cluster;
use apogee_proto::time::now_ms;
use apogee_proto::v2::Code;
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a scheduled send is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// This long after the send.
    After(Duration),
    /// At this time.
    At(SystemTime),
    /// After one of the 18 classic delay levels.
    Level(u32),
}

/// Parses an RFC 3339 time ("2026-11-22T09:00:00Z", "2026-11-22T10:00:00+01:00").
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}); e.g. 2026-11-22T09:00:00Z"))?;
    let ms = t.timestamp_millis();
    u64::try_from(ms)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .map_err(|_| format!("{s:?} is before 1970"))
}

/// A delay level (1..=18).
pub fn parse_level(s: &str) -> Result<u32, String> {
    let level: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    apogee_proto::delay_level::delay_of(level)
        .map(|_| level)
        .ok_or_else(|| "delay levels run from 1 (1s) to 18 (2h)".to_string())
}

/// One scheduled send.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScheduledSendRow {
    pub message_id: String,
    /// What `apogee message recall` takes.
    pub recall_handle: String,
    /// When it is delivered (RFC 3339).
    pub deliver_at: String,
    pub deliver_at_ms: i64,
    pub broker: String,
}

impl TableRow for ScheduledSendRow {
    fn headers() -> Vec<&'static str> {
        vec!["MESSAGE ID", "DELIVER AT", "RECALL HANDLE", "BROKER"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.message_id.clone(),
            self.deliver_at.clone(),
            self.recall_handle.clone(),
            self.broker.clone(),
        ]
    }
}

/// Sends `count` copies of the message, delivered as `delivery` says; returns the rows of the
/// sends that succeeded (in order, up to the first failure) and that failure.
pub async fn send_scheduled(
    config: ClientConfig,
    spec: &SendSpec,
    delivery: Delivery,
) -> (Vec<ScheduledSendRow>, Option<ToolError>) {
    let producer = match producer_for(config, spec).await {
        Ok(p) => p,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let base = build_message(spec);
    let out = send_each(spec.count, || {
        let producer = producer.clone();
        let mut builder = apogee_client::MessageBuilder::from(base.clone());
        builder = match delivery {
            Delivery::After(d) => builder.deliver_after(d),
            Delivery::At(t) => builder.deliver_at(t),
            Delivery::Level(l) => builder.delay_level(l),
        };
        let message = builder.build();
        async move {
            let at_ms = message
                .delivery_timestamp
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let r = producer
                .send(message)
                .await
                .map_err(|e| refused_delivery_time(e, at_ms, now_ms()))?;
            Ok(ScheduledSendRow {
                message_id: r.message_id,
                recall_handle: r.recall_handle,
                deliver_at: rfc3339(at_ms),
                deliver_at_ms: at_ms,
                broker: r.broker_name,
            })
        }
    })
    .await;
    producer.shutdown().await;
    out
}

/// A delivery time the broker refused (ILLEGAL_DELIVERY_TIME), told with dates instead of
/// epoch milliseconds: the time asked for, the broker's limit (`schedule.max_delay_ms`, read
/// from its answer "... more than N ms from now ...") and the latest time it allows. Other
/// errors pass unchanged.
pub fn refused_delivery_time(e: ClientError, at_ms: i64, now: i64) -> ToolError {
    if e.code() != Some(Code::IllegalDeliveryTime) {
        return e.into();
    }
    let text = e.to_string();
    let limit_ms = text
        .split_once("more than ")
        .and_then(|(_, rest)| rest.split_once(" ms"))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok());
    let asked = format!(
        "delivery time {} (in {})",
        rfc3339(at_ms),
        // To the second: the send took a few milliseconds of the delay asked for.
        crate::duration::display(Duration::from_secs(
            ((at_ms - now).max(0) as u64 + 500) / 1000
        ))
    );
    ToolError::Server(match limit_ms {
        Some(limit) => format!(
            "{asked} is past the limit: at most {} ahead (the broker's schedule.max_delay_ms \
             = {limit}), so no later than {}",
            crate::duration::display(Duration::from_millis(limit)),
            rfc3339(now.saturating_add(limit as i64))
        ),
        None => format!("{asked} refused: {text}"),
    })
}

/// A recalled message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RecallRow {
    pub message_id: String,
    pub recall_handle: String,
    pub state: String,
}

impl TableRow for RecallRow {
    fn headers() -> Vec<&'static str> {
        vec!["MESSAGE ID", "RECALL HANDLE", "STATE"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.message_id.clone(),
            self.recall_handle.clone(),
            self.state.clone(),
        ]
    }
}

/// Recalls a scheduled message of `topic` before its time.
pub async fn recall(config: ClientConfig, topic: &str, handle: &str) -> ToolResult<RecallRow> {
    if handle.trim().is_empty() {
        return Err(ToolError::Usage("the recall handle is empty".into()));
    }
    let producer = Producer::connect(config).await?;
    let result = producer.recall(topic, handle).await;
    producer.shutdown().await;
    Ok(RecallRow {
        message_id: result?,
        recall_handle: handle.to_string(),
        state: "RECALLED".into(),
    })
}

/// A waiting message as `schedule list` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScheduledRow {
    pub topic: String,
    pub message_id: String,
    /// When it is due (RFC 3339).
    pub due: String,
    pub due_ms: i64,
    /// How long until it is due (0 when overdue).
    pub due_in_ms: i64,
    /// How long ago it was stored.
    pub age_ms: i64,
    pub queue_id: i32,
    pub recall_handle: String,
    pub broker: String,
}

impl TableRow for ScheduledRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "TOPIC",
            "MESSAGE ID",
            "DUE",
            "DUE IN",
            "AGE",
            "RECALL HANDLE",
            "BROKER",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.topic.clone(),
            self.message_id.clone(),
            self.due.clone(),
            format_ago(self.due_in_ms),
            format_ago(self.age_ms),
            self.recall_handle.clone(),
            self.broker.clone(),
        ]
    }
}

/// A row from a ScheduledInfo, `now` in Unix ms.
pub fn scheduled_row(s: &cluster::ScheduledInfo, now: i64) -> ScheduledRow {
    ScheduledRow {
        topic: s.topic.clone(),
        message_id: s.message_id.clone(),
        due: rfc3339(s.due_ms),
        due_ms: s.due_ms,
        due_in_ms: (s.due_ms - now).max(0),
        age_ms: (now - s.store_timestamp_ms).max(0),
        queue_id: s.queue_id,
        recall_handle: s.recall_handle.clone(),
        broker: s.broker_name.clone(),
    }
}

/// One broker group's scheduled-delivery counters (`schedule stats`), since it started.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StatsRow {
    pub broker: String,
    pub waiting: u64,
    pub delivered: u64,
    pub recalled: u64,
    pub dropped: u64,
    /// Mean and worst lateness of deliveries (publish time minus due time), in ms.
    pub mean_lateness_ms: u64,
    pub max_lateness_ms: u64,
    /// Deliveries more than one second late.
    pub late_over_1s: u64,
}

impl From<&cluster::ScheduleStats> for StatsRow {
    fn from(s: &cluster::ScheduleStats) -> Self {
        StatsRow {
            broker: s.broker_name.clone(),
            waiting: s.waiting,
            delivered: s.delivered,
            recalled: s.recalled,
            dropped: s.dropped,
            mean_lateness_ms: s.lateness_sum_ms.checked_div(s.delivered).unwrap_or(0),
            max_lateness_ms: s.lateness_max_ms,
            late_over_1s: s.late_over_1s,
        }
    }
}

impl TableRow for StatsRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "BROKER",
            "WAITING",
            "DELIVERED",
            "RECALLED",
            "DROPPED",
            "MEAN LATE MS",
            "MAX LATE MS",
            "LATE > 1S",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let mut cells = vec![self.broker.clone()];
        cells.extend(
            [
                self.waiting,
                self.delivered,
                self.recalled,
                self.dropped,
                self.mean_lateness_ms,
                self.max_lateness_ms,
                self.late_over_1s,
            ]
            .map(|n| n.to_string()),
        );
        cells
    }
}

impl Admin {
    async fn scheduled(
        &self,
        topic: Option<&str>,
        limit: u32,
    ) -> ToolResult<cluster::ListScheduledResponse> {
        Ok(self
            .admin
            .clone()
            .list_scheduled(self.req(cluster::ListScheduledRequest {
                topic: topic.unwrap_or_default().to_string(),
                limit,
            }))
            .await
            .map_err(self.err(None))?
            .into_inner())
    }

    /// Every broker group's scheduled-delivery counters.
    pub async fn schedule_stats(&self) -> ToolResult<Vec<StatsRow>> {
        let resp = self.scheduled(None, 1).await?;
        Ok(resp.stats.iter().map(StatsRow::from).collect())
    }

    /// Waiting messages of every broker group, earliest due first: only `topic`'s when given,
    /// at most `limit` (the servers' default cap per broker group when `None`).
    pub async fn list_scheduled(
        &self,
        topic: Option<&str>,
        limit: Option<u32>,
    ) -> ToolResult<Vec<ScheduledRow>> {
        let resp = self.scheduled(topic, limit.unwrap_or(0)).await?;
        let now = now_ms();
        let mut rows: Vec<ScheduledRow> = resp
            .messages
            .iter()
            .map(|s| scheduled_row(s, now))
            .collect();
        if let Some(n) = limit {
            rows.truncate(n as usize);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_times_and_levels_parse() {
        let t = parse_time("2026-11-22T10:00:00+01:00").unwrap();
        assert_eq!(
            rfc3339(t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64),
            "2026-11-22T09:00:00.000Z"
        );
        assert!(parse_time("tomorrow").is_err());
        assert_eq!(parse_level("18"), Ok(18));
        assert!(parse_level("0").is_err());
        assert!(parse_level("19").is_err());
    }

    #[test]
    fn a_refused_delivery_time_is_shown_as_dates_and_the_limit() {
        let now = 1_800_000_000_000;
        let at = now + 30 * 86_400_000;
        let server = ClientError::Server(apogee_proto::ApogeeError::IllegalDeliveryTime(format!(
            "delivery time {at} ms is more than 604800000 ms from now (the broker's \
             schedule.max_delay_ms)"
        )));
        let text = refused_delivery_time(server, at, now).to_string();
        assert_eq!(
            text,
            "delivery time 2027-02-14T08:00:00.000Z (in 30d) is past the limit: at most 7d \
             ahead (the broker's schedule.max_delay_ms = 604800000), so no later than \
             2027-01-22T08:00:00.000Z"
        );
        assert!(!text.contains(&at.to_string()), "{text}");
        let other = refused_delivery_time(ClientError::Timeout, at, now);
        assert_eq!(other.to_string(), "request timed out");
    }

    #[test]
    fn waiting_messages_show_due_time_and_age() {
        let info = cluster::ScheduledInfo {
            recall_handle: "R1-x-b".into(),
            topic: "orders".into(),
            queue_id: 2,
            message_id: "M1".into(),
            due_ms: 1_800_000_030_000,
            store_timestamp_ms: 1_799_999_990_000,
            broker_name: "broker-a".into(),
        };
        let row = scheduled_row(&info, 1_800_000_000_000);
        assert_eq!((row.due_in_ms, row.age_ms), (30_000, 10_000));
        assert_eq!(row.due, "2027-01-15T08:00:30.000Z");
        assert_eq!(row.cells()[3], "30.0s");
    }
}

//! `apogee group reset-offset` (mqadmin's resetOffsetByTime): moves a consumer
//! group's position on a topic, on every broker group hosting it, to the
//! earliest stored message, the end, or the first message stored at or after a
//! time. A dry run by default: it returns the per-queue plan; executed, it
//! applies it. In-flight deliveries of the group on those queues are dropped.

use crate::admin::{check_topic_name, Admin};
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use apogee_proto::cluster::{self, reset_group_offset_request::To};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a reset moves the group's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// Each queue's first stored message (everything stored is delivered again).
    Earliest,
    /// Each queue's end (only messages sent from now on are delivered).
    Latest,
    /// The first message stored at or after this time.
    Time(SystemTime),
}

/// A reset of a consumer group's offsets on a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOffset {
    /// The consumer group.
    pub group: String,
    /// The topic whose offsets move.
    pub topic: String,
    pub to: ResetTo,
    /// Apply the plan (without it, the plan is only computed and nothing changes).
    pub execute: bool,
}

impl ResetTo {
    fn to_proto(self) -> ToolResult<To> {
        match self {
            ResetTo::Earliest => Ok(To::Earliest(true)),
            ResetTo::Latest => Ok(To::Latest(true)),
            ResetTo::Time(at) => {
                let ms = at
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| ToolError::Usage("--to-time is before 1970".into()))?
                    .as_millis();
                Ok(To::TimestampMs(ms.min(i64::MAX as u128) as i64))
            }
        }
    }
}

/// One queue of the plan.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ResetRow {
    pub broker: String,
    pub queue: u32,
    /// The group's committed offset now.
    pub current_offset: u64,
    pub new_offset: u64,
    /// new - current: negative moves back (delivered again), positive skips.
    pub change: i64,
    /// Deliveries in flight the reset drops.
    pub inflight: u64,
}

impl TableRow for ResetRow {
    fn headers() -> Vec<&'static str> {
        vec!["BROKER", "QUEUE", "CURRENT", "NEW", "CHANGE", "IN FLIGHT"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.broker.clone(),
            self.queue.to_string(),
            self.current_offset.to_string(),
            self.new_offset.to_string(),
            format!("{:+}", self.change),
            self.inflight.to_string(),
        ]
    }
}

/// The plan's rows, one per queue.
pub fn rows(resp: &cluster::ResetGroupOffsetResponse) -> Vec<ResetRow> {
    resp.queues
        .iter()
        .map(|q| ResetRow {
            broker: q.broker_name.clone(),
            queue: q.queue_id,
            current_offset: q.current_offset,
            new_offset: q.new_offset,
            change: q.new_offset as i64 - q.current_offset as i64,
            inflight: q.inflight,
        })
        .collect()
}

impl Admin {
    /// Asks every broker group hosting the topic for the plan, applying it with `execute`.
    pub async fn reset_offset(
        &self,
        reset: &ResetOffset,
    ) -> ToolResult<cluster::ResetGroupOffsetResponse> {
        check_topic_name(&reset.topic)?;
        let req = cluster::ResetGroupOffsetRequest {
            group: reset.group.clone(),
            topic: reset.topic.clone(),
            to: Some(reset.to.to_proto()?),
            execute: reset.execute,
        };
        Ok(self
            .admin
            .clone()
            .reset_group_offset(self.req(req))
            .await
            .map_err(self.err(Some(&reset.topic)))?
            .into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_is_signed() {
        let resp = cluster::ResetGroupOffsetResponse {
            queues: vec![
                cluster::QueueReset {
                    broker_name: "b".into(),
                    queue_id: 0,
                    current_offset: 30,
                    new_offset: 0,
                    inflight: 5,
                },
                cluster::QueueReset {
                    broker_name: "b".into(),
                    queue_id: 1,
                    current_offset: 2,
                    new_offset: 9,
                    inflight: 0,
                },
            ],
            executed: false,
        };
        let r = rows(&resp);
        assert_eq!(r[0].change, -30);
        assert_eq!(r[0].cells()[4], "-30");
        assert_eq!(r[1].cells()[4], "+7");
    }
}

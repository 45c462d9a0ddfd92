//! `apogee group reset-offset` (mqadmin's resetOffsetByTime): moves a consumer
//! group's position on a topic, on every broker group hosting it, to the
//! earliest stored message, the end, or the first message stored at or after a
//! time. A dry run by default: it prints the per-queue plan; `--execute`
//! applies it. In-flight deliveries of the group on those queues are dropped.

use crate::admin::{check_topic_name, Admin};
use crate::error::{ToolError, ToolResult};
use crate::output::{render_list, Format, TableRow};
use apogee_proto::cluster::{self, reset_group_offset_request::To};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("to").required(true).multiple(false))]
pub struct ResetOffsetArgs {
    /// The consumer group.
    #[arg(value_parser = crate::cli::group_name)]
    pub group: String,
    /// The topic whose offsets move.
    #[arg(long, value_parser = crate::cli::topic_name)]
    pub topic: String,
    /// To each queue's first stored message (everything stored is delivered again).
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// To each queue's end (only messages sent from now on are delivered).
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// To the first message stored at or after this time (RFC 3339, e.g.
    /// 2026-11-22T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = crate::schedule::parse_time, group = "to")]
    pub to_time: Option<SystemTime>,
    /// Apply the plan (without it, only the plan is printed and nothing changes).
    #[arg(long)]
    pub execute: bool,
}

impl ResetOffsetArgs {
    fn target(&self) -> ToolResult<To> {
        if self.to_earliest {
            return Ok(To::Earliest(true));
        }
        if self.to_latest {
            return Ok(To::Latest(true));
        }
        let at = self.to_time.ok_or_else(|| {
            ToolError::Usage("give --to-earliest, --to-latest or --to-time".into())
        })?;
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ToolError::Usage("--to-time is before 1970".into()))?
            .as_millis();
        Ok(To::TimestampMs(ms.min(i64::MAX as u128) as i64))
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

/// The plan (or what was applied) as JSON shows it.
#[derive(Debug, Serialize)]
struct ResetResult<'a> {
    group: &'a str,
    topic: &'a str,
    executed: bool,
    queues: &'a [ResetRow],
}

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
        args: &ResetOffsetArgs,
    ) -> ToolResult<cluster::ResetGroupOffsetResponse> {
        check_topic_name(&args.topic)?;
        let req = cluster::ResetGroupOffsetRequest {
            group: args.group.clone(),
            topic: args.topic.clone(),
            to: Some(args.target()?),
            execute: args.execute,
        };
        Ok(self
            .admin
            .clone()
            .reset_group_offset(self.req(req))
            .await
            .map_err(self.err(Some(&args.topic)))?
            .into_inner())
    }
}

/// Runs `apogee group reset-offset`.
pub async fn run(admin: &Admin, args: &ResetOffsetArgs, f: Format) -> ToolResult<String> {
    let resp = admin.reset_offset(args).await?;
    let rows = rows(&resp);
    Ok(match f {
        Format::Json | Format::Jsonl => {
            let result = ResetResult {
                group: &args.group,
                topic: &args.topic,
                executed: resp.executed,
                queues: &rows,
            };
            crate::output::render_value(&result, f).unwrap_or_default()
        }
        Format::Table => {
            let mut out = render_list(&rows, f);
            out.push_str(if resp.executed {
                "Applied.\n"
            } else {
                "Dry run: nothing changed. Run again with --execute to apply this plan.\n"
            });
            out
        }
    })
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

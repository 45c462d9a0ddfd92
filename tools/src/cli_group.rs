//! `apogee group ...`: the arguments of the consumer group commands (`reset-offset` among
//! them), turned into the admin library's settings ([`apogee_admin::group`],
//! [`apogee_admin::reset_offset`]), and what each command prints.

use crate::cli::{group_name, topic_name};
use crate::spelled_arg::spelled;
use apogee_admin::admin::Admin;
use apogee_admin::error::{ToolError, ToolResult};
use apogee_admin::group::{
    max_attempts, parse_custom, parse_exponential, render_description, GroupSettings, LiteModeArg,
};
use apogee_admin::output::{render_list, render_one, render_value, Format};
use apogee_admin::reset_offset::{rows, ResetOffset, ResetRow, ResetTo};
use apogee_proto::group::RetryPolicy;
use serde::Serialize;
use std::time::SystemTime;

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create a consumer group on every broker group (unset settings take the defaults:
    /// 16 attempts, RocketMQ's 1s 5s 10s 30s 1m ... 2h backoff, not FIFO).
    Create {
        /// The group's name.
        name: String,
        #[command(flatten)]
        settings: GroupSettingsArgs,
        /// When the group exists (a consumer's first receive creates it), change the
        /// settings given instead of failing, as `group update` does.
        #[arg(long)]
        update_if_exists: bool,
    },
    /// Change a group's settings, keeping the ones not given.
    Update {
        /// The group's name.
        name: String,
        #[command(flatten)]
        settings: GroupSettingsArgs,
    },
    /// Delete a group: its config, offsets and in-flight deliveries.
    Delete {
        /// The group's name.
        name: String,
    },
    /// List every consumer group.
    List {
        /// Add each group's lag (messages not acknowledged) and in-flight count over every
        /// broker group, largest lag first.
        #[arg(long)]
        lag: bool,
    },
    /// A group's settings, its progress per queue (offsets, lag, in flight, last consume
    /// time) and its connected clients.
    Describe {
        /// The group's name.
        name: String,
    },
    /// Move the group's offsets on a topic to the earliest or latest message or to a time;
    /// prints the per-queue plan, and applies it with --execute.
    ResetOffset(ResetOffsetArgs),
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct GroupSettingsArgs {
    /// Deliveries before a message goes to the group's dead-letter topic %DLQ%<group>.
    #[arg(long, value_name = "N", value_parser = max_attempts)]
    pub max_attempts: Option<u32>,
    /// Exponential backoff between deliveries: INITIAL,MAX[,MULTIPLIER] (e.g. 1s,5m or
    /// 500ms,1m,1.5; the multiplier defaults to 2).
    #[arg(long, value_name = "INITIAL,MAX[,MULT]", value_parser = parse_exponential,
          conflicts_with = "retry_custom")]
    pub retry_exponential: Option<RetryPolicy>,
    /// Backoff before each redelivery, one step per attempt, the last repeating
    /// (e.g. 1s,5s,30s,2m).
    #[arg(long, value_name = "STEPS", value_parser = parse_custom)]
    pub retry_custom: Option<RetryPolicy>,
    /// Hand out the messages of one message group one at a time, in order (`--fifo` alone
    /// is `--fifo true`).
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub fifo: Option<bool>,
    /// Make it a lite consumer group bound to the LITE parent topic TOPIC (its clients
    /// subscribe lite topics under it).
    #[arg(long, value_name = "TOPIC")]
    pub lite_bind: Option<String>,
    /// How a lite group's clients share a lite topic: `shared` (default) or `exclusive` (a
    /// new subscriber evicts the old one).
    #[arg(long, value_parser = spelled::<LiteModeArg>(), value_name = "MODE")]
    pub lite_mode: Option<LiteModeArg>,
    /// Most lite topics one client of a lite group may subscribe (0: the broker's default).
    #[arg(long, value_name = "N")]
    pub lite_quota: Option<u32>,
    /// Ignore message priority on PRIORITY topics: queues in plain rotation (`--priority-off`
    /// alone is `--priority-off true`).
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub priority_off: Option<bool>,
}

impl GroupSettingsArgs {
    /// The settings these flags give.
    pub fn settings(&self) -> GroupSettings {
        GroupSettings {
            max_attempts: self.max_attempts,
            retry_exponential: self.retry_exponential.clone(),
            retry_custom: self.retry_custom.clone(),
            fifo: self.fifo,
            lite_bind: self.lite_bind.clone(),
            lite_mode: self.lite_mode,
            lite_quota: self.lite_quota,
            priority_off: self.priority_off,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("to").required(true).multiple(false))]
pub struct ResetOffsetArgs {
    /// The consumer group.
    #[arg(value_parser = group_name)]
    pub group: String,
    /// The topic whose offsets move.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// To each queue's first stored message (everything stored is delivered again).
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// To each queue's end (only messages sent from now on are delivered).
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// To the first message stored at or after this time (RFC 3339, e.g.
    /// 2026-11-22T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = apogee_admin::schedule::parse_time, group = "to")]
    pub to_time: Option<SystemTime>,
    /// Apply the plan (without it, only the plan is printed and nothing changes).
    #[arg(long)]
    pub execute: bool,
}

impl ResetOffsetArgs {
    /// The reset these arguments ask for.
    pub fn reset(&self) -> ToolResult<ResetOffset> {
        let to = match (self.to_earliest, self.to_latest, self.to_time) {
            (true, _, _) => ResetTo::Earliest,
            (false, true, _) => ResetTo::Latest,
            (false, false, Some(at)) => ResetTo::Time(at),
            (false, false, None) => {
                return Err(ToolError::Usage(
                    "give --to-earliest, --to-latest or --to-time".into(),
                ))
            }
        };
        Ok(ResetOffset {
            group: self.group.clone(),
            topic: self.topic.clone(),
            to,
            execute: self.execute,
        })
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

/// Runs `apogee group reset-offset`.
async fn reset_offset(admin: &Admin, args: &ResetOffsetArgs, f: Format) -> ToolResult<String> {
    let resp = admin.reset_offset(&args.reset()?).await?;
    let rows = rows(&resp);
    Ok(match f {
        Format::Json | Format::Jsonl => {
            let result = ResetResult {
                group: &args.group,
                topic: &args.topic,
                executed: resp.executed,
                queues: &rows,
            };
            render_value(&result, f).unwrap_or_default()
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

/// Runs a `group` command; returns what to print.
pub async fn run(admin: &Admin, cmd: &GroupCommand, f: Format) -> ToolResult<String> {
    match cmd {
        GroupCommand::ResetOffset(args) => reset_offset(admin, args, f).await,
        GroupCommand::Create {
            name,
            settings,
            update_if_exists,
        } => Ok(render_one(
            &admin
                .create_group(name, &settings.settings(), *update_if_exists)
                .await?,
            f,
        )),
        GroupCommand::Update { name, settings } => Ok(render_one(
            &admin.update_group(name, &settings.settings()).await?,
            f,
        )),
        GroupCommand::Delete { name } => Ok(render_one(&admin.delete_group(name).await?, f)),
        GroupCommand::List { lag: true } => Ok(render_list(&admin.group_lags().await?, f)),
        GroupCommand::List { lag: false } => Ok(render_list(&admin.list_groups().await?, f)),
        GroupCommand::Describe { name } => {
            Ok(render_description(&admin.describe_group(name).await?, f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Args {
        #[command(subcommand)]
        command: GroupCommand,
    }

    fn parse(args: &[&str]) -> GroupCommand {
        Args::try_parse_from(std::iter::once("group").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn fifo_alone_means_true_and_takes_a_value_too() {
        let fifo_of = |args: &[&str]| match parse(args) {
            GroupCommand::Create { settings, .. } | GroupCommand::Update { settings, .. } => {
                settings.fifo
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(fifo_of(&["create", "g", "--fifo"]), Some(true));
        assert_eq!(
            fifo_of(&["create", "g", "--fifo", "--max-attempts", "3"]),
            Some(true)
        );
        assert_eq!(fifo_of(&["create", "g", "--fifo", "true"]), Some(true));
        assert_eq!(fifo_of(&["update", "g", "--fifo", "false"]), Some(false));
        assert_eq!(fifo_of(&["update", "g", "--fifo=false"]), Some(false));
        assert_eq!(fifo_of(&["create", "g"]), None);
        match parse(&["create", "g", "--update-if-exists"]) {
            GroupCommand::Create {
                update_if_exists, ..
            } => assert!(update_if_exists),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reset_flags_name_one_target() {
        let reset = |args: &[&str]| match parse(args) {
            GroupCommand::ResetOffset(a) => a.reset().unwrap(),
            other => panic!("{other:?}"),
        };
        let latest = reset(&[
            "reset-offset",
            "g",
            "--topic",
            "t",
            "--to-latest",
            "--execute",
        ]);
        assert_eq!((latest.to, latest.execute), (ResetTo::Latest, true));
        let at = reset(&[
            "reset-offset",
            "g",
            "--topic",
            "t",
            "--to-time",
            "1970-01-01T00:00:01Z",
        ]);
        assert_eq!(
            at.to,
            ResetTo::Time(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
        );
        assert!(!at.execute);
    }
}

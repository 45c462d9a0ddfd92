//! `apogee lite list|describe`: their arguments and what they print, over the admin library's
//! lite topics ([`apogee_admin::lite`]).

use crate::cli::{group_name, topic_name};
use apogee_admin::admin::Admin;
use apogee_admin::error::ToolResult;
use apogee_admin::output::{render_list, render_value, Format};

#[derive(Debug, clap::Subcommand)]
pub enum LiteCommand {
    /// A LITE parent's lite topics (one page): backlog, subscribers, offsets.
    List {
        /// The LITE parent topic.
        #[arg(value_parser = topic_name)]
        parent: String,
        /// Backlog and subscribers of this consumer group (default: what is stored, every
        /// group's subscribers).
        #[arg(long, value_parser = group_name)]
        group: Option<String>,
        /// The page after this lite topic (the last one of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// One lite topic: offsets, and per group its position, lag, in flight and subscribers.
    Describe {
        /// The LITE parent topic.
        #[arg(value_parser = topic_name)]
        parent: String,
        /// The lite topic.
        lite: String,
        /// Only this consumer group.
        #[arg(long, value_parser = group_name)]
        group: Option<String>,
    },
}

/// Runs `apogee lite ...`.
pub async fn run(admin: &Admin, cmd: &LiteCommand, f: Format) -> ToolResult<String> {
    match cmd {
        LiteCommand::List {
            parent,
            group,
            after,
            limit,
        } => {
            let (rows, next) = admin
                .list_lite_topics(parent, group.as_deref(), after.as_deref(), *limit)
                .await?;
            let mut out = render_list(&rows, f);
            if let (Some(next), Format::Table) = (next, f) {
                out.push_str(&format!("(more: --after {next})\n"));
            }
            Ok(out)
        }
        LiteCommand::Describe {
            parent,
            lite,
            group,
        } => {
            let d = admin
                .describe_lite_topic(parent, lite, group.as_deref())
                .await?;
            if let Some(json) = render_value(&d, f) {
                return Ok(json);
            }
            let mut out = render_list(d.lite_topic.as_slice(), Format::Table);
            out.push('\n');
            out.push_str(&render_list(&d.groups, Format::Table));
            Ok(out)
        }
    }
}

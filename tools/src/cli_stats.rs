//! `apogee stats traffic`: its arguments and what it prints, over the admin library's traffic
//! history ([`apogee_admin::traffic`]).

use crate::cli::{group_name, topic_name};
use apogee_admin::admin::Admin;
use apogee_admin::error::ToolResult;
use apogee_admin::output::{render_list, Format};

#[derive(Debug, clap::Subcommand)]
pub enum StatsCommand {
    /// Messages in per topic and out per topic and consumer group: the rate over the last
    /// minute and the messages in the last hour, from the brokers' own counters.
    Traffic {
        /// Only this topic.
        #[arg(long, value_parser = topic_name)]
        topic: Option<String>,
        /// Only deliveries to this consumer group.
        #[arg(long, value_parser = group_name)]
        group: Option<String>,
    },
}

/// Runs a `stats` command; returns what to print.
pub async fn run(admin: &Admin, cmd: &StatsCommand, f: Format) -> ToolResult<String> {
    match cmd {
        StatsCommand::Traffic { topic, group } => {
            let history = admin
                .traffic_history(topic.as_deref(), group.as_deref())
                .await?;
            let mut text = render_list(&history.rates(), f);
            if history.untracked_samples > 0 && !f.is_json() {
                text.push_str(&format!(
                    "note: the brokers left {} samples out (each tracks at most its maximum of \
                     series): some traffic is missing\n",
                    history.untracked_samples
                ));
            }
            Ok(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_traffic_takes_a_topic_and_a_group() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Args {
            #[command(subcommand)]
            command: StatsCommand,
        }
        let parsed = Args::try_parse_from(["stats", "traffic", "--topic", "t", "--group", "g"])
            .unwrap()
            .command;
        let StatsCommand::Traffic { topic, group } = parsed;
        assert_eq!((topic.as_deref(), group.as_deref()), (Some("t"), Some("g")));
        assert!(Args::try_parse_from(["stats", "traffic", "--topic", "bad topic"]).is_err());
    }
}

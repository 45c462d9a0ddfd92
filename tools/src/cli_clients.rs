//! `apogee clients list`: its arguments and what it prints, over the admin library's
//! connected clients ([`apogee_admin::clients`]).

use crate::cli::{group_name, topic_name};
use apogee_admin::admin::Admin;
use apogee_admin::clients::ClientRow;
use apogee_admin::error::ToolResult;
use apogee_admin::output::{render_list, Format};

#[derive(Debug, clap::Subcommand)]
pub enum ClientsCommand {
    /// Every connected producer and consumer: id, kind, address, language, version,
    /// group or topics, and where its sessions are open.
    List {
        /// Only consumers of this group.
        #[arg(long, value_parser = group_name)]
        group: Option<String>,
        /// Only clients that declared, subscribed to or sent to this topic.
        #[arg(long, value_parser = topic_name)]
        topic: Option<String>,
    },
}

/// Runs `apogee clients ...`.
pub async fn run(admin: &Admin, cmd: &ClientsCommand, f: Format) -> ToolResult<String> {
    match cmd {
        ClientsCommand::List { group, topic } => {
            let rows: Vec<ClientRow> = admin
                .list_clients()
                .await?
                .into_iter()
                .filter(|c| group.is_none() || c.group == *group)
                .filter(|c| topic.as_ref().is_none_or(|t| c.topics.contains(t)))
                .collect();
            Ok(render_list(&rows, f))
        }
    }
}

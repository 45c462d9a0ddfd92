//! `apogee dlq list|resend`: their arguments and what they print, over the admin library's
//! dead letters ([`apogee_admin::dlq`]).

use crate::cli::group_name;
use apogee_admin::admin::Admin;
use apogee_admin::dlq::resend_failures;
use apogee_admin::error::ToolResult;
use apogee_admin::output::{render_list, Format};
use std::io::Write;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// A group's dead letters, oldest first.
    List {
        /// Consumer group.
        #[arg(long, value_parser = group_name)]
        group: String,
        /// Also print each body (UTF-8 text, or hex when it is not UTF-8).
        #[arg(long)]
        show_body: bool,
        /// At most this many per broker group.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Write dead letters back to their original topics (every group of the topic gets them
    /// again); ones resent before are reported and not written twice.
    Resend {
        /// Consumer group.
        #[arg(long, value_parser = group_name)]
        group: String,
        /// Only the dead letter(s) with this message id (default: all of the group).
        #[arg(long)]
        id: Option<String>,
    },
}

/// Runs `apogee dlq ...`, writing its rows to `out`; a resend with failures prints every row,
/// then fails.
pub async fn run<W: Write>(
    admin: &Admin,
    cmd: &DlqCommand,
    f: Format,
    out: &mut W,
) -> ToolResult<()> {
    let (text, error) = match cmd {
        DlqCommand::List {
            group,
            show_body,
            limit,
        } => {
            let rows = admin.list_dead_letters(group, *limit, *show_body).await?;
            (render_list(&rows, f), None)
        }
        DlqCommand::Resend { group, id } => {
            let rows = admin.resend_dead_letters(group, id.as_deref()).await?;
            if rows.is_empty() {
                eprintln!("consumer group {group} has no dead letters");
            }
            (render_list(&rows, f), resend_failures(&rows))
        }
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlq_commands_parse() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
        };
        let cli = parse(&["dlq", "list", "--group", "G", "--show-body"]).unwrap();
        assert!(matches!(cli.command,
            Command::Dlq(DlqCommand::List { group, show_body: true, limit: None }) if group == "G"));
        let cli = parse(&["dlq", "resend", "--group", "G", "--id", "M1"]).unwrap();
        assert!(matches!(cli.command,
            Command::Dlq(DlqCommand::Resend { group, id: Some(id) }) if group == "G" && id == "M1"));
        let cli = parse(&["dlq", "resend", "--group", "G"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Dlq(DlqCommand::Resend { id: None, .. })
        ));
        assert!(parse(&["dlq", "list"]).is_err());
        assert!(parse(&["dlq", "list", "--group", "G", "--limit", "0"]).is_err());
    }
}

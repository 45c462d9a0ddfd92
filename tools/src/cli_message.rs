//! `apogee message get|find|print`: their arguments and what they print, over the admin
//! library's message lookups ([`apogee_admin::message_query`]).

use crate::cli::topic_name;
use apogee_admin::admin::Admin;
use apogee_admin::error::ToolResult;
use apogee_admin::message_query::{empty_queue_note, QueueRead};
use apogee_admin::output::{render_list, Format};

/// `apogee message get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Message id (as printed by `apogee send` or a consumer).
    pub id: String,
}

/// `apogee message find`.
#[derive(Debug, clap::Args)]
pub struct FindArgs {
    /// The topic to search.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Message key.
    #[arg(long)]
    pub key: String,
    /// At most this many per broker group.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// `apogee message print`.
#[derive(Debug, clap::Args)]
pub struct PrintArgs {
    /// The topic to read.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Queue id (queue ids are per broker group).
    #[arg(long)]
    pub queue: u32,
    /// First queue offset to print.
    #[arg(long, default_value_t = 0, value_name = "OFFSET")]
    pub from: u64,
    /// How many messages to print.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: u32,
    /// Broker group to read from (default: every group hosting the topic).
    #[arg(long, value_name = "NAME")]
    pub broker: Option<String>,
}

impl PrintArgs {
    /// The read these arguments ask for.
    pub fn read(&self) -> QueueRead {
        QueueRead {
            topic: self.topic.clone(),
            queue: self.queue,
            from: self.from,
            count: self.count,
            broker: self.broker.clone(),
        }
    }
}

/// `apogee message get`: the rendered rows.
pub async fn get(admin: &Admin, a: &GetArgs, f: Format) -> ToolResult<String> {
    Ok(render_list(&admin.get_message(&a.id).await?, f))
}

/// `apogee message find`: the rendered rows.
pub async fn find(admin: &Admin, a: &FindArgs, f: Format) -> ToolResult<String> {
    Ok(render_list(
        &admin.find_messages(&a.topic, &a.key, a.limit).await?,
        f,
    ))
}

/// `apogee message print`: the rendered rows (a note on stderr when there are none).
pub async fn print(admin: &Admin, a: &PrintArgs, f: Format) -> ToolResult<String> {
    let (rows, bounds) = admin.read_queue(&a.read()).await?;
    if rows.is_empty() {
        eprintln!("{}", empty_queue_note(&a.topic, a.queue, &bounds));
    }
    Ok(render_list(&rows, f))
}

#[cfg(test)]
mod tests {
    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        use clap::Parser;
        crate::cli::Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
    }

    #[test]
    fn message_commands_parse() {
        use crate::cli::{Command, MessageCommand};
        let cli = parse(&["message", "get", "M1", "-o", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Message(MessageCommand::Get(a)) if a.id == "M1"));
        let cli = parse(&["message", "find", "--topic", "T", "--key", "k"]).unwrap();
        assert!(matches!(cli.command,
            Command::Message(MessageCommand::Find(a)) if a.topic == "T" && a.key == "k" && a.limit == 64));
        let cli = parse(&["message", "print", "--topic", "T", "--queue", "2"]).unwrap();
        match cli.command {
            Command::Message(MessageCommand::Print(a)) => {
                assert_eq!((a.queue, a.from, a.count, a.broker), (2, 0, 32, None))
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&[
            "message", "print", "--topic", "T", "--queue", "0", "--from", "5", "--count", "3",
            "--broker", "b2",
        ])
        .unwrap();
        assert!(matches!(cli.command,
            Command::Message(MessageCommand::Print(a)) if a.from == 5 && a.count == 3 && a.broker.as_deref() == Some("b2")));
        assert!(parse(&["message", "get"]).is_err());
        assert!(parse(&["message", "find", "--topic", "T"]).is_err());
        assert!(parse(&["message", "print", "--topic", "T"]).is_err());
        assert!(
            parse(&["message", "print", "--topic", "T", "--queue", "0", "--count", "0"]).is_err()
        );
    }
}

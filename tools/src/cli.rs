//! The `apogee` command line: clap definitions and the dispatcher that runs
//! a parsed command and writes its output.

use crate::admin::{Admin, Perm, TopicType};
use crate::bench;
pub use crate::bench::{BenchCommand, BenchConsumeArgs, BenchProduceArgs};
use crate::error::{ToolError, ToolResult};
use crate::message_query;
use crate::messaging::{self, ConsumeSpec, SendSpec, TxnEnd};
use crate::output::{render_list, render_one, Format, TableRow};
use crate::schedule::{self, Delivery};
use apogee_client::{ClientConfig, FilterExpression};
use apogee_proto::limits;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Apogee admin CLI: topics, cluster, transactions, scheduled messages, send, consume and
/// benchmarks.
#[derive(Debug, Parser)]
#[command(name = "apogee", version, about, propagate_version = true)]
pub struct Cli {
    /// NameServer address (host:port; several separated by ';').
    #[arg(
        long,
        global = true,
        env = "APOGEE_NAMESERVER",
        default_value = "127.0.0.1:9876",
        value_name = "ADDR"
    )]
    pub nameserver: String,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Per-request timeout in seconds.
    #[arg(long, global = true, default_value_t = 5, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, update, list, inspect and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Inspect the cluster's brokers.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List, commit and roll back transactions (half messages).
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Look messages up (by id, key or queue offset) and recall scheduled ones.
    #[command(subcommand)]
    Message(MessageCommand),
    /// A consumer group's dead letters: list them, resend them to their topics.
    #[command(subcommand)]
    Dlq(crate::dlq::DlqCommand),
    /// Create, update, list, describe (offsets, lag, clients) and delete consumer groups.
    #[command(subcommand)]
    Group(crate::group::GroupCommand),
    /// Inspect scheduled (delayed) messages.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Send messages (now, or scheduled with --delay, --deliver-at or --delay-level).
    Send(SendArgs),
    /// Receive, print and acknowledge messages.
    Consume(ConsumeArgs),
    /// Load generators.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Broker configuration: import a RocketMQ broker.conf.
    #[command(subcommand)]
    Config(crate::config_import::ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic on every broker group (or the given ones).
    Create {
        name: String,
        /// Queues per broker group.
        #[arg(long, default_value_t = 8, value_parser = queue_count)]
        queues: i32,
        /// Broker group to create the topic on (repeatable; default all).
        #[arg(long = "broker", value_name = "NAME")]
        brokers: Vec<String>,
        /// Message type the topic accepts (repeatable; default normal).
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        types: Vec<TopicType>,
    },
    /// Change a topic's queue count or permission.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    Update {
        name: String,
        /// New queue count per broker group.
        #[arg(long, value_parser = queue_count, group = "change")]
        queues: Option<i32>,
        /// New permission.
        #[arg(long, value_enum, group = "change")]
        perm: Option<Perm>,
    },
    /// List topics.
    List {
        /// Include internal topics (retry, dead-letter, half messages).
        #[arg(long)]
        system: bool,
    },
    /// Show the broker groups hosting a topic.
    Route { name: String },
    /// Delete a topic from every broker group.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List transactions of every broker group, oldest first.
    List {
        /// Only transactions without an outcome (pending and parked).
        #[arg(long)]
        pending: bool,
        /// Only transactions of this topic.
        #[arg(long, value_parser = topic_name)]
        topic: Option<String>,
        /// Show at most this many.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Commit (publish) a pending or parked transaction.
    Commit {
        /// Transaction id.
        id: String,
    },
    /// Roll back (discard) a pending or parked transaction.
    Rollback {
        /// Transaction id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// Cancel a scheduled message before its time (through the NameServer).
    Recall {
        /// The topic the message was sent to.
        #[arg(long, value_parser = topic_name)]
        topic: String,
        /// The recall handle printed by `apogee send --delay ...`.
        handle: String,
    },
    /// Every stored record of a message id, from every broker group.
    Get(crate::message_query::GetArgs),
    /// Messages of a topic carrying a key.
    Find(crate::message_query::FindArgs),
    /// Consecutive messages of one queue from an offset.
    Print(crate::message_query::PrintArgs),
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Scheduled messages waiting for their time, earliest due first.
    List {
        /// Only messages of this topic.
        #[arg(long, value_parser = topic_name)]
        topic: Option<String>,
        /// Show at most this many.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Each broker group's counters: waiting, delivered, recalled, lateness.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List every registered broker.
    List,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("when").multiple(false))]
#[command(group = clap::ArgGroup::new("payload").required(true).multiple(false))]
pub struct SendArgs {
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Message body (UTF-8 text).
    #[arg(long, group = "payload")]
    pub body: Option<String>,
    /// Read the body from this file, as bytes ("-": standard input).
    #[arg(long, value_name = "PATH", group = "payload")]
    pub body_file: Option<std::path::PathBuf>,
    /// User property KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    pub properties: Vec<(String, String)>,
    /// How many copies to send.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    #[arg(long)]
    pub tag: Option<String>,
    /// Message key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Send each copy as a transaction and commit it, roll it back, or
    /// leave it open (printing its transaction id).
    #[arg(long, value_enum, value_name = "END")]
    pub transaction: Option<TxnEnd>,
    /// Deliver this long after the send (e.g. 30s, 5m, 2h, 1500ms, 1d).
    #[arg(long, value_parser = schedule::parse_delay, group = "when",
          conflicts_with = "transaction")]
    pub delay: Option<Duration>,
    /// Deliver at this time (RFC 3339, e.g. 2026-11-22T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = schedule::parse_time, group = "when",
          conflicts_with = "transaction")]
    pub deliver_at: Option<SystemTime>,
    /// Deliver after a classic delay level: 1=1s 2=5s 3=10s 4=30s 5..14=1m..10m 15=20m
    /// 16=30m 17=1h 18=2h.
    #[arg(long, value_name = "N", value_parser = schedule::parse_level, group = "when",
          conflicts_with = "transaction")]
    pub delay_level: Option<u32>,
}

impl SendArgs {
    /// The body: `--body` as UTF-8, or the bytes of `--body-file` (or of standard input).
    pub fn body_bytes(&self) -> ToolResult<Vec<u8>> {
        use std::io::Read;
        match (&self.body, &self.body_file) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| ToolError::Input(format!("reading the body from stdin: {e}")))?;
                Ok(buf)
            }
            (None, Some(path)) => std::fs::read(path).map_err(|e| {
                ToolError::Input(format!("reading the body from {}: {e}", path.display()))
            }),
            (None, None) => Err(ToolError::Usage("give --body or --body-file".into())),
        }
    }

    /// When the messages are delivered, if scheduled.
    pub fn delivery(&self) -> Option<Delivery> {
        self.delay
            .map(Delivery::After)
            .or(self.deliver_at.map(Delivery::At))
            .or(self.delay_level.map(Delivery::Level))
    }
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Consumer group.
    #[arg(long, value_parser = group_name)]
    pub group: String,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,
    /// Stop after this many seconds without a new message.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub wait: u64,
    /// Seconds a received message stays hidden from other consumers.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = invisible_secs)]
    pub invisible: u64,
    /// Only messages with these tags (`TagA || TagB`); the default takes all.
    #[arg(long, value_name = "EXPR", conflicts_with = "sql")]
    pub tag: Option<String>,
    /// Only messages this SQL92 filter selects, evaluated on the broker over
    /// user properties and `TAGS`, e.g. "region = 'eu' AND amount > 100".
    #[arg(long, value_name = "EXPR")]
    pub sql: Option<String>,
}

/// `KEY=VALUE` of `--property` (the key non-empty; the value may contain `=`).
fn property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// A topic name as the servers accept it: a bad one is a usage error (exit 2) before any call.
pub(crate) fn topic_name(s: &str) -> Result<String, String> {
    limits::validate_topic(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A consumer group name as the servers accept it (a bad one is a usage error, exit 2).
pub(crate) fn group_name(s: &str) -> Result<String, String> {
    limits::validate_group(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Parses a number within `lo..=hi` (shared by every numeric flag).
pub(crate) fn ranged<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    s: &str,
    lo: T,
    hi: T,
) -> Result<T, String> {
    let v: T = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v < lo || v > hi {
        return Err(format!("must be between {lo} and {hi}"));
    }
    Ok(v)
}

fn queue_count(s: &str) -> Result<i32, String> {
    ranged(s, 1, limits::MAX_QUEUES_PER_TOPIC)
}

fn invisible_secs(s: &str) -> Result<u64, String> {
    ranged(
        s,
        limits::MIN_INVISIBLE_MS as u64 / 1000,
        limits::MAX_INVISIBLE_MS as u64 / 1000,
    )
}

impl Cli {
    fn client_config(&self) -> ClientConfig {
        ClientConfig::new(&self.nameserver).with_request_timeout(Duration::from_secs(self.timeout))
    }

    fn admin(&self) -> ToolResult<Admin> {
        Admin::connect(&self.nameserver, Duration::from_secs(self.timeout))
    }
}

/// Writes the rows that succeeded (unless there are none because the
/// first operation failed), then returns the failure.
fn write_partial<T: TableRow + Serialize, W: Write>(
    out: &mut W,
    rows: &[T],
    error: Option<ToolError>,
    f: Format,
) -> ToolResult<()> {
    if !rows.is_empty() || error.is_none() {
        out.write_all(render_list(rows, f).as_bytes())?;
        out.flush()?;
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs a parsed command, writing results to `out`.
pub async fn run<W: Write>(cli: Cli, out: &mut W) -> ToolResult<()> {
    let f = cli.output;
    let text = match &cli.command {
        Command::Topic(cmd) => {
            let admin = cli.admin()?;
            match cmd {
                TopicCommand::Create {
                    name,
                    queues,
                    brokers,
                    types,
                } => render_one(
                    &admin
                        .create_topic(name, *queues, brokers.clone(), types)
                        .await?,
                    f,
                ),
                TopicCommand::Update { name, queues, perm } => {
                    render_one(&admin.update_topic(name, *queues, *perm).await?, f)
                }
                TopicCommand::List { system } => render_list(&admin.list_topics(*system).await?, f),
                TopicCommand::Route { name } => render_list(&admin.topic_route(name).await?, f),
                TopicCommand::Delete { name } => render_one(&admin.delete_topic(name).await?, f),
            }
        }
        Command::Cluster(ClusterCommand::List) => {
            render_list(&cli.admin()?.cluster_info().await?, f)
        }
        Command::Txn(cmd) => {
            let admin = cli.admin()?;
            match cmd {
                TxnCommand::List {
                    pending,
                    topic,
                    limit,
                } => render_list(
                    &admin
                        .list_transactions(*pending, topic.as_deref(), *limit)
                        .await?,
                    f,
                ),
                TxnCommand::Commit { id } => {
                    render_one(&admin.resolve_transaction(id, true).await?, f)
                }
                TxnCommand::Rollback { id } => {
                    render_one(&admin.resolve_transaction(id, false).await?, f)
                }
            }
        }
        Command::Message(MessageCommand::Recall { topic, handle }) => render_one(
            &schedule::recall(cli.client_config(), topic, handle).await?,
            f,
        ),
        Command::Message(MessageCommand::Get(a)) => message_query::get(&cli.admin()?, a, f).await?,
        Command::Message(MessageCommand::Find(a)) => {
            message_query::find(&cli.admin()?, a, f).await?
        }
        Command::Message(MessageCommand::Print(a)) => {
            message_query::print(&cli.admin()?, a, f).await?
        }
        Command::Dlq(cmd) => return crate::dlq::run(&cli.admin()?, cmd, f, out).await,
        Command::Group(cmd) => crate::group::run(&cli.admin()?, cmd, f).await?,
        Command::Schedule(ScheduleCommand::List { topic, limit }) => render_list(
            &cli.admin()?
                .list_scheduled(topic.as_deref(), *limit)
                .await?,
            f,
        ),
        Command::Schedule(ScheduleCommand::Stats) => {
            render_list(&cli.admin()?.schedule_stats().await?, f)
        }
        Command::Send(a) => {
            let spec = SendSpec {
                topic: a.topic.clone(),
                body: a.body_bytes()?,
                properties: a.properties.clone(),
                count: a.count,
                tag: a.tag.clone(),
                keys: a.keys.clone(),
            };
            let config = cli.client_config();
            return match a.transaction {
                None => match a.delivery() {
                    None => {
                        let (rows, error) = messaging::send(config, &spec).await;
                        write_partial(out, &rows, error, f)
                    }
                    Some(when) => {
                        let (rows, error) = schedule::send_scheduled(config, &spec, when).await;
                        write_partial(out, &rows, error, f)
                    }
                },
                Some(end) => {
                    let (rows, error) = messaging::send_transactional(config, &spec, end).await;
                    write_partial(out, &rows, error, f)
                }
            };
        }
        Command::Consume(a) => {
            let spec = ConsumeSpec {
                topic: a.topic.clone(),
                group: a.group.clone(),
                max: a.max,
                wait: Duration::from_secs(a.wait),
                invisible: Duration::from_secs(a.invisible),
                filter: match (&a.sql, &a.tag) {
                    (Some(sql), _) => FilterExpression::sql92(sql.clone()),
                    (None, Some(tag)) => FilterExpression::tag(tag.clone()),
                    (None, None) => FilterExpression::default(),
                },
            };
            messaging::consume(cli.client_config(), &spec, &mut *out, f).await?;
            return Ok(());
        }
        Command::Bench(cmd) => bench::run_command(cli.client_config(), cmd, f).await?,
        Command::Config(cmd) => return crate::config_import::run(cmd, f, out),
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Parses the arguments (exiting on usage errors), runs the command and
/// returns the process exit code; errors are printed as `error: ...`.
pub async fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, &mut out).await {
        Ok(()) => 0,
        Err(ToolError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
    }

    #[test]
    fn topic_create_defaults_and_repeats() {
        let cli = parse(&[
            "topic", "create", "T", "--broker", "b1", "--broker", "b2", "--type", "fifo",
        ])
        .unwrap();
        assert_eq!(cli.output, Format::Table);
        assert_eq!(cli.timeout, 5);
        match cli.command {
            Command::Topic(TopicCommand::Create {
                name,
                queues,
                brokers,
                types,
            }) => {
                assert_eq!(name, "T");
                assert_eq!(queues, 8);
                assert_eq!(brokers, vec!["b1", "b2"]);
                assert_eq!(types, vec![TopicType::Fifo]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let cli = parse(&[
            "topic",
            "list",
            "--system",
            "-o",
            "json",
            "--nameserver",
            "h:1",
        ])
        .unwrap();
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.nameserver, "h:1");
        assert!(matches!(
            cli.command,
            Command::Topic(TopicCommand::List { system: true })
        ));
    }

    #[test]
    fn update_needs_a_change_and_valid_values() {
        let e = parse(&["topic", "update", "T"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2);
        let cli = parse(&["topic", "update", "T", "--perm", "r"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Topic(TopicCommand::Update {
                queues: None,
                perm: Some(Perm::R),
                ..
            })
        ));
        assert!(parse(&["topic", "update", "T", "--perm", "x"]).is_err());
        assert!(parse(&["topic", "update", "T", "--queues", "0"]).is_err());
        assert!(parse(&["topic", "create", "T", "--queues", "2000"]).is_err());
        assert!(parse(&["topic", "create", "T", "--type", "lite"]).is_err());
    }

    #[test]
    fn send_and_consume_defaults() {
        let cli = parse(&[
            "send", "--topic", "T", "--body", "hi", "--key", "a", "--key", "b",
        ])
        .unwrap();
        match cli.command {
            Command::Send(a) => {
                assert_eq!(
                    (a.count, a.tag, a.keys),
                    (1, None, vec!["a".into(), "b".into()])
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["consume", "--topic", "T", "--group", "G"]).unwrap();
        match cli.command {
            Command::Consume(a) => {
                assert_eq!((a.max, a.wait, a.invisible), (32, 5, 30));
                assert_eq!((a.tag, a.sql), (None, None));
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["consume", "--topic", "T", "--group", "G", "--sql", "a > 1"]).unwrap();
        match cli.command {
            Command::Consume(a) => assert_eq!(a.sql.as_deref(), Some("a > 1")),
            other => panic!("unexpected {other:?}"),
        }
        let both = [
            "consume", "--topic", "T", "--group", "G", "--sql", "a > 1", "--tag", "A",
        ];
        assert!(parse(&both).is_err(), "--tag and --sql exclude each other");
        assert!(parse(&["consume", "--topic", "T"]).is_err());
        assert!(parse(&[
            "consume",
            "--topic",
            "T",
            "--group",
            "G",
            "--invisible",
            "0"
        ])
        .is_err());
        assert!(parse(&["send", "--topic", "T"]).is_err());
    }

    #[test]
    fn bench_defaults() {
        let cli = parse(&["bench", "produce", "--topic", "T", "-o", "json"]).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Produce(a)) => {
                assert_eq!(
                    (a.connections, a.inflight, a.size, a.batch, a.duration),
                    (4, 16, 1024, 1, None)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["bench", "produce", "--topic", "T", "--batch", "0"]).is_err());
    }

    #[test]
    fn txn_commands_parse() {
        let cli = parse(&[
            "txn",
            "list",
            "--pending",
            "--topic",
            "T",
            "--limit",
            "5",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.output, Format::Json);
        match cli.command {
            Command::Txn(TxnCommand::List {
                pending,
                topic,
                limit,
            }) => assert_eq!(
                (pending, topic.as_deref(), limit),
                (true, Some("T"), Some(5))
            ),
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["txn", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Txn(TxnCommand::List {
                pending: false,
                topic: None,
                limit: None
            })
        ));
        let cli = parse(&["txn", "commit", "X1"]).unwrap();
        assert!(matches!(cli.command, Command::Txn(TxnCommand::Commit { id }) if id == "X1"));
        let cli = parse(&["txn", "rollback", "X2"]).unwrap();
        assert!(matches!(cli.command, Command::Txn(TxnCommand::Rollback { id }) if id == "X2"));
        assert!(parse(&["txn", "commit"]).is_err());
        assert!(parse(&["txn", "list", "--limit", "0"]).is_err());
    }

    #[test]
    fn transactional_send_bench_and_mixed_topics_parse() {
        let cli = parse(&[
            "send",
            "--topic",
            "T",
            "--body",
            "b",
            "--transaction",
            "open",
        ])
        .unwrap();
        match cli.command {
            Command::Send(a) => assert_eq!(a.transaction, Some(TxnEnd::Open)),
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["send", "--topic", "T", "--body", "b"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Send(SendArgs {
                transaction: None,
                ..
            })
        ));
        assert!(parse(&[
            "send",
            "--topic",
            "T",
            "--body",
            "b",
            "--transaction",
            "maybe"
        ])
        .is_err());
        let cli = parse(&["bench", "produce", "--topic", "T", "--transaction"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench(BenchCommand::Produce(BenchProduceArgs {
                transaction: true,
                ..
            }))
        ));
        let cli = parse(&["send", "--topic", "T", "--body", "b", "--delay", "30s"]).unwrap();
        match cli.command {
            Command::Send(a) => {
                assert_eq!(a.delivery(), Some(Delivery::After(Duration::from_secs(30))))
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["send", "--topic", "T", "--body", "b", "--delay-level", "3"]).unwrap();
        assert!(
            matches!(cli.command, Command::Send(a) if a.delivery() == Some(Delivery::Level(3)))
        );
        let both = [
            "send",
            "--topic",
            "T",
            "--body",
            "b",
            "--delay",
            "1s",
            "--delay-level",
            "3",
        ];
        assert!(parse(&both).is_err());
        let txn = [
            "send",
            "--topic",
            "T",
            "--body",
            "b",
            "--delay",
            "1s",
            "--transaction",
            "commit",
        ];
        assert!(parse(&txn).is_err());
        assert!(parse(&["send", "--topic", "T", "--body", "b", "--delay-level", "19"]).is_err());
        let cli = parse(&["message", "recall", "--topic", "T", "R1-x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Message(MessageCommand::Recall { topic, handle }) if topic == "T" && handle == "R1-x"
        ));
        let cli = parse(&["schedule", "list", "--topic", "T"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Schedule(ScheduleCommand::List { topic: Some(t), limit: None }) if t == "T"
        ));
        let cli = parse(&["topic", "create", "T", "--type", "mixed"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Topic(TopicCommand::Create { types, .. }) if types == vec![TopicType::Mixed]
        ));
    }

    #[tokio::test]
    async fn transactional_bench_needs_single_message_batches() {
        let cli = parse(&[
            "--nameserver",
            "127.0.0.1:1",
            "bench",
            "produce",
            "--topic",
            "T",
            "--transaction",
            "--batch",
            "2",
        ])
        .unwrap();
        let e = run(cli, &mut Vec::new()).await.unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }

    #[test]
    fn nameserver_comes_from_the_environment() {
        // Only this test touches the variable.
        std::env::set_var("APOGEE_NAMESERVER", "env-host:9876");
        let cli = parse(&["cluster", "list"]);
        std::env::remove_var("APOGEE_NAMESERVER");
        assert_eq!(cli.unwrap().nameserver, "env-host:9876");
    }

    #[test]
    fn send_takes_properties_and_a_body_file() {
        let path = std::env::temp_dir().join(format!("apogee-body-{}.bin", std::process::id()));
        std::fs::write(&path, [0u8, 159, 146, 150]).unwrap();
        let cli = parse(&[
            "send",
            "--topic",
            "t",
            "--body-file",
            path.to_str().unwrap(),
            "--property",
            "region=eu",
            "--property",
            "expr=a=b",
        ])
        .unwrap();
        let Command::Send(a) = cli.command else {
            panic!("not a send")
        };
        assert_eq!(a.body_bytes().unwrap(), vec![0u8, 159, 146, 150]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            a.properties,
            vec![
                ("region".into(), "eu".into()),
                ("expr".into(), "a=b".into())
            ]
        );
        // One body source, exactly.
        assert!(parse(&["send", "--topic", "t"]).is_err());
        assert!(parse(&["send", "--topic", "t", "--body", "x", "--body-file", "f"]).is_err());
        assert!(parse(&["send", "--topic", "t", "--body", "x", "--property", "=v"]).is_err());
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        let e = parse(&["frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        // Bad names are usage errors alike, for topics and for groups.
        for args in [
            ["consume", "--topic", "bad topic", "--group", "g"],
            ["consume", "--topic", "t", "--group", "bad group"],
        ] {
            let e = parse(&args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        let e = parse(&["-o", "xml", "cluster", "list"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
    }

    #[tokio::test]
    async fn unreachable_nameserver_is_a_runtime_error() {
        let cli = parse(&[
            "--nameserver",
            "127.0.0.1:1",
            "--timeout",
            "2",
            "cluster",
            "list",
        ])
        .unwrap();
        let mut out = Vec::new();
        let e = run(cli, &mut out).await.unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}

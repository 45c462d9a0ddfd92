//! The `apogee` command line: clap definitions and the dispatcher that runs
//! a parsed command and writes its output.

use crate::admin::{Admin, Perm, TopicType};
use crate::bench;
pub use crate::bench::{BenchCommand, BenchConsumeArgs, BenchProduceArgs};
pub use crate::cli_messaging::{ConsumeArgs, SendArgs};
use crate::config_import::ConfigCommand;
use crate::consume::ConsumeSpec;
use crate::error::{ToolError, ToolResult};
use crate::messaging::{self, SendSpec};
use crate::output::{render_list, render_one, Format, TableRow};
use crate::schedule;
use crate::spelled_arg::spelled;
use apogee_client::{ClientConfig, FilterExpression};
use apogee_proto::limits;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// The heading of the global options in every command's help, listed after the command's own.
pub const GLOBAL_OPTIONS: &str = "Global options";

/// The exit code of `send` when a message was stored on a SYNC_MASTER but not replicated.
pub use crate::error::EXIT_STORED_NOT_REPLICATED;

/// Apogee admin CLI: topics, cluster and brokers, transactions, scheduled messages, send,
/// consume and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "apogee", version, about, propagate_version = true)]
pub struct Cli {
    /// NameServer address (host:port; several separated by ';' or ',', tried in order).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_OPTIONS,
        env = "APOGEE_NAMESERVER",
        default_value = "127.0.0.1:9876",
        value_name = "ADDR"
    )]
    pub nameserver: String,

    /// Output format: an aligned table, JSON (lists as one array), or JSON lines (one object
    /// per line).
    #[arg(short = 'o', long, global = true, value_parser = spelled::<Format>(),
          default_value = "table", help_heading = GLOBAL_OPTIONS)]
    pub output: Format,

    /// Per-request timeout (e.g. 5s, 1500ms; a bare number is seconds).
    #[arg(long, global = true, default_value = "5s", value_name = "DURATION",
          value_parser = crate::duration::parse_positive, help_heading = GLOBAL_OPTIONS)]
    pub timeout: Duration,

    #[command(flatten)]
    pub credentials: crate::credentials::CredentialArgs,

    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,

    /// The cluster an mqadmin command named with `-c` (checked against the NameServers').
    #[arg(long = "mqadmin-cluster", hide = true, value_name = "NAME")]
    pub mqadmin_cluster: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, update, list, inspect and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Inspect the cluster's brokers, or restart them one at a time.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Ask one broker directly (its role, log and replication state), or elect a group's
    /// master (controller mode).
    #[command(subcommand)]
    Broker(crate::cli_cluster::BrokerCommand),
    /// The controller of automatic failover in the NameServers.
    #[command(subcommand)]
    Controller(crate::cli_cluster::ControllerCommand),
    /// List, commit and roll back transactions (half messages).
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Look messages up (by id, key or queue offset) and recall scheduled ones.
    #[command(subcommand)]
    Message(MessageCommand),
    /// A consumer group's dead letters: list them, resend them to their topics.
    #[command(subcommand)]
    Dlq(crate::cli_dlq::DlqCommand),
    /// Create, update, list, describe (offsets, lag, clients) and delete consumer groups.
    #[command(subcommand)]
    Group(crate::cli_group::GroupCommand),
    /// Inspect scheduled (delayed) messages.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// A LITE parent's lite topics: list them (backlog, subscribers), describe one.
    #[command(subcommand)]
    Lite(crate::cli_lite::LiteCommand),
    /// Create, update, list and delete users (access keys with a secret and a role).
    #[command(subcommand)]
    User(crate::cli_access::UserCommand),
    /// Grant, revoke and list users' permissions on topics and groups.
    #[command(subcommand)]
    Acl(crate::cli_access::AclCommand),
    /// Producers and consumers connected to the cluster.
    #[command(subcommand)]
    Clients(crate::cli_clients::ClientsCommand),
    /// Traffic over the last hour, from the brokers' own counters.
    #[command(subcommand)]
    Stats(crate::cli_stats::StatsCommand),
    /// The object-store tier: where each broker's uploads of sealed segments stand.
    #[command(subcommand)]
    Tier(TierCommand),
    /// Send messages (now, or scheduled with --delay, --deliver-at or --delay-level).
    Send(SendArgs),
    /// Receive, print and acknowledge messages (with --nack: leave them unacknowledged, to be
    /// delivered again and finally dead-lettered).
    Consume(ConsumeArgs),
    /// Load generators.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Broker configuration: import a RocketMQ broker.conf.
    #[command(subcommand)]
    Config(crate::config_import::ConfigCommand),
    /// Print a shell completion script (e.g. `apogee completions bash > /etc/bash_completion.d/apogee`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic on every broker group (or the given ones).
    Create {
        /// The topic's name.
        name: String,
        /// Queues per broker group.
        #[arg(long, default_value_t = 8, value_parser = queue_count)]
        queues: i32,
        /// Broker group to create the topic on, by name or by a member's address
        /// (repeatable; default all).
        #[arg(long = "broker", value_name = "NAME|ADDR")]
        brokers: Vec<String>,
        /// Message type the topic accepts (repeatable; default normal).
        #[arg(long = "type", value_parser = spelled::<TopicType>(), value_name = "TYPE")]
        types: Vec<TopicType>,
        /// A lite topic (under a `--type lite` parent) with no new message for this long
        /// expires: its messages, offsets and subscriptions go (default: never).
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_positive)]
        lite_expire: Option<Duration>,
        /// When the topic exists, change its queue count instead of failing (mqadmin's
        /// updateTopic, which creates or updates; its other settings are kept).
        #[arg(long)]
        update_if_exists: bool,
    },
    /// Change a topic's queue count or permission.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    Update {
        /// The topic's name.
        name: String,
        /// New queue count per broker group.
        #[arg(long, value_parser = queue_count, group = "change")]
        queues: Option<i32>,
        /// New permission.
        #[arg(long, value_parser = spelled::<Perm>(), group = "change")]
        perm: Option<Perm>,
    },
    /// List topics.
    List {
        /// Include internal topics (retry, dead-letter, half messages).
        #[arg(long)]
        system: bool,
    },
    /// Show the broker groups hosting a topic.
    Route {
        /// The topic's name.
        name: String,
    },
    /// Per queue on every broker group: first and next offset, messages, last store time.
    Status {
        /// The topic's name.
        name: String,
    },
    /// Delete a topic from every broker group.
    Delete {
        /// The topic's name.
        name: String,
    },
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
    Get(crate::cli_message::GetArgs),
    /// Messages of a topic carrying a key.
    Find(crate::cli_message::FindArgs),
    /// Consecutive messages of one queue from an offset.
    Print(crate::cli_message::PrintArgs),
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
pub enum TierCommand {
    /// Per broker: sealed segments waiting on local disk (LOCAL), the one being uploaded,
    /// the segments the manifest records (TIERED), the offload lag in bytes and seconds,
    /// the last upload error, and the endpoint, bucket and prefix. Brokers without a tier
    /// are left out; one that does not answer shows as unreachable.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List every registered broker with its log end, replication lag and in-sync state
    /// (each broker is asked; one that does not answer shows as unreachable).
    ///
    /// MEMBER is the broker's own id (its broker_id; in controller mode its member id for
    /// life, whatever its role), ROLE what it is now, EPOCH the master epoch it registered
    /// with ("-" in static mode), VERSION the Apogee build it runs, DATA VERSION the counter
    /// of its topics, groups and ACLs. JSON adds `id`: the broker id clients see (a group's
    /// master is 0).
    List,
    /// Restart every member of the broker groups (controller mode) one at a time with your
    /// command, without an outage: per group the slaves first, then the master after a
    /// planned switch to an in-sync member; each member must be back in the group's
    /// in-sync set before the next goes. Refused when a group's in-sync set is not full.
    RollingRestart(crate::cli_cluster::RollingRestartArgs),
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

impl Cli {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.nameserver).with_request_timeout(self.timeout);
        config.tls = self.tls.resolve().ok().flatten();
        match self.credentials() {
            Some(c) => config.with_credentials(c),
            None => config,
        }
    }

    /// The credentials given (checked by [`run`] before any command).
    fn credentials(&self) -> Option<apogee_proto::auth::Credentials> {
        self.credentials.resolve().ok().flatten()
    }

    fn admin(&self) -> ToolResult<Admin> {
        Admin::connect(
            &self.nameserver,
            self.request_timeout(),
            self.tls.resolve().ok().flatten(),
        )
        .map(|a| a.with_credentials(self.credentials()))
    }

    fn request_timeout(&self) -> Duration {
        self.timeout
    }
}

/// What `topic create` adds when the topic exists.
const UPDATE_IF_EXISTS_HINT: &str = "to change it, `apogee topic update`, or `apogee topic \
                                     create --update-if-exists` to create or update";
/// What `topic update` adds when the topic does not exist.
const CREATE_HINT: &str = "create it with `apogee topic create`, or `apogee topic create \
                           --update-if-exists` to create or update";

/// A server error whose text contains `needle`, with `hint` appended; others unchanged.
fn with_hint(e: ToolError, needle: &str, hint: &str) -> ToolError {
    match e {
        ToolError::Refused { code, text } if text.contains(needle) => ToolError::Refused {
            code,
            text: format!("{text} ({hint})"),
        },
        other => other,
    }
}

/// `topic create --update-if-exists`, as mqadmin's updateTopic: creates the topic when no
/// broker group hosts it, else sets its queue count where it exists (keeping its permission
/// and message types).
async fn create_or_update_topic(
    admin: &Admin,
    name: &str,
    queues: i32,
    brokers: &[String],
    types: &[TopicType],
    lite_expire: Option<Duration>,
) -> ToolResult<crate::admin::TopicInfo> {
    match admin.topic_route(name).await {
        Ok(_) => admin.update_topic(name, Some(queues), None).await,
        Err(e) if e.refused_code() == Some(tonic::Code::NotFound) => {
            admin
                .create_topic(name, queues, brokers.to_vec(), types, lite_expire)
                .await
        }
        Err(e) => Err(e),
    }
}

/// Writes the rows that succeeded (unless there are none because the
/// first operation failed), then returns the failure.
pub(crate) fn write_partial<T: TableRow + Serialize, W: Write>(
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
    cli.credentials.resolve().map_err(ToolError::Usage)?;
    cli.tls.resolve().map_err(ToolError::Usage)?;
    let f = cli.output;
    if let Some(cluster) = &cli.mqadmin_cluster {
        crate::mqadmin::check_cluster(&cli.admin()?, cluster).await?;
    }
    let text = match &cli.command {
        Command::Topic(cmd) => {
            let admin = cli.admin()?;
            match cmd {
                TopicCommand::Create {
                    name,
                    queues,
                    brokers,
                    types,
                    lite_expire,
                    update_if_exists,
                } => {
                    let brokers = &crate::mqadmin::broker_groups(&admin, brokers).await?;
                    let created = if *update_if_exists {
                        create_or_update_topic(&admin, name, *queues, brokers, types, *lite_expire)
                            .await
                    } else {
                        admin
                            .create_topic(name, *queues, brokers.clone(), types, *lite_expire)
                            .await
                            .map_err(|e| with_hint(e, "already exists", UPDATE_IF_EXISTS_HINT))
                    };
                    render_one(&created?, f)
                }
                TopicCommand::Update { name, queues, perm } => render_one(
                    &admin
                        .update_topic(name, *queues, *perm)
                        .await
                        .map_err(|e| with_hint(e, "topic not found", CREATE_HINT))?,
                    f,
                ),
                TopicCommand::List { system } => render_list(&admin.list_topics(*system).await?, f),
                TopicCommand::Route { name } => render_list(&admin.topic_route(name).await?, f),
                TopicCommand::Status { name } => render_list(&admin.topic_status(name).await?, f),
                TopicCommand::Delete { name } => render_one(&admin.delete_topic(name).await?, f),
            }
        }
        Command::Cluster(ClusterCommand::List) => {
            crate::broker_status::cluster_list(&cli.admin()?, cli.request_timeout(), f).await?
        }
        Command::Tier(TierCommand::Status) => {
            crate::tier::tier_status(&cli.admin()?, cli.request_timeout(), f).await?
        }
        Command::Cluster(ClusterCommand::RollingRestart(a)) => {
            let (admin, config) = (cli.admin()?, cli.client_config());
            return crate::cli_cluster::rolling_restart(a, &admin, &config, f, out).await;
        }
        Command::Broker(cmd) => {
            crate::cli_cluster::run(cmd, &cli.admin()?, &cli.client_config(), f).await?
        }
        Command::Controller(cmd) => {
            crate::cli_cluster::run_controller(&cli.admin()?, cmd, f).await?
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
        Command::Message(MessageCommand::Get(a)) => {
            crate::cli_message::get(&cli.admin()?, a, f).await?
        }
        Command::Message(MessageCommand::Find(a)) => {
            crate::cli_message::find(&cli.admin()?, a, f).await?
        }
        Command::Message(MessageCommand::Print(a)) => {
            crate::cli_message::print(&cli.admin()?, a, f).await?
        }
        Command::Dlq(cmd) => return crate::cli_dlq::run(&cli.admin()?, cmd, f, out).await,
        Command::Group(cmd) => crate::cli_group::run(&cli.admin()?, cmd, f).await?,
        Command::Clients(cmd) => crate::cli_clients::run(&cli.admin()?, cmd, f).await?,
        Command::Stats(cmd) => crate::cli_stats::run(&cli.admin()?, cmd, f).await?,
        Command::Lite(cmd) => crate::cli_lite::run(&cli.admin()?, cmd, f).await?,
        Command::User(cmd) => crate::cli_access::run_user(&cli.admin()?, cmd, f).await?,
        Command::Acl(cmd) => crate::cli_access::run_acl(&cli.admin()?, cmd, f).await?,
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
                priority: a.priority,
                lite_topic: a.lite_topic.clone(),
                message_group: a.message_group.clone(),
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
                wait: a.wait,
                invisible: a.invisible,
                nack: a.nack,
                filter: match (&a.sql, &a.tag) {
                    (Some(sql), _) => FilterExpression::sql92(sql.clone()),
                    (None, Some(tag)) => FilterExpression::tag(tag.clone()),
                    (None, None) => FilterExpression::default(),
                },
                body_format: a.body_format,
                out_dir: a.out_dir.clone(),
            };
            if let Some(dir) = &spec.out_dir {
                if !dir.is_dir() {
                    return Err(ToolError::Usage(format!(
                        "--out-dir {}: not a directory",
                        dir.display()
                    )));
                }
            }
            match &a.lite_topic {
                Some(lite) => {
                    crate::lite_consume::consume(
                        cli.client_config(),
                        &spec,
                        lite,
                        a.lite_offset,
                        &mut *out,
                        f,
                    )
                    .await?
                }
                None => crate::consume::consume(cli.client_config(), &spec, &mut *out, f).await?,
            };
            return Ok(());
        }
        Command::Bench(cmd) => bench::run_command(cli.client_config(), cmd, f).await?,
        Command::Config(ConfigCommand::Import(args)) => {
            return crate::config_import::run(args, f, out)
        }
        Command::Config(ConfigCommand::ImportState(args)) => {
            let admin = if args.apply { Some(cli.admin()?) } else { None };
            return crate::rocketmq_state::run(args, admin.as_ref(), f, out).await;
        }
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics when its writer fails (a reader
            // that went away); the write below reports it as an error instead.
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "apogee", &mut script);
            out.write_all(&script)?;
            out.flush()?;
            return Ok(());
        }
    };
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Parses the arguments (exiting on usage errors), runs the command on a runtime suited to
/// it ([`runtime_for`]) and returns the process exit code; errors are printed as `error: ...`.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let args = match expand_mqadmin_alias(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let cli =
        <Cli as clap::FromArgMatches>::from_arg_matches(&parse(args)).unwrap_or_else(|e| e.exit());
    let runtime = match runtime_for(&cli.command).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 1;
        }
    };
    let plain_text = cli.tls.resolve().ok().flatten().is_none();
    let nameservers = ClientConfig::new(&cli.nameserver).nameservers;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match runtime.block_on(run(cli, &mut out)) {
        Ok(()) => 0,
        Err(ToolError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = out.flush();
            let text = e.to_string();
            // A connection-level failure in plain text may be a TLS server: probe it.
            let probe = plain_text
                && !matches!(
                    e,
                    ToolError::Usage(_)
                        | ToolError::Input(_)
                        | ToolError::Io(_)
                        | ToolError::Interrupted
                );
            let explained = probe
                .then(|| {
                    runtime.block_on(crate::tls_args::explain_plain_text_to_tls(
                        &text,
                        &nameservers,
                    ))
                })
                .flatten();
            eprintln!("error: {}", explained.unwrap_or(text));
            e.exit_code()
        }
    }
}

/// The runtime a command runs on. A bench with one request in flight is one loop waiting
/// on one reply at a time: it runs on a single-threaded runtime, where the tasks it wakes
/// (the connection's, the reply's) run on the same thread instead of waking the other worker
/// (client CPU 111 -> 77 µs a send at 1 x 1). A bench with more in flight runs on tokio's
/// multi-threaded runtime without its LIFO slot: with the slot, a task woken by the running
/// one runs next, so every send woke the connection's task, which wrote that send's frames
/// alone (2.0 socket writes a send at 4 x 16); without it the connection's task runs after
/// the sends already ready and writes their frames together (1.2 writes a send). Everything
/// else runs on the multi-threaded runtime as it comes (docs/PERFORMANCE.md, "The bench
/// client's runtime").
pub fn runtime_for(command: &Command) -> tokio::runtime::Builder {
    let in_flight = match command {
        Command::Bench(bench) => Some(bench.requests_in_flight()),
        _ => None,
    };
    let mut builder = if in_flight == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    #[cfg(tokio_unstable)]
    if in_flight.is_some_and(|n| n > 1) {
        builder.disable_lifo_slot();
    }
    builder
}

/// The command line as parsed: [`Cli`]'s command with the global options shown once, in
/// `apogee --help` (a subcommand's help lists its own options and points there).
pub fn command() -> clap::Command {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    let globals: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .collect();
    hide_globals_below(&mut command, &globals);
    command
}

/// Parses the arguments, exiting on a usage error or after printing help. The arguments are
/// parsed by the command as declared, so the global options behave the same before and after
/// a subcommand; help is rendered by [`help_for`].
fn parse(args: Vec<std::ffi::OsString>) -> clap::ArgMatches {
    use clap::error::ErrorKind;
    match <Cli as clap::CommandFactory>::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => {
            print!("{}", help_for(&args));
            std::process::exit(0);
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", help_for(&args));
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    }
}

/// The help `args` ask for (`apogee topic create --help`, `apogee help topic create`,
/// `apogee topic`), rendered by [`command`], whose subcommands name the global options once
/// instead of listing them: the command named by the words of `args`, in its long form unless
/// `-h` asked for the short one. Only rendered: [`command`] hides the global options after
/// clap built it, which leaves it unfit to parse with.
pub(crate) fn help_for(args: &[std::ffi::OsString]) -> String {
    let mut command = command();
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut named = &mut command;
    for word in &words {
        if word != "help" && named.find_subcommand(word).is_some() {
            named = named.find_subcommand_mut(word).expect("found above");
        }
    }
    let help = if words.iter().any(|w| w == "-h") {
        named.render_help()
    } else {
        named.render_long_help()
    };
    help.to_string()
}

/// What every subcommand's help says instead of repeating the global options.
pub const GLOBAL_OPTIONS_NOTE: &str =
    "Global options (--nameserver, -o, --timeout, credentials, TLS): see `apogee --help`.";

fn hide_globals_below(command: &mut clap::Command, globals: &[clap::Id]) {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        let sub = command
            .find_subcommand_mut(&name)
            .expect("a listed subcommand");
        let mut taken = std::mem::take(sub);
        for id in globals {
            if taken.get_arguments().any(|a| a.get_id() == id) {
                taken = taken.mut_arg(id, |a| a.hide(true));
            }
        }
        let note = match taken.get_after_help() {
            Some(h) => format!("{h}\n\n{GLOBAL_OPTIONS_NOTE}"),
            None => GLOBAL_OPTIONS_NOTE.to_string(),
        };
        taken = taken.after_help(note);
        hide_globals_below(&mut taken, globals);
        *sub = taken;
    }
}

/// The arguments with an mqadmin command name and its options rewritten (see [`crate::mqadmin`]).
fn expand_mqadmin_alias(args: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>, String> {
    let command = <Cli as clap::CommandFactory>::command();
    let commands: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    crate::mqadmin::expand(args, &commands)
}

#[cfg(test)]
#[path = "cli_tests.rs"]
pub(crate) mod tests;

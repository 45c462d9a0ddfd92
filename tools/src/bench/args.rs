//! The `apogee bench` command line: clap definitions of `bench produce` and `bench consume`
//! and their conversion to run specs (checks clap cannot express are made there).

use super::consume::ConsumeSpec;
use super::e2e::E2eSpec;
use super::produce::BenchSpec;
use super::produce::STAMP_LEN;
use crate::cli::ranged;
use crate::cli::{group_name, topic_name};
use crate::duration::{parse_duration, parse_positive, parse_within};
use crate::error::{ToolError, ToolResult};
use apogee_client::SendTransport;
use apogee_proto::limits;
use clap::{Args, Subcommand};
use std::time::Duration;

/// Run time when neither `--duration` nor `--count` is given.
pub const DEFAULT_RUN: Duration = Duration::from_secs(10);

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure produce throughput and latency (plain, FIFO, scheduled or transactional).
    Produce(BenchProduceArgs),
    /// Measure receive+ack throughput, redeliveries and the lateness of scheduled messages.
    Consume(BenchConsumeArgs),
    /// Produce at a set rate while a group receives: send-to-receive latency.
    E2e(BenchE2eArgs),
    /// Create many lite topics under a LITE parent, then drain some with one lite consumer.
    Lite(super::lite::BenchLiteArgs),
}

impl BenchCommand {
    /// How many requests the workload keeps in flight at most.
    pub fn requests_in_flight(&self) -> u64 {
        match self {
            BenchCommand::Produce(a) => u64::from(a.connections) * u64::from(a.inflight),
            BenchCommand::Consume(a) => u64::from(a.consumers),
            BenchCommand::E2e(a) => {
                u64::from(a.connections) * u64::from(a.inflight) + u64::from(a.consumers)
            }
            BenchCommand::Lite(a) => u64::from(a.connections) * u64::from(a.inflight),
        }
    }
}

/// Flags every workload takes.
#[derive(Debug, Args)]
pub struct BenchCommon {
    /// Also report this local broker process's CPU seconds over the run and its memory (RSS).
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct BenchProduceArgs {
    /// Topic to send to.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Separate gRPC connections (one producer each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Sends in flight per connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub inflight: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024, value_name = "BYTES", value_parser = body_size)]
    pub size: usize,
    /// Messages per request.
    #[arg(long, default_value_t = 1, value_parser = batch_size)]
    pub batch: u32,
    /// Run time (e.g. 30s, 2m; a bare number is seconds). Default 10 s unless --count is
    /// given; with both, whichever comes first ends the run.
    #[arg(long, value_name = "DURATION", value_parser = run_time)]
    pub duration: Option<Duration>,
    /// Stop after this many messages (e.g. to preload a backlog).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Send transactions: each operation is a half send plus its commit
    /// (needs --batch 1 and a transaction topic).
    #[arg(long, conflicts_with_all = ["delay", "message_groups"])]
    pub transaction: bool,
    /// Send scheduled (DELAY) messages due this long after each send (e.g. 20s, 2h); the topic
    /// must accept DELAY messages.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Spread the due times uniformly over [delay, delay + spread).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "delay")]
    pub delay_spread: Option<Duration>,
    /// Send FIFO messages spread round-robin over N message groups (g0 .. gN-1); the topic
    /// must accept FIFO messages. Each request carries one message group.
    #[arg(long, value_name = "N", conflicts_with = "delay",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub message_groups: Option<u32>,
    /// Send at most this many messages per second in total (default: as fast as the
    /// connections x in-flight requests allow).
    #[arg(long, value_name = "MSG/S", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Spread the load round-robin over N topics named <TOPIC>-0 .. <TOPIC>-(N-1), which
    /// must exist (`apogee topic create`).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub topics: u32,
    /// What the sends travel over: `grpc`, or `remoting` (RocketMQ's remoting frames on
    /// plain TCP, the lighter path; routes from the NameServer over remoting too; not for
    /// transactions or FIFO messages, and not with --tls).
    #[arg(long, default_value = "grpc", value_name = "grpc|remoting",
          conflicts_with_all = ["transaction", "message_groups"])]
    pub transport: SendTransport,
    #[command(flatten)]
    pub common: BenchCommon,
}

impl BenchProduceArgs {
    pub fn spec(&self) -> ToolResult<BenchSpec> {
        if self.transaction && self.batch > 1 {
            return Err(ToolError::Usage(
                "a transaction carries one message: --transaction needs --batch 1".into(),
            ));
        }
        Ok(BenchSpec {
            topic: self.topic.clone(),
            connections: self.connections,
            inflight: self.inflight,
            size: self.size,
            batch: self.batch,
            duration: run_limit(self.duration, self.count),
            count: self.count,
            transaction: self.transaction,
            delay: self.delay,
            delay_spread: self.delay_spread.unwrap_or_default(),
            message_groups: self.message_groups.unwrap_or(0),
            rate: self.rate,
            stamp: None,
            topics: self.topics,
        })
    }
}

#[derive(Debug, Args)]
pub struct BenchConsumeArgs {
    /// Topic to receive from.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Consumer group.
    #[arg(long, value_parser = group_name)]
    pub group: String,
    /// Concurrent simple consumers (each with its own connections).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub consumers: u32,
    /// Messages asked for per receive.
    #[arg(long, default_value_t = 32, value_parser = receive_batch)]
    pub batch: u32,
    /// Run time (e.g. 30s, 2m; a bare number is seconds). Default 10 s unless --count is
    /// given; with both, whichever comes first ends the run.
    #[arg(long, value_name = "DURATION", value_parser = run_time)]
    pub duration: Option<Duration>,
    /// Stop once this many messages were received and acknowledged.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// How long a received message stays hidden from other consumers (1s to 12h; a bare
    /// number is seconds).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = invisible)]
    pub invisible: Duration,
    /// Long-polling time of each receive (1s to 30s; a bare number is seconds).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = long_poll)]
    pub wait: Duration,
    /// With --count only: stop after this long without a new message (a bare number is
    /// seconds).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_positive)]
    pub idle: Duration,
    #[command(flatten)]
    pub common: BenchCommon,
}

#[derive(Debug, Args)]
pub struct BenchE2eArgs {
    /// Topic to send to and receive from.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Consumer group that receives (created on first use when the broker allows it).
    #[arg(long, default_value = "bench-e2e", value_parser = group_name)]
    pub group: String,
    /// Total messages per second sent.
    #[arg(long, default_value_t = 5000, value_name = "MSG/S",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// Concurrent simple consumers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub consumers: u32,
    /// Producer connections.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Sends in flight per connection (enough to keep up with the rate).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub inflight: u32,
    /// Body size in bytes (at least 16: the run id and send time).
    #[arg(long, default_value_t = 1024, value_name = "BYTES", value_parser = body_size)]
    pub size: usize,
    /// Sending time (the consumers go on 3 s longer for the last messages).
    #[arg(long, value_name = "DURATION", value_parser = run_time)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub common: BenchCommon,
}

impl BenchE2eArgs {
    pub fn spec(&self) -> ToolResult<E2eSpec> {
        if self.size < STAMP_LEN {
            return Err(ToolError::Usage(format!(
                "--size must be at least {STAMP_LEN}: each body carries the run id and send time"
            )));
        }
        Ok(E2eSpec {
            topic: self.topic.clone(),
            group: self.group.clone(),
            consumers: self.consumers,
            connections: self.connections,
            inflight: self.inflight,
            size: self.size,
            rate: self.rate,
            duration: self.duration.unwrap_or(DEFAULT_RUN),
        })
    }
}

impl BenchConsumeArgs {
    pub fn spec(&self) -> ConsumeSpec {
        ConsumeSpec {
            topic: self.topic.clone(),
            group: self.group.clone(),
            consumers: self.consumers,
            batch: self.batch,
            duration: run_limit(self.duration, self.count),
            count: self.count,
            invisible: self.invisible,
            wait: self.wait,
            idle: (self.duration.is_none() && self.count.is_some()).then_some(self.idle),
            stamp: None,
        }
    }
}

/// The run's time limit: the given one, none when only a count bounds the run, else the
/// default.
fn run_limit(duration: Option<Duration>, count: Option<u64>) -> Option<Duration> {
    match (duration, count) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_RUN),
    }
}

fn body_size(s: &str) -> Result<usize, String> {
    ranged(s, 1, limits::DEFAULT_MAX_BODY_BYTES)
}

fn batch_size(s: &str) -> Result<u32, String> {
    ranged(s, 1, limits::MAX_BATCH_MESSAGES as u32)
}

fn receive_batch(s: &str) -> Result<u32, String> {
    ranged(s, 1, limits::MAX_RECEIVE_BATCH as u32)
}

/// An invisible duration within the protocol's bounds (shared with `apogee consume`).
pub(crate) fn invisible(s: &str) -> Result<Duration, String> {
    parse_within(
        s,
        Duration::from_millis(limits::MIN_INVISIBLE_MS as u64),
        Duration::from_millis(limits::MAX_INVISIBLE_MS as u64),
    )
}

fn long_poll(s: &str) -> Result<Duration, String> {
    parse_within(
        s,
        Duration::from_secs(1),
        Duration::from_millis(limits::MAX_LONG_POLLING_MS as u64),
    )
}

/// A run time: whole seconds ("10") or a number with a unit ("1500ms", "30s", "2m"); not zero.
pub fn run_time(s: &str) -> Result<Duration, String> {
    parse_positive(s).map_err(|e| format!("the run time {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
    }

    fn produce(args: &[&str]) -> Result<BenchProduceArgs, clap::Error> {
        let mut all = vec!["bench", "produce", "--topic", "T"];
        all.extend_from_slice(args);
        match parse(&all)?.command {
            Command::Bench(BenchCommand::Produce(a)) => Ok(a),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn consume(args: &[&str]) -> Result<BenchConsumeArgs, clap::Error> {
        let mut all = vec!["bench", "consume", "--topic", "T", "--group", "G"];
        all.extend_from_slice(args);
        match parse(&all)?.command {
            Command::Bench(BenchCommand::Consume(a)) => Ok(a),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn run_times_take_seconds_or_units() {
        assert_eq!(run_time("10"), Ok(Duration::from_secs(10)));
        assert_eq!(run_time("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(run_time("2m"), Ok(Duration::from_secs(120)));
        assert!(run_time("0").is_err());
        assert!(run_time("0s").is_err());
        assert!(run_time("ten").is_err());
    }

    #[test]
    fn produce_defaults_to_ten_seconds_and_plain_messages() {
        let s = produce(&[]).unwrap().spec().unwrap();
        assert_eq!(s.duration, Some(DEFAULT_RUN));
        assert_eq!(
            (s.count, s.delay, s.message_groups, s.rate),
            (None, None, 0, None)
        );
        assert_eq!(s.delay_spread, Duration::ZERO);
        assert!(!s.transaction);
    }

    #[test]
    fn produce_count_alone_has_no_time_limit() {
        let s = produce(&["--count", "100000"]).unwrap().spec().unwrap();
        assert_eq!((s.count, s.duration), (Some(100_000), None));
        let s = produce(&["--count", "5", "--duration", "3"])
            .unwrap()
            .spec()
            .unwrap();
        assert_eq!(
            (s.count, s.duration),
            (Some(5), Some(Duration::from_secs(3)))
        );
        assert!(produce(&["--count", "0"]).is_err());
    }

    #[test]
    fn produce_delay_spread_groups_and_rate() {
        let s = produce(&["--delay", "20s", "--delay-spread", "30s", "--rate", "500"])
            .unwrap()
            .spec()
            .unwrap();
        assert_eq!(s.delay, Some(Duration::from_secs(20)));
        assert_eq!(s.delay_spread, Duration::from_secs(30));
        assert_eq!(s.rate, Some(500));
        let s = produce(&["--message-groups", "100"])
            .unwrap()
            .spec()
            .unwrap();
        assert_eq!(s.message_groups, 100);
        // A spread needs a delay; FIFO and scheduled, and transactions and either, exclude
        // each other (a message has a group or a delivery time, a transaction neither here).
        assert!(produce(&["--delay-spread", "30s"]).is_err());
        assert!(produce(&["--delay", "1s", "--message-groups", "2"]).is_err());
        assert!(produce(&["--delay", "1s", "--transaction"]).is_err());
        assert!(produce(&["--message-groups", "2", "--transaction"]).is_err());
        assert!(produce(&["--message-groups", "0"]).is_err());
        let bare = produce(&["--delay", "20"]).unwrap().spec().unwrap();
        assert_eq!(
            bare.delay,
            Some(Duration::from_secs(20)),
            "a bare number is seconds"
        );
        assert!(produce(&["--rate", "0"]).is_err());
    }

    #[test]
    fn transactional_batches_are_refused_before_connecting() {
        let e = produce(&["--transaction", "--batch", "2"])
            .unwrap()
            .spec()
            .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
    }

    #[test]
    fn consume_defaults_and_limits() {
        let a = consume(&[]).unwrap();
        let s = a.spec();
        assert_eq!((s.consumers, s.batch), (4, 32));
        assert_eq!(s.duration, Some(DEFAULT_RUN));
        assert_eq!((s.count, s.idle), (None, None));
        assert_eq!(s.invisible, Duration::from_secs(30));
        assert_eq!(s.wait, Duration::from_secs(5));
        let s = consume(&["--count", "1000", "--consumers", "8", "--batch", "64"])
            .unwrap()
            .spec();
        assert_eq!((s.count, s.duration), (Some(1000), None));
        assert_eq!(s.idle, Some(Duration::from_secs(10)));
        assert_eq!((s.consumers, s.batch), (8, 64));
        let s = consume(&["--count", "10", "--duration", "45s"])
            .unwrap()
            .spec();
        assert_eq!(s.duration, Some(Duration::from_secs(45)));
        assert_eq!(s.idle, None, "a time limit replaces the idle stop");
        assert!(consume(&["--batch", "65"]).is_err());
        assert!(consume(&["--consumers", "0"]).is_err());
        assert!(consume(&["--wait", "31"]).is_err());
        assert!(consume(&["--invisible", "0"]).is_err());
        assert!(parse(&["bench", "consume", "--topic", "T"]).is_err());
    }
}

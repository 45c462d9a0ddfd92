//! `apogee bench lite`: the lite-topic workload of issue 36's targets.
//!
//! 1. **Create**: C producers with I sends in flight each send M messages to each of N lite
//!    topics `<prefix>-0` .. `<prefix>-(N-1)` under a LITE parent topic (round after round:
//!    every lite topic gets its first message before any gets its second), one message per
//!    request. Reports messages/s and lite topics created per second (N over the phase).
//! 2. **Lite drain**: one lite simple consumer of the group subscribes to the first K of them
//!    (PARTIAL_ADD of [`SUBSCRIBE_CHUNK`] names at a time, from MIN: the messages were sent
//!    before any subscription) and receives and acks their K x M messages with R receives in
//!    flight. Reports the subscribe time and messages/s.
//! 3. **Plain drain** (with `--plain-topic`): the same K x M messages sent to a normal topic
//!    and drained by `bench consume`'s R consumers, for the ratio of the two drains.
//!
//! The parent (`topic create --type lite`) and the group (`group create --lite-bind`, with a
//! lite quota of at least K) must exist; `tools/lite-bench.sh` sets all of it up.

use super::consume::{self, ConsumeSpec};
use super::produce::{self, BenchSpec};
use crate::cli::{group_name, topic_name};
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use apogee_client::{ClientConfig, LiteOffset, LiteSimpleConsumer, Message, Producer};
use clap::Args;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lite topics named in one PARTIAL_ADD.
pub const SUBSCRIBE_CHUNK: usize = 1_000;
/// A drain ends after this long without a new message.
const DRAIN_IDLE: Duration = Duration::from_secs(10);
/// Invisible time of the drained messages.
const DRAIN_INVISIBLE: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct BenchLiteArgs {
    /// The LITE parent topic.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// A lite consumer group bound to the parent (`group create --lite-bind`).
    #[arg(long, value_parser = group_name)]
    pub group: String,
    /// Lite topics to create (N).
    #[arg(long, default_value_t = 1_000_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lite_topics: u64,
    /// Messages per lite topic (M).
    #[arg(long, default_value_t = 2, value_name = "M",
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub messages: u64,
    /// Lite topic names: <PREFIX>-<i>.
    #[arg(long, default_value = "s", value_name = "PREFIX")]
    pub prefix: String,
    /// Separate gRPC connections (one producer each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Sends in flight per connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub inflight: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub size: u32,
    /// Lite topics the consumer subscribes to and drains (K; 0: no drain).
    #[arg(long, default_value_t = 10_000, value_name = "K")]
    pub subscribe: u64,
    /// Receives in flight in each drain (and consumers of the plain drain).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub receivers: u32,
    /// Skip phase 1 (the lite topics were made by an earlier run, e.g. before a restart).
    #[arg(long)]
    pub skip_create: bool,
    /// A normal topic: send and drain K x M messages there too, for the ratio.
    #[arg(long, value_name = "TOPIC", value_parser = topic_name)]
    pub plain_topic: Option<String>,
    #[command(flatten)]
    pub common: super::args::BenchCommon,
}

/// The figures of a run.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LiteBenchReport {
    pub lite_topics: u64,
    pub messages_per_lite_topic: u64,
    /// Phase 1: messages stored, failed sends, time and rates.
    pub sent: u64,
    pub send_errors: u64,
    pub send_first_error: Option<String>,
    pub send_secs: f64,
    pub send_msgs_per_sec: f64,
    pub lite_topics_per_sec: f64,
    /// Phase 2: lite topics subscribed, how long it took, messages drained and the rate.
    pub subscribed: u64,
    pub subscribe_secs: f64,
    pub lite_drained: u64,
    pub lite_drain_secs: f64,
    pub lite_drain_msgs_per_sec: f64,
    pub drain_errors: u64,
    pub drain_first_error: Option<String>,
    /// Phase 3: the plain drain of as many messages from a normal topic.
    pub plain_drain_msgs_per_sec: Option<f64>,
    /// Lite drain rate over plain drain rate.
    pub drain_ratio: Option<f64>,
    /// With `--broker-pid`: the broker's CPU time and memory at the end.
    pub broker: Option<super::broker_usage::BrokerUsage>,
}

impl TableRow for LiteBenchReport {
    fn headers() -> Vec<&'static str> {
        vec![
            "SEND MSG/S",
            "LITE TOPICS/S",
            "SENT",
            "ERRORS",
            "SUBSCRIBE S",
            "LITE DRAIN MSG/S",
            "DRAINED",
            "PLAIN DRAIN MSG/S",
            "RATIO",
            "BROKER RSS MIB",
            "BROKER PEAK MIB",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let opt = |v: Option<f64>, d: usize| super::broker_usage::cell(v, d);
        vec![
            format!("{:.0}", self.send_msgs_per_sec),
            format!("{:.0}", self.lite_topics_per_sec),
            self.sent.to_string(),
            (self.send_errors + self.drain_errors).to_string(),
            format!("{:.2}", self.subscribe_secs),
            format!("{:.0}", self.lite_drain_msgs_per_sec),
            self.lite_drained.to_string(),
            opt(self.plain_drain_msgs_per_sec, 0),
            opt(self.drain_ratio, 2),
            opt(self.broker.as_ref().map(|b| b.rss_mib), 0),
            opt(self.broker.as_ref().map(|b| b.peak_rss_mib), 0),
        ]
    }
}

/// The name of lite topic `i`.
pub fn lite_name(prefix: &str, i: u64) -> String {
    format!("{prefix}-{i}")
}

/// Operation `op` of phase 1: (lite topic index, round), every topic once per round.
pub fn op_target(op: u64, lite_topics: u64) -> (u64, u64) {
    (op % lite_topics, op / lite_topics)
}

/// Runs the workload; `done` counts messages sent, then drained, for progress displays.
pub async fn run(
    config: ClientConfig,
    a: &BenchLiteArgs,
    done: Arc<AtomicU64>,
) -> ToolResult<LiteBenchReport> {
    if a.subscribe > a.lite_topics {
        return Err(ToolError::Usage(
            "--subscribe cannot be above --lite-topics".into(),
        ));
    }
    apogee_proto::limits::validate_lite_topic(
        &lite_name(&a.prefix, a.lite_topics - 1),
        apogee_proto::limits::DEFAULT_MAX_LITE_TOPIC_LEN,
    )
    .map_err(|e| ToolError::Usage(format!("--prefix: {e}")))?;
    let mut r = LiteBenchReport {
        lite_topics: a.lite_topics,
        messages_per_lite_topic: a.messages,
        ..Default::default()
    };
    if !a.skip_create {
        create(&config, a, &mut r, &done).await?;
    }
    if a.subscribe > 0 {
        done.store(0, Ordering::Relaxed);
        lite_drain(&config, a, &mut r, &done).await?;
    }
    if let (Some(plain), true) = (&a.plain_topic, a.subscribe > 0) {
        let rate = plain_drain(&config, a, plain).await?;
        r.plain_drain_msgs_per_sec = Some(rate);
        r.drain_ratio = Some(r.lite_drain_msgs_per_sec / rate.max(1e-9));
    }
    Ok(r)
}

async fn create(
    config: &ClientConfig,
    a: &BenchLiteArgs,
    r: &mut LiteBenchReport,
    done: &Arc<AtomicU64>,
) -> ToolResult<()> {
    let total = a.lite_topics * a.messages;
    let body = bytes::Bytes::from(vec![b'x'; a.size as usize]);
    let mut producers = Vec::new();
    for _ in 0..a.connections {
        producers.push(
            Producer::builder(config.clone())
                .topics(vec![a.topic.clone()])
                .connect()
                .await?,
        );
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for producer in &producers {
        for _ in 0..a.inflight {
            let (producer, next, done) = (producer.clone(), next.clone(), done.clone());
            let (topic, prefix, body, n) = (
                a.topic.clone(),
                a.prefix.clone(),
                body.clone(),
                a.lite_topics,
            );
            tasks.push(tokio::spawn(async move {
                let (mut sent, mut errors, mut first) = (0u64, 0u64, None::<String>);
                loop {
                    let op = next.fetch_add(1, Ordering::Relaxed);
                    if op >= total {
                        break;
                    }
                    let (lite, _) = op_target(op, n);
                    let m = Message::builder(topic.clone(), body.clone())
                        .lite_topic(&lite_name(&prefix, lite))
                        .build();
                    match producer.send(m).await {
                        Ok(_) => {
                            sent += 1;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (sent, errors, first)
            }));
        }
    }
    for t in tasks {
        let (sent, errors, first) = t
            .await
            .map_err(|e| ToolError::Server(format!("bench task failed: {e}")))?;
        r.sent += sent;
        r.send_errors += errors;
        if r.send_first_error.is_none() {
            r.send_first_error = first;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    for p in producers {
        p.shutdown().await;
    }
    r.send_secs = secs;
    r.send_msgs_per_sec = r.sent as f64 / secs;
    r.lite_topics_per_sec = a.lite_topics as f64 / secs;
    Ok(())
}

async fn lite_drain(
    config: &ClientConfig,
    a: &BenchLiteArgs,
    r: &mut LiteBenchReport,
    done: &Arc<AtomicU64>,
) -> ToolResult<()> {
    let consumer = LiteSimpleConsumer::connect(config.clone(), &a.group, &a.topic).await?;
    let names: Vec<String> = (0..a.subscribe).map(|i| lite_name(&a.prefix, i)).collect();
    let started = Instant::now();
    for chunk in names.chunks(SUBSCRIBE_CHUNK) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        consumer
            .subscriptions()
            .subscribe(&refs, Some(LiteOffset::Min))
            .await?;
    }
    r.subscribed = a.subscribe;
    r.subscribe_secs = started.elapsed().as_secs_f64();
    let expected = a.subscribe * a.messages;
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..a.receivers {
        let (consumer, done, last) = (consumer.clone(), done.clone(), last.clone());
        tasks.push(tokio::spawn(async move {
            let (mut errors, mut first) = (0u64, None::<String>);
            let mut quiet_since = Instant::now();
            while done.load(Ordering::Relaxed) < expected && quiet_since.elapsed() < DRAIN_IDLE {
                let got = match consumer
                    .receive(32, DRAIN_INVISIBLE, Duration::from_secs(2))
                    .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if got.is_empty() {
                    continue;
                }
                quiet_since = Instant::now();
                let mut ok = 0;
                for res in consumer.ack_many(&got).await {
                    match res {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                done.fetch_add(ok, Ordering::Relaxed);
                last.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            (errors, first)
        }));
    }
    for t in tasks {
        let (errors, first) = t
            .await
            .map_err(|e| ToolError::Server(format!("bench task failed: {e}")))?;
        r.drain_errors += errors;
        if r.drain_first_error.is_none() {
            r.drain_first_error = first;
        }
    }
    consumer.shutdown().await;
    r.lite_drained = done.load(Ordering::Relaxed);
    // Timed to the last ack: the idle wait at the end is not drain time.
    r.lite_drain_secs = (last.load(Ordering::Relaxed) as f64 / 1e6).max(1e-9);
    r.lite_drain_msgs_per_sec = r.lite_drained as f64 / r.lite_drain_secs;
    Ok(())
}

/// Sends K x M messages to `plain` and drains them with a new group; the drain's msg/s.
async fn plain_drain(config: &ClientConfig, a: &BenchLiteArgs, plain: &str) -> ToolResult<f64> {
    let count = a.subscribe * a.messages;
    let group = format!("{}-plain", a.group);
    let consume_spec = ConsumeSpec {
        topic: plain.to_string(),
        group: group.clone(),
        consumers: a.receivers,
        batch: 32,
        duration: None,
        count: Some(count),
        invisible: DRAIN_INVISIBLE,
        wait: Duration::from_secs(2),
        idle: Some(DRAIN_IDLE),
        stamp: None,
    };
    let send_spec = BenchSpec {
        topic: plain.to_string(),
        connections: a.connections,
        inflight: a.inflight,
        size: a.size as usize,
        batch: 1,
        duration: None,
        count: Some(count),
        transaction: false,
        delay: None,
        delay_spread: Duration::ZERO,
        message_groups: 0,
        rate: None,
        stamp: None,
        topics: 1,
    };
    let sent = produce::run(config.clone(), &send_spec).await?;
    if sent.errors > 0 {
        eprintln!(
            "warning: {} plain sends failed; first error: {}",
            sent.errors,
            sent.first_error.unwrap_or_default()
        );
    }
    let drained = consume::run(config.clone(), &consume_spec).await?;
    Ok(drained.msgs_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn every_lite_topic_gets_its_first_message_before_any_its_second() {
        let targets: Vec<(u64, u64)> = (0..6).map(|op| op_target(op, 3)).collect();
        assert_eq!(
            targets,
            vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
        );
        assert_eq!(lite_name("s", 42), "s-42");
    }

    #[test]
    fn defaults_are_the_targets_workload() {
        let cli = Cli::try_parse_from(["apogee", "bench", "lite", "--topic", "P", "--group", "G"])
            .unwrap();
        let Command::Bench(super::super::BenchCommand::Lite(a)) = cli.command else {
            panic!("bench lite expected")
        };
        assert_eq!(
            (a.lite_topics, a.messages, a.subscribe),
            (1_000_000, 2, 10_000)
        );
        assert_eq!((a.connections, a.inflight, a.size), (4, 16, 1024));
        assert!(!a.skip_create && a.plain_topic.is_none());
    }
}

//! `apogee bench e2e`: producers send at a set rate while a consumer group receives and
//! acknowledges the same topic; each body carries the run id and its send time, so every first
//! delivery gives a send-to-receive latency (the producer's and the consumer's clocks are the
//! same machine's, or NTP-close ones). Messages of earlier runs still in the topic are
//! acknowledged and not counted.

use super::consume::{self, ConsumeSpec};
use super::produce::{self, BenchSpec};
use super::samples::Samples;
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use apogee_client::ClientConfig;
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Time the consumers keep receiving after the producers stop, for the last messages.
const DRAIN: Duration = Duration::from_secs(3);
/// Time the consumers get to connect before the producers start.
const CONNECT: Duration = Duration::from_millis(500);

/// What `bench e2e` runs.
#[derive(Clone, Debug)]
pub struct E2eSpec {
    pub topic: String,
    pub group: String,
    pub consumers: u32,
    pub connections: u32,
    pub inflight: u32,
    pub size: usize,
    /// Messages per second in total.
    pub rate: u32,
    pub duration: Duration,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct E2eReport {
    /// Messages sent per second (over the producers' run).
    pub sent_per_sec: f64,
    /// This run's messages received per second (over the producers' run).
    pub received_per_sec: f64,
    /// Body megabytes (10^6 bytes) sent per second.
    pub mb_per_sec: f64,
    pub sent: u64,
    /// This run's messages received for the first time.
    pub received: u64,
    /// Sent but not received by the end of the drain.
    pub missing: u64,
    /// Send request latency.
    pub send_p50_ms: f64,
    pub send_p90_ms: f64,
    pub send_p99_ms: f64,
    pub send_p999_ms: f64,
    /// Send to first receive.
    pub e2e_p50_ms: f64,
    pub e2e_p90_ms: f64,
    pub e2e_p99_ms: f64,
    pub e2e_p999_ms: f64,
    pub e2e_max_ms: f64,
    /// Failed sends, receives and acks.
    pub errors: u64,
    pub first_error: Option<String>,
    pub rate: u32,
    pub duration_secs: f64,
    /// With `--broker-pid`: the broker's CPU time over the run and its memory at the end.
    pub broker: Option<super::broker_usage::BrokerUsage>,
}

impl TableRow for E2eReport {
    fn headers() -> Vec<&'static str> {
        vec![
            "SENT/S",
            "RECV/S",
            "MB/S",
            "E2E P50 MS",
            "E2E P90 MS",
            "E2E P99 MS",
            "E2E P99.9 MS",
            "E2E MAX MS",
            "SEND P99 MS",
            "MISSING",
            "ERRORS",
            "BROKER CPU S",
            "BROKER RSS MIB",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            format!("{:.0}", self.sent_per_sec),
            format!("{:.0}", self.received_per_sec),
            format!("{:.2}", self.mb_per_sec),
            format!("{:.2}", self.e2e_p50_ms),
            format!("{:.2}", self.e2e_p90_ms),
            format!("{:.2}", self.e2e_p99_ms),
            format!("{:.2}", self.e2e_p999_ms),
            format!("{:.2}", self.e2e_max_ms),
            format!("{:.2}", self.send_p99_ms),
            self.missing.to_string(),
            self.errors.to_string(),
            super::broker_usage::cell(self.broker.as_ref().map(|b| b.cpu_secs), 1),
            super::broker_usage::cell(self.broker.as_ref().map(|b| b.rss_mib), 0),
        ]
    }
}

/// A run id no earlier run used (time-based).
fn run_id() -> u64 {
    (super::wall_us() as u64).rotate_left(17) ^ u64::from(std::process::id())
}

/// Runs the benchmark; `sent` counts messages as they are stored (progress display).
pub async fn run(
    config: ClientConfig,
    spec: &E2eSpec,
    sent: Arc<AtomicU64>,
) -> ToolResult<E2eReport> {
    if spec.rate == 0 || spec.consumers == 0 {
        return Err(ToolError::Usage(
            "rate and consumers must be at least 1".into(),
        ));
    }
    let id = run_id();
    let consume_spec = ConsumeSpec {
        topic: spec.topic.clone(),
        group: spec.group.clone(),
        consumers: spec.consumers,
        batch: 32,
        duration: Some(CONNECT + spec.duration + DRAIN),
        count: None,
        invisible: Duration::from_secs(30),
        wait: Duration::from_secs(1),
        idle: None,
        stamp: Some(id),
    };
    let produce_spec = BenchSpec {
        topic: spec.topic.clone(),
        connections: spec.connections,
        inflight: spec.inflight,
        size: spec.size,
        batch: 1,
        duration: Some(spec.duration),
        count: None,
        transaction: false,
        delay: None,
        delay_spread: Duration::ZERO,
        message_groups: 0,
        rate: Some(spec.rate),
        stamp: Some(id),
        topics: 1,
    };
    let consumers = {
        let config = config.clone();
        let acked = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move { consume::run_with_latencies(config, &consume_spec, acked).await })
    };
    tokio::time::sleep(CONNECT).await;
    let produced = produce::run_counted(config, &produce_spec, sent).await?;
    let (consumed, e2e) = consumers
        .await
        .map_err(|e| ToolError::Server(format!("bench consumers failed: {e}")))??;
    Ok(report(spec, &produced, &consumed, &e2e))
}

fn report(
    spec: &E2eSpec,
    p: &produce::BenchReport,
    c: &consume::ConsumeReport,
    e2e: &Samples,
) -> E2eReport {
    let secs = p.duration_secs.max(1e-9);
    let received = e2e.len() as u64;
    E2eReport {
        sent_per_sec: p.msgs_per_sec,
        received_per_sec: received as f64 / secs,
        mb_per_sec: p.mb_per_sec,
        sent: p.messages + p.warmup_messages,
        received,
        missing: (p.messages + p.warmup_messages).saturating_sub(received),
        send_p50_ms: p.p50_ms,
        send_p90_ms: p.p90_ms,
        send_p99_ms: p.p99_ms,
        send_p999_ms: p.p999_ms,
        e2e_p50_ms: e2e.percentile_ms(50.0),
        e2e_p90_ms: e2e.percentile_ms(90.0),
        e2e_p99_ms: e2e.percentile_ms(99.0),
        e2e_p999_ms: e2e.percentile_ms(99.9),
        e2e_max_ms: e2e.percentile_ms(100.0),
        errors: p.errors + c.receive_errors + c.ack_errors,
        first_error: p.first_error.clone().or_else(|| c.first_error.clone()),
        rate: spec.rate,
        duration_secs: secs,
        broker: None,
    }
}

//! `apogee bench produce`: a load generator over the client library.
//!
//! Opens C producers (each with its own gRPC connections), keeps I sends in
//! flight on each for the run's duration, and reports throughput and
//! latency percentiles of the requests (a batch counts once for latency and
//! N times for throughput). With `--transaction` one operation is a half
//! send followed by its commit, timed as a whole. Latencies are kept as microseconds in a vector
//! that is sorted once at the end.

use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use apogee_client::{ClientConfig, Message, Producer};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What `bench produce` runs.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub topic: String,
    pub connections: u32,
    pub inflight: u32,
    pub size: usize,
    pub batch: u32,
    pub duration: Duration,
    /// Each operation is a transaction: half send, then commit.
    pub transaction: bool,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BenchReport {
    pub msgs_per_sec: f64,
    /// Body megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Messages stored.
    pub messages: u64,
    /// Successful requests.
    pub requests: u64,
    pub duration_secs: f64,
    pub connections: u32,
    pub inflight: u32,
    pub size: usize,
    pub batch: u32,
    /// Whether each operation was a half send plus its commit.
    pub transaction: bool,
}

impl TableRow for BenchReport {
    fn headers() -> Vec<&'static str> {
        vec![
            "MSG/S", "MB/S", "P50 MS", "P99 MS", "P99.9 MS", "MAX MS", "MESSAGES", "ERRORS",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            format!("{:.0}", self.msgs_per_sec),
            format!("{:.2}", self.mb_per_sec),
            format!("{:.2}", self.p50_ms),
            format!("{:.2}", self.p99_ms),
            format!("{:.2}", self.p999_ms),
            format!("{:.2}", self.max_ms),
            self.messages.to_string(),
            self.errors.to_string(),
        ]
    }
}

/// Latencies of one run, in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts once; call before the percentile queries.
    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }

    /// Nearest-rank percentile (`p` in 0..=100) in milliseconds; 0 when empty.
    /// Expects [`Latencies::sort`] to have been called.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let n = self.0.len();
        // The epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        self.0[rank.clamp(1, n) - 1] as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().map(|&v| v as f64).sum::<f64>() / self.0.len() as f64 / 1000.0
    }
}

/// What one sender task measured.
#[derive(Default)]
struct TaskStats {
    latencies: Latencies,
    messages: u64,
    errors: u64,
    first_error: Option<String>,
}

/// One measured operation: the batch as one request, or (transactional)
/// one half send and its commit. Returns the messages stored.
async fn operation(
    producer: &Producer,
    batch: &[Message],
    transaction: bool,
) -> apogee_client::Result<usize> {
    if transaction {
        let mut txn = producer.begin_transaction();
        txn.send(batch[0].clone()).await?;
        txn.commit().await?;
        Ok(1)
    } else if batch.len() == 1 {
        producer.send(batch[0].clone()).await.map(|_| 1)
    } else {
        producer.send_batch(batch.to_vec()).await.map(|r| r.len())
    }
}

/// Runs the benchmark.
pub async fn run(config: ClientConfig, spec: &BenchSpec) -> ToolResult<BenchReport> {
    if spec.connections == 0 || spec.inflight == 0 || spec.batch == 0 || spec.size == 0 {
        return Err(ToolError::Usage(
            "connections, inflight, batch and size must be at least 1".into(),
        ));
    }
    if spec.transaction && spec.batch > 1 {
        return Err(ToolError::Usage(
            "a transaction carries one message: --transaction needs --batch 1".into(),
        ));
    }
    let body = vec![b'x'; spec.size];
    let batch: Vec<Message> = (0..spec.batch)
        .map(|_| Message::new(spec.topic.clone(), body.clone()))
        .collect();

    // One producer per connection, warmed up so routes, channels and
    // telemetry are in place before the clock starts.
    let mut producers = Vec::new();
    for _ in 0..spec.connections {
        let producer = Producer::builder(config.clone())
            .topic(&spec.topic)
            .connect()
            .await?;
        operation(&producer, &batch, spec.transaction).await?;
        producers.push(producer);
    }

    let started = Instant::now();
    let deadline = started + spec.duration;
    let mut tasks = Vec::new();
    for producer in &producers {
        for _ in 0..spec.inflight {
            let producer = producer.clone();
            let batch = batch.clone();
            let transaction = spec.transaction;
            tasks.push(tokio::spawn(async move {
                let mut stats = TaskStats::default();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match operation(&producer, &batch, transaction).await {
                        Ok(n) => {
                            stats.latencies.record(t0.elapsed());
                            stats.messages += n as u64;
                        }
                        Err(e) => {
                            stats.errors += 1;
                            stats.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                stats
            }));
        }
    }
    let mut total = TaskStats::default();
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| ToolError::Server(format!("bench task failed: {e}")))?;
        total.latencies.merge(stats.latencies);
        total.messages += stats.messages;
        total.errors += stats.errors;
        if total.first_error.is_none() {
            total.first_error = stats.first_error;
        }
    }
    let elapsed = started.elapsed();
    for p in producers {
        p.shutdown().await;
    }
    Ok(report(spec, total, elapsed))
}

fn report(spec: &BenchSpec, mut total: TaskStats, elapsed: Duration) -> BenchReport {
    let secs = elapsed.as_secs_f64().max(1e-9);
    total.latencies.sort();
    let l = &total.latencies;
    BenchReport {
        msgs_per_sec: total.messages as f64 / secs,
        mb_per_sec: (total.messages as f64 * spec.size as f64) / 1e6 / secs,
        p50_ms: l.percentile_ms(50.0),
        p99_ms: l.percentile_ms(99.0),
        p999_ms: l.percentile_ms(99.9),
        max_ms: l.percentile_ms(100.0),
        mean_ms: l.mean_ms(),
        errors: total.errors,
        first_error: total.first_error,
        messages: total.messages,
        requests: l.len() as u64,
        duration_secs: secs,
        connections: spec.connections,
        inflight: spec.inflight,
        size: spec.size,
        batch: spec.batch,
        transaction: spec.transaction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        l.sort();
        assert_eq!(l.percentile_ms(50.0), 500.0);
        assert_eq!(l.percentile_ms(99.0), 990.0);
        assert_eq!(l.percentile_ms(99.9), 999.0);
        assert_eq!(l.percentile_ms(100.0), 1000.0);
        assert_eq!(l.percentile_ms(0.0), 1.0);
        assert!((l.mean_ms() - 500.5).abs() < 1e-9);
        assert_eq!(Latencies::default().percentile_ms(50.0), 0.0);
    }

    #[test]
    fn report_has_the_documented_json_keys() {
        let spec = BenchSpec {
            topic: "T".into(),
            connections: 1,
            inflight: 1,
            size: 1000,
            batch: 1,
            duration: Duration::from_secs(2),
            transaction: true,
        };
        let mut stats = TaskStats {
            messages: 4,
            ..Default::default()
        };
        for ms in [1, 2, 3, 4] {
            stats.latencies.record(Duration::from_millis(ms));
        }
        let r = report(&spec, stats, Duration::from_secs(2));
        assert_eq!(r.msgs_per_sec, 2.0);
        assert_eq!(r.mb_per_sec, 0.002);
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "msgs_per_sec",
            "mb_per_sec",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["p50_ms"], 2.0);
        assert_eq!(v["errors"], 0);
        assert_eq!(v["transaction"], true);
    }
}

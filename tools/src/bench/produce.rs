//! `apogee bench produce`: a load generator over the client library.
//!
//! Opens C producers (each with its own gRPC connections), keeps I sends in flight on each
//! until the run's time is up or its message count is sent, and reports throughput and
//! latency percentiles of the requests (a batch counts once for latency and N times for
//! throughput). With `--transaction` one operation is a half send followed by its commit,
//! timed as a whole. With `--delay` the messages are scheduled (DELAY) and due that long
//! (plus a uniform share of `--delay-spread`) after their send; with `--message-groups` they
//! are FIFO messages of N groups, one group per request, round-robin. `--rate` paces the
//! senders to a total message rate.

use super::samples::{Samples, SplitMix};
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use apogee_client::{ClientConfig, Message, Producer};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What `bench produce` runs.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub topic: String,
    pub connections: u32,
    pub inflight: u32,
    pub size: usize,
    pub batch: u32,
    /// Time limit (None: only `count` ends the run).
    pub duration: Option<Duration>,
    /// Messages to send in all, warm-up included (None: only `duration` ends the run).
    pub count: Option<u64>,
    /// Each operation is a transaction: half send, then commit.
    pub transaction: bool,
    /// Scheduled messages, due this long after their send.
    pub delay: Option<Duration>,
    /// Due times spread uniformly over `[delay, delay + spread)`.
    pub delay_spread: Duration,
    /// FIFO messages over this many message groups (0: not FIFO).
    pub message_groups: u32,
    /// Total messages per second, at most.
    pub rate: Option<u32>,
    /// `bench e2e`: each body starts with this run id and its send time ([`stamp_body`]).
    pub stamp: Option<u64>,
    /// Spread the operations round-robin over this many topics, `<topic>-0` ..
    /// `<topic>-(N-1)` (1: just `topic`).
    pub topics: u32,
}

impl BenchSpec {
    /// The topics the run sends to.
    pub fn topic_names(&self) -> Vec<String> {
        if self.topics <= 1 {
            return vec![self.topic.clone()];
        }
        (0..self.topics)
            .map(|i| format!("{}-{i}", self.topic))
            .collect()
    }
}

/// Bytes of the stamp at the start of a `bench e2e` body: run id, then the send time in
/// microseconds since the epoch (both big-endian u64).
pub const STAMP_LEN: usize = 16;

/// Writes the stamp into the first [`STAMP_LEN`] bytes of `body`.
pub fn stamp_body(body: &mut [u8], run_id: u64, sent_us: i64) {
    body[..8].copy_from_slice(&run_id.to_be_bytes());
    body[8..16].copy_from_slice(&sent_us.to_be_bytes());
}

/// The send time of a body stamped by the run `run_id` (None for other bodies).
pub fn read_stamp(body: &[u8], run_id: u64) -> Option<i64> {
    let id = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    (id == run_id).then(|| i64::from_be_bytes(body[8..16].try_into().unwrap_or_default()))
}

impl BenchSpec {
    /// Messages per operation.
    fn per_op(&self) -> u32 {
        if self.transaction {
            1
        } else {
            self.batch
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BenchReport {
    pub msgs_per_sec: f64,
    /// Body megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Messages stored in the measured run.
    pub messages: u64,
    /// Messages stored by the warm-up (one request per connection, before the clock starts).
    pub warmup_messages: u64,
    /// Successful requests.
    pub requests: u64,
    pub duration_secs: f64,
    pub connections: u32,
    pub inflight: u32,
    pub size: usize,
    pub batch: u32,
    /// Whether each operation was a half send plus its commit.
    pub transaction: bool,
    /// The message count asked for, if any.
    pub count: Option<u64>,
    /// Scheduled messages: the delay and spread of their due times.
    pub delay_ms: Option<u64>,
    pub delay_spread_ms: u64,
    /// FIFO message groups (0: plain messages).
    pub message_groups: u32,
    /// The rate limit, if any (msg/s).
    pub rate: Option<u32>,
    /// With `--broker-pid`: the broker's CPU time over the run and its memory at the end.
    pub broker: Option<super::broker_usage::BrokerUsage>,
    /// What the sends travelled over (`grpc`, `remoting`).
    pub transport: String,
}

impl TableRow for BenchReport {
    fn headers() -> Vec<&'static str> {
        vec![
            "MSG/S",
            "MB/S",
            "P50 MS",
            "P90 MS",
            "P99 MS",
            "P99.9 MS",
            "MAX MS",
            "MESSAGES",
            "ERRORS",
            "BROKER CPU S",
            "BROKER RSS MIB",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            format!("{:.0}", self.msgs_per_sec),
            format!("{:.2}", self.mb_per_sec),
            format!("{:.2}", self.p50_ms),
            format!("{:.2}", self.p90_ms),
            format!("{:.2}", self.p99_ms),
            format!("{:.2}", self.p999_ms),
            format!("{:.2}", self.max_ms),
            self.messages.to_string(),
            self.errors.to_string(),
            super::broker_usage::cell(self.broker.as_ref().map(|b| b.cpu_secs), 1),
            super::broker_usage::cell(self.broker.as_ref().map(|b| b.rss_mib), 0),
        ]
    }
}

/// What one sender task measured.
#[derive(Default)]
struct TaskStats {
    latencies: Samples,
    messages: u64,
    errors: u64,
    first_error: Option<String>,
}

/// The messages left to send when the run has a count.
struct Budget(Option<AtomicU64>);

impl Budget {
    fn new(count: Option<u64>) -> Self {
        Budget(count.map(AtomicU64::new))
    }

    /// Takes up to `want` messages; 0 once the count is used up.
    fn take(&self, want: u32) -> u32 {
        let Some(left) = &self.0 else {
            return want;
        };
        match left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
            (l > 0).then(|| l.saturating_sub(want as u64))
        }) {
            Ok(prev) => prev.min(want as u64) as u32,
            Err(_) => 0,
        }
    }
}

/// Builds the messages of each operation: the body, and per request a message group or per
/// message a due time.
struct Maker {
    topics: Arc<Vec<String>>,
    /// One payload shared by every message (as a Kafka producer benchmark reuses its
    /// payload), so the run measures sending rather than filling buffers; stamped bodies
    /// are copies.
    body: bytes::Bytes,
    delay: Option<Duration>,
    spread: Duration,
    groups: u32,
    stamp: Option<u64>,
    /// Operations started by every task (picks the message group, round-robin).
    ops: Arc<AtomicU64>,
    rng: SplitMix,
}

impl Maker {
    fn new(spec: &BenchSpec, ops: Arc<AtomicU64>, seed: u64) -> Self {
        Maker {
            topics: Arc::new(spec.topic_names()),
            body: bytes::Bytes::from(vec![b'x'; spec.size]),
            delay: spec.delay,
            spread: spec.delay_spread,
            groups: spec.message_groups,
            stamp: spec.stamp,
            ops,
            rng: SplitMix::new(seed),
        }
    }

    fn batch(&mut self, n: u32) -> Vec<Message> {
        let op = self.ops.fetch_add(1, Ordering::Relaxed);
        let topic = &self.topics[(op % self.topics.len() as u64) as usize];
        let group = (self.groups > 0).then(|| format!("g{}", op % self.groups as u64));
        (0..n)
            .map(|_| {
                let body = match self.stamp {
                    Some(run_id) => {
                        let mut body = self.body.to_vec();
                        stamp_body(&mut body, run_id, super::wall_us());
                        bytes::Bytes::from(body)
                    }
                    None => self.body.clone(),
                };
                let mut b = Message::builder(topic.clone(), body);
                if let Some(g) = &group {
                    b = b.message_group(g.clone());
                }
                if let Some(delay) = self.delay {
                    let jitter = self.spread.mul_f64(self.rng.next_f64());
                    b = b.deliver_at(SystemTime::now() + delay + jitter);
                }
                b.build()
            })
            .collect()
    }
}

/// One measured operation: the batch as one request, or (transactional)
/// one half send and its commit. Returns the messages stored.
async fn operation(
    producer: &Producer,
    batch: Vec<Message>,
    transaction: bool,
) -> apogee_client::Result<usize> {
    if transaction {
        let mut txn = producer.begin_transaction();
        let first = batch.into_iter().next();
        txn.send(first.ok_or_else(|| apogee_client::ClientError::Config("empty batch".into()))?)
            .await?;
        txn.commit().await?;
        Ok(1)
    } else if batch.len() == 1 {
        let one = batch.into_iter().next();
        let one = one.ok_or_else(|| apogee_client::ClientError::Config("empty batch".into()))?;
        producer.send(one).await.map(|_| 1)
    } else {
        producer.send_batch(batch).await.map(|r| r.len())
    }
}

fn check(spec: &BenchSpec) -> ToolResult<()> {
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
    if spec.duration.is_none() && spec.count.is_none() {
        return Err(ToolError::Usage("give a duration or a count".into()));
    }
    if spec.rate == Some(0) {
        return Err(ToolError::Usage("the rate must be at least 1".into()));
    }
    if spec.stamp.is_some() && spec.size < STAMP_LEN {
        return Err(ToolError::Usage(format!(
            "end-to-end bodies carry a {STAMP_LEN}-byte stamp: --size must be at least {STAMP_LEN}"
        )));
    }
    Ok(())
}

/// Runs the benchmark.
pub async fn run(config: ClientConfig, spec: &BenchSpec) -> ToolResult<BenchReport> {
    run_counted(config, spec, Arc::new(AtomicU64::new(0))).await
}

/// Like [`run`], adding each stored message to `sent` as it goes (for progress displays).
pub async fn run_counted(
    config: ClientConfig,
    spec: &BenchSpec,
    sent: Arc<AtomicU64>,
) -> ToolResult<BenchReport> {
    check(spec)?;
    let transport = format!("{:?}", config.send_transport).to_lowercase();
    let budget = Arc::new(Budget::new(spec.count));
    let ops = Arc::new(AtomicU64::new(0));
    let per_op = spec.per_op();

    // One producer per connection, warmed up so routes, channels and
    // telemetry are in place before the clock starts.
    let mut producers = Vec::new();
    let mut warmup_messages = 0u64;
    for i in 0..spec.connections {
        // Declared topics: their routes are fetched before the clock starts.
        let producer = Producer::builder(config.clone())
            .topics(spec.topic_names())
            .connect()
            .await?;
        let n = budget.take(per_op);
        if n > 0 {
            let mut maker = Maker::new(spec, ops.clone(), u64::MAX - i as u64);
            warmup_messages += operation(&producer, maker.batch(n), spec.transaction).await? as u64;
        }
        producers.push(producer);
    }

    let tasks_total = spec.connections * spec.inflight;
    // Each task sends one operation per `interval` when the rate is limited.
    let interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(tasks_total as f64 * per_op as f64 / r as f64));
    let started = Instant::now();
    let deadline = spec.duration.map(|d| started + d);
    let mut tasks = Vec::new();
    for (c, producer) in producers.iter().enumerate() {
        for i in 0..spec.inflight {
            let task_no = c as u32 * spec.inflight + i;
            let producer = producer.clone();
            let budget = budget.clone();
            let mut maker = Maker::new(spec, ops.clone(), task_no as u64);
            let transaction = spec.transaction;
            let sent = sent.clone();
            // Stagger the paced tasks over one interval.
            let mut next =
                interval.map(|iv| started + iv.mul_f64(task_no as f64 / tasks_total as f64));
            tasks.push(tokio::spawn(async move {
                let mut stats = TaskStats::default();
                loop {
                    if let (Some(at), Some(iv)) = (next.as_mut(), interval) {
                        let now = Instant::now();
                        if *at > now {
                            tokio::time::sleep_until((*at).into()).await;
                        } else if now - *at > iv {
                            *at = now; // fell behind: do not burst to catch up
                        }
                        *at += iv;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let n = budget.take(per_op);
                    if n == 0 {
                        break;
                    }
                    let batch = maker.batch(n);
                    let t0 = Instant::now();
                    match operation(&producer, batch, transaction).await {
                        Ok(n) => {
                            stats.latencies.record(t0.elapsed());
                            stats.messages += n as u64;
                            sent.fetch_add(n as u64, Ordering::Relaxed);
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
    let mut r = report(spec, total, elapsed);
    r.warmup_messages = warmup_messages;
    r.transport = transport;
    Ok(r)
}

fn report(spec: &BenchSpec, mut total: TaskStats, elapsed: Duration) -> BenchReport {
    let secs = elapsed.as_secs_f64().max(1e-9);
    total.latencies.sort();
    let l = &total.latencies;
    BenchReport {
        msgs_per_sec: total.messages as f64 / secs,
        mb_per_sec: (total.messages as f64 * spec.size as f64) / 1e6 / secs,
        p50_ms: l.percentile_ms(50.0),
        p90_ms: l.percentile_ms(90.0),
        p99_ms: l.percentile_ms(99.0),
        p999_ms: l.percentile_ms(99.9),
        max_ms: l.percentile_ms(100.0),
        mean_ms: l.mean_ms(),
        errors: total.errors,
        first_error: total.first_error,
        messages: total.messages,
        warmup_messages: 0,
        requests: l.len() as u64,
        duration_secs: secs,
        connections: spec.connections,
        inflight: spec.inflight,
        size: spec.size,
        batch: spec.batch,
        transaction: spec.transaction,
        transport: String::new(),
        count: spec.count,
        delay_ms: spec.delay.map(|d| d.as_millis() as u64),
        delay_spread_ms: spec.delay_spread.as_millis() as u64,
        message_groups: spec.message_groups,
        rate: spec.rate,
        broker: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn spec() -> BenchSpec {
        BenchSpec {
            topic: "T".into(),
            connections: 1,
            inflight: 1,
            size: 1000,
            batch: 1,
            duration: Some(Duration::from_secs(2)),
            count: None,
            transaction: true,
            delay: None,
            delay_spread: Duration::ZERO,
            message_groups: 0,
            rate: None,
            stamp: None,
            topics: 1,
        }
    }

    #[test]
    fn report_has_the_documented_json_keys() {
        let mut stats = TaskStats {
            messages: 4,
            ..Default::default()
        };
        for ms in [1, 2, 3, 4] {
            stats.latencies.record(Duration::from_millis(ms));
        }
        let r = report(&spec(), stats, Duration::from_secs(2));
        assert_eq!(r.msgs_per_sec, 2.0);
        assert_eq!(r.mb_per_sec, 0.002);
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "msgs_per_sec",
            "mb_per_sec",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "errors",
            "count",
            "delay_ms",
            "message_groups",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["p50_ms"], 2.0);
        assert_eq!(v["errors"], 0);
        assert_eq!(v["transaction"], true);
        assert_eq!(v["delay_ms"], serde_json::Value::Null);
    }

    #[test]
    fn stamps_round_trip_and_other_runs_are_not_read() {
        let mut body = vec![b'x'; 40];
        stamp_body(&mut body, 77, 1_700_000_000_123_456);
        assert_eq!(read_stamp(&body, 77), Some(1_700_000_000_123_456));
        assert_eq!(read_stamp(&body, 78), None);
        assert_eq!(read_stamp(b"short", 77), None);
        let mut small = spec();
        small.transaction = false;
        small.stamp = Some(1);
        small.size = 15;
        assert!(check(&small).is_err());
        small.size = 16;
        assert!(check(&small).is_ok());
    }

    #[test]
    fn budget_hands_out_exactly_the_count() {
        let b = Budget::new(Some(10));
        assert_eq!((b.take(4), b.take(4), b.take(4), b.take(4)), (4, 4, 2, 0));
        let unlimited = Budget::new(None);
        assert_eq!(unlimited.take(7), 7);
    }

    #[test]
    fn budget_is_exact_under_concurrency() {
        let b = Arc::new(Budget::new(Some(100_000)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut got = 0u64;
                    loop {
                        match b.take(3) {
                            0 => return got,
                            n => got += n as u64,
                        }
                    }
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 100_000);
    }

    #[test]
    fn fifo_requests_cycle_through_the_groups() {
        let mut s = spec();
        s.message_groups = 3;
        s.batch = 2;
        let ops = Arc::new(AtomicU64::new(0));
        let mut a = Maker::new(&s, ops.clone(), 1);
        let mut b = Maker::new(&s, ops, 2);
        let groups: Vec<String> = [a.batch(2), b.batch(2), a.batch(2), b.batch(1)]
            .into_iter()
            .map(|batch| {
                let g = batch[0].message_group.clone().unwrap();
                assert!(batch.iter().all(|m| m.message_group.as_deref() == Some(&g)));
                assert!(batch.iter().all(|m| m.delivery_timestamp.is_none()));
                g
            })
            .collect();
        assert_eq!(groups, ["g0", "g1", "g2", "g0"]);
    }

    #[test]
    fn scheduled_messages_are_due_within_delay_and_spread() {
        let mut s = spec();
        s.delay = Some(Duration::from_secs(20));
        s.delay_spread = Duration::from_secs(30);
        let mut m = Maker::new(&s, Arc::new(AtomicU64::new(0)), 9);
        let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let before = ms(SystemTime::now());
        let due: Vec<i64> = (0..1000)
            .map(|_| ms(m.batch(1)[0].delivery_timestamp.unwrap()) - before)
            .collect();
        let after = ms(SystemTime::now()) - before;
        assert!(due.iter().all(|&d| (20_000..50_000 + after).contains(&d)));
        // Spread out, not all at once: both halves of the window are used.
        assert!(due.iter().any(|&d| d < 35_000) && due.iter().any(|&d| d >= 35_000));
        let mut plain = Maker::new(&spec(), Arc::new(AtomicU64::new(0)), 1);
        let msg = &plain.batch(1)[0];
        assert!(msg.delivery_timestamp.is_none() && msg.message_group.is_none());
        assert_eq!(msg.body.len(), 1000);
    }

    #[test]
    fn runs_need_an_end_and_sane_sizes() {
        let mut s = spec();
        s.duration = None;
        assert_eq!(check(&s).unwrap_err().exit_code(), 2);
        s.count = Some(5);
        assert!(check(&s).is_ok());
        s.batch = 2;
        assert_eq!(check(&s).unwrap_err().exit_code(), 2);
        s.transaction = false;
        assert!(check(&s).is_ok());
        s.connections = 0;
        assert!(check(&s).is_err());
    }
}

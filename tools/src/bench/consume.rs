//! `apogee bench consume`: C simple consumers of one group receive with long polling and
//! acknowledge what they receive, until the run's time is up or its count is acknowledged
//! (with only a count, also after `idle` without a new message).
//!
//! Reports messages received and acknowledged per second, redeliveries seen (delivery
//! attempt above 1), and for scheduled messages (those carrying a delivery timestamp, first
//! deliveries only) the lateness: the wall-clock time the receive returned minus the
//! delivery timestamp. That is the end-to-end figure a user sees: the broker's publication
//! delay plus the consumer's wake-up and transfer.

use super::produce::read_stamp;
use super::samples::Samples;
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use apogee_client::{ClientConfig, FilterExpression, SimpleConsumer};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shortest long poll worth asking for near the end of a timed run.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// Pause after a failed receive.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What `bench consume` runs.
#[derive(Clone, Debug)]
pub struct ConsumeSpec {
    pub topic: String,
    pub group: String,
    pub consumers: u32,
    /// Messages asked for per receive.
    pub batch: u32,
    /// Time limit (None: only `count` ends the run).
    pub duration: Option<Duration>,
    /// Stop once this many are acknowledged.
    pub count: Option<u64>,
    pub invisible: Duration,
    /// Long-polling time of each receive.
    pub wait: Duration,
    /// Stop after this long without a new message (None: never).
    pub idle: Option<Duration>,
    /// `bench e2e`: the run id whose stamped bodies give send-to-receive latencies.
    pub stamp: Option<u64>,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConsumeReport {
    /// Messages received and acknowledged per second.
    pub msgs_per_sec: f64,
    pub received: u64,
    pub acked: u64,
    /// Messages received with a delivery attempt above 1.
    pub redeliveries: u64,
    pub receive_errors: u64,
    pub ack_errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// First deliveries of messages with a delivery timestamp (scheduled ones).
    pub scheduled: u64,
    /// Lateness of those: receive time minus delivery timestamp.
    pub lateness_p50_ms: f64,
    pub lateness_p99_ms: f64,
    pub lateness_max_ms: f64,
    pub lateness_mean_ms: f64,
    /// Scheduled messages received before their delivery timestamp.
    pub early: u64,
    /// Measured time: until the count was reached, the last message of an idle stop, or the
    /// end of the run.
    pub duration_secs: f64,
    pub consumers: u32,
    pub batch: u32,
    pub count: Option<u64>,
    /// With `--broker-pid`: the broker's CPU time over the run and its memory at the end.
    pub broker: Option<super::broker_usage::BrokerUsage>,
}

impl TableRow for ConsumeReport {
    fn headers() -> Vec<&'static str> {
        vec![
            "MSG/S",
            "ACKED",
            "REDELIVERED",
            "ERRORS",
            "SCHEDULED",
            "LATE P50 MS",
            "LATE P99 MS",
            "LATE MAX MS",
            "BROKER CPU S",
            "BROKER RSS MIB",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            format!("{:.0}", self.msgs_per_sec),
            self.acked.to_string(),
            self.redeliveries.to_string(),
            (self.receive_errors + self.ack_errors).to_string(),
            self.scheduled.to_string(),
            format!("{:.1}", self.lateness_p50_ms),
            format!("{:.1}", self.lateness_p99_ms),
            format!("{:.1}", self.lateness_max_ms),
            super::broker_usage::cell(self.broker.as_ref().map(|b| b.cpu_secs), 1),
            super::broker_usage::cell(self.broker.as_ref().map(|b| b.rss_mib), 0),
        ]
    }
}

/// What one consumer task counted.
#[derive(Default)]
struct TaskStats {
    received: u64,
    acked: u64,
    redeliveries: u64,
    receive_errors: u64,
    ack_errors: u64,
    first_error: Option<String>,
    lateness: Samples,
    /// `bench e2e`: send-to-receive times of this run's first deliveries.
    e2e: Samples,
}

impl TaskStats {
    fn error(&mut self, e: impl ToString) {
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// Counts a received batch, given as (delivery attempt, delivery timestamp ms, send time
    /// µs of a stamped body) per message; `at_us` is the wall clock when the receive returned.
    fn received(
        &mut self,
        deliveries: impl IntoIterator<Item = (i32, Option<i64>, Option<i64>)>,
        at_us: i64,
    ) {
        for (attempt, delivery_ms, sent_us) in deliveries {
            self.received += 1;
            if attempt > 1 {
                self.redeliveries += 1;
            } else if let Some(sent) = sent_us {
                self.e2e.record_us(at_us - sent);
            } else if let Some(ts) = delivery_ms {
                self.lateness.record_us(at_us - ts.saturating_mul(1000));
            }
        }
    }

    fn merge(&mut self, o: TaskStats) {
        self.received += o.received;
        self.acked += o.acked;
        self.redeliveries += o.redeliveries;
        self.receive_errors += o.receive_errors;
        self.ack_errors += o.ack_errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.lateness.merge(o.lateness);
        self.e2e.merge(o.e2e);
    }
}

/// State the consumer tasks share.
struct Shared {
    started: Instant,
    acked: Arc<AtomicU64>,
    stop: AtomicBool,
    /// Microseconds from the start to the ack that reached the count (u64::MAX: not yet).
    done_us: AtomicU64,
    /// Microseconds from the start to the last receive that brought messages.
    progress_us: AtomicU64,
}

impl Shared {
    fn since_start_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

/// How long the next receive may wait, or None when the run is over.
fn next_wait(spec: &ConsumeSpec, shared: &Shared) -> Option<Duration> {
    if shared.stop.load(Ordering::SeqCst) {
        return None;
    }
    let elapsed = shared.started.elapsed();
    let mut wait = spec.wait;
    if let Some(limit) = spec.duration {
        let left = limit.checked_sub(elapsed).filter(|l| *l >= MIN_WAIT)?;
        wait = wait.min(left);
    }
    if let Some(idle) = spec.idle {
        let quiet = elapsed.saturating_sub(Duration::from_micros(
            shared.progress_us.load(Ordering::SeqCst),
        ));
        if quiet >= idle {
            shared.stop.store(true, Ordering::SeqCst);
            return None;
        }
    }
    Some(wait)
}

async fn consume_loop(
    consumer: SimpleConsumer,
    spec: Arc<ConsumeSpec>,
    shared: Arc<Shared>,
) -> TaskStats {
    let mut stats = TaskStats::default();
    while let Some(wait) = next_wait(&spec, &shared) {
        let messages = match consumer
            .receive(&spec.topic, spec.batch, spec.invisible, wait)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                stats.receive_errors += 1;
                stats.error(e);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let at_us = super::wall_us();
        stats.received(
            messages.iter().map(|m| {
                let sent = spec.stamp.and_then(|id| read_stamp(&m.body, id));
                (m.delivery_attempt, m.delivery_timestamp_ms, sent)
            }),
            at_us,
        );
        shared
            .progress_us
            .fetch_max(shared.since_start_us(), Ordering::SeqCst);
        let mut ok = 0u64;
        for r in consumer.ack_many(&messages).await {
            match r {
                Ok(()) => ok += 1,
                Err(e) => {
                    stats.ack_errors += 1;
                    stats.error(e);
                }
            }
        }
        stats.acked += ok;
        let total = shared.acked.fetch_add(ok, Ordering::SeqCst) + ok;
        if spec.count.is_some_and(|c| total >= c) {
            let _ = shared.done_us.compare_exchange(
                u64::MAX,
                shared.since_start_us(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            shared.stop.store(true, Ordering::SeqCst);
        }
    }
    consumer.shutdown().await;
    stats
}

/// Runs the benchmark.
pub async fn run(config: ClientConfig, spec: &ConsumeSpec) -> ToolResult<ConsumeReport> {
    run_with_latencies(config, spec, Arc::new(AtomicU64::new(0)))
        .await
        .map(|(r, _)| r)
}

/// Like [`run`], adding acknowledged messages to `acked` as it goes (progress displays) and
/// also returning the send-to-receive samples of stamped bodies (sorted).
pub(super) async fn run_with_latencies(
    config: ClientConfig,
    spec: &ConsumeSpec,
    acked: Arc<AtomicU64>,
) -> ToolResult<(ConsumeReport, Samples)> {
    if spec.consumers == 0 || spec.batch == 0 {
        return Err(ToolError::Usage(
            "consumers and batch must be at least 1".into(),
        ));
    }
    if spec.duration.is_none() && spec.count.is_none() {
        return Err(ToolError::Usage("give a duration or a count".into()));
    }
    let mut consumers = Vec::new();
    for _ in 0..spec.consumers {
        let subscription = vec![(spec.topic.clone(), FilterExpression::default())];
        consumers.push(SimpleConsumer::connect(config.clone(), &spec.group, subscription).await?);
    }
    let shared = Arc::new(Shared {
        started: Instant::now(),
        acked,
        stop: AtomicBool::new(false),
        done_us: AtomicU64::new(u64::MAX),
        progress_us: AtomicU64::new(0),
    });
    let spec_arc = Arc::new(spec.clone());
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|c| tokio::spawn(consume_loop(c, spec_arc.clone(), shared.clone())))
        .collect();
    let mut total = TaskStats::default();
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| ToolError::Server(format!("bench task failed: {e}")))?;
        total.merge(stats);
    }
    let measured = match shared.done_us.load(Ordering::SeqCst) {
        u64::MAX if spec.idle.is_some() => {
            Duration::from_micros(shared.progress_us.load(Ordering::SeqCst))
        }
        u64::MAX => shared.started.elapsed(),
        us => Duration::from_micros(us),
    };
    let mut e2e = std::mem::take(&mut total.e2e);
    e2e.sort();
    Ok((report(spec, total, measured), e2e))
}

fn report(spec: &ConsumeSpec, mut total: TaskStats, measured: Duration) -> ConsumeReport {
    let secs = measured.as_secs_f64().max(1e-9);
    total.lateness.sort();
    let l = &total.lateness;
    ConsumeReport {
        msgs_per_sec: total.acked as f64 / secs,
        received: total.received,
        acked: total.acked,
        redeliveries: total.redeliveries,
        receive_errors: total.receive_errors,
        ack_errors: total.ack_errors,
        first_error: total.first_error,
        scheduled: l.len() as u64,
        lateness_p50_ms: l.percentile_ms(50.0),
        lateness_p99_ms: l.percentile_ms(99.0),
        lateness_max_ms: l.percentile_ms(100.0),
        lateness_mean_ms: l.mean_ms(),
        early: l.negative(),
        duration_secs: secs,
        consumers: spec.consumers,
        batch: spec.batch,
        count: spec.count,
        broker: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConsumeSpec {
        ConsumeSpec {
            topic: "T".into(),
            group: "G".into(),
            consumers: 2,
            batch: 32,
            duration: Some(Duration::from_secs(10)),
            count: None,
            invisible: Duration::from_secs(30),
            wait: Duration::from_secs(5),
            idle: None,
            stamp: None,
        }
    }

    fn shared() -> Shared {
        Shared {
            started: Instant::now(),
            acked: Arc::new(AtomicU64::new(0)),
            stop: AtomicBool::new(false),
            done_us: AtomicU64::new(u64::MAX),
            progress_us: AtomicU64::new(0),
        }
    }

    #[test]
    fn lateness_counts_first_deliveries_of_scheduled_messages() {
        let mut s = TaskStats::default();
        let at_us = 10_000_000; // 10 s after the epoch
        s.received(
            [
                (1, Some(9_990), None),     // 10 ms late
                (1, Some(9_700), None),     // 300 ms late
                (1, Some(10_002), None),    // 2 ms early
                (2, Some(5_000), None),     // a redelivery: not a lateness sample
                (1, None, None),            // not scheduled
                (1, None, Some(9_996_000)), // stamped: 4 ms send to receive
                (2, None, Some(9_000_000)), // stamped, redelivered: not a sample
            ],
            at_us,
        );
        assert_eq!((s.received, s.redeliveries), (7, 2));
        assert_eq!(s.e2e.len(), 1);
        s.e2e.sort();
        assert_eq!(s.e2e.percentile_ms(50.0), 4.0);
        s.acked = 5;
        let r = report(&spec(), s, Duration::from_secs(2));
        assert_eq!(r.scheduled, 3);
        assert_eq!(r.early, 1);
        assert_eq!(r.lateness_p50_ms, 10.0);
        assert_eq!(r.lateness_max_ms, 300.0);
        assert_eq!(r.lateness_p99_ms, 300.0);
        assert_eq!(r.msgs_per_sec, 2.5);
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "msgs_per_sec",
            "acked",
            "redeliveries",
            "lateness_p99_ms",
            "early",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn merged_stats_add_up_and_keep_the_first_error() {
        let mut a = TaskStats {
            acked: 3,
            ack_errors: 1,
            ..Default::default()
        };
        a.error("first");
        let mut b = TaskStats {
            acked: 4,
            receive_errors: 2,
            ..Default::default()
        };
        b.error("second");
        b.lateness.record_us(1000);
        a.merge(b);
        assert_eq!((a.acked, a.ack_errors, a.receive_errors), (7, 1, 2));
        assert_eq!(a.first_error.as_deref(), Some("first"));
        assert_eq!(a.lateness.len(), 1);
    }

    #[test]
    fn waits_stop_at_the_time_limit_and_when_idle() {
        let s = spec();
        let sh = shared();
        assert_eq!(next_wait(&s, &sh), Some(Duration::from_secs(5)));
        let mut short = spec();
        short.duration = Some(Duration::from_secs(2));
        let w = next_wait(&short, &sh).unwrap();
        assert!(w <= Duration::from_secs(2) && w > Duration::from_secs(1));
        short.duration = Some(Duration::from_millis(10));
        assert_eq!(next_wait(&short, &sh), None, "less than MIN_WAIT left");
        let mut idle = spec();
        idle.duration = None;
        idle.count = Some(10);
        idle.idle = Some(Duration::ZERO);
        assert_eq!(next_wait(&idle, &sh), None);
        assert!(
            sh.stop.load(Ordering::SeqCst),
            "an idle stop stops every consumer"
        );
        assert_eq!(next_wait(&spec(), &sh), None);
    }
}

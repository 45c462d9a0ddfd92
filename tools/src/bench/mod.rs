//! `apogee bench`: load generators over the client library.
//!
//! - [`args`]: the `bench produce` / `bench consume` command line.
//! - [`produce`]: sends (plain, FIFO over N message groups, scheduled, transactional) and
//!   reports throughput and request latency.
//! - [`consume`]: C simple consumers receive and ack; reports throughput, redeliveries and
//!   the lateness of scheduled messages.
//! - [`e2e`]: producers at a set rate and a consuming group at once; send-to-receive latency.
//! - [`lite`]: N lite topics of M messages under a LITE parent, then one lite consumer of K
//!   of them drains them (beside a plain drain of as many).
//! - [`samples`]: latency / lateness samples and their percentiles.
//! - [`broker_usage`]: `--broker-pid`, the broker's CPU seconds and memory over a run.
//!
//! While a run goes on and stderr is a terminal, one line on stderr shows its progress.

pub mod args;
pub mod broker_usage;
pub mod consume;
pub mod e2e;
pub mod lite;
pub mod produce;
pub mod samples;

pub use args::{BenchCommand, BenchConsumeArgs, BenchE2eArgs, BenchProduceArgs};
pub use consume::{ConsumeReport, ConsumeSpec};
pub use produce::{BenchReport, BenchSpec};

use crate::error::ToolResult;
use crate::output::{render_one, Format};
use apogee_client::ClientConfig;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock microseconds since the epoch.
pub(crate) fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Prints "elapsed, messages, msg/s" on one stderr line every second while the run goes on,
/// when stderr is a terminal (never into pipes or test output). Abort the handle to stop.
fn progress(done: Arc<AtomicU64>, what: &'static str) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let started = Instant::now();
        let mut last = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = done.load(Ordering::Relaxed);
            eprint!(
                "\r{:>5.0} s  {now:>10} {what}  {:>8} msg/s ",
                started.elapsed().as_secs_f64(),
                now - last
            );
            let _ = std::io::stderr().flush();
            last = now;
        }
    }))
}

fn end_progress(ticker: Option<tokio::task::JoinHandle<()>>) {
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[2K");
    }
}

/// Runs a bench command; returns its rendered report (failures of single requests are
/// counted in the report and the first one is printed to stderr).
pub async fn run_command(
    config: ClientConfig,
    cmd: &BenchCommand,
    f: Format,
) -> ToolResult<String> {
    match cmd {
        BenchCommand::Produce(a) => {
            let spec = a.spec()?;
            let config = config.with_send_transport(a.transport);
            let (mut report, broker) = measured(a.common.broker_pid, "sent", |sent| {
                produce::run_counted(config, &spec, sent)
            })
            .await?;
            report.broker = broker;
            if let Some(e) = &report.first_error {
                eprintln!(
                    "warning: {} requests failed; first error: {e}",
                    report.errors
                );
            }
            Ok(render_one(&report, f))
        }
        BenchCommand::Consume(a) => {
            let spec = a.spec();
            let ((mut report, _), broker) = measured(a.common.broker_pid, "acked", |acked| {
                consume::run_with_latencies(config, &spec, acked)
            })
            .await?;
            report.broker = broker;
            if let Some(e) = &report.first_error {
                eprintln!(
                    "warning: {} receives and {} acks failed; first error: {e}",
                    report.receive_errors, report.ack_errors
                );
            }
            Ok(render_one(&report, f))
        }
        BenchCommand::E2e(a) => {
            let spec = a.spec()?;
            let (mut report, broker) = measured(a.common.broker_pid, "sent", |sent| {
                e2e::run(config, &spec, sent)
            })
            .await?;
            report.broker = broker;
            if let Some(e) = &report.first_error {
                eprintln!(
                    "warning: {} requests failed; first error: {e}",
                    report.errors
                );
            }
            Ok(render_one(&report, f))
        }
        BenchCommand::Lite(a) => {
            let (mut report, broker) = measured(a.common.broker_pid, "messages", |done| {
                lite::run(config, a, done)
            })
            .await?;
            report.broker = broker;
            if let Some(e) = report
                .send_first_error
                .as_ref()
                .or(report.drain_first_error.as_ref())
            {
                eprintln!(
                    "warning: {} sends and {} receives or acks failed; first error: {e}",
                    report.send_errors, report.drain_errors
                );
            }
            Ok(render_one(&report, f))
        }
    }
}

/// Runs one workload with its progress line and, given a broker PID, the broker's usage.
async fn measured<R, Fut>(
    broker_pid: Option<u32>,
    what: &'static str,
    run: impl FnOnce(Arc<AtomicU64>) -> Fut,
) -> ToolResult<(R, Option<broker_usage::BrokerUsage>)>
where
    Fut: std::future::Future<Output = ToolResult<R>>,
{
    let ticks = broker_pid.map(broker_usage::cpu_ticks).transpose()?;
    let count = Arc::new(AtomicU64::new(0));
    let ticker = progress(count.clone(), what);
    let result = run(count).await;
    end_progress(ticker);
    let result = result?;
    let usage = match (broker_pid, ticks) {
        (Some(pid), Some(t)) => Some(broker_usage::finish(pid, t)?),
        _ => None,
    };
    Ok((result, usage))
}

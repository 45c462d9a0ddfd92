//! `apogee bench`: load generators over the client library.
//!
//! - [`args`]: the `bench produce` / `bench consume` command line.
//! - [`produce`]: sends (plain, FIFO over N message groups, scheduled, transactional) and
//!   reports throughput and request latency.
//! - [`consume`]: C simple consumers receive and ack; reports throughput, redeliveries and
//!   the lateness of scheduled messages.
//! - [`samples`]: latency / lateness samples and their percentiles.

pub mod args;
pub mod consume;
pub mod produce;
pub mod samples;

pub use args::{BenchCommand, BenchConsumeArgs, BenchProduceArgs};
pub use consume::{ConsumeReport, ConsumeSpec};
pub use produce::{BenchReport, BenchSpec};

use crate::error::ToolResult;
use crate::output::{render_one, Format};
use apogee_client::ClientConfig;

/// Runs a bench command; returns its rendered report (failures of single requests are
/// counted in the report and the first one is printed to stderr).
pub async fn run_command(
    config: ClientConfig,
    cmd: &BenchCommand,
    f: Format,
) -> ToolResult<String> {
    match cmd {
        BenchCommand::Produce(a) => {
            let report = produce::run(config, &a.spec()?).await?;
            if let Some(e) = &report.first_error {
                eprintln!(
                    "warning: {} requests failed; first error: {e}",
                    report.errors
                );
            }
            Ok(render_one(&report, f))
        }
        BenchCommand::Consume(a) => {
            let report = consume::run(config, &a.spec()).await?;
            if let Some(e) = &report.first_error {
                eprintln!(
                    "warning: {} receives and {} acks failed; first error: {e}",
                    report.receive_errors, report.ack_errors
                );
            }
            Ok(render_one(&report, f))
        }
    }
}

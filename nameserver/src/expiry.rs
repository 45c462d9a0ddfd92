//! The periodic task that drops brokers silent for longer than they may be from the
//! broker table (brokers with a session: its missed beats, which their session's own
//! deadline usually notices first; brokers of earlier releases: the expiry window), and
//! logs each one it drops.

use crate::grpc::broker_session::log_dropped;
use crate::metrics::LivenessCounters;
use crate::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Scans the table every `interval` until the returned task is aborted.
pub fn spawn(
    registry: Arc<Registry>,
    interval: Duration,
    counters: LivenessCounters,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for e in registry.expire() {
                counters.dropped.with_label_values(&["expired"]).inc();
                let why = format!(
                    "not heard from for {} ms (allowed {} ms)",
                    e.silent_for.as_millis(),
                    e.silence_limit.as_millis()
                );
                log_dropped(&e, &why);
            }
        }
    })
}

//! The periodic task that drops brokers silent for longer than the expiry
//! window from the broker table, and logs each one it drops.

use crate::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Scans the table every `interval` until the returned task is aborted.
pub fn spawn(registry: Arc<Registry>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for e in registry.expire() {
                tracing::warn!(
                    cluster = %e.group.cluster,
                    broker_name = %e.group.broker_name,
                    broker_id = e.broker_id,
                    endpoint = %e.endpoint,
                    silent_secs = e.silent_for.as_secs(),
                    "broker expired: no heartbeat within {}s, dropped from routes",
                    registry.expiry().as_secs()
                );
            }
        }
    })
}

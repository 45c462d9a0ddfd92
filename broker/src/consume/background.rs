//! The consume engine's background task: renews the invisible time of
//! auto-renew deliveries (push consumers) and dead-letters deliveries that
//! used up their group's attempts, even when nobody is receiving.

use super::dead_letter::dead_letter;
use crate::server::Broker;
use apogee_proto::group::DEFAULT_MAX_DELIVERY_ATTEMPTS;
use apogee_proto::time::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the task looks, at the latest (a pop that passes over an
/// expired delivery wakes it at once).
const TICK: Duration = Duration::from_millis(500);

/// Runs until `stop` turns true.
pub fn spawn(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = broker.config.consume.auto_renew_period_ms as i64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = broker.consume.expired().notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = broker.consume.renew(now_ms(), period) {
                tracing::warn!("renewing auto-renew deliveries: {e}");
            }
            let expired = broker.consume.expired_deliveries(now_ms(), |group| {
                broker
                    .groups
                    .get(group)
                    .map(|g| g.max_delivery_attempts)
                    .unwrap_or(DEFAULT_MAX_DELIVERY_ATTEMPTS)
            });
            for e in expired {
                match dead_letter(&broker.store, &broker.topics, &broker.consume, &e).await {
                    Ok(true) => broker.metrics.dead_lettered(&e.key.topic, &e.key.group),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(
                        group = %e.key.group, topic = %e.key.topic,
                        "dead-lettering offset {} of queue {}: {err}", e.queue_offset, e.key.queue_id
                    ),
                }
            }
        }
    })
}

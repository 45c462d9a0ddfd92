//! The consume engine's background task: renews the invisible time of
//! auto-renew deliveries (push consumers) and dead-letters deliveries that
//! used up their group's attempts, even when nobody is receiving.

use super::dead_letter::dead_letter;
use super::ConsumeEngine;
use crate::groups::GroupTable;
use crate::store::MessageStore;
use crate::topics::TopicTable;
use apogee_proto::group::DEFAULT_MAX_DELIVERY_ATTEMPTS;
use apogee_proto::time::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the task looks, at the latest (a pop that passes over an
/// expired delivery wakes it at once).
const TICK: Duration = Duration::from_millis(500);

/// Told of each message dead-lettered: (topic, group).
pub type DeadLettered = Box<dyn Fn(&str, &str) + Send + Sync>;

/// What the task works on.
pub struct Background {
    pub consume: Arc<ConsumeEngine>,
    /// Each group's delivery attempts.
    pub groups: Arc<GroupTable>,
    /// Where dead letters are written, and their topics created.
    pub store: Arc<MessageStore>,
    pub topics: Arc<TopicTable>,
    /// `consume.auto_renew_period_ms`.
    pub auto_renew_period_ms: u64,
    /// Told of each message dead-lettered: (topic, group).
    pub dead_lettered: DeadLettered,
}

/// Runs until `stop` turns true.
pub fn spawn(
    work: Background,
    gate: super::ServingGate,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = work.auto_renew_period_ms as i64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = work.consume.expired().notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(why) = gate() {
                tracing::debug!("renewals and dead letters wait: {why}");
                continue;
            }
            if let Err(e) = work.consume.renew(now_ms(), period) {
                tracing::warn!("renewing auto-renew deliveries: {e}");
            }
            let expired = work.consume.expired_deliveries(now_ms(), |group| {
                work.groups
                    .get(group)
                    .map(|g| g.max_delivery_attempts)
                    .unwrap_or(DEFAULT_MAX_DELIVERY_ATTEMPTS)
            });
            for e in expired {
                match dead_letter(&work.store, &work.topics, &work.consume, &e).await {
                    Ok(true) => (work.dead_lettered)(&e.key.topic, &e.key.group),
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

//! Queue locks of ordered remoting consumers: per consumer group, which client holds which
//! queue and when it last locked it ([`QueueLocks`]), kept by LOCK_BATCH_MQ and
//! UNLOCK_BATCH_MQ (`crate::remoting::lock`). A lock not renewed for [`LOCK_LIFETIME`]
//! (RocketMQ's `REBALANCE_LOCK_MAX_LIVE_TIME`) is free. It imports nothing of the broker's
//! services, so the broker can hold it.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long a lock lasts after the last lock call that took or renewed it.
pub const LOCK_LIFETIME: Duration = Duration::from_secs(60);

/// The most queues one request may name (a consumer names the queues of one broker it was
/// given, over all the topics it subscribes).
pub const MAX_QUEUES_PER_REQUEST: usize = 8192;

/// A queue as remoting clients name it (RocketMQ's `MessageQueue`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

/// The body of LOCK_BATCH_MQ and UNLOCK_BATCH_MQ.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockRequestBody {
    #[serde(default)]
    pub consumer_group: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub mq_set: Vec<RemoteQueue>,
}

/// The body of a LOCK_BATCH_MQ answer.
#[derive(Clone, Debug, Serialize)]
pub struct LockAnswerBody {
    #[serde(rename = "lockOKMQSet")]
    pub locked: Vec<RemoteQueue>,
}

/// Who holds a queue's lock.
#[derive(Clone, Debug)]
struct Holder {
    client_id: String,
    last_locked: Instant,
}

impl Holder {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_locked) < LOCK_LIFETIME
    }
}

/// Every consumer group's queue locks.
#[derive(Debug, Default)]
pub struct QueueLocks {
    groups: Mutex<HashMap<String, HashMap<RemoteQueue, Holder>>>,
}

impl QueueLocks {
    /// Whether no group holds any lock (expired ones swept).
    pub fn is_empty(&self) -> bool {
        self.groups.lock().is_empty()
    }

    pub fn new() -> QueueLocks {
        QueueLocks::default()
    }

    /// Locks (or renews) `queues` of `group` for `client`: returns those the client holds
    /// now, in order; a queue another client holds, renewed within [`LOCK_LIFETIME`], is
    /// left out.
    pub fn lock(&self, group: &str, client: &str, queues: &[RemoteQueue]) -> Vec<RemoteQueue> {
        self.lock_at(group, client, queues, Instant::now())
    }

    pub(crate) fn lock_at(
        &self,
        group: &str,
        client: &str,
        queues: &[RemoteQueue],
        now: Instant,
    ) -> Vec<RemoteQueue> {
        let mut groups = self.groups.lock();
        let table = groups.entry(group.to_string()).or_default();
        // Expired locks go first, so a group's table holds only live ones.
        table.retain(|_, h| h.live(now));
        let mut granted = BTreeSet::new();
        for queue in queues {
            match table.get_mut(queue) {
                Some(h) if h.client_id != client => {
                    tracing::debug!(
                        group, client, holder = %h.client_id, topic = %queue.topic,
                        queue = queue.queue_id, "queue lock held by another client"
                    );
                }
                Some(h) => {
                    h.last_locked = now;
                    granted.insert(queue.clone());
                }
                None => {
                    table.insert(
                        queue.clone(),
                        Holder {
                            client_id: client.to_string(),
                            last_locked: now,
                        },
                    );
                    granted.insert(queue.clone());
                }
            }
        }
        if table.is_empty() {
            groups.remove(group);
        }
        granted.into_iter().collect()
    }

    /// Releases the locks `client` holds on `queues` of `group` (others' stay).
    pub fn unlock(&self, group: &str, client: &str, queues: &[RemoteQueue]) {
        let mut groups = self.groups.lock();
        let Some(table) = groups.get_mut(group) else {
            return;
        };
        for queue in queues {
            if table.get(queue).is_some_and(|h| h.client_id == client) {
                table.remove(queue);
            }
        }
        if table.is_empty() {
            groups.remove(group);
        }
    }

    /// The client holding `queue` of `group` at `now`, if any.
    #[cfg(test)]
    pub(crate) fn holder_at(
        &self,
        group: &str,
        queue: &RemoteQueue,
        now: Instant,
    ) -> Option<String> {
        let groups = self.groups.lock();
        let h = groups.get(group)?.get(queue)?;
        h.live(now).then(|| h.client_id.clone())
    }
}
